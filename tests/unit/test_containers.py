"""The Dockerfiles, checked statically (no Docker here): pinned bases, entry points present, non-root serving,
no secrets, and a build context that holds only what the images copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signal_engine.workflow.steps import STEPS

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "containers" / "training" / "Dockerfile"
INFERENCE = ROOT / "containers" / "inference" / "Dockerfile"
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


def test_training_image_installs_the_toolkit_pinned_and_the_package() -> None:
    (install,) = [run for run in values(TRAINING, "RUN") if "pip install" in run]
    assert re.search(r'"sagemaker-training==\d+\.\d+\.\d+"', install)
    assert re.search(r"pip install .* \.(\s|$)", install), "installs this package from the build context"


def test_every_workflow_entry_point_is_in_the_training_image() -> None:
    copies = values(TRAINING, "COPY")
    assert "sagemaker_jobs/ /opt/ml/code/" in copies
    entries = {s.entry for s in STEPS if s.entry}
    assert entries == {"prepare", "train_expert", "train_gate", "evaluate"}
    for entry in entries:
        script = ROOT / "sagemaker_jobs" / f"{entry}.py"
        assert "def main(" in script.read_text(encoding="utf-8") and '__name__ == "__main__"' in script.read_text()
    env = " ".join(values(TRAINING, "ENV"))
    default = re.search(r"SAGEMAKER_PROGRAM=(\S+)", env)
    assert default and (ROOT / "sagemaker_jobs" / default.group(1)).is_file()


def test_inference_image_is_pinned_and_serves_as_a_non_root_user() -> None:
    (base,) = values(INFERENCE, "FROM")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base
    (user,) = values(INFERENCE, "USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert values(INFERENCE, "EXPOSE") == ["8080"]
    assert values(INFERENCE, "CMD") == ['["serve"]']
    assert "sagemaker_jobs/serve.py /opt/program/serve.py" in values(INFERENCE, "COPY")
    assert any("/usr/local/bin/serve" in run and "serve.py" in run for run in values(INFERENCE, "RUN"))


@pytest.mark.parametrize("dockerfile", [TRAINING, INFERENCE], ids=["training", "inference"])
def test_no_secrets_and_no_latest_tags(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text), f"{dockerfile.name} matches {pattern}"
    assert ":latest" not in text


@pytest.mark.parametrize("dockerfile", [TRAINING, INFERENCE], ids=["training", "inference"])
def test_build_context_holds_what_the_image_copies(dockerfile: Path) -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**", "the context starts empty and lists what it lets in"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for copy in values(dockerfile, "COPY"):
        *sources, _ = copy.split()
        for source in sources:
            top = source.rstrip("/").split("/")[0]
            assert top in allowed, f"{dockerfile.name} copies {source}, which .dockerignore keeps out"
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
    assert "**/.env" in ignore and "**/*.pem" in ignore
