"""The SageMaker jobs and the experts' endpoint, run the way their images run them.

Training: the real SageMaker training toolkit (`sagemaker-training`, whose `train` command SageMaker runs in the
training image) over a simulated /opt/ml tree per job (relocated with the toolkit's SAGEMAKER_BASE_DIR):
`input/config/hyperparameters.json` holds the string values the Step Functions definition sends
(`States.JsonToString` of the symbols list and of the config object), `input/data/<channel>/` what SageMaker
downloads, `code/` the entry points as the Dockerfile copies them. The toolkit json-decodes those values, passes
them as SM_HPS and as `--name value` arguments, and runs `/opt/ml/code/<sagemaker_program>`. Jobs are chained as
the workflow chains them: each job's model/ is packed as model.tar.gz and becomes the next job's channel, the
prepare job runs in the CPU image (which installs no TensorFlow), and each expert's job, the gate job and the evaluate
job in the image the prepare job's training plan names.

Serving: the inference Dockerfile's `serve` command, started as SageMaker starts the container (`serve`), on the
port SAGEMAKER_BIND_TO_PORT names, with the evaluate job's model.tar.gz unpacked as the model folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.data.loader import load_prices
from signal_engine.registry import load_experts, pack_artefact
from signal_engine.workflow.training import load_dataset
from tests.fixtures.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
# The console script SageMaker runs in the training image (`docker run <image> train`).
TRAIN = Path(sys.executable).with_name("train")
INFERENCE_DOCKERFILE = ROOT / "containers" / "inference" / "Dockerfile"
# The training images by the plan's accelerator: the NVIDIA TensorFlow image, and the slim one without TensorFlow.
TRAINING_DOCKERFILES = {"gpu": ROOT / "containers" / "training" / "Dockerfile",
                        "cpu": ROOT / "containers" / "training-cpu" / "Dockerfile"}
# In the CPU image TensorFlow cannot be imported: the toolkit then leaves TensorFlow's exceptions out of its error
# report (and skips the seconds their import takes), and a job that needed TensorFlow would fail there too.
NO_TENSORFLOW = "import sys\n\nsys.modules['tensorflow'] = None  # not installed: imports raise ModuleNotFoundError\n"
TOOLKIT_WITHOUT_TENSORFLOW = "Exceptions not imported for SageMaker TF as Tensorflow is not installed"
EXECUTION = "run1"
# What the execution input carries (step_functions/training_workflow.py's defaults plus a small run): GOOG from
# 2007 (the 1,551 bars 2007-01-03 .. 2013-03-01); with "tune": true, as an execution input asks for tuning (a few
# trials: the 'tuning' section of hyperparameters); with the gate's news slot, so the prepare job is the workflow's
# PrepareDatasetWithNews (channel ``news``: the bars export's files) and every job after it trains the slot.
RUN = {"symbols": ["GOOG"], "profile": "quick", "start": "2007-01-01", "end": "", "tune": True,
       "hyperparameters": {"walk_forward": {"refit_every": 504}, "orchestration": {"timeframes": ["short", "medium"]},
                           "tuning": {"trials": 2}, "moe": {"news": True}, "news": {"enabled": True}}}
GOOG_BARS_FROM_2007 = 1551
# One headline in the news channel, published 28 February 2013 before the close: the last two bars score it.
HEADLINE = ("GOOG", datetime(2013, 2, 28, 15), "Google shares hit a record")
EXPERTS = ("trend", "levels", "volatility")
# The image the prepare job runs in (its workflow step's instance); every other job's is the plan's.
PREPARE_IMAGE = "cpu"


def planned_images(plan: Path) -> dict[str, str]:
    """The accelerator (image) of each job the training plan names: the experts' and the train_gate and evaluate
    jobs', as the workflow's Choices read it."""
    document = json.loads(plan.read_text())
    return {**{e["expert"]: e["accelerator"] for e in document["experts"]},
            **{step: job["accelerator"] for step, job in document["steps"].items()}}


def hyperparameters(program: str, run: dict[str, Any], **extra: str) -> dict[str, str]:
    """HyperParameters exactly as the workflow's `_training_job` renders them: every value a string."""
    compact = {"separators": (",", ":")}  # States.JsonToString writes compact JSON
    return {"sagemaker_program": f"{program}.py", "sagemaker_submit_directory": "/opt/ml/code",
            "profile": run["profile"], "symbols": json.dumps(run["symbols"], **compact),  # type: ignore[arg-type]
            "start": run["start"], "end": run["end"],
            "config": json.dumps(run["hyperparameters"], **compact), **extra}  # type: ignore[arg-type]


