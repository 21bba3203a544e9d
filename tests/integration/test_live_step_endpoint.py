"""The live book step with its experts asked the way the combiner Lambda asks them: ``SageMakerExperts`` over a real
boto3 ``sagemaker-runtime`` client, whose ``invoke_endpoint`` requests reach the experts' inference server
(sagemaker_jobs/serve.py) in process, one server per model bundle of the whole-book version, each asked once per
symbol and bar for all of its experts. From the same stored prices it steps the same book as the in-process
experts, to 1e-12, and an endpoint that fails leaves the book as it was."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.config import Config

from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.live.books import BookStepReport, step_books
from signal_engine.live.models import ExpertFailure
from signal_engine.ports import ExpertClient
from signal_engine.serving.book_bundle import SAME_BUNDLE, BookBundle
from tests.fixtures.configs import TWO_MODEL_BOOK
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT
from tests.live_step_support import PriceCuts, Stores, book_positions, cut_prices, store_prices, stored_book, train_book
from tests.sagemaker_endpoints import Endpoints, serve_endpoints

pytestmark = pytest.mark.slow

TRAINED = 650
LIVE = 662
FAIL_AT = 656
"""The bars after the first TRAINED rows are stepped; in the failure case an expert fails from row FAIL_AT on."""
SYMBOLS = ("GOOG", "GOOGB", "EURUSD")
TOLERANCE = 1e-12


def endpoint_name(bundle: str) -> str:
    """The test's endpoint of a model bundle (a path in the version, ``.`` for the version's own)."""
    return "experts" if bundle == SAME_BUNDLE else "experts-" + bundle.replace("/", "-")


@pytest.fixture(scope="module")
def prices(goog_csv: Path, eurusd_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> PriceCuts:
    return cut_prices(tmp_path_factory.mktemp("prices"), {"GOOG": goog_csv, "GOOGB": goog_csv, "EURUSD": eurusd_csv},
                      (TRAINED, LIVE))


@pytest.fixture(scope="module")
def version(prices: PriceCuts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    training = {symbol: prices[symbol, TRAINED] for symbol in SYMBOLS}
    return train_book(tmp_path_factory.mktemp("train"), TWO_MODEL_BOOK, training)


@pytest.fixture(scope="module")
def endpoints(version: Path) -> Iterator[Endpoints]:
    bundle = BookBundle.load(version)
    with serve_endpoints({endpoint_name(key): bundle.folder(key) for key in bundle.bundles}) as running:
        yield running


@pytest.fixture(scope="module")
def runtime(endpoints: Endpoints) -> Iterator[Any]:
    """boto3's sagemaker-runtime client as the combiner builds it (one attempt), pointed at the endpoints."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield boto3.session.Session().client(
            "sagemaker-runtime", endpoint_url=endpoints.url, region_name="us-east-1",
            config=Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 1, "mode": "standard"},
                          max_pool_connections=32))


@pytest.fixture
def over_http(runtime: Any, version: Path) -> Iterator[Callable[[Path], ExpertClient]]:
    """``step_books``' expert factory: each model bundle's experts asked at its endpoint through ``runtime``."""
    bundle = BookBundle.load(version)
    key_of = {bundle.folder(key): key for key in bundle.bundles}
    clients: list[SageMakerExperts] = []

    def experts(folder: Path) -> ExpertClient:
        key = key_of[folder]
        clients.append(SageMakerExperts(runtime, dict.fromkeys(bundle.bundles[key].experts, endpoint_name(key))))
        return clients[-1]

    yield experts
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def in_process(version: Path, prices: PriceCuts, tmp_path_factory: pytest.TempPathFactory,
               ) -> tuple[SqlDatabase, dict[str, BookStepReport]]:
    """Every book stepped over the bars after training with the in-process experts (``step_books``' default)."""
    database = store_prices(tmp_path_factory.mktemp("in-process") / "store.db", prices, dict.fromkeys(SYMBOLS, LIVE))
    return database, _step(database, version)


def _step(database: SqlDatabase, version: Path, **kwargs: Any) -> dict[str, BookStepReport]:
    return {r.book: r for r in step_books(Stores(database), version, **kwargs)}


