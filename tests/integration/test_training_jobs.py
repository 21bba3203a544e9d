"""The SageMaker entry points run on CPU on real data (Alphabet daily bars), chained as the workflow chains them:
each job's SM_MODEL_DIR is packed as model.tar.gz and handed to the next as a channel. Their artefacts load in the
local registry, the inference entry point and the serving combiner."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sagemaker_jobs import evaluate, prepare, serve, train_expert, train_gate
from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.data.loader import load_prices
from signal_engine.moe.numpy_gate import GateWeights
from signal_engine.registry import load_experts, pack_artefact
from signal_engine.serving.book_bundle import BookBundle
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.combine import Combiner
from signal_engine.serving.experts import answer, bars_frame
from signal_engine.text.model import load_text_model
from signal_engine.text.serving import NewsHead
from signal_engine.workflow import training
from signal_engine.workflow.sagemaker_env import unpack
from signal_engine.workflow.training import fit_expert, load_dataset
from tests.fixtures.servers import free_port
from tests.sagemaker_jobs_support import run_entry_point
from tests.serving_support import text_model_folder

# Fewer refits than `quick` (every 252 bars) keep the walk-forward of 2,148 bars to seconds; a book of two
# timeframe models (short: the MoE's horizon, medium: one more model) keeps the whole book's training short.
CONFIG = json.dumps({"walk_forward": {"refit_every": 252}, "orchestration": {"timeframes": ["short", "medium"]}})
EXPERTS = ("trend", "levels", "volatility")


@dataclass(frozen=True)
class Jobs:
    root: Path
    prepared: Path
    experts: Path
    gate: Path
    bundle: Path
    registry: Path
    report: dict[str, Any]
    goog_csv: Path


def run_job(module: Any, monkeypatch: pytest.MonkeyPatch, model_dir: Path, channels: dict[str, Path],
            hyperparameters: dict[str, str]) -> Path:
    """Run one entry point as SageMaker would (environment + --name value arguments), then pack its model dir."""
    run_entry_point(module, monkeypatch, model_dir, channels, hyperparameters)
    archive = model_dir.parent / "output" / "model.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    return pack_artefact(model_dir, archive)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> Iterator[Jobs]:
    root = tmp_path_factory.mktemp("sagemaker")
    raw = root / "raw"
    raw.mkdir()
    (raw / "GOOG.csv").write_bytes(goog_csv.read_bytes())
    common = {"symbols": json.dumps(["GOOG"]), "profile": "quick", "config": CONFIG, "start": "", "end": ""}
    walked_in_evaluate: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        dataset = run_job(prepare, mp, root / "prepare" / "model", {"raw": raw}, common)
        for expert in EXPERTS:
            run_job(train_expert, mp, root / "experts" / f"se-run-{expert}-0" / "model", {"dataset": dataset.parent},
                    {**common, "expert": expert})
        gate = run_job(train_gate, mp, root / "gate" / "model", {"dataset": dataset.parent}, {**common, "jobs": "2"})
        registry, report = root / "registry", root / "runs" / "evaluation.json"
        mp.setattr(training, "walk_forward", lambda series, config, on_block=None: walked_in_evaluate.append("walk"))
        bundle = run_job(evaluate, mp, root / "evaluate" / "model",
                         {"dataset": dataset.parent, "gate": gate.parent, "experts": root / "experts"},
                         {**common, "registry": str(registry), "report": str(report)})
    assert walked_in_evaluate == [], "the evaluate job walks the book forward again instead of reading the gate's"
    yield Jobs(root, dataset, root / "experts", gate, bundle, registry, json.loads(report.read_text()), goog_csv)


def test_prepare_writes_a_dataset_the_other_jobs_read(jobs: Jobs) -> None:
    (root,) = unpack(jobs.prepared.parent)
    (series,) = load_dataset(root)
    original = load_prices(jobs.goog_csv)
    assert series.symbol == "GOOG" and len(series) == len(original)
    np.testing.assert_allclose(series.bars["close"].to_numpy(), original.bars["close"].to_numpy(), rtol=1e-9)


def test_each_expert_job_fits_what_the_local_runner_fits(jobs: Jobs) -> None:
    (series,) = load_dataset(unpack(jobs.prepared.parent)[0])
    from signal_engine.workflow.settings import training_settings

    config, _ = training_settings("quick", json.loads(CONFIG))
    recent = series.bars.iloc[-600:]
    for expert in EXPERTS:
        (root,) = unpack(jobs.experts / f"se-run-{expert}-0")
        fitted = load_experts(root)
        assert list(fitted) == [f"{expert}/GOOG"]
        local = fit_expert(expert, series, config)
        assert answer(expert, fitted[f"{expert}/GOOG"], recent) == answer(expert, local, recent)


def test_gate_job_writes_numpy_weights_over_the_three_experts(jobs: Jobs) -> None:
    (root,) = unpack(jobs.gate.parent)
    weights = GateWeights.load(root / "gate.npz")
    assert weights.experts == EXPERTS and weights.k == 3
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["evaluation"]["scheme"] == "walk_forward" and "baseline_buy_and_hold" in metrics["strategies"]


def test_the_gate_job_leaves_its_walk_forwards_for_the_evaluate_job_and_a_second_run(
        jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Walked forward over two processes, the MoE's and the medium model's walk-forwards are left in the gate's
    artefact as one backtest batch; given back as the ``walkforward`` channel (as a fanned-out backtest's batches
    are), another gate job reads them instead of walking forward and fits the same gate. Batches of other bars
    or another config are refused, naming the fault."""
    from signal_engine.evaluation.result_files import read_result
    from signal_engine.fanout import BatchError
    from signal_engine.workflow.settings import training_settings
    from signal_engine.workflow.walk_forwards import WALK_FORWARD_FOLDER, read_walk_forwards

    (root,) = unpack(jobs.gate.parent)
    folder = root / WALK_FORWARD_FOLDER
    manifest = json.loads((folder / "batch.json").read_text())
    assert (manifest["batch"], manifest["batches"], manifest["universe"]) == (1, 1, ["GOOG"])
    assert manifest["symbols"] == [{"symbol": "GOOG", "folder": "symbol-1",
                                    "timeframes": {"short": "moe", "medium": "timeframe-medium"}}]
    assert read_result(folder / "symbol-1" / "timeframe-medium").data["bars"] == 2148

    monkeypatch.setattr(training, "walk_forward", lambda *a, **k: pytest.fail("walked forward again"))
    monkeypatch.setattr("signal_engine.pipeline.walk_forward", lambda *a, **k: pytest.fail("walked forward again"))
    common = {"symbols": json.dumps(["GOOG"]), "profile": "quick", "config": CONFIG, "start": "", "end": ""}
    again = run_job(train_gate, monkeypatch, jobs.root / "gate-again" / "model",
                    {"dataset": jobs.prepared.parent, "walkforward": folder}, common)
    (second,) = unpack(again.parent)
    assert (second / "gate.npz").read_bytes() == (root / "gate.npz").read_bytes()
    assert json.loads((second / "metrics.json").read_text()) == json.loads((root / "metrics.json").read_text())
    assert not (second / WALK_FORWARD_FOLDER).exists(), "batches given in a channel are not copied into the gate"

    (series,) = load_dataset(unpack(jobs.prepared.parent)[0])
    config, _ = training_settings("quick", json.loads(CONFIG))
    orchestration = {"timeframes": ("short", "medium")}
    assert [r.symbol for r in read_walk_forwards(folder, [series], config, orchestration).moe] == ["GOOG"]
    shorter = dataclasses.replace(series, bars=series.bars.iloc[:-1])
    with pytest.raises(BatchError, match="other bars than this run's dataset"):
        read_walk_forwards(folder, [shorter], config, orchestration)
    other, _ = training_settings("quick", {"walk_forward": {"refit_every": 126}})
    with pytest.raises(BatchError, match="run with another config"):
        read_walk_forwards(folder, [series], other, orchestration)
    with pytest.raises(BatchError, match="no batch folder"):
        read_walk_forwards(jobs.prepared.parent, [series], config, orchestration)


