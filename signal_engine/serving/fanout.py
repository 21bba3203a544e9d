"""Ask several experts at once with one deadline; a slow or failing expert becomes an error reply."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from signal_engine.serving.messages import ExpertReply


class Fanout:
    """A thread pool that calls ``call(expert)`` for each expert in parallel and waits at most ``deadline_s``.

    Calls still running at the deadline are abandoned (their threads finish in the background and their
    results are dropped); the pool is sized so abandoned calls do not starve the next request.
    """

    def __init__(self, max_workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="expert")

    def ask(self, experts: Sequence[str], call: Callable[[str], Mapping[str, Any]],
            deadline_s: float) -> dict[str, ExpertReply]:
        started = time.perf_counter()
        futures: dict[str, Future[tuple[Mapping[str, Any], float]]] = {
            name: self._pool.submit(_timed, call, name) for name in experts
        }
        wait(list(futures.values()), timeout=max(deadline_s, 0.0), return_when=FIRST_EXCEPTION)
        remaining = deadline_s - (time.perf_counter() - started)
        if remaining > 0:  # one failure returned early: give the others the rest of the deadline
            wait(list(futures.values()), timeout=remaining)
        replies = {}
        for name, future in futures.items():
            if not future.done():
                future.cancel()
                replies[name] = ExpertReply(name, error=f"no answer within the deadline of {deadline_s * 1000:.0f} ms",
                                            elapsed_ms=deadline_s * 1000)
                continue
            exc = future.exception()
            if exc is not None:
                replies[name] = ExpertReply(name, error=f"{type(exc).__name__}: {exc}",
                                            elapsed_ms=(time.perf_counter() - started) * 1000)
                continue
            answer, elapsed = future.result()
            replies[name] = ExpertReply(name, answer=answer, elapsed_ms=elapsed * 1000)
        return replies

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed(call: Callable[[str], Mapping[str, Any]], name: str) -> tuple[Mapping[str, Any], float]:
    started = time.perf_counter()
    answer = call(name)
    return answer, time.perf_counter() - started
