"""Shared fixtures: real price files exported from the data sets the dependencies ship."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# curl_cffi's libcurl-impersonate and TensorFlow both carry BoringSSL: when TensorFlow is loaded first, curl_cffi's
# calls bind to TensorFlow's copy and every impersonated request fails ("Impersonating chrome152 is not
# supported"). The collectors never load TensorFlow; in one test process, loading curl_cffi's library first
# keeps both working whatever order the tests run in.
import curl_cffi._wrapper  # noqa: F401
import pytest
from threadpoolctl import threadpool_limits

try:
    from _pytest.nodeid import NodeId  # pytest >= 9.2
except ImportError:  # older pytest: xdist names the groups itself
    NodeId = None  # type: ignore[assignment,misc]

from signal_engine.data.datasets import export_dataset
from tests.scheduling import make_scheduler
from tests.user_files import USER_FOLDERS, changes, snapshot

# pytest-xdist keeps every core busy with test processes; a walk-forward inside a test runs in its own process
# unless the test asks for more (subprocesses of the CLI inherit this too).
os.environ.setdefault("SIGNAL_ENGINE_JOBS", "1")
# For the same reason the numerical libraries' thread pools get one thread, as every walk-forward task has
# (signal_engine.evaluation.jobs): with more, their threads only wait on each other, spinning (a test fitting
# models outside a task took twice the CPU). The variables reach subprocesses and the libraries loaded later;
# threadpoolctl sets the pools loaded already (numpy's BLAS, imported above).
THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))
threadpool_limits(limits=THREADS)

pytest_plugins = ("pytester",)  # tests/unit/test_xdist_groups.py runs pytest-xdist on a small project

_USER_FILES = pytest.StashKey[dict[str, tuple[int, int]]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if _is_xdist_worker(session.config):
        return  # the controller's check covers every worker's writes
    session.stash[_USER_FILES] = snapshot()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the xdist_group marks into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``), tests that share something expensive run on one worker: the CDK
    tests share one synthesized app (and one CDK runtime: its start costs seconds in each process), the tests of a
    module that share a fixture the module computes once (a walk-forward, a trained bundle, a chain of jobs) stay
    together, and the tests marked ``tensorflow`` share the one worker that imports it. Nothing is grouped for
    shared state: every worker has its own MariaDB database (tests/fixtures/servers.py), every moto server starts
    from a reset, and files go under each test's tmp_path, so the rest is spread test by test. The longest groups
    and tests are sent first (tests/scheduling.py)."""
    # A module's tests sharing a fixture stay together: with the mark on one of them, all of them join the group.
    tensorflow = {Path(str(item.fspath)) for item in items
                  if item.get_closest_marker("tensorflow") and _shares_a_module_fixture(item, Path(str(item.fspath)))}
    for item in items:
        path = Path(str(item.fspath))
        shares = _shares_a_module_fixture(item, path)
        if "infra" in path.parts:
            group = "infra"
        elif item.get_closest_marker("tensorflow") or (shares and path in tensorflow):
            group = "tensorflow"  # one worker imports TensorFlow, not both
        elif shares:
            group = path.stem
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


class _GroupNodeIds:
    """pytest-xdist's loadgroup scheduler reads a test's group from its node id (``...::test@group``), which
    xdist's worker hook sets through ``Item._nodeid``; pytest 9.2 keeps node ids in ``Item._id``, so that
    renaming has no effect and loadgroup silently groups nothing (pytest-dev/pytest-xdist#1386). On a loadgroup
    worker this names the groups the way xdist meant to, unless xdist already did."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not (_is_xdist_worker(config) and config.getvalue("loadgroup")) or NodeId is None:
            return
        for item in items:
            names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                     for mark in item.iter_markers("xdist_group")}
            suffix = "@" + "_".join(sorted(names))
            if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
                item._id = NodeId.parse(item.nodeid + suffix)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_GroupNodeIds(), "signal-engine-xdist-group-ids")


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the longest work units first (tests/scheduling.py); other modes as they are."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return make_scheduler(config, log)


def _shares_a_module_fixture(item: pytest.Item, path: Path) -> bool:
    """Whether ``item`` uses a fixture of wider than function scope that its own module defines."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for definitions in info.name2fixturedefs.values():
        for definition in definitions:
            if definition.scope != "function" and str(path).endswith(definition.baseid or "\0"):
                return True
    return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any test created, changed or removed a file under the checkout's out/, cdk.out/, build/."""
    before = session.stash.get(_USER_FILES, None)
    if before is None:
        return
    touched = changes(before, snapshot())
    if touched:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"tests wrote to the user's files ({', '.join(USER_FOLDERS)}); write under tmp_path instead:",
                 *touched[:20], *([f"... and {len(touched) - 20} more"] if len(touched) > 20 else [])]
        for line in lines:
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-data")


@pytest.fixture(scope="session")
def goog_csv(real_data_dir: Path) -> Path:
    """Alphabet daily bars 2004-2013 (2,148 rows), shipped by `backtesting`."""
    return export_dataset("GOOG", real_data_dir)


@pytest.fixture(scope="session")
def eurusd_csv(real_data_dir: Path) -> Path:
    """EUR/USD hourly bars 2017-2018 (5,000 rows), shipped by `backtesting`."""
    return export_dataset("EURUSD", real_data_dir)


@pytest.fixture(scope="session")
def spx_csv(real_data_dir: Path) -> Path:
    """S&P 500 daily bars 1999-2018 (5,031 rows), shipped by `arch`."""
    return export_dataset("SPX", real_data_dir)
