"""A bundle trained with ``moe.experts.volatility: vol_har_implied`` on the S&P 500 and the VIX that ship with
`arch`, served from bars that carry ``implied_vol``: in process (the Signal API's service) and over HTTP (the
experts' endpoint, sagemaker_jobs/serve.py on loopback).

Where the decided bar carries implied volatility the volatility slot is weighted; where it has none the slot
abstains (score missing, gate weight 0, the others renormalised) while ``vol_forecast`` (HAR, the sizing model)
is still given. The served scores are the backtest's functions of the same bars.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sagemaker_jobs import serve
from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.cli import main
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.implied_vol_study import sp500_and_vix
from signal_engine.experts.implied_volatility import HarImpliedVolatility
from signal_engine.experts.sized_volatility import SizedVolatility
from signal_engine.moe.scores import levels_score, trend_score, volatility_score
from signal_engine.registry import load_experts
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import ServingError, SignalService
from signal_engine.storage.export import series_csv

pytestmark = pytest.mark.slow

CONFIG = {"moe": {"experts": {"volatility": "vol_har_implied"}, "multistage": False},
          "quality": {"max_sharpe_shortfall": 100.0, "max_confidence_ece": 1.0, "max_log_loss_excess": 100.0,
                      "max_qlike_excess": 100.0}}
REQUEST_BARS = 600


@dataclass(frozen=True)
class Trained:
    root: Path
    bundle: ServingBundle
    series: PriceSeries  # the dataset as the training workflow read it back, implied_vol included


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    folder = tmp_path_factory.mktemp("iv-train")
    series, iv = sp500_and_vix()
    prices = folder / "SP500.csv"
    prices.write_bytes(series_csv(replace(series, bars=series.bars.assign(implied_vol=iv))))
    config = folder / "iv.json"
    config.write_text(json.dumps(CONFIG))
    code = main(["train", "--no-book", "--jobs", "1", "--profile", "quick", "--prices", str(prices),
                 "--config", str(config), "--registry", str(folder / "models")])
    assert code == 0
    root = read_current(folder / "models")
    return Trained(root, ServingBundle.load(root), load_prices(prices))


def rows(bars: pd.DataFrame, *, implied: bool = True) -> list[dict[str, Any]]:
    """Bars as a client sends them, with ``implied_vol`` where the bar has one (and ``implied``)."""
    out: list[dict[str, Any]] = []
    for ts, row in zip(pd.DatetimeIndex(bars.index), bars.to_dict("records"), strict=True):
        item = {"timestamp": ts.strftime("%Y-%m-%d"), **{k: row[k] for k in ("open", "high", "low", "close", "volume")}}
        if implied and math.isfinite(row["implied_vol"]):
            item["implied_vol"] = row["implied_vol"]
        out.append(item)
    return out


def without_last_iv(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*body[:-1], {k: v for k, v in body[-1].items() if k != "implied_vol"}]


def test_the_bundle_carries_har_plus_log_iv_as_its_score_model_and_har_as_its_sizing(trained: Trained) -> None:
    fitted = load_experts(trained.root / "experts")["volatility/SP500"]
    assert isinstance(fitted, SizedVolatility) and isinstance(fitted.score_, HarImpliedVolatility)
    assert type(fitted.sizing_).__name__ == "HarVolatility"
    assert np.isfinite(trained.series.bars["implied_vol"]).sum() == len(trained.series) - 1  # 2014-01-02: no VIX


def test_served_with_and_without_the_decided_bars_implied_volatility(trained: Trained) -> None:
    service = SignalService(trained.bundle, InProcessExperts(trained.root / "experts"), None, deadline_s=120)
    body = rows(trained.series.bars.iloc[-REQUEST_BARS:])
    full = service.signal(SignalRequest.model_validate({"symbol": "SP500", "bars": body}))
    missing = service.signal(SignalRequest.model_validate({"symbol": "SP500", "bars": without_last_iv(body)}))
    # (a) with the value the slot answers and is weighted
    assert full.experts["volatility"].score is not None and full.gate["volatility"] > 0
    # (b) without it the slot abstains: weight 0, trend and levels keep their ratio and sum to 1
    assert missing.experts["volatility"].score is None and missing.gate["volatility"] == 0.0
    share = full.gate["trend"] / (full.gate["trend"] + full.gate["levels"])
    assert missing.gate["trend"] == pytest.approx(share, abs=1e-12)
    assert missing.gate["trend"] + missing.gate["levels"] == pytest.approx(1.0, abs=1e-12)
    assert missing.experts["trend"].score == full.experts["trend"].score
    assert missing.experts["levels"].score == full.experts["levels"].score
    # sizing reads no implied volatility: the same HAR forecast either way
    assert missing.risk.vol_forecast == full.risk.vol_forecast and full.risk.vol_forecast is not None
    assert full.degraded is False and missing.degraded is False


def test_served_scores_are_the_backtests_functions_of_the_same_bars(trained: Trained) -> None:
    """The backtest's frame (``series_frame``: bars with implied_vol, plus features) through the bundle's fitted
    experts and the backtest's score functions gives the scores the service serves from the JSON bars."""
    experts = load_experts(trained.root / "experts")
    frame = series_frame(trained.series)
    volatility = experts["volatility/SP500"]
    window = trained.bundle.scores.volatility_window
    score_vol = np.sqrt(volatility.score_variance(frame))
    expected_vol = volatility_score(score_vol, window, trained.bundle.scores.volatility_min_periods)[-1]
    proba = experts["trend/SP500"].predict_proba(frame)[-1]
    support, resistance = experts["levels/SP500"].predict(frame)[-1]
    close = frame["close"].to_numpy()[-1:]
    service = SignalService(trained.bundle, InProcessExperts(trained.root / "experts"), None, deadline_s=120)
    served = service.signal(SignalRequest.model_validate(
        {"symbol": "SP500", "bars": rows(trained.series.bars.iloc[-REQUEST_BARS:])}))
    assert served.experts["volatility"].score == pytest.approx(expected_vol, abs=1e-9)
    assert served.experts["volatility"].outputs["vol_forecast"] == pytest.approx(
        float(np.sqrt(volatility.predict_variance(frame))[-1]), rel=1e-9)
    assert served.experts["trend"].score == pytest.approx(float(trend_score(proba[2], proba[0])), abs=1e-9)
    assert served.experts["levels"].score == pytest.approx(
        float(levels_score(close, np.array([support]), np.array([resistance]))[0]), abs=1e-9)
    # and the IV term moves the score: the HAR-only forecast of the same bars scores otherwise
    har_only = volatility_score(np.sqrt(volatility.predict_variance(frame)), window)[-1]
    assert abs(har_only - expected_vol) > 1e-3


