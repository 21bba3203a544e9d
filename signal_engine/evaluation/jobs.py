"""Independent pieces of a run (a symbol's walk-forward, one timeframe model, an expert suite) in parallel processes.

Every model the project fits is single-threaded and seeded, so a task gives the same bytes in any process; each
task also runs with the numerical libraries' thread pools held to one thread, in the serial run as in the
parallel one, so that ``--jobs 1`` and ``--jobs N`` agree to the last bit and N processes never oversubscribe
the cores. Progress is reported per finished task, with an estimate of the time left from the refits done so far:
a bar on a terminal, one plain line per task in a log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from signal_engine.errors import InputError


@dataclass(frozen=True)
class Task:
    """One independent piece of work: ``run()`` must be picklable (a module-level function or a partial of one)."""

    key: Hashable
    label: str
    weight: int
    run: Callable[[], Any]


def available_cores() -> int:
    """The cores this process may run on (the CPU affinity where the platform has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


JOBS_VARIABLE = "SIGNAL_ENGINE_JOBS"


def resolve_jobs(jobs: int | None) -> int:
    """``--jobs``: 0 means every available core; None means ``$SIGNAL_ENGINE_JOBS`` where it is set (the test
    suite sets 1: pytest-xdist already keeps every core busy), else every core. A negative value is refused."""
    if jobs is None:
        setting = os.environ.get(JOBS_VARIABLE, "").strip()
        if not setting:
            return available_cores()
        try:
            jobs = int(setting)
        except ValueError:
            raise InputError(JOBS_VARIABLE, f"must be a whole number of processes, got {setting!r}") from None
    if jobs == 0:
        return available_cores()
    if jobs < 0:
        raise InputError("--jobs", f"must be a positive number of processes (or 0 for all cores), got {jobs}")
    return int(jobs)


def run_tasks(tasks: Sequence[Task], jobs: int, console: Console, title: str) -> dict[Hashable, Any]:
    """Run ``tasks`` in up to ``jobs`` processes (in this process when ``jobs`` is 1); results by task key.

    Tasks are started heaviest first so that the last one to finish is a short one. An exception in a task
    is raised here, after the other processes are stopped.
    """
    keys = [task.key for task in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"run_tasks: task keys must be unique, got {keys}")
    ordered = sorted(tasks, key=lambda task: -task.weight)
    reporter = _Reporter(ordered, console, title)
    results: dict[Hashable, Any] = {}
    with reporter:
        for key, result, seconds in _execute(ordered, jobs):
            results[key] = result
            reporter.done(key, seconds)
    return results


def _execute(tasks: Sequence[Task], jobs: int) -> Iterator[tuple[Hashable, Any, float]]:
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task.key, *_timed(task.run)
        return
    import warnings

    from joblib import Parallel, delayed

    # loky replaces a worker whose memory grew by a few hundred MB (TensorFlow, LightGBM caches) and warns that
    # it did; the task is resubmitted, so nothing is lost.
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor")
    parallel = Parallel(n_jobs=min(jobs, len(tasks)), backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(_keyed)(task.key, task.run) for task in tasks)


def _keyed(key: Hashable, run: Callable[[], Any]) -> tuple[Hashable, Any, float]:
    return key, *_timed(run)


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(limits=1):
        result = run()
    return result, time.perf_counter() - started


class _Reporter:
    """A progress bar on a terminal; one line per finished task, with the estimated time left, in a log."""

    def __init__(self, tasks: Sequence[Task], console: Console, title: str) -> None:
        self.labels = {task.key: task.label for task in tasks}
        self.weights = {task.key: max(1, task.weight) for task in tasks}
        self.total = sum(self.weights.values())
        self.console, self.title = console, title
        self.finished, self.weight_done = 0, 0
        self.started = time.perf_counter()
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("refits"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=console, transient=False)
            self.bar = self.progress.add_task(title, total=self.total)

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        else:
            self.console.print(f"{self.title}: {len(self.labels)} tasks, {self.total} refits")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def done(self, key: Hashable, seconds: float) -> None:
        self.finished += 1
        self.weight_done += self.weights[key]
        if self.progress is not None:
            self.progress.update(self.bar, advance=self.weights[key])
            self.console.print(f"  done {self.labels[key]} ({seconds:.0f} s)")
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed * (self.total - self.weight_done) / self.weight_done
        self.console.print(
            f"  [{self.finished}/{len(self.labels)}] {self.labels[key]} done in {seconds:.0f} s; "
            f"{self.weight_done}/{self.total} refits, elapsed {_clock(elapsed)}, about {_clock(left)} left")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"
