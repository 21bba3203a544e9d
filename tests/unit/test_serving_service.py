"""SignalService with fakes for the ports: degradation, 503 when no expert answers, the audit record, bad requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import pytest

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.fanout import Fanout
from signal_engine.serving.messages import ExpertQuery, ExpertReply
from signal_engine.serving.schema import BatchRequest, SignalRequest
from signal_engine.serving.service import BATCH_WORKERS, ServingError, SignalService, bars_digest
from signal_engine.storage.records import SignalAudit
from tests.serving_support import TRAIN_BARS, goog_registry, goog_series, request_bars


class MemoryAudit:
    """An AuditLog fake that keeps entries in a list (or fails, when told to)."""

    def __init__(self, fail: bool = False) -> None:
        self.entries: list[SignalAudit] = []
        self.fail = fail

    def record_signal(self, entry: SignalAudit) -> None:
        if self.fail:
            raise ConnectionError("database unreachable")
        self.entries.append(entry)

    def signals(self, symbol: str) -> list[SignalAudit]:
        return [e for e in self.entries if e.symbol == symbol]


class SlowOrBroken:
    """An ExpertClient fake around the real in-process experts: some experts fail or are slower than the deadline."""

    def __init__(self, real: InProcessExperts, *, failing: Sequence[str] = (), slow: Sequence[str] = (),
                 delay_s: float = 1.0) -> None:
        self.real, self.failing, self.slow, self.delay_s = real, set(failing), set(slow), delay_s
        self.fanout = Fanout(8)
        self.queries: list[ExpertQuery] = []

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        self.queries.append(query)
        answers = self.real.ask(query, experts, 30.0)

        def call(name: str) -> Mapping[str, Any]:
            if name in self.failing:
                raise RuntimeError(f"{name} endpoint returned 500")
            if name in self.slow:
                time.sleep(self.delay_s)
            reply = answers[name]
            assert reply.answer is not None
            return reply.answer

        return self.fanout.ask(experts, call, deadline_s)

    def models(self) -> Mapping[str, str]:
        return self.real.models()


@pytest.fixture(scope="module")
def folder():
    return read_current(goog_registry())


@pytest.fixture(scope="module")
def bundle(folder) -> ServingBundle:
    return ServingBundle.load(folder)


@pytest.fixture(scope="module")
def experts(folder) -> InProcessExperts:
    return InProcessExperts(folder / "experts")


def _request(end: int = TRAIN_BARS + 150, **extra: Any) -> SignalRequest:
    return SignalRequest.model_validate({"symbol": "GOOG", "bars": request_bars(end), **extra})


def test_signal_is_audited_with_its_inputs(bundle: ServingBundle, experts: InProcessExperts) -> None:
    audit = MemoryAudit()
    service = SignalService(bundle, experts, audit, deadline_s=30)
    response = service.signal(_request(), "req-1")
    assert response.model_version == bundle.version and not response.degraded
    assert sum(response.gate.values()) == pytest.approx(1.0)
    last = goog_series().bars.index[TRAIN_BARS + 149].to_pydatetime()
    assert response.as_of == last.replace(tzinfo=UTC)
    [entry] = audit.entries
    assert (entry.symbol, entry.signal, entry.model_version) == ("GOOG", response.signal, bundle.version)
    assert entry.score == response.score and entry.position == response.position
    bars = entry.inputs["bars"]
    assert bars["count"] == 400 and bars["source"] == "request" and bars["last"] == last.isoformat()
    rows = [{**r, "timestamp": f"{r['timestamp']}T00:00:00", "volume": r.get("volume")}
            for r in request_bars(TRAIN_BARS + 150)]
    assert bars["sha256"] == bars_digest(rows)
    assert entry.inputs["request_id"] == "req-1"
    assert set(entry.inputs["experts"]) == {"trend", "levels", "volatility"}
    assert entry.inputs["experts"]["trend"]["model"].endswith("experts/trend/model.pkl")


def test_one_failing_expert_degrades_and_names_it(bundle: ServingBundle, experts: InProcessExperts) -> None:
    service = SignalService(bundle, SlowOrBroken(experts, failing=["levels"]), MemoryAudit(), deadline_s=30)
    response = service.signal(_request())
    assert response.degraded and response.degraded_experts == ["levels"]
    assert response.gate["levels"] == 0.0
    assert sum(response.gate.values()) == pytest.approx(1.0)
    assert "500" in (response.experts["levels"].error or "")


def test_an_expert_slower_than_the_deadline_is_left_out(bundle: ServingBundle, experts: InProcessExperts) -> None:
    client = SlowOrBroken(experts, slow=["trend"], delay_s=2.0)
    service = SignalService(bundle, client, MemoryAudit(), deadline_s=0.5)
    response = service.signal(_request())
    assert response.degraded_experts == ["trend"]
    assert "deadline" in (response.experts["trend"].error or "")
    assert response.experts["volatility"].ok and response.experts["levels"].ok


def test_no_expert_answering_is_503(bundle: ServingBundle, experts: InProcessExperts) -> None:
    audit = MemoryAudit()
    service = SignalService(bundle, SlowOrBroken(experts, failing=bundle.experts), audit, deadline_s=30)
    with pytest.raises(ServingError) as caught:
        service.signal(_request())
    assert caught.value.status == 503 and "no expert answered" in caught.value.message
    assert "trend: RuntimeError" in caught.value.message
    assert audit.entries == []


def test_a_signal_that_cannot_be_audited_is_not_served(bundle: ServingBundle, experts: InProcessExperts) -> None:
    service = SignalService(bundle, experts, MemoryAudit(fail=True), deadline_s=30)
    with pytest.raises(ServingError) as caught:
        service.signal(_request())
    assert caught.value.status == 503 and caught.value.error == "audit_unavailable"


@pytest.mark.parametrize(
    ("request_body", "status", "field"),
    [
        ({"symbol": "AAPL", "bars": "short"}, 404, "symbol"),
        ({"symbol": "GOOG", "timeframe": "1h", "bars": "short"}, 422, "timeframe"),
        ({"symbol": "GOOG", "bars": "short"}, 422, "bars"),
        ({"symbol": "GOOG"}, 422, "bars"),
        ({"symbol": "GOOG", "bars": "full", "as_of": "2000-01-01"}, 422, "bars"),
    ],
)
def test_bad_requests_name_the_field(bundle: ServingBundle, experts: InProcessExperts, request_body: dict[str, Any],
                                     status: int, field: str) -> None:
    bars = {"short": request_bars(TRAIN_BARS + 100, 50), "full": request_bars(TRAIN_BARS + 100)}
    body = {**request_body, **({"bars": bars[request_body["bars"]]} if "bars" in request_body else {})}
    service = SignalService(bundle, experts, MemoryAudit(), deadline_s=30)
    with pytest.raises(ServingError) as caught:
        service.signal(SignalRequest.model_validate(body))
    assert caught.value.status == status
    assert [f.field for f in caught.value.fields] == [field]


def test_as_of_cuts_the_bars(bundle: ServingBundle, experts: InProcessExperts) -> None:
    service = SignalService(bundle, experts, MemoryAudit(), deadline_s=30)
    cut = goog_series().bars.index[TRAIN_BARS + 350]
    full = _request(TRAIN_BARS + 400, as_of=cut.isoformat())
    shorter = SignalRequest.model_validate({"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 351, 351)})
    a, b = service.signal(full), service.signal(shorter)
    assert a.as_of == b.as_of == cut.to_pydatetime().replace(tzinfo=UTC)
    assert a.score == b.score and a.position == b.position


def test_batch_answers_each_request_or_says_why_not(bundle: ServingBundle, experts: InProcessExperts) -> None:
    audit = MemoryAudit()
    service = SignalService(bundle, experts, audit, deadline_s=30)
    single = service.signal(_request(TRAIN_BARS + 300))
    batch = BatchRequest.model_validate({"requests": [
        {"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 300)},
        {"symbol": "MSFT", "bars": request_bars(TRAIN_BARS + 300)},
        {"symbol": "goog", "bars": request_bars(TRAIN_BARS + 320)},
    ]})
    result = service.batch(batch, "b-1")
    assert [s.symbol for s in result.signals] == ["GOOG", "GOOG"]
    assert result.signals[0].score == single.score and result.signals[0].position == single.position
    assert [(e.index, e.status) for e in result.errors] == [(1, 404)]
    assert [s.request_id for s in result.signals] == ["b-1/0", "b-1/2"]
    assert len(audit.entries) == 3


class InFlight:
    """An ExpertClient around the real experts that records how many asks run at once (each holds 50 ms)."""

    def __init__(self, real: InProcessExperts) -> None:
        self.real, self.now, self.most = real, 0, 0
        self.lock = threading.Lock()

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.05)
            return self.real.ask(query, experts, deadline_s)
        finally:
            with self.lock:
                self.now -= 1

    def models(self) -> Mapping[str, str]:
        return self.real.models()


def _timeless(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without the experts' latencies (the only part that differs between two runs)."""
    return {**answer, "experts": {name: {k: v for k, v in reply.items() if k != "latency_ms"}
                                  for name, reply in answer["experts"].items()}}


