"""The backtest fanned out over batches of symbols on real prices: the merged files are the local run's, and a
merge of batches that are not the complete set of one run of its config is refused, naming the batch. The same
run on the cloud fan-out (the synthesized ``BacktestFanOut`` state machine in moto, tests/fanout_cloud.py), with
its batches on Lambda or on SageMaker Processing, merges into the local run's files too."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from signal_engine.cli import load_configs, main
from signal_engine.fanout import BatchError, BatchSpec, batch_symbols, merge_batches
from signal_engine.pipeline import run_backtest
from tests.fanout_cloud import ARTIFACTS, DATASETS, INVOCATIONS, Cloud, cloud, download_prefix, notices, start
from tests.fixtures.configs import ONE_MODEL_BOOK

pytestmark = pytest.mark.slow

# Per series: two refits of FEW_REFITS (bars 300 and 800) and 400 decided bars, enough for the books' bootstrap
# intervals; every run (local, batches, each merge and cloud run) walks all of them forward, orchestrates and reports.
BARS = 850
OUTPUTS = ("signals.csv", "explanations.csv", "events.csv", "report.html")
BATCHES = 3
BATCH_HANDLER = "backtest_fanout.handler.batch"
__all__ = ["cloud"]  # the moto fixture, used by the cloud tests below


@pytest.fixture(scope="module")
def inputs(goog_csv: Path, spx_csv: Path, eurusd_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The first BARS bars of two daily series (one book, dealt to different batches) and an hourly one."""
    folder = tmp_path_factory.mktemp("prices")
    paths = []
    for source in (goog_csv, spx_csv, eurusd_csv):
        lines = source.read_text().splitlines(keepends=True)
        path = folder / source.name
        path.write_text("".join(lines[: BARS + 1]))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "one-model-book.yaml"
    path.write_text(ONE_MODEL_BOOK)
    return path