def job_tree(base: Path, hps: dict[str, str], channels: dict[str, Path]) -> Path:
    """A training container's /opt/ml as SageMaker lays it out before `train` starts; returns it."""
    ml = base / "opt" / "ml"
    config = ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        for name in channels}))
    instance = "ml.g5.xlarge"
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "current_instance_type": instance, "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"], "network_interface_name": "eth0",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance,
                             "hosts": ["algo-1"]}]}))
    for name, source in channels.items():
        shutil.copytree(source, ml / "input" / "data" / name)
    (ml / "model").mkdir()
    (ml / "output" / "data").mkdir(parents=True)
    # containers/training/Dockerfile: COPY sagemaker_jobs/ /opt/ml/code/
    shutil.copytree(ROOT / "sagemaker_jobs", ml / "code", ignore=shutil.ignore_patterns("__pycache__"))
    return ml


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    """The ENV of a Dockerfile (NAME=value pairs, continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return dict(pair.split("=", 1) for line in re.findall(r"^ENV (.+)$", text, re.M) for pair in line.split())


def start_train(ml: Path, image: str) -> subprocess.Popen[str]:
    """`train` in the training image of ``image`` (an accelerator of the plan: "gpu" or "cpu")."""
    assert TRAIN.is_file(), f"{TRAIN} is missing: install the dev extra (sagemaker-training)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update(dockerfile_env(TRAINING_DOCKERFILES[image]))  # what the image sets, e.g. a default SAGEMAKER_PROGRAM
    path = [str(ROOT)]  # the image installs signal_engine; here it is this checkout
    if image == "cpu":
        site = ml.parents[1] / "python-site"  # beside the job's /opt
        site.mkdir()
        (site / "sitecustomize.py").write_text(NO_TENSORFLOW)  # Python imports it at the start of every process
        path.insert(0, str(site))
    env.update({
        "SAGEMAKER_BASE_DIR": str(ml),  # the toolkit's stand-in for /opt/ml (sagemaker_training/environment.py)
        "SM_STUDIO_LOCAL_MODE": "true",  # skips the toolkit's wait for the host 'algo-1' to resolve in DNS
        "PYTHONPATH": os.pathsep.join(path),
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    return subprocess.Popen([str(TRAIN)], env=env, cwd=ml, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@dataclass(frozen=True)
class Job:
    ml: Path
    returncode: int
    log: str

    @property
    def failure(self) -> str | None:
        path = self.ml / "output" / "failure"
        return path.read_text() if path.exists() else None

    def pack(self, s3: Path, prefix: str, name: str) -> Path:
        """What SageMaker uploads when the job succeeds: S3OutputPath/<job name>/output/model.tar.gz."""
        target = s3 / prefix / name / "output" / "model.tar.gz"
        target.parent.mkdir(parents=True)
        return pack_artefact(self.ml / "model", target)


def run_jobs(specs: list[tuple[Path, dict[str, str], dict[str, Path], str]]) -> list[Job]:
    """Run jobs side by side (as the workflow's Map runs the experts), each ``(base, hyperparameters, channels,
    image)``, and wait for all of them."""
    started = [(ml, start_train(ml, image)) for ml, image in ((job_tree(*spec[:3]), spec[3]) for spec in specs)]
    jobs = []
    for ml, process in started:
        log, _ = process.communicate(timeout=900)
        jobs.append(Job(ml, process.returncode, log))
    return jobs


def channel_with(*files: Path, root: Path) -> Path:
    root.mkdir(parents=True)
    for file in files:
        shutil.copy2(file, root / file.name)
    return root


@dataclass(frozen=True)
class Chain:
    jobs: dict[str, Job]
    s3: Path
    registry: Path
    report: dict[str, Any]
    goog_csv: Path
    images: dict[str, str]  # the accelerator of each job in the plan (experts, train_gate, evaluate)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> Chain:
    from signal_engine.storage.news_files import news_lines
    from signal_engine.storage.records import Document
    from tests.serving_support import text_model_folder

    root = tmp_path_factory.mktemp("toolkit")
    s3 = root / "s3"
    raw = channel_with(goog_csv, root=s3 / "datasets" / "daily")
    news = s3 / "datasets" / "news"
    news.mkdir(parents=True)
    symbol, published, title = HEADLINE
    (news / f"{symbol}.jsonl").write_bytes(news_lines([Document("a", "news", "test", (symbol,), published, title)]))
    jobs: dict[str, Job] = {}
    plan = root / "plan.json"  # the workflow's runs/<execution>/plan.json
    prepare = hyperparameters("prepare", RUN, experts=json.dumps(list(EXPERTS), separators=(",", ":")), plan=str(plan))
    # the channels of PrepareDatasetWithNews, plus a text model folder (``text``) so that the head is not trained on
    # the shipped corpus here; in the CPU image, as the workflow runs it (the text encoder runs on onnxruntime)
    (jobs["prepare"],) = run_jobs([(root / "prepare", prepare, {"raw": raw, "news": news, "text": text_model_folder()},
                                    PREPARE_IMAGE)])
    assert jobs["prepare"].returncode == 0, jobs["prepare"].log[-3000:]
    dataset = jobs["prepare"].pack(s3, f"runs/{EXECUTION}/prepare", f"se-{EXECUTION}-prepare-0")
    dataset_channel = {"dataset": dataset.parent}  # the channel's S3Uri is the model.tar.gz itself
    images = planned_images(plan)
    tune = json.dumps(RUN["tune"])  # the workflow's States.JsonToString($.run.tune)
    experts = run_jobs([(root / expert, hyperparameters("train_expert", RUN, expert=expert, tune=tune),
                         dataset_channel, images[expert]) for expert in EXPERTS])
    for expert, job in zip(EXPERTS, experts, strict=True):
        assert job.returncode == 0, job.log[-3000:]
        jobs[expert] = job
        job.pack(s3, f"runs/{EXECUTION}/experts", f"se-{EXECUTION}-{expert}-0")
    gate_hps = hyperparameters("train_gate", RUN, tune=tune)  # the workflow sends the gate job tune too
    (jobs["train_gate"],) = run_jobs([(root / "gate", gate_hps, dataset_channel, images["train_gate"])])
    assert jobs["train_gate"].returncode == 0, jobs["train_gate"].log[-3000:]
    gate = jobs["train_gate"].pack(s3, f"runs/{EXECUTION}/train_gate", f"se-{EXECUTION}-train-gate-0")
    registry, report = root / "registry", root / "report" / "evaluation.json"
    (jobs["evaluate"],) = run_jobs([(
        root / "evaluate",
        hyperparameters("evaluate", RUN, registry=str(registry), report=str(report)),
        {"dataset": dataset.parent, "gate": gate.parent, "experts": s3 / "runs" / EXECUTION / "experts"},
        images["evaluate"])])
    assert jobs["evaluate"].returncode == 0, jobs["evaluate"].log[-3000:]
    jobs["evaluate"].pack(s3, f"runs/{EXECUTION}/evaluate", f"se-{EXECUTION}-evaluate-0")
    return Chain(jobs, s3, registry, json.loads(report.read_text()), goog_csv, images)


@pytest.mark.slow
def test_the_toolkit_passes_hyperparameters_as_arguments_that_are_not_json(chain: Chain) -> None:
    """The premise: what the toolkit's argv looks like, so SM_HPS must be what the jobs read."""
    log = chain.jobs["prepare"].log
    assert "--symbols ['GOOG']" in log, log[-3000:]
    assert ("--config moe={'news': True},news={'enabled': True},orchestration={'timeframes': ['short', 'medium']},"
            "tuning={'trials': 2},walk_forward={'refit_every': 504}") in log


