"""The batch jobs of ``signal-engine serve``: run one at a time on a thread of the server's process, until stopped.

``stop(wait_s)`` (the server's stop path) starts no job after it (a submit is answered 503, the job stored
``failed``), fails the jobs still waiting, and gives the running job ``wait_s`` to store its answer. A job still
running then is stored ``failed`` and its thread may store nothing more: it is a daemon thread, left to end with the
process (its computation cannot be interrupted), so the process exits without waiting for it. Every object is
written whole (the store's puts are atomic): a job ends ``done`` or ``failed``, never half-written.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from signal_engine.serving.batch_jobs import BatchJobs
from signal_engine.serving.service import ServingError, SignalService

if TYPE_CHECKING:  # the port's module imports pandas: not on the combiner's cold start
    from signal_engine.ports import ObjectStore

_log = logging.getLogger(__name__)


class ServerStopped(Exception):
    """The server stopped before the job could store its answer."""


class LocalJobWorker:
    """Batch jobs kept in ``store`` (``jobs``: what the API reads and submits to), answered by ``service`` on one
    thread, one job at a time; ``stop`` ends the thread's work within a bounded wait."""

    def __init__(self, store: ObjectStore, service: SignalService, *, timeout_s: float) -> None:
        self.jobs = BatchJobs(store, self._launch, timeout_s=timeout_s)
        self._service = service
        self._state = threading.Condition()
        self._waiting: deque[str] = deque()
        self._running: str | None = None
        self._stopped = False
        self._sealed = _SealableStore(store)
        self._runner = BatchJobs(self._sealed, self._launch, timeout_s=timeout_s)  # the thread's writes, sealable
        self._thread = threading.Thread(target=self._work, name="signal-batch-job", daemon=True)
        self._thread.start()

    @property
    def running(self) -> str | None:
        """The id of the job being answered, if any."""
        with self._state:
            return self._running

    def is_alive(self) -> bool:
        """Whether the worker's thread still runs (after ``stop``: only while a job it gave up on computes)."""
        return self._thread.is_alive()

    def stop(self, wait_s: float) -> list[str]:
        """Start no more jobs, fail the waiting ones, give the running one ``wait_s`` seconds to store its answer, then
        fail it if it has not; the ids of the jobs failed."""
        with self._state:
            self._stopped = True
            waiting, self._waiting = list(self._waiting), deque()
            self._state.notify_all()
        for job_id in waiting:
            self.jobs.fail(job_id, ServerStopped("the server stopped before the job started; submit it again"))
        self._thread.join(wait_s)
        self._sealed.seal()  # from here the thread stores nothing: what it stored before is whole
        interrupted = self.running if self._thread.is_alive() else None
        if interrupted is None or self.jobs.view(interrupted).status != "running":  # it stored its answer in time
            return waiting
        self.jobs.fail(interrupted, ServerStopped(f"the server stopped while the job was running (it did not finish "
                                                  f"within {wait_s:g} s of the stop); submit it again"))
        return [*waiting, interrupted]

    def _launch(self, job_id: str) -> None:
        with self._state:
            if self._stopped:
                raise ServingError(503, "stopping", "the server is stopping: no batch job is started; submit it "
                                   "again once the server is back")
            self._waiting.append(job_id)
            self._state.notify_all()

    def _work(self) -> None:
        for job_id in self._next_jobs():
            try:
                self._runner.run(job_id, self._service)
            except ServerStopped:
                _log.info("batch job %s: the server stopped before it stored its answer", job_id)
            except Exception:  # stored as the job's failure; the server keeps serving
                _log.exception("batch job %s failed", job_id)

    def _next_jobs(self) -> Iterator[str]:
        while True:
            with self._state:
                self._running = None
                self._state.wait_for(lambda: self._stopped or bool(self._waiting))
                if self._stopped:
                    return
                self._running = self._waiting.popleft()
                job_id = self._running
            yield job_id


class _SealableStore:
    """``store`` until sealed; then every put raises ServerStopped (a put under way when sealed completes first)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._sealed = False

    def seal(self) -> None:
        with self._lock:
            self._sealed = True

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._lock:
            if self._sealed:
                raise ServerStopped(f"{key}: not stored, the server stopped")
            self._store.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        return self._store.get(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self._store.keys(prefix)
