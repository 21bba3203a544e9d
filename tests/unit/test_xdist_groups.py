"""Test isolation under pytest-xdist: tests that share a module fixture run on one worker (tests/conftest.py),
every worker has a MariaDB database of its own and every moto server starts empty (tests/fixtures/servers.py);
the longest work units are sent first (tests/scheduling.py)."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from tests.conftest import THREADS
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server, worker_database_name
from tests.scheduling import COSTS_FILE, load_costs, longest_first, make_scheduler, measured_costs

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

# A module of CDK tests (under a folder infra/) joins the group "infra".
CDK_MODULE = '''
def test_synthesized():
    pass
'''
# A test that imports TensorFlow joins the group "tensorflow".
KERAS_MODULE = '''
import pytest


@pytest.mark.tensorflow
def test_keras():
    pass
'''
CONFTEST = (
    "from tests.conftest import pytest_collection_modifyitems, pytest_configure, pytest_xdist_make_scheduler  # noqa\n")


def test_tests_sharing_a_module_fixture_run_on_one_worker(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    tensorflow: imports TensorFlow\n")
    pytester.makepyfile(test_grouped=MODULE, test_keras=KERAS_MODULE)
    pytester.mkpydir("infra").joinpath("test_synth.py").write_text(CDK_MODULE)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=14)
    workers = {(match[2], match[1]) for line in result.outlines
               if (match := re.search(r"\[(gw\d)\].*PASSED .*::(test_shared|test_alone)\[", line))}
    assert {worker for name, worker in workers if name == "test_shared"} in ({"gw0"}, {"gw1"}), result.outlines
    assert any(line.rstrip().endswith("@test_grouped") for line in result.outlines), "the group is in the node id"
    for name, group in (("infra/test_synth.py::test_synthesized", "infra"),
                        ("test_keras.py::test_keras", "tensorflow")):
        assert any(line.rstrip().endswith(f"{name}@{group}") for line in result.outlines), name


COSTS = {"small": 1.0, "b.py::long": 50.0, "c.py::t": 5.0}
COLLECTION = ["a.py::t1@small", "a.py::t2@small", "a.py::t3@small", "b.py::long", "c.py::t[1]", "c.py::t[2]",
              "d.py::unknown", "e.py::g@big"]


def units(nodeids: list[str]) -> list[tuple[str, dict[str, bool]]]:
    """loadgroup's work units of a collection, in its order: a group's tests together, each other test alone."""
    grouped: dict[str, dict[str, bool]] = {}
    for nodeid in nodeids:
        grouped.setdefault(nodeid.rsplit("@", 1)[1] if "@" in nodeid else nodeid, {})[nodeid] = False
    return list(grouped.items())


def test_work_units_are_ordered_longest_first_by_their_measured_seconds() -> None:
    ordered = [scope for scope, _ in longest_first(units(COLLECTION), {**COSTS, "big": 80.0})]
    # big 80, long 50, each c.py::t[i] 5 (the function's seconds are per test), small 1, unknown 0 last
    assert ordered == ["big", "b.py::long", "c.py::t[1]", "c.py::t[2]", "small", "d.py::unknown"]


def test_the_scheduler_sends_the_longest_unit_first(pytester: pytest.Pytester) -> None:
    """xdist's loadgroup alone would start with the group of three tests (the most tests); here the 50-second
    test goes first, to the first worker, and the 5-second ones to the second."""
    config = pytester.parseconfig("--tx", "2*popen", "--dist", "loadgroup")
    scheduler = make_scheduler(config, None, COSTS)
    nodes = [_Node("gw0"), _Node("gw1")]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, COLLECTION[:-1])
    scheduler.schedule()
    assert [COLLECTION[i] for i in nodes[0].sent][:1] == ["b.py::long"]
    assert [COLLECTION[i] for i in nodes[1].sent][:1] == ["c.py::t[1]"]


class _Node:
    """What the scheduler uses of a worker."""

    def __init__(self, name: str) -> None:
        self.sent: list[int] = []
        self.shutting_down = False
        self.gateway = self
        self.id = name

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_measured_costs_sum_a_groups_tests_and_average_a_functions() -> None:
    log = ["  3.50s setup    tests/x.py::test_a@grp", "1.25s call     tests/x.py::test_b[p]@grp",
           "2.00s call     tests/y.py::test_c[1]", "4.00s call     tests/y.py::test_c[2]",
           "0.50s teardown tests/y.py::test_c[2]", "0.40s call     tests/z.py::test_d", "not a duration line"]
    # grp: 3.5 + 1.25; test_c: (2.0 + 4.5) / 2 tests; test_d below one second
    assert measured_costs(log) == {"tests/y.py::test_c": 3.2, "grp": 4.8}


def test_every_unit_the_costs_name_exists() -> None:
    """A renamed test or module leaves its cost behind; the scheduler would then send it anywhere in the queue."""
    stems = {path.stem for path in (ROOT / "tests").rglob("test_*.py")} | {"infra", "tensorflow"}  # conftest.py's
    for name in load_costs(COSTS_FILE):
        if "::" not in name:
            assert name in stems, f"{COSTS_FILE.name}: no group {name!r}"
            continue
        path, function = name.split("::", 1)
        assert (ROOT / path).is_file(), f"{COSTS_FILE.name}: no file {path}"
        assert f"def {function}(" in (ROOT / path).read_text(encoding="utf-8"), f"{COSTS_FILE.name}: no {name}"


def test_the_numerical_libraries_run_one_thread_per_test_process() -> None:
    """Two workers on two cores: a BLAS or OpenMP pool of more threads per worker only spins (tests/conftest.py)."""
    import lightgbm  # noqa: F401  (loads the OpenMP runtime, after the conftest set the variables)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    assert {pool["internal_api"] for pool in pools} >= {"openblas", "openmp"}, pools
    assert {pool["num_threads"] for pool in pools} == {THREADS}, pools


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