@pytest.fixture(scope="module")
def local(inputs: list[Path], config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    config, orchestration = load_configs("quick", config_file)
    run_backtest(inputs, out, config, orchestration=orchestration, jobs=1)
    return out


@pytest.fixture(scope="module")
def batches(inputs: list[Path], config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The run's batches through the command line, the last one first (their order does not matter)."""
    root = tmp_path_factory.mktemp("batches")
    folders = [root / f"batch-{i}" for i in range(1, BATCHES + 1)]
    prices = [arg for path in inputs for arg in ("--prices", str(path))]
    for i in reversed(range(1, BATCHES + 1)):
        assert main(["backtest-batch", *prices, "--batch", f"{i}/{BATCHES}", "--out", str(folders[i - 1]),
                     "--config", str(config_file), "--jobs", "1"]) == 0
    return folders


@pytest.fixture(scope="module")
def merged(batches: list[Path], config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("merged")
    assert main(["backtest-merge", *map(str, reversed(batches)), "--out", str(out), "--config", str(config_file)]) == 0
    return out


def test_batches_deal_the_sorted_symbols_round_robin(batches: list[Path]) -> None:
    held = [sorted(e["symbol"] for e in json.loads((b / "batch.json").read_text())["symbols"]) for b in batches]
    assert held == [["EURUSD"], ["GOOG"], ["SPX"]]
    assert batch_symbols(["SPX", "GOOG", "EURUSD", "IXIC"], BatchSpec.parse("1/2")) == ["EURUSD", "IXIC"]
    assert batch_symbols(["SPX", "GOOG", "EURUSD", "IXIC"], BatchSpec.parse("2/2")) == ["GOOG", "SPX"]


def test_merged_batches_write_the_files_of_the_local_run(local: Path, merged: Path) -> None:
    for name in OUTPUTS:
        assert (merged / name).read_bytes() == (local / name).read_bytes(), name
    assert _without_timings(json.loads((merged / "metrics.json").read_text())) == _without_timings(
        json.loads((local / "metrics.json").read_text()))
    portfolio = json.loads((merged / "metrics.json").read_text())["portfolio"]
    assert portfolio["daily"]["symbols"] == ["GOOG", "SPX"]  # one book across two batches


def test_a_missing_batch_is_refused(batches: list[Path], config_file: Path, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="batch 3/3 missing"):
        _merge(batches[:2], config_file, tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(batches[2], unfinished)
    (unfinished / "batch.json").unlink()
    with pytest.raises(BatchError, match=re.escape(f"{unfinished}: no batch.json")):
        _merge([*batches[:2], unfinished], config_file, tmp_path)


def test_a_batch_of_another_config_is_refused(
    inputs: list[Path], batches: list[Path], config_file: Path, tmp_path: Path
) -> None:
    other_config = tmp_path / "costlier.yaml"
    other_config.write_text(ONE_MODEL_BOOK + "trading:\n  cost_bps: 9\n")
    other = tmp_path / "batch-3-costlier"
    prices = [arg for path in inputs for arg in ("--prices", str(path))]
    assert main(["backtest-batch", *prices, "--batch", "3/3", "--out", str(other), "--config", str(other_config),
                 "--jobs", "1"]) == 0
    with pytest.raises(BatchError, match=re.escape(f"{other} (batch 3/3): run with another config")):
        _merge([*batches[:2], other], config_file, tmp_path)
    with pytest.raises(BatchError, match=re.escape(f"{batches[0]} (batch 1/3): run with another config")):
        _merge(batches, other_config, tmp_path)


def test_a_batch_or_symbol_given_twice_is_refused(batches: list[Path], config_file: Path, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match=re.escape(f"{batches[1]} (batch 2/3): batch 2/3 given twice")):
        _merge([*batches, batches[1]], config_file, tmp_path)
    renumbered = tmp_path / "renumbered"
    shutil.copytree(batches[1], renumbered)
    manifest = json.loads((renumbered / "batch.json").read_text())
    (renumbered / "batch.json").write_text(json.dumps({**manifest, "batch": 3}))
    with pytest.raises(BatchError, match=re.escape(f"{renumbered} (batch 3/3): symbol GOOG is also in {batches[1]}")):
        _merge([batches[0], batches[1], renumbered], config_file, tmp_path)


def test_the_command_line_refuses_with_one_line(
    batches: list[Path], config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest-merge", str(batches[0]), "--out", str(tmp_path), "--config", str(config_file)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"signal-engine: error: batch 2/3, 3/3 missing: given {batches[0]} (batch 1/3)")
    assert main(["backtest-batch", "--prices", "x.csv", "--batch", "4/3", "--out", str(tmp_path)]) == 2
    assert "--batch '4/3': expected I/N with 1 <= I <= N" in capsys.readouterr().err


def _merge(folders: list[Path], config_file: Path, tmp_path: Path) -> None:
    config, orchestration = load_configs("quick", config_file)
    merge_batches(folders, tmp_path / "merged", config, orchestration=orchestration)


def _without_timings(document: object) -> object:
    if isinstance(document, dict):
        return {k: _without_timings(v) for k, v in document.items() if k != "seconds"}
    if isinstance(document, list):
        return [_without_timings(v) for v in document]
    return document


@pytest.fixture(scope="module")
def cloud_input(cloud: Cloud, inputs: list[Path]) -> dict[str, object]:
    """The local run's prices in the datasets bucket (bars/1d/<SYMBOL>.csv) and its settings as execution input."""
    for path in inputs:
        cloud.clients["s3"].put_object(Bucket=DATASETS, Key=f"bars/1d/{path.name}", Body=path.read_bytes())
    return {"symbols": [path.stem for path in inputs], "profile": "quick", "config": yaml.safe_load(ONE_MODEL_BOOK)}


def _assert_local_run(cloud: Cloud, run: str, local: Path, inputs: list[Path], folder: Path) -> None:
    """The run's result holds the local run's files; the report and metrics name the prices the run read (the
    datasets bucket's objects), where the local run's name the local files."""
    files = download_prefix(cloud, f"backtests/{run}/result/", folder)
    assert set(OUTPUTS) | {"metrics.json"} <= set(files), files
    sources = {str(path): f"s3://{DATASETS}/bars/1d/{path.name}" for path in inputs}
    for name in OUTPUTS:
        expected = (local / name).read_bytes()
        if name == "report.html":
            for path, uri in sources.items():
                expected = expected.replace(f"({path})".encode(), f"({uri})".encode())
        assert (folder / name).read_bytes() == expected, name
    expected_metrics = json.loads((local / "metrics.json").read_text())
    for entry in expected_metrics["data"]["symbols"].values():
        entry["source"] = sources[entry["source"]]
    assert _without_timings(json.loads((folder / "metrics.json").read_text())) == _without_timings(expected_metrics)


def test_the_cloud_fanout_retries_a_failed_lambda_batch_and_merges_the_local_run(
    cloud: Cloud, cloud_input: dict[str, object], local: Path, inputs: list[Path], tmp_path: Path
) -> None:
    INVOCATIONS.reset()
    INVOCATIONS.fail(BATCH_HANDLER, lambda event: event.get("batch") == "2/3", times=1)
    execution = start(cloud, "fanout-lambda", {**cloud_input, "batch_symbols": 1})
    assert execution["status"] == "SUCCEEDED", execution
    batches = sorted(event["batch"] for handler, event in INVOCATIONS.calls if handler == BATCH_HANDLER)
    assert batches == ["1/3", "2/3", "2/3", "3/3"]  # batch 2 timed out once and was run again
    output = json.loads(execution["output"])
    assert output["result"] == f"s3://{ARTIFACTS}/backtests/fanout-lambda/result/"
    assert output["batches"] == 3 and output["merge"]["symbols"] == ["GOOG", "SPX", "EURUSD"]
    assert output["merge"]["metrics"]["daily"]["symbols"] == ["GOOG", "SPX"]
    _assert_local_run(cloud, "fanout-lambda", local, inputs, tmp_path)
    assert notices(cloud) == []


def test_the_cloud_fanout_on_sagemaker_processing_merges_the_local_run(
    cloud: Cloud, cloud_input: dict[str, object], local: Path, inputs: list[Path], tmp_path: Path
) -> None:
    INVOCATIONS.reset()
    execution = start(cloud, "fanout-processing", {**cloud_input, "batch_symbols": 2, "runner": "processing"})
    assert execution["status"] == "SUCCEEDED", execution
    assert [handler for handler, _ in INVOCATIONS.calls] == ["backtest_fanout.handler.plan",
                                                             "backtest_fanout.handler.check"]
    sagemaker = cloud.clients["sagemaker"]
    jobs = sorted(j["ProcessingJobName"] for j in sagemaker.list_processing_jobs()["ProcessingJobSummaries"])
    prefix = jobs[0].rsplit("-", 2)[0]
    assert jobs == [f"{prefix}-1-0", f"{prefix}-2-0", f"{prefix}-merge-0"]
    batch = sagemaker.describe_processing_job(ProcessingJobName=f"{prefix}-2-0")
    assert batch["AppSpecification"]["ContainerArguments"] == [
        "batch", "--inputs", "/opt/ml/processing/input/run", "--batch", "2/2", "--out",
        "/opt/ml/processing/output/batch"]
    assert batch["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == (
        f"s3://{ARTIFACTS}/backtests/fanout-processing/batches/2/")
    _assert_local_run(cloud, "fanout-processing", local, inputs, tmp_path)


def test_a_batch_failing_after_its_retries_fails_the_run_naming_it(
    cloud: Cloud, cloud_input: dict[str, object]
) -> None:
    INVOCATIONS.reset()
    INVOCATIONS.fail(BATCH_HANDLER, lambda event: True, times=3)
    execution = start(cloud, "fanout-failing", {**cloud_input, "batch_symbols": 3})
    assert execution["status"] == "FAILED" and execution["error"] == "BacktestFailed"
    assert [e["batch"] for h, e in INVOCATIONS.calls if h == BATCH_HANDLER] == ["1/1"] * 3
    assert "BatchesFailed" in execution["cause"]
    assert "batch 1/1: Sandbox.Timedout: Task timed out after 900.00 seconds" in execution["cause"]
    (notice,) = notices(cloud)
    assert notice.startswith("Backtest fanout-failing failed: BatchesFailed") and "batch 1/1" in notice
    assert "merge" not in {h.rsplit(".", 1)[1] for h, _ in INVOCATIONS.calls}
    listed = cloud.clients["s3"].list_objects_v2(Bucket=ARTIFACTS, Prefix="backtests/fanout-failing/result/")
    assert listed["KeyCount"] == 0


def test_bad_input_fails_the_plan_once_naming_the_field(cloud: Cloud, cloud_input: dict[str, object]) -> None:
    INVOCATIONS.reset()
    execution = start(cloud, "fanout-unknown", {**cloud_input, "symbols": ["GOOG", "NOPE"]})
    assert execution["status"] == "FAILED" and execution["error"] == "BacktestFailed"
    assert "FanOutError" in execution["cause"] and "symbols: no prices for ['NOPE']" in execution["cause"]
    assert [h for h, _ in INVOCATIONS.calls] == ["backtest_fanout.handler.plan"]  # an input error is not retried
    (notice,) = notices(cloud)
    assert "NOPE" in notice
