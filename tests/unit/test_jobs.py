"""Independent tasks over processes: the same results for any number, clear errors, plain progress in a log."""

from __future__ import annotations

import io
import os
from functools import partial

import pytest
from rich.console import Console

from signal_engine.errors import InputError
from signal_engine.evaluation.jobs import JOBS_VARIABLE, Task, available_cores, resolve_jobs, run_tasks


def _square_plus_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _fail(message: str) -> None:
    raise ValueError(message)


def _log() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=False, width=200), stream


def test_two_processes_give_the_results_of_one_by_key() -> None:
    tasks = [Task(("s", i), f"task {i}", weight=i, run=partial(_square_plus_pid, i)) for i in range(1, 6)]
    console, log = _log()
    serial = run_tasks(tasks, 1, console, "Walk-forward")
    parallel = run_tasks(tasks, 2, console, "Walk-forward")
    assert {k: v[0] for k, v in serial.items()} == {k: v[0] for k, v in parallel.items()} == {
        ("s", i): i * i for i in range(1, 6)}
    assert {pid for _, pid in serial.values()} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in parallel.values()}
    lines = log.getvalue().splitlines()
    assert lines[0] == "Walk-forward: 5 tasks, 15 refits"
    assert lines[1].startswith("  [1/5] task 5 done in ")  # heaviest first
    assert lines[5].startswith("  [5/5] task 1 done in ") and "15/15 refits" in lines[5] and "0:00 left" in lines[5]


def test_a_failing_task_raises_its_error() -> None:
    tasks = [Task("ok", "ok", 1, partial(_square_plus_pid, 2)), Task("bad", "bad", 2, partial(_fail, "no data"))]
    for jobs in (1, 2):
        with pytest.raises(ValueError, match="no data"):
            run_tasks(tasks, jobs, _log()[0], "Walk-forward")


def test_task_keys_must_be_unique() -> None:
    tasks = [Task("a", "a", 1, partial(_square_plus_pid, 1)), Task("a", "b", 1, partial(_square_plus_pid, 2))]
    with pytest.raises(ValueError, match="unique"):
        run_tasks(tasks, 1, _log()[0], "Walk-forward")


def test_jobs_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOBS_VARIABLE, raising=False)
    assert resolve_jobs(None) == resolve_jobs(0) == available_cores()
    assert resolve_jobs(3) == 3
    monkeypatch.setenv(JOBS_VARIABLE, "1")
    assert resolve_jobs(None) == 1
    assert resolve_jobs(2) == 2  # the flag wins over the variable
    monkeypatch.setenv(JOBS_VARIABLE, "many")
    with pytest.raises(InputError, match=r"SIGNAL_ENGINE_JOBS.*whole number"):
        resolve_jobs(None)
    with pytest.raises(InputError, match=r"--jobs.*positive"):
        resolve_jobs(-2)
