"""The book step handler end to end: a whole-book bundle trained by `signal-engine train` (the smallest settings of
tests/integration/test_live_step_real_data.py) published to S3 on moto's HTTP server, real GOOG bars in SQLite, and
the recorded events that trigger it (a bar collector's on-success record, a "Step Book" request)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.cli import main
from signal_engine.serving.bundle import BundleError
from signal_engine.storage.ingest import ingest_prices
from tests.fixtures.configs import TWO_MODEL_BOOK
from tests.fixtures.payloads import fixture_json
from tests.handlers.conftest import Aws, FakeLambdaContext

pytestmark = pytest.mark.slow

BUCKET = "signal-engine-artifacts-book"
CONFIG = TWO_MODEL_BOOK
TRAINED = 650
LIVE = 660


def head(source: Path, rows: int, folder: Path) -> Path:
    path = folder / f"GOOG_{rows}.csv"
    path.write_text("".join(source.read_text().splitlines(keepends=True)[: rows + 1]))
    return path


def train(goog_csv: Path, folder: Path) -> Path:
    """A local registry with one whole-book version trained on the first TRAINED bars."""
    (folder / "config.yaml").write_text(CONFIG)
    assert main(["train", "--config", str(folder / "config.yaml"), "--registry", str(folder / "models"),
                 "--prices", str(head(goog_csv, TRAINED, folder)), "--symbol", "GOOG"]) == 0
    return folder / "models"


@pytest.fixture(scope="module")
def registry(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(goog_csv, tmp_path_factory.mktemp("train"))


def publish(aws: Aws, registry: Path, skip: str = "") -> str:
    """Upload the registry (CURRENT and the version's files) to the artifacts bucket's models/."""
    if BUCKET not in {b["Name"] for b in aws.s3.list_buckets()["Buckets"]}:
        aws.s3.create_bucket(Bucket=BUCKET)
    for item in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        aws.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    for path in sorted(p for p in registry.rglob("*") if p.is_file()):
        key = path.relative_to(registry).as_posix()
        if skip and key.endswith(skip):
            continue
        aws.s3.put_object(Bucket=BUCKET, Key=f"models/{key}", Body=path.read_bytes())
    return (registry / "CURRENT").read_text().strip()


@pytest.fixture
def step(aws: Aws, registry: Path, goog_csv: Path, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A cold start: the handler module with its environment (SQLite store holding LIVE bars, the bundle in S3)."""
    database = SqlDatabase.connect(f"sqlite:///{tmp_path}/store.db")
    ingest_prices(head(goog_csv, LIVE, tmp_path), database.prices, symbol="GOOG")
    database.close()
    monkeypatch.setenv("SIGNAL_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path}/store.db")
    monkeypatch.setenv("MODEL_BUNDLE_URI", f"s3://{BUCKET}/models/")
    monkeypatch.setenv("BUNDLE_CACHE_DIR", str(tmp_path / "cache"))
    module = importlib.import_module("lambda_src.book_step.handler")
    module.storage.cache_clear()
    yield module
    module.storage.cache_clear()


def event(name: str) -> dict[str, Any]:
    document: dict[str, Any] = fixture_json(f"events/{name}.json")
    return document


def emitted(out: str) -> dict[str, float]:
    """The metrics of the last EMF document Powertools printed (a metric's value may be a list of values)."""
    (document,) = [json.loads(line) for line in out.splitlines() if '"_aws"' in line][-1:]
    assert document["service"] == "signal-engine-book"
    names = [m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {n: float(sum(document[n]) if isinstance(document[n], list) else document[n]) for n in names}


def stored_bars(module: ModuleType, book: str) -> list[Any]:
    return list(module.storage().books.bar_times(book))


def test_a_collection_steps_every_book_and_a_second_changes_nothing(step: ModuleType, aws: Aws, registry: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    version = publish(aws, registry)
    answer = step.handler(event("bars_collected_event"), FakeLambdaContext(function_name="book-step"))
    assert answer["version"] == version
    (book,) = answer["books"]
    assert book["stepped"] == LIVE - TRAINED and book["replayed"] == 0 and book["waiting"] == []
    assert book["seeded"], "a new book starts from the bundle's seed: the backtest's state at the last training bar"
    assert len(stored_bars(step, book["book"])) == 1 + LIVE - TRAINED
    assert set(book["positions"]) == {"GOOG"}
    assert emitted(capsys.readouterr().out) == {
        "StepRequests": 1.0, "BooksStepped": 1.0, "BarsStepped": float(LIVE - TRAINED), "BarsReplayed": 0.0,
        "SymbolsWaiting": 0.0, "SymbolsEnded": 0.0, "StepFailures": 0.0}
    # The other bar collector's success (or a redelivery) steps nothing new.
    again = step.handler(event("bars_collected_event"), FakeLambdaContext(function_name="book-step"))["books"][0]
    assert again["stepped"] == 0 and again["latest_bar"] == book["latest_bar"]


def test_a_step_request_names_books_and_until(step: ModuleType, aws: Aws, registry: Path) -> None:
    publish(aws, registry)
    request = {**event("collect_request_event"), "source": "signal-engine.book", "detail-type": "Step Book"}
    request["detail"] = {"until": "2000-01-01T00:00:00Z"}
    (book,) = step.handler(request, FakeLambdaContext())["books"]
    assert book["stepped"] == 0, "nothing after until"
    request["detail"] = {"books": ["no-such-book"]}
    with pytest.raises(BundleError, match="no book 'no-such-book'"):
        step.handler(request, FakeLambdaContext())
    request["detail"] = {"symbols": ["GOOG"]}
    with pytest.raises(ValueError, match="symbols"):
        step.handler(request, FakeLambdaContext())


def test_an_incomplete_bundle_fails_the_step_and_leaves_the_books_as_they_were(
        step: ModuleType, aws: Aws, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish(aws, registry, skip="experts/manifest.json")
    with pytest.raises(BundleError, match=r"experts/manifest\.json: missing"):
        step.handler(event("bars_collected_event"), FakeLambdaContext())
    assert step.storage().books.books() == []
    assert emitted(capsys.readouterr().out) == {"StepRequests": 1.0, "StepFailures": 1.0}
