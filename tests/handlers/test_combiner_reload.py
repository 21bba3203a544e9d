"""A warm combiner moves to a newly promoted bundle: the registry in S3 on moto (server mode), a fake clock.

The combiner re-checks ``models/CURRENT`` (one HEAD) at most every ``MODEL_CHECK_SECONDS``; a promotion is served
from the first request after that, and a version that does not load leaves the current one serving.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambda_src.combiner.settings import CombinerSettings
from lambda_src.combiner.wiring import LiveService
from signal_engine.serving.bundle_source import CurrentWatch
from tests.handlers.conftest import Aws
from tests.serving_support import goog_registry

BUCKET = "signal-engine-reload"
ENDPOINTS = {"trend": "se-test-trend", "levels": "se-test-levels", "volatility": "se-test-volatility"}


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def publish(aws: Aws, folder: Path, version: str) -> None:
    """Upload a bundle folder as ``models/<version>/`` (bundle.json last, naming that version)."""
    document = json.loads((folder / "bundle.json").read_text())
    document["version"] = version
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "bundle.json"):
        aws.s3.put_object(Bucket=BUCKET, Key=f"models/{version}/{path.relative_to(folder)}", Body=path.read_bytes())
    aws.s3.put_object(Bucket=BUCKET, Key=f"models/{version}/bundle.json", Body=json.dumps(document).encode())


def promote(aws: Aws, version: str) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key="models/CURRENT", Body=(version + "\n").encode())


@pytest.fixture(scope="module")
def trained(aws: Aws) -> Path:
    """One trained bundle folder; published under several version names."""
    registry = goog_registry()
    aws.s3.create_bucket(Bucket=BUCKET)
    return registry / (registry / "CURRENT").read_text().strip()


def live_service(aws: Aws, tmp_path: Path, clock: FakeClock, check_seconds: int = 60) -> LiveService:
    import boto3

    settings = CombinerSettings.from_env({
        "MODEL_BUNDLE_URI": f"s3://{BUCKET}/models/", "EXPERT_ENDPOINTS": json.dumps(ENDPOINTS),
        "SIGNAL_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path}/audit.db", "BUNDLE_CACHE_DIR": str(tmp_path / "cache"),
        "MODEL_CHECK_SECONDS": str(check_seconds),
    })
    return LiveService(settings, boto3.client, clock)


def test_a_warm_combiner_serves_the_promoted_bundle_after_the_check_interval(
    aws: Aws, trained: Path, tmp_path: Path
) -> None:
    publish(aws, trained, "20260101T000000Z-aaaaaaaa")
    publish(aws, trained, "20260201T000000Z-bbbbbbbb")
    promote(aws, "20260101T000000Z-aaaaaaaa")
    clock = FakeClock()
    live = live_service(aws, tmp_path, clock)
    first = live()
    assert first.bundle.version == "20260101T000000Z-aaaaaaaa"

    promote(aws, "20260201T000000Z-bbbbbbbb")
    clock.now += 59
    assert live() is first  # not checked yet: no HEAD within the interval
    clock.now += 1
    second = live()
    assert second.bundle.version == "20260201T000000Z-bbbbbbbb"
    assert second.health().model_version == "20260201T000000Z-bbbbbbbb"
    assert second.experts is first.experts and second.audit is first.audit  # same clients and database
    clock.now += 600
    assert live() is second  # CURRENT unchanged: nothing fetched again


def test_a_promoted_version_that_does_not_load_leaves_the_current_one_serving(
    aws: Aws, trained: Path, tmp_path: Path
) -> None:
    publish(aws, trained, "20260301T000000Z-cccccccc")
    promote(aws, "20260301T000000Z-cccccccc")
    clock = FakeClock()
    live = live_service(aws, tmp_path, clock, check_seconds=30)
    serving = live()
    promote(aws, "20260401T000000Z-missing0")  # no bundle under that version
    clock.now += 30
    assert live() is serving
    publish(aws, trained, "20260401T000000Z-missing0")  # published late: picked up at the next check
    clock.now += 30
    assert live().bundle.version == "20260401T000000Z-missing0"


def test_the_watch_probes_once_per_interval_and_reports_until_accepted() -> None:
    probes: list[str] = []
    pointer = {"value": "a"}

    def probe() -> str:
        probes.append(pointer["value"])
        return pointer["value"]

    clock = FakeClock()
    watch = CurrentWatch(probe, 10, clock)
    assert (watch.changed(), len(probes)) == (None, 1)  # within the interval: no probe
    pointer["value"] = "b"
    clock.now += 10
    assert watch.changed() == "b"
    clock.now += 10
    assert watch.changed() == "b"  # not accepted (the load failed): reported again
    watch.accept("b")
    clock.now += 10
    assert watch.changed() is None
    assert len(probes) == 4
    with pytest.raises(ValueError, match="0 or more seconds"):
        CurrentWatch(probe, -1, clock)
