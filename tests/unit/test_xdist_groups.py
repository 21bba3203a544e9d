"""Test isolation under pytest-xdist: tests that share a module fixture run on one worker (tests/conftest.py),
every worker has a MariaDB database of its own and every moto server starts empty (tests/fixtures/servers.py)."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server, worker_database_name

ROOT = Path(__file__).resolve().parents[2]

MODULE = '''
import os

import pytest


@pytest.fixture(scope="module")
def shared():
    return os.environ["PYTEST_XDIST_WORKER"]


@pytest.mark.parametrize("i", range(6))
def test_shared(shared, i):
    assert shared == os.environ["PYTEST_XDIST_WORKER"]


@pytest.mark.parametrize("i", range(6))
def test_alone(i):
    pass
'''


def test_tests_sharing_a_module_fixture_run_on_one_worker(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems, pytest_configure  # noqa: F401")
    pytester.makepyfile(test_grouped=MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    workers = {(match[2], match[1]) for line in result.outlines
               if (match := re.search(r"\[(gw\d)\].*PASSED .*::(test_shared|test_alone)\[", line))}
    assert {worker for name, worker in workers if name == "test_shared"} in ({"gw0"}, {"gw1"}), result.outlines
    assert any(line.rstrip().endswith("@test_grouped") for line in result.outlines), "the group is in the node id"


def test_each_worker_has_its_own_database() -> None:
    assert worker_database_name("signal_engine_test", "gw0") == "signal_engine_test_gw0"
    assert worker_database_name("signal_engine_test", "gw1") == "signal_engine_test_gw1"
    assert worker_database_name("signal_engine_test", "") == "signal_engine_test"  # one process: the URL's own
    with pytest.raises(ValueError, match="PYTEST_XDIST_WORKER='gw0; DROP'"):
        worker_database_name("signal_engine_test", "gw0; DROP")


def test_every_moto_server_starts_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto keeps its state per process: what one server (another module's fixture) left is gone in the next."""
    for name, value in FAKE_AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with moto_server() as first:
        boto3.client("s3", endpoint_url=first).create_bucket(Bucket="left-behind")
        assert [b["Name"] for b in boto3.client("s3", endpoint_url=first).list_buckets()["Buckets"]] == ["left-behind"]
    with moto_server() as second:
        assert boto3.client("s3", endpoint_url=second).list_buckets()["Buckets"] == []