def test_the_book_stepped_through_the_endpoints_is_the_book_stepped_in_process(
        in_process: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path, prices: PriceCuts,
        endpoints: Endpoints, over_http: Callable[[Path], ExpertClient], tmp_path: Path) -> None:
    local, local_reports = in_process
    database = store_prices(tmp_path / "store.db", prices, dict.fromkeys(SYMBOLS, LIVE))
    requests_before, answered_before = endpoints.requests(), endpoints.answered()
    reports = _step(database, version, experts=over_http)
    requests = {name: n - requests_before[name] for name, n in endpoints.requests().items()}
    answered = {name: n - answered_before[name] for name, n in endpoints.answered().items()}
    bundle = BookBundle.load(version)
    expected_requests = dict.fromkeys(requests, 0)
    expected_answers: dict[str, Counter[str]] = {name: Counter() for name in requests}
    for book in bundle.books:
        assert reports[book.name].stepped == local_reports[book.name].stepped == LIVE - TRAINED
        for model in book.models:  # each bar: every symbol asks the model's endpoint once, naming all its experts
            asks = reports[book.name].stepped * len(book.symbols)
            expected_requests[endpoint_name(model.bundle)] += asks
            expected_answers[endpoint_name(model.bundle)].update(dict.fromkeys(bundle.bundles[model.bundle].experts,
                                                                               asks))
        assert_close(reports[book.name].positions, local_reports[book.name].positions)
        assert book_positions(database, book.name).abs().to_numpy().max() > 0  # the book trades
        assert_close(stored_book(database, book.name), stored_book(local, book.name))
    assert requests == expected_requests and min(expected_requests.values()) > 0
    assert answered == expected_answers
    assert all(len(bundle.bundles[key].experts) > 1 for key in bundle.bundles)  # so a request groups experts


def test_an_endpoint_that_answers_500_leaves_the_book_as_it_was(
        in_process: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path, prices: PriceCuts,
        endpoints: Endpoints, over_http: Callable[[Path], ExpertClient], tmp_path: Path) -> None:
    local, _ = in_process
    failing_bar = pd.Timestamp(pd.read_csv(prices["GOOG", LIVE])["Date"].iloc[FAIL_AT])
    database = store_prices(tmp_path / "store.db", prices, dict.fromkeys(SYMBOLS, LIVE))
    medium = endpoints.services[endpoint_name("books/daily/medium")]
    experts = BookBundle.load(version).bundles["books/daily/medium"].experts
    assert "volatility" in experts and experts[0] != "volatility"
    medium.fail_from("volatility", failing_bar)  # the request naming every expert of the endpoint fails: the step
    try:                                         # names the first of them, failed with the endpoint's error
        with pytest.raises(ExpertFailure, match=rf"medium model, GOOG at .*{experts[0]!r} failed .*ModelError.*"
                                                "expert volatility made to fail"):
            _step(database, version, books=["daily"], experts=over_http)
    finally:
        medium.fail_from(None)
    assert medium.refused["volatility"] == 1  # the server answered 500 once; the bar was not committed
    stored, complete = stored_book(database, "daily"), stored_book(local, "daily")
    before_failure = {table: [row for row in rows if pd.Timestamp(row["bar_time"]) < failing_bar]
                      for table, rows in complete.items()}
    assert len(before_failure["book_states"]) == FAIL_AT - TRAINED + 1  # the seed and the bars before the failure
    assert_close(stored, before_failure)
    assert _step(database, version, books=["daily"], experts=over_http)["daily"].stepped == LIVE - FAIL_AT
    assert_close(stored_book(database, "daily"), complete)


def assert_close(actual: Any, expected: Any, where: str = "") -> None:
    """Equal JSON-like values, numbers to TOLERANCE (NaN equals NaN); ``where`` names the first difference."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{where}: keys differ"
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool) and isinstance(actual, (int, float)):
        same = (math.isnan(expected) and math.isnan(actual)) or abs(actual - expected) <= TOLERANCE
        assert same, f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
