"""The cloud fan-out's domain side (signal_engine/fanout_run.py): the request, the plan of batches, the run folder.

The end-to-end run (plan, batches on Lambda or Processing, merge) is tests/integration/test_fanout_real_data.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.fanout import BatchSpec
from signal_engine.fanout_run import (
    LAMBDA_BUDGET_SECONDS,
    SECONDS_PER_SYMBOL_BAR,
    FanOutError,
    FanOutRequest,
    RunInputs,
    _plan,
    failed_batches,
    job_prefix,
    plan_run,
    run_batch_folder,
    upload,
)

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def test_a_request_takes_a_local_runs_settings_with_defaults() -> None:
    request = FanOutRequest.parse({"symbols": ["SPX", "GOOG", "AAPL"], "config": {"trading": {"cost_bps": 2}},
                                   "batch_symbols": 2})
    assert request == FanOutRequest(("SPX", "GOOG", "AAPL"), "quick", {"trading": {"cost_bps": 2}}, 2, "auto")
    assert request.batches == 2
    assert FanOutRequest.parse({"symbols": ["SPX"]}).batch_symbols == 10


@pytest.mark.parametrize(("document", "message"), [
    ({}, "symbols: expected a non-empty list"),
    ({"symbols": []}, "symbols: expected a non-empty list"),
    ({"symbols": "SPX"}, "symbols: expected a non-empty list"),
    ({"symbols": ["SPX", "SPX"]}, "symbols: ['SPX'] given more than once"),
    ({"symbols": ["../etc"]}, "symbols: ['../etc'] cannot name a price file"),
    ({"symbols": ["SPX"], "profile": "fast"}, "profile: 'fast'; expected one of ['quick', 'full']"),
    ({"symbols": ["SPX"], "config": ["trading"]}, "config: expected an object of config overrides"),
    ({"symbols": ["SPX"], "batch_symbols": 0}, "batch_symbols: 0; expected a whole number"),
    ({"symbols": ["SPX"], "batch_symbols": True}, "batch_symbols: True; expected a whole number"),
    ({"symbols": ["SPX"], "runner": "ec2"}, "runner: 'ec2'; expected one of ['auto', 'lambda', 'processing']"),
    ({"symbols": ["SPX"], "batches": 3}, "input: unknown field(s) ['batches']"),
])
def test_a_bad_request_is_refused_naming_the_field(document: dict[str, object], message: str) -> None:
    with pytest.raises(FanOutError, match=re.escape(message)):
        FanOutRequest.parse(document)


def test_the_plan_deals_symbols_round_robin_and_runs_long_batches_on_processing() -> None:
    short = int(LAMBDA_BUDGET_SECONDS / SECONDS_PER_SYMBOL_BAR) // 2  # two such symbols fit the Lambda budget
    bars = {"A": short, "B": short, "C": short * 3, "D": 10}
    plan = _plan("run-1", FanOutRequest(("D", "C", "B", "A"), batch_symbols=2), bars)
    assert [(i.batch, i.symbols, i.runner) for i in plan.items] == [
        ("1/2", ["A", "C"], "processing"), ("2/2", ["B", "D"], "lambda")]
    assert plan.items[1].symbol_bars == short + 10
    assert plan.items[0].estimated_seconds == pytest.approx(4 * short * SECONDS_PER_SYMBOL_BAR, abs=0.1)
    assert (plan.items[0].inputs, plan.items[0].out) == ("run-1/inputs/", "run-1/batches/1/")
    assert plan.merge_runner == "lambda"
    forced = _plan("run-1", FanOutRequest(("A", "B"), batch_symbols=1, runner="processing"), bars)
    assert {i.runner for i in forced.items} == {"processing"} and forced.merge_runner == "processing"
    assert plan.summary()["items"] == "run-1/batches.json" and plan.summary()["runners"] == ["lambda", "processing"]


def test_job_names_are_valid_sagemaker_names_whatever_the_run_name() -> None:
    run = ("Nightly_backtest.SPX'(manual)!_" + "x" * 80)[:80]
    symbols = tuple(f"S{i}" for i in range(12))
    plan = _plan(run, FanOutRequest(symbols, batch_symbols=1), dict.fromkeys(symbols, 10))
    names = [f"{item.job}-2" for item in plan.items] + [f"{plan.summary()['merge_job']}-2"]
    assert all(SAGEMAKER_NAME.fullmatch(name) for name in names), names
    assert job_prefix(run) != job_prefix(run + "y")


def test_failed_batches_name_the_batch_the_error_and_lambdas_message() -> None:
    results = [
        {"batch": "1/3", "failed": False},
        {"batch": "2/3", "failed": True, "error": "Sandbox.Timedout",
         "cause": json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900.00 seconds"})},
        {"batch": "3/3", "failed": True, "error": "States.TaskFailed", "cause": "AlgorithmError: exit 1"},
    ]
    assert failed_batches(results) == ["batch 2/3: Sandbox.Timedout: Task timed out after 900.00 seconds",
                                       "batch 3/3: States.TaskFailed: AlgorithmError: exit 1"]
    assert failed_batches(results[:1]) == []


class _Recorder(LocalFolderStore):
    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.order: list[str] = []

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.order.append(key)
        super().put(key, data, content_type)


def test_a_batch_is_uploaded_with_its_manifest_last(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    for name in ("batch.json", "symbol-1/bars.csv", "symbol-1/moe/result.json", "zz.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    store = _Recorder(tmp_path / "store")
    assert upload(store, folder, "run/batches/1/", last="batch.json") == 4
    assert store.order[-1] == "run/batches/1/batch.json" and len(store.order) == 4


@pytest.fixture
def planned(tmp_path: Path, goog_csv: Path, spx_csv: Path) -> Iterator[tuple[LocalFolderStore, Path]]:
    store = LocalFolderStore(str(tmp_path / "runs"))
    files = {"GOOG": goog_csv.read_bytes(), "SPX": spx_csv.read_bytes()}
    plan_run(store, "run-1", FanOutRequest(("SPX", "GOOG"), batch_symbols=1), files.__getitem__,
             source="s3://datasets/bars/1d/{}.csv".format)
    yield store, tmp_path / "runs" / "run-1" / "inputs"


def test_the_plan_freezes_the_inputs_and_names_their_source(planned: tuple[LocalFolderStore, Path],
                                                             goog_csv: Path) -> None:
    store, inputs = planned
    run = RunInputs.read(inputs)
    assert run.symbols == ["SPX", "GOOG"] and run.document["batches"] == 2
    assert (inputs / "prices" / "GOOG.csv").read_bytes() == goog_csv.read_bytes()
    series = run.series()
    assert [s.source for s in series] == ["s3://datasets/bars/1d/SPX.csv", "s3://datasets/bars/1d/GOOG.csv"]
    items = json.loads(store.get("run-1/batches.json"))
    assert [(i["batch"], i["symbols"]) for i in items] == [("1/2", ["GOOG"]), ("2/2", ["SPX"])]


def test_a_symbol_without_prices_or_a_batch_of_another_plan_is_refused(
    planned: tuple[LocalFolderStore, Path], tmp_path: Path
) -> None:
    store, inputs = planned
    none: dict[str, bytes] = {}
    with pytest.raises(FanOutError, match=re.escape("symbols: no prices for ['NOPE']")):
        plan_run(store, "run-2", FanOutRequest(("NOPE",)), none.__getitem__)
    assert not list(store.keys("run-2/"))  # nothing is written for a refused run
    with pytest.raises(FanOutError, match=re.escape("--batch 1/3: the run run-1 was planned in 2 batches")):
        run_batch_folder(inputs, BatchSpec(1, 3), tmp_path / "out")
    with pytest.raises(FanOutError, match=re.escape("no run.json")):
        RunInputs.read(tmp_path)
    with pytest.raises(FanOutError, match="a run name holds no '/'"):
        plan_run(store, "a/b", FanOutRequest(("GOOG",)), none.__getitem__)


def test_the_readme_example_input_is_a_valid_request() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- backtest-input -->"):].split("```json", 1)[1].split("```", 1)[0]
    request = FanOutRequest.parse(json.loads(block))
    assert request.symbols == ("SPX", "IXIC", "GOOG") and request.batches == 1