def test_the_gate_job_trains_on_the_batch_of_a_fanned_out_backtest(jobs: Jobs, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """`signal-engine backtest-batch` (what each batch of the backtest fan-out runs) on the prices and config the
    training run was given (its ``quality`` section aside) writes a batch the gate job reads as its
    ``walkforward`` channel: it fits the gate the job fits when it walks forward itself, and never walks forward."""
    from signal_engine.cli import main as cli

    overrides = {**json.loads(CONFIG), "suite": {"enabled": False}}
    config_file = jobs.root / "fanout-config.json"
    config_file.write_text(json.dumps(overrides))
    batches = jobs.root / "fanout" / "batches"
    assert cli(["backtest-batch", "--prices", str(jobs.goog_csv), "--batch", "1/1", "--out", str(batches / "1"),
                "--config", str(config_file), "--jobs", "1"]) == 0
    monkeypatch.setattr(training, "walk_forward", lambda *a, **k: pytest.fail("walked forward again"))
    monkeypatch.setattr("signal_engine.pipeline.walk_forward", lambda *a, **k: pytest.fail("walked forward again"))
    common = {"symbols": json.dumps(["GOOG"]), "profile": "quick", "start": "", "end": "",
              "config": json.dumps({**overrides, "quality": {"max_confidence_ece": 0.5}})}
    fanned = run_job(train_gate, monkeypatch, jobs.root / "gate-fanned" / "model",
                     {"dataset": jobs.prepared.parent, "walkforward": batches}, common)
    ((walked,), (read,)) = unpack(jobs.gate.parent), unpack(fanned.parent)
    for name in ("gate.npz", "calibration.json"):
        assert (read / name).read_bytes() == (walked / name).read_bytes(), name


def test_evaluate_publishes_a_bundle_and_reports_the_decision(jobs: Jobs) -> None:
    report = jobs.report
    registry = LocalModelRegistry(jobs.registry)
    assert registry.versions() == [report["version"]]
    assert registry.current() is None, "evaluate publishes; only the workflow's PromoteVersion moves CURRENT"
    published = jobs.registry / report["version"]
    decision = json.loads((published / "decision.json").read_text())
    goog = decision["symbols"]["GOOG"]
    assert report["passed"] == decision["passed"] == goog["passed"] == all(c["passed"] for c in goog["checks"])
    assert report["served_symbols"] == decision["served_symbols"] == (["GOOG"] if goog["passed"] else [])
    assert report["withheld"] == decision["withheld"]
    assert [c["symbol"] for c in report["checks"]] == ["GOOG"] * 4
    assert {c["name"] for c in report["checks"]} == {"moe_sharpe_vs_buy_and_hold", "confidence_ece",
                                                      "trend_log_loss_vs_prior", "volatility_qlike_vs_garch"}
    bundle = ServingBundle.load(published)
    assert bundle.version == report["version"] and bundle.symbols == ("GOOG",)
    assert bundle.withheld == decision["withheld"]
    assert set(load_experts(published / "experts")) == {f"{e}/GOOG" for e in EXPERTS}


def test_evaluate_trains_the_whole_book_into_the_version(jobs: Jobs) -> None:
    """The book step (and its Lambda) reads the published version's book: the evaluate job writes it with the
    orchestration section of the run's config, the medium model trained on 20-bar labels."""
    book = BookBundle.load(jobs.registry / jobs.report["version"]).book("daily")
    assert book.symbols == ("GOOG",) and book.config.timeframes == ("short", "medium")
    assert [(m.spec.name, m.spec.horizon, m.bundle) for m in book.models] == [
        ("short", 5, "."), ("medium", 20, "books/daily/medium")]
    version = jobs.registry / jobs.report["version"]
    assert set(load_experts(version / "books/daily/medium/experts")) == {f"{e}/GOOG" for e in EXPERTS}
    medium = json.loads((version / "books/daily/medium/metrics.json").read_text())
    assert medium["evaluation"]["scheme"] == "walk_forward"
    assert (version / "books/daily/medium/calibration.json").read_text() != (version / "calibration.json").read_text()


def test_the_bundle_archive_serves_the_combiner(jobs: Jobs) -> None:
    (root,) = unpack(jobs.bundle.parent)
    bundle = ServingBundle.load(root)
    service = serve.ExpertService(root)
    rows = _rows(jobs.goog_csv, bundle.min_bars)
    reply = service.invoke({"symbol": "GOOG", "bars": rows})
    assert reply["model_version"] == bundle.version
    assert {"p_up", "p_down", "p_neutral", "support", "resistance", "vol_forecast", "vol_history"} <= set(reply)
    per_expert = {e: service.invoke({"symbol": "GOOG", "expert": e, "bars": rows}) for e in EXPERTS}
    assert per_expert["trend"] == {k: reply[k] for k in ("p_down", "p_neutral", "p_up")}
    bars = bars_frame(rows)
    combiner = Combiner(bundle)
    fingerprint = combiner.fingerprint(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(),
                                       bars["volume"].to_numpy() if "volume" in bars else None)
    decisions = combiner.decide([per_expert], bars["close"].to_numpy()[-1:], fingerprint.reshape(1, -1))
    assert np.isclose(decisions.gate.sum(), 1.0) and -1.0 <= float(decisions.combined[0]) <= 1.0


def test_serve_answers_over_http_and_names_bad_fields(jobs: Jobs) -> None:
    (root,) = unpack(jobs.bundle.parent)
    service = serve.ExpertService(root)
    port = free_port()
    server = serve.ThreadingHTTPServer(("127.0.0.1", port), serve.handler_for(service))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping") as response:
            assert json.loads(response.read())["model_version"] == service.bundle["version"]
        rows = _rows(jobs.goog_csv, service.bundle["min_bars"])
        ok = _post(port, {"symbol": "GOOG", "experts": ["volatility"], "bars": rows})
        assert ok[0] == 200 and set(ok[1]["answers"]) == {"volatility"}
        assert len(ok[1]["answers"]["volatility"]["vol_history"]) == service.bundle["scores"]["volatility_window"]
        for body, field in (({"symbol": "MSFT", "bars": rows}, "symbol"),
                            ({"symbol": "GOOG", "bars": rows[:10]}, "bars"),
                            ({"symbol": "GOOG", "expert": "sentiment", "bars": rows}, "expert")):
            status, payload = _post(port, body)
            assert status == 400 and payload["error"].startswith(f"{field}:")
    finally:
        server.shutdown()
        server.server_close()


def _rows(csv: Path, count: int) -> list[dict[str, Any]]:
    bars = load_prices(csv).bars.iloc[-count:]
    return [{"timestamp": str(t.date()), **{str(k): float(v) for k, v in row.items()}}
            for t, row in zip(pd.DatetimeIndex(bars.index), bars.to_dict("records"), strict=True)]


def _post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_evaluate_puts_the_text_expert_in_the_bundle_when_the_config_asks(
        jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``"news": {"enabled": true}`` in the config hyperparameter: the head of the ``text`` channel (a text-train
    folder) travels in the bundle as arrays, the endpoint serves it, and the version's hash covers it."""
    config = json.dumps({**json.loads(CONFIG), "news": {"enabled": True, "headlines": 2}})
    report = tmp_path / "evaluation.json"
    archive = run_job(evaluate, monkeypatch, tmp_path / "evaluate" / "model",
                      {"gate": jobs.gate.parent, "experts": jobs.experts, "text": text_model_folder()},
                      {"symbols": json.dumps(["GOOG"]), "profile": "quick", "config": config, "book": "false",
                       "registry": str(tmp_path / "registry"), "report": str(report)})
    folder = archive.parent.parent / "model"
    bundle = ServingBundle.load(folder)
    assert bundle.news is not None and bundle.news.headlines == 2 and bundle.news.expert == "news"
    cached = load_text_model(text_model_folder())
    head = NewsHead.from_bytes((folder / "news" / "head.npz").read_bytes(), "head.npz")
    np.testing.assert_array_equal(head.coef, cached.head.coef_)
    assert json.loads((folder / "news" / "text.json").read_text()) == cached.metadata
    version = json.loads(report.read_text())["version"]
    assert version.split("-")[1] != jobs.report["version"].split("-")[1]
    answer = serve.ExpertService(folder).invoke({"symbol": "GOOG", "expert": "news", "decision_time": "2013-03-01",
                                                 "documents": [{"id": "a", "published_at": "2013-02-28T15:00:00",
                                                                "title": "Google shares hit a record"}]})
    assert answer["news_count"] == 1 and answer["documents"][0]["weight"] == pytest.approx(2 ** -(9 / 24))