@pytest.mark.slow
def test_every_job_succeeds_under_the_toolkit(chain: Chain) -> None:
    for name, job in chain.jobs.items():
        assert job.returncode == 0 and job.failure is None, f"{name}: {job.log[-2000:]}"
        assert (job.ml / "output" / "success").is_file(), f"{name}: the toolkit reports SUCCESS"
        assert "Reporting training SUCCESS" in job.log


@pytest.mark.slow
def test_prepare_reads_the_symbols_and_dates_it_was_sent(chain: Chain) -> None:
    (series,) = load_dataset(chain.jobs["prepare"].ml / "model")
    assert series.symbol == "GOOG" and len(series) == GOOG_BARS_FROM_2007 < len(load_prices(chain.goog_csv))
    assert series.bars.index[0].strftime("%Y-%m-%d") == "2007-01-03"


@pytest.mark.slow
def test_prepare_scores_the_news_channel_for_the_news_slot_under_the_toolkit(chain: Chain) -> None:
    import pandas as pd

    from signal_engine.config import NEWS_COLUMN

    (series,) = load_dataset(chain.jobs["prepare"].ml / "model")
    scored = series.bars[NEWS_COLUMN].dropna()
    # published 28 February 2013 before the close: the last two bars (28 February, 1 March) score it
    assert [day.strftime("%Y-%m-%d") for day in pd.DatetimeIndex(scored.index)] == ["2013-02-28", "2013-03-01"]
    assert (chain.jobs["prepare"].ml / "model" / "text" / "text.json").is_file()


