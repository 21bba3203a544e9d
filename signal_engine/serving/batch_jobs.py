"""Batch jobs: ``POST /signals/batch/jobs`` answers a batch too large for one synchronous call.

The request is stored under ``<job_id>/request.json`` and the job started (``launch``: on AWS an asynchronous
invocation of the batch worker Lambda, locally a thread); the caller gets ``202`` with the job's id at once and
asks ``GET /signals/batch/jobs/<job_id>`` until it is ``done`` (the ``POST /signals/batch`` answer, computed by the
same ``SignalService.batch``) or ``failed`` (why). A job writes ``result.json`` or ``failure.json`` once; a job
with neither after ``timeout_s`` (the worker's own timeout: it was stopped before it could say) is ``failed``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from signal_engine.serving.schema import BatchJobView, BatchRequest, BatchResponse
from signal_engine.serving.service import ServingError, SignalService
from signal_engine.storage.times import utc_now

if TYPE_CHECKING:  # the port's module imports the price and book types (pandas): not on the combiner's cold start
    from signal_engine.ports import ObjectStore

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
JOBS_PREFIX = "signal-batches"  # under the object store (on AWS, the artifacts bucket)
REQUEST, RESULT, FAILURE = "request.json", "result.json", "failure.json"


class BatchJobs:
    """Batch jobs kept in ``store`` (one folder per job); ``launch(job_id)`` starts a stored job."""

    def __init__(self, store: ObjectStore, launch: Callable[[str], None], *, timeout_s: float,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self._launch = launch
        self.timeout_s = timeout_s
        self._clock = clock

    def submit(self, request: BatchRequest) -> BatchJobView:
        """Store ``request`` as a new job and start it; its view, ``running``."""
        job_id = uuid.uuid4().hex
        submitted = self._clock()
        document = {"submitted_at": submitted.isoformat(), "request": request.model_dump(mode="json")}
        self.store.put(f"{job_id}/{REQUEST}", json.dumps(document).encode(), "application/json")
        try:
            self._launch(job_id)
        except Exception as exc:  # stored as the job's failure, so the job never looks running
            self.fail(job_id, exc, "could not start the job: ")
            raise
        return BatchJobView(job_id=job_id, status="running", submitted_at=submitted, requests=len(request.requests))

    def run(self, job_id: str, service: SignalService) -> BatchJobView:
        """Answer the stored job's batch with ``service`` and store the answer (or why there is none)."""
        submitted, request = self._request(job_id)
        try:
            response = service.batch(request, job_id)
        except Exception as exc:  # the job's caller must learn why, not find it running until it times out
            self.fail(job_id, exc)
            raise
        self.store.put(f"{job_id}/{RESULT}", response.model_dump_json().encode(), "application/json")
        return BatchJobView(job_id=job_id, status="done", submitted_at=submitted, requests=len(request.requests),
                            result=response)

    def view(self, job_id: str) -> BatchJobView:
        """The job's status: ``done`` with its answer, ``failed`` with why, or ``running``; 404 for no such job."""
        submitted, request = self._request(job_id)
        view = BatchJobView(job_id=job_id, status="running", submitted_at=submitted, requests=len(request.requests))
        result = self._read(f"{job_id}/{RESULT}")
        if result is not None:
            return view.model_copy(update={"status": "done", "result": BatchResponse.model_validate_json(result)})
        failure = self._read(f"{job_id}/{FAILURE}")
        if failure is not None:
            reason = json.loads(failure)
            return view.model_copy(update={"status": "failed", "error": f"{reason['error']}: {reason['message']}"})
        if self._clock() - submitted > timedelta(seconds=self.timeout_s):
            return view.model_copy(update={"status": "failed", "error": f"the job did not finish within "
                                           f"{self.timeout_s:.0f} s (the worker's timeout); submit fewer requests "
                                           "per job"})
        return view

    def fail(self, job_id: str, exc: Exception, context: str = "") -> None:
        """Store ``exc`` as why the job failed (its view: ``failed``, ``"<exception type>: <context><message>"``)."""
        failure = {"error": type(exc).__name__, "message": context + (str(exc) or type(exc).__name__)}
        self.store.put(f"{job_id}/{FAILURE}", json.dumps(failure).encode(), "application/json")

    def _request(self, job_id: str) -> tuple[datetime, BatchRequest]:
        stored = self._read(f"{job_id}/{REQUEST}") if re.fullmatch(JOB_ID_PATTERN, job_id) else None
        if stored is None:
            raise ServingError(404, "job_not_found", f"no batch job {job_id}; POST /signals/batch/jobs starts one "
                               "and answers its job_id")
        document = json.loads(stored)
        return datetime.fromisoformat(document["submitted_at"]), BatchRequest.model_validate(document["request"])

    def _read(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except KeyError:
            return None