def test_a_batch_asks_the_experts_for_several_items_at_once_and_answers_in_order(
        bundle: ServingBundle, experts: InProcessExperts) -> None:
    items = [{"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 200 + 7 * k)} for k in range(12)]
    items[3] = {"symbol": "MSFT", "bars": request_bars(TRAIN_BARS + 200)}
    batch = BatchRequest.model_validate({"requests": items})
    probe = InFlight(experts)
    together = SignalService(bundle, probe, MemoryAudit(), deadline_s=30, batch_workers=5).batch(batch, "b")
    assert probe.most == 5
    one_by_one = InFlight(experts)
    alone = SignalService(bundle, one_by_one, MemoryAudit(), deadline_s=30).batch(batch, "b")
    assert one_by_one.most == BATCH_WORKERS == 1
    assert [e.index for e in together.errors] == [3] and together.errors == alone.errors
    assert [_timeless(s.model_dump()) for s in together.signals] == [_timeless(s.model_dump()) for s in alone.signals]
    assert [s.request_id for s in together.signals] == [f"b/{k}" for k in range(12) if k != 3]


def test_models_and_health(bundle: ServingBundle, experts: InProcessExperts) -> None:
    service = SignalService(bundle, experts, MemoryAudit())
    models = service.models()
    assert models.model_version == bundle.version and models.min_bars == 300
    assert set(models.experts) == {"trend", "levels", "volatility"}
    assert service.health().status == "ok"


def test_per_symbol_bundle_of_the_training_workflow(folder, tmp_path) -> None:
    """The trainer's layout: experts saved as ``<expert>/<SYMBOL>`` and a ``per_symbol`` section in bundle.json."""
    import json
    import shutil

    from signal_engine.registry import load_experts, save_experts

    target = tmp_path / "bundle"
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("experts"))
    fitted = load_experts(folder / "experts")
    save_experts({f"{name}/GOOG": expert for name, expert in fitted.items()}, target / "experts")
    document = json.loads((target / "bundle.json").read_text())
    document["per_symbol"] = {"GOOG": {"timeframe": "1d", "periods_per_year": 250.0, "cost_bps": 5.0}}
    (target / "bundle.json").write_text(json.dumps(document))
    bundle = ServingBundle.load(target)
    assert bundle.periods_per_year_of("GOOG") == 250.0
    experts = InProcessExperts(target / "experts")
    response = SignalService(bundle, experts, MemoryAudit(), deadline_s=30).signal(_request())
    assert not response.degraded
    assert response.experts["trend"].model.endswith("experts/trend/GOOG/model.pkl")
    reference = SignalService(ServingBundle.load(folder), InProcessExperts(folder / "experts"), None,
                              deadline_s=30).signal(_request())
    assert response.score == pytest.approx(reference.score)
    if 0 < abs(reference.position) < 0.9:  # not at the leverage cap
        assert response.position == pytest.approx(reference.position * (252 / 250) ** 0.5)


WITHHELD_REASON = "failed moe_sharpe_vs_buy_and_hold -6.3 (needs >= -0.5)"


@pytest.fixture()
def gated(bundle: ServingBundle) -> ServingBundle:
    """The GOOG bundle as if trained on GOOG and EURUSD, with EURUSD withheld by the quality gate."""
    from dataclasses import replace

    return replace(bundle, symbols=("GOOG", "EURUSD"), withheld={"EURUSD": WITHHELD_REASON})


def test_a_withheld_symbol_is_refused_with_the_quality_gate_s_reason(gated: ServingBundle,
                                                                     experts: InProcessExperts) -> None:
    client = SlowOrBroken(experts)
    service = SignalService(gated, client, MemoryAudit(), deadline_s=30)
    with pytest.raises(ServingError) as caught:
        service.signal(SignalRequest.model_validate({"symbol": "eurusd", "bars": request_bars(TRAIN_BARS + 150)}))
    error = caught.value
    assert (error.status, error.error) == (404, "symbol_withheld")
    assert "EURUSD failed the quality gate of model " + gated.version in error.message
    assert WITHHELD_REASON in error.message and "serves GOOG" in error.message
    assert [f.field for f in error.fields] == ["symbol"]
    assert client.queries == []  # refused before any expert is asked
    assert service.signal(_request()).symbol == "GOOG"
    with pytest.raises(ServingError, match=r"not trained for 'AAPL'; it serves GOOG$"):
        service.signal(SignalRequest.model_validate({"symbol": "AAPL", "bars": request_bars(TRAIN_BARS + 150)}))


def test_a_withheld_symbol_in_a_batch_is_that_item_s_error(gated: ServingBundle, experts: InProcessExperts) -> None:
    service = SignalService(gated, experts, MemoryAudit(), deadline_s=30)
    batch = BatchRequest.model_validate({"requests": [
        {"symbol": "EURUSD", "bars": request_bars(TRAIN_BARS + 300)},
        {"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 300)},
    ]})
    result = service.batch(batch, "b-2")
    assert [s.symbol for s in result.signals] == ["GOOG"]
    [error] = result.errors
    assert (error.index, error.symbol, error.status) == (0, "EURUSD", 404)
    assert "field 'requests[0].symbol'" in error.message and WITHHELD_REASON in error.message


def test_models_lists_served_and_withheld_symbols(gated: ServingBundle, experts: InProcessExperts) -> None:
    models = SignalService(gated, experts, MemoryAudit()).models()
    assert models.symbols == ["GOOG"] and models.withheld == {"EURUSD": WITHHELD_REASON}


def test_a_withheld_symbol_over_the_api_is_a_404_body_naming_it(gated: ServingBundle,
                                                                experts: InProcessExperts) -> None:
    import json

    from signal_engine.serving.api import build_app

    service = SignalService(gated, experts, MemoryAudit(), deadline_s=30)
    app = build_app(lambda: service)
    event = {"resource": "/signals", "path": "/signals", "httpMethod": "POST",
             "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
             "queryStringParameters": None, "pathParameters": None,
             "requestContext": {"stage": "prod", "requestId": "req-w"},
             "body": json.dumps({"symbol": "EURUSD", "bars": request_bars(TRAIN_BARS + 150)}),
             "isBase64Encoded": False}
    answer = app.resolve(event, None)  # type: ignore[arg-type]
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 404 == body["status"] and body["error"] == "symbol_withheld"
    assert "EURUSD" in body["message"] and gated.version in body["message"] and WITHHELD_REASON in body["message"]
    models = app.resolve({**event, "resource": "/models", "path": "/models", "httpMethod": "GET", "body": None},
                         None)  # type: ignore[arg-type]
    assert json.loads(models["body"])["withheld"] == {"EURUSD": WITHHELD_REASON}