def test_a_bad_implied_vol_is_a_422_naming_the_bar() -> None:
    bar = {"timestamp": "2018-12-28", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}
    for bad in (0.0, -3.0, "15", True):
        with pytest.raises(ValueError, match=r"bars\.0\.implied_vol"):
            SignalRequest.model_validate({"symbol": "SP500", "bars": [{**bar, "implied_vol": bad}]})
    assert SignalRequest.model_validate({"symbol": "SP500", "bars": [{**bar, "implied_vol": None}]}).bars


def test_bars_from_a_store_without_implied_vol_abstain(trained: Trained) -> None:
    """The price store keeps no implied volatility: a request without bars is answered with the slot at 0."""
    stored = rows(trained.series.bars.iloc[-2 * trained.bundle.min_bars:], implied=False)

    class Store:
        def recent_bars(self, symbol: str, timeframe: str, end: Any, count: int) -> list[dict[str, Any]]:
            return [{**r, "timestamp": f"{r['timestamp']}T00:00:00"} for r in stored[-count:]]

    service = SignalService(trained.bundle, InProcessExperts(trained.root / "experts"), None, Store(),
                            deadline_s=120)
    response = service.signal(SignalRequest.model_validate({"symbol": "SP500"}))
    assert response.gate["volatility"] == 0.0 and response.experts["volatility"].score is None
    assert response.gate["trend"] + response.gate["levels"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ServingError):
        service.signal(SignalRequest.model_validate({"symbol": "SP500", "bars": stored[:10]}))


@pytest.fixture(scope="module")
def endpoint(trained: Trained) -> Iterator[str]:
    model_dir, _ = serve.settings(["serve"], {"SM_MODEL_DIR": str(trained.root)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), serve.handler_for(serve.ExpertService(model_dir)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def invoke(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_reads_implied_vol_from_the_bars(trained: Trained, endpoint: str) -> None:
    body = rows(trained.series.bars.iloc[-REQUEST_BARS:])
    frame = series_frame(trained.series)
    volatility = load_experts(trained.root / "experts")["volatility/SP500"]
    expected = np.sqrt(volatility.score_variance(frame))[-1]
    status, answer = invoke(endpoint, {"symbol": "SP500", "bars": body, "expert": "volatility"})
    assert status == 200, answer
    assert answer["vol_history"][-1] == pytest.approx(float(expected), rel=1e-9)
    status, answer = invoke(endpoint, {"symbol": "SP500", "bars": without_last_iv(body), "expert": "volatility"})
    assert status == 200 and answer["vol_history"][-1] is None and answer["vol_forecast"] is not None
    assert answer["vol_history"][-2] == pytest.approx(float(np.sqrt(volatility.score_variance(frame))[-2]), rel=1e-9)
    bad = [*body[:-1], {**body[-1], "implied_vol": -1.0}]
    status, answer = invoke(endpoint, {"symbol": "SP500", "bars": bad, "expert": "volatility"})
    assert status == 400 and f"bars[{REQUEST_BARS - 1}].implied_vol is -1.0" in answer["error"]