@pytest.mark.slow
def test_every_model_of_the_book_carries_the_news_slot_and_the_text_expert(chain: Chain) -> None:
    """The gate job trains the four-slot gate, and evaluate puts the prepare job's text model in the MoE's bundle and
    in the book's other timeframe model, which the Signal API and the live book step then ask about the headlines."""
    from signal_engine.serving.bundle import ServingBundle

    gate = json.loads((chain.jobs["train_gate"].ml / "model" / "gate.json").read_text())
    assert gate["config"]["moe"]["news"] is True
    model = chain.jobs["evaluate"].ml / "model"
    for folder in (model, model / "books" / "daily" / "medium"):
        bundle = ServingBundle.load(folder)
        assert bundle.news_slot and bundle.news is not None, folder


@pytest.mark.slow
def test_each_expert_job_fits_the_expert_it_was_sent(chain: Chain) -> None:
    for expert in EXPERTS:
        assert list(load_experts(chain.jobs[expert].ml / "model")) == [f"{expert}/GOOG"]


@pytest.mark.slow
def test_the_trend_job_tunes_when_sent_tune_and_keeps_the_study_in_its_model(chain: Chain) -> None:
    """The toolkit decodes the workflow's "true"; the trend job runs the Optuna study with the config's trials, keeps
    it in its model folder (packed into the model.tar.gz the workflow stores in S3), and its record reaches the
    bundle; the other expert jobs have nothing to tune."""
    import optuna

    trend = chain.jobs["trend"]
    assert "--tune True" in trend.log and "tuned trend/GOOG: trials=2" in trend.log, trend.log[-2000:]
    study = optuna.load_study(study_name="trend/GOOG@2013-03-01T00:00:00",
                              storage=f"sqlite:///{trend.ml / 'model' / 'tuning' / 'optuna.db'}")
    assert len(study.trials) == 2
    packed = chain.s3 / "runs" / EXECUTION / "experts" / f"se-{EXECUTION}-trend-0" / "output" / "model.tar.gz"
    with tarfile.open(packed) as archive:
        assert {"tuning/optuna.db", "tuning.json", "manifest.json"} <= set(archive.getnames())
    bundle = json.loads((chain.jobs["evaluate"].ml / "model" / "bundle.json").read_text())
    record = bundle["tuning"]["trend"]["GOOG"]
    assert record["trials"] == 2 and record["study_name"] == study.study_name
    assert record["params"]["num_leaves"] == study.best_trial.params["num_leaves"]
    served = load_experts(chain.jobs["evaluate"].ml / "model" / "experts")["trend/GOOG"]
    assert served.num_leaves == record["params"]["num_leaves"]
    assert served.n_estimators == record["params"]["n_estimators"]
    # the gate job tuned every refit of the walk-forward whose metrics the quality gate read, and the bundle says so
    # (refit_every 504 on 1,551 bars from bar 504: refits at 504, 1008 and 1512)
    assert "walk-forward tuned at every refit: trials=2 timeout_s=300.0 refits=3" in chain.jobs["train_gate"].log
    assert bundle["tuning"]["walk_forward"]["refits"] == {"GOOG": {"refits": 3, "tuned": 3, "trials": 6}}
    for expert in ("levels", "volatility"):
        assert not (chain.jobs[expert].ml / "model" / "tuning.json").exists(), expert


@pytest.mark.slow
def test_each_job_runs_in_the_image_the_plan_names(chain: Chain) -> None:
    """The quick profile's experts (LightGBM, swing levels, GARCH blend) and its softmax gate train on CPU: every
    job in the image without TensorFlow, whose absence the toolkit reports, like the prepare job, which never needs
    it; the gate job refits them along the walk-forward, and evaluate trains the book's medium model the same way."""
    assert chain.images == {"trend": "cpu", "levels": "cpu", "volatility": "cpu", "train_gate": "cpu",
                            "evaluate": "cpu"}
    assert "plan trend=cpu, levels=cpu, volatility=cpu, train_gate=cpu, evaluate=cpu" in chain.jobs["prepare"].log
    for name, job in chain.jobs.items():
        assert TOOLKIT_WITHOUT_TENSORFLOW in job.log, f"{name}: {job.log[-2000:]}"


@pytest.mark.slow
def test_the_gate_job_applies_the_config_object_it_was_sent(chain: Chain) -> None:
    model = chain.jobs["train_gate"].ml / "model"
    assert {"gate.json", "metrics.json", "calibration.json"} <= {p.name for p in model.iterdir()}
    config = json.loads((model / "gate.json").read_text())["config"]
    assert config["walk_forward"]["refit_every"] == 504, "config's walk_forward.refit_every reached the job"


@pytest.mark.slow
def test_evaluate_publishes_the_bundle_and_writes_the_report(chain: Chain) -> None:
    report = chain.report
    assert LocalModelRegistry(chain.registry).versions() == [report["version"]]
    bundle = json.loads((chain.jobs["evaluate"].ml / "model" / "bundle.json").read_text())
    assert bundle["version"] == report["version"] and bundle["symbols"] == ["GOOG"]
    assert {c["symbol"] for c in report["checks"]} == {"GOOG"}
    book = json.loads((chain.jobs["evaluate"].ml / "model" / "book.json").read_text())["books"][0]
    assert [m["bundle"] for m in book["models"]] == [".", "books/daily/medium"]  # the orchestration section reached it
    assert (chain.jobs["evaluate"].ml / "model" / "books" / "daily" / "medium" / "bundle.json").is_file()


# -- errors: a non-zero exit and a FailureReason that names the problem ---------------------------------------

FAILURES: dict[str, tuple[str, dict[str, str], tuple[str, ...], str]] = {
    "config-not-json": ("prepare", {"config": "walk_forward: 252"}, ("raw",),
                        "prepare: hyperparameter 'config' is not JSON"),
    "unknown-expert": ("train_expert", {"expert": "sentiment"}, ("dataset",),
                       "train_expert: hyperparameter 'expert' is 'sentiment'"),
    "missing-channel": ("train_gate", {}, (),
                        "train_gate: SM_CHANNEL_DATASET is not set: this job needs an input channel named 'dataset'"),
    # a dataset channel that is not the prepare job's tarball: an error the jobs do not anticipate
    "unexpected": ("train_gate", {}, ("dataset",), "train_gate: unexpected ReadError"),
}


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> dict[str, Job]:
    """Every bad job of FAILURES, run side by side."""
    root = tmp_path_factory.mktemp("failures")
    raw = channel_with(goog_csv, root=root / "raw")
    not_a_tarball = root / "not-a-tarball"
    not_a_tarball.mkdir()
    (not_a_tarball / "model.tar.gz").write_bytes(b"not a tarball")
    specs = []
    for case, (program, change, channels, _) in FAILURES.items():
        base = hyperparameters(program, RUN, **({"expert": "trend"} if program == "train_expert" else {}))
        data = not_a_tarball if case == "unexpected" else raw
        # the image the workflow runs the job in: the plan names cpu for every job of this config (see the chain)
        image = "cpu"
        specs.append((root / case, {**base, **change}, {name: data for name in channels}, image))
    return dict(zip(FAILURES, run_jobs(specs), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", FAILURES)
def test_a_bad_job_fails_with_a_reason_that_names_the_problem(failed: dict[str, Job], case: str) -> None:
    job, reason = failed[case], FAILURES[case][3]
    assert job.returncode != 0, job.log[-2000:]
    assert "Reporting training FAILURE" in job.log
    assert not (job.ml / "output" / "success").exists()
    # SageMaker's FailureReason: the first 1,024 characters of /opt/ml/output/failure
    assert job.failure is not None and job.failure.startswith(reason), job.failure
    assert "Traceback" not in job.failure and len(job.failure.splitlines()) == 1
    if case == "unexpected":
        assert "Traceback" in job.log, "the traceback still goes to the job's log"


# -- serving: the inference image's `serve`, started as SageMaker starts it ----------------------------------

def serve_command(bin_dir: Path, program_dir: Path) -> list[str]:
    """The inference image's CMD after SageMaker replaces it with `serve`: the `serve` wrapper the Dockerfile
    writes (its printf, with /opt/program moved to program_dir), found on PATH like `docker run <image> serve`."""
    text = re.sub(r"\\\n", " ", INFERENCE_DOCKERFILE.read_text())
    (printf,) = re.findall(r"printf '([^']*)' > /usr/local/bin/serve", text)
    (copy,) = re.findall(r"^COPY (\S+) /opt/program/serve.py$", text, re.M)
    assert not re.search(r"^ENTRYPOINT", text, re.M), "with an ENTRYPOINT, `serve` would become its argument"
    program_dir.mkdir(parents=True)
    shutil.copy2(ROOT / copy, program_dir / "serve.py")
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "serve"
    subprocess.run(["sh", "-c", f"printf '{printf}' > {wrapper}"], check=True)
    wrapper.write_text(wrapper.read_text().replace("/opt/program", str(program_dir)))
    wrapper.chmod(0o755)
    return ["serve"]


@pytest.fixture(scope="module")
def endpoint(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    root = tmp_path_factory.mktemp("endpoint")
    model = root / "opt" / "ml" / "model"  # SageMaker unpacks the model data here
    model.mkdir(parents=True)
    archive = chain.s3 / "runs" / EXECUTION / "evaluate" / f"se-{EXECUTION}-evaluate-0" / "output" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(model, filter="data")
    command = serve_command(root / "bin", root / "opt" / "program")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update({"PATH": f"{root / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
                "PYTHONPATH": str(ROOT), "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_SAFE_PORT_RANGE": f"{port + 1}-{port + 10}", "SM_MODEL_DIR": str(model)})
    process = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):  # SageMaker polls /ping until the container answers 200
            if process.poll() is not None:
                pytest.fail(f"serve exited {process.returncode}: {process.stdout.read() if process.stdout else ''}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("serve never answered GET /ping")
        yield port, model
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "SIGTERM (docker stop) ends the server cleanly"


@pytest.mark.slow
def test_the_endpoint_answers_ping_and_invocations_on_the_bound_port(endpoint: tuple[int, Path],
                                                                     chain: Chain) -> None:
    port, model = endpoint
    bundle = json.loads((model / "bundle.json").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping") as response:
        assert json.loads(response.read()) == {"status": "ok", "model_version": bundle["version"]}
    bars = load_prices(chain.goog_csv).bars.iloc[-int(bundle["min_bars"]):]
    dates = [str(t.date()) for t in bars.index]
    rows = [{"timestamp": day, **{k: float(v) for k, v in row.items()}}
            for day, (_, row) in zip(dates, bars.iterrows(), strict=True)]
    status, reply = post(port, {"symbol": "GOOG", "timeframe": "1d", "bars": rows})
    assert status == 200
    assert {"p_up", "p_down", "p_neutral", "support", "resistance", "vol_forecast", "vol_history"} <= set(reply)
    assert reply["model_version"] == bundle["version"] and reply["as_of"].startswith(dates[-1])
    assert abs(reply["p_up"] + reply["p_down"] + reply["p_neutral"] - 1.0) < 1e-9
    status, reply = post(port, {"symbol": "GOOG", "bars": rows[:5]})
    assert status == 400 and reply["error"].startswith("bars:")


@pytest.mark.parametrize(("args", "env", "reason"), [
    (["train"], {}, "arguments ['train']"),
    ([], {"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT is 'http'"),
    ([], {}, "no bundle.json"),
], ids=["unknown-argument", "bad-port", "no-model"])
def test_a_bad_start_exits_2_naming_the_problem(tmp_path: Path, args: list[str], env: dict[str, str],
                                                 reason: str) -> None:
    command = serve_command(tmp_path / "bin", tmp_path / "program")
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))},
               "PATH": f"{tmp_path / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": str(ROOT), "SM_MODEL_DIR": str(tmp_path / "empty"), **env}
    done = subprocess.run([*command, *args], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr and "Traceback" not in done.stderr, done.stderr


def post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- the pooled trend expert: one network over the run's symbols, trained in the GPU image -------------------

POOLED_RUN = {"symbols": ["GOOG", "SPX"], "profile": "quick", "start": "2011-01-01", "end": "2013-03-01",
              "hyperparameters": {"walk_forward": {"initial_window": 300, "validation_bars": 100, "min_test_bars": 100,
                                                   "refit_every": 150},
                                  "moe": {"experts": {"trend": "trend_pooled"}},
                                  "pooled_trend": {"window": 16, "samples_per_series": 64, "max_epochs": 1,
                                                   "batch_size": 64}}}


@pytest.fixture(scope="module")
def pooled_chain(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path, spx_csv: Path) -> Chain:
    """The workflow's jobs with ``moe.experts.trend: trend_pooled`` (no ``book`` hyperparameter: such a run trains
    the MoE's bundle alone), each job in the image its plan names, the gate job reading the experts' outputs."""
    root = tmp_path_factory.mktemp("pooled")
    s3 = root / "s3"
    raw = channel_with(goog_csv, spx_csv, root=s3 / "datasets" / "daily")
    plan = root / "plan.json"
    prepare = hyperparameters("prepare", POOLED_RUN, experts=json.dumps(list(EXPERTS), separators=(",", ":")),
                              plan=str(plan))
    jobs = dict(zip(["prepare"], run_jobs([(root / "prepare", prepare, {"raw": raw}, PREPARE_IMAGE)]), strict=True))
    assert jobs["prepare"].returncode == 0, jobs["prepare"].log[-3000:]
    dataset = jobs["prepare"].pack(s3, f"runs/{EXECUTION}/prepare", f"se-{EXECUTION}-prepare-0").parent
    images = planned_images(plan)
    experts = run_jobs([(root / expert, hyperparameters("train_expert", POOLED_RUN, expert=expert, tune="false"),
                         {"dataset": dataset}, images[expert]) for expert in EXPERTS])
    for expert, job in zip(EXPERTS, experts, strict=True):
        assert job.returncode == 0, job.log[-3000:]
        jobs[expert] = job
        job.pack(s3, f"runs/{EXECUTION}/experts", f"se-{EXECUTION}-{expert}-0")
    outputs = s3 / "runs" / EXECUTION / "experts"
    (jobs["train_gate"],) = run_jobs([(root / "gate", hyperparameters("train_gate", POOLED_RUN),
                                       {"dataset": dataset, "experts": outputs}, images["train_gate"])])
    assert jobs["train_gate"].returncode == 0, jobs["train_gate"].log[-3000:]
    gate = jobs["train_gate"].pack(s3, f"runs/{EXECUTION}/train_gate", f"se-{EXECUTION}-train-gate-0")
    registry, report = root / "registry", root / "report" / "evaluation.json"
    (jobs["evaluate"],) = run_jobs([(root / "evaluate", hyperparameters("evaluate", POOLED_RUN, registry=str(registry),
                                                                        report=str(report)),
                                     {"dataset": dataset, "gate": gate.parent, "experts": outputs},
                                     images["evaluate"])])
    assert jobs["evaluate"].returncode == 0, jobs["evaluate"].log[-3000:]
    return Chain(jobs, s3, registry, json.loads(report.read_text()), goog_csv, images)


@pytest.mark.slow  # not marked tensorflow: the mark would take this module's whole chain to the TensorFlow worker
def test_the_pooled_trend_job_trains_one_network_in_the_gpu_image_and_the_bundle_serves_it(
        pooled_chain: Chain) -> None:
    from sagemaker_jobs.serve import ExpertService
    from signal_engine.archetypes.pooled_expert import SERIES_COLUMN
    from signal_engine.serving.experts import market_frame

    assert pooled_chain.images == {"trend": "gpu", "levels": "cpu", "volatility": "cpu", "train_gate": "cpu",
                                   "evaluate": "cpu"}
    trend = pooled_chain.jobs["trend"]
    assert TOOLKIT_WITHOUT_TENSORFLOW not in trend.log
    # the gate job reads the pooled network's probabilities and evaluate packs its pickle (NumPy weights): neither
    # imports TensorFlow, so both ran in the CPU image
    for name in ("train_gate", "evaluate"):
        assert TOOLKIT_WITHOUT_TENSORFLOW in pooled_chain.jobs[name].log, name
    (model,) = load_experts(trend.ml / "model").values()
    assert model.series_ == ("GOOG", "SPX") and (model.window, model.max_epochs) == (16, 1)
    assert (trend.ml / "model" / "pooled_trend.npz").is_file()
    # the gate's walk-forward read the pooled walk-forward: its metrics name the pooled trend expert
    metrics = json.loads((pooled_chain.jobs["train_gate"].ml / "model" / "metrics.json").read_text())
    assert all("trend_pooled" in m["trend"] for m in metrics["per_symbol"].values()), metrics["per_symbol"]
    bundle_dir = pooled_chain.jobs["evaluate"].ml / "model"
    assert sorted(load_experts(bundle_dir / "experts")) == ["levels/GOOG", "levels/SPX", "trend", "volatility/GOOG",
                                                             "volatility/SPX"]  # the pooled network once
    service = ExpertService(bundle_dir)
    bars = load_prices(pooled_chain.goog_csv).bars.iloc[-int(service.bundle["min_bars"]):]
    rows = [{"timestamp": str(t.date()), **{k: float(v) for k, v in row.items()}} for t, row in bars.iterrows()]
    frame = market_frame(bars)
    answers = {}
    for symbol in ("GOOG", "SPX"):  # the same bars asked about as each symbol: its own series code
        answers[symbol] = service.invoke({"symbol": symbol, "expert": "trend", "bars": rows})
        expected = model.predict_proba(frame.assign(**{SERIES_COLUMN: symbol}))[-1]
        assert [answers[symbol][k] for k in ("p_down", "p_neutral", "p_up")] == pytest.approx(expected, abs=1e-6)
    assert answers["GOOG"]["p_up"] != answers["SPX"]["p_up"]
