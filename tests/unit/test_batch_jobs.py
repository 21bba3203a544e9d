"""Batch jobs: stored, started, answered once; a failed job says why, a job stopped before it could say is failed
after the worker's timeout, and an unknown or malformed job id is a 404 (never a path outside the jobs' folder).
`signal-engine serve`'s worker, stopped, starts no job, fails the waiting ones and the one still running after the
wait, stores nothing more, and lets the process exit."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.commands.serve import local_batch_jobs
from signal_engine.serving.batch_jobs import BatchJobs
from signal_engine.serving.local_jobs import LocalJobWorker
from signal_engine.serving.schema import BatchItemError, BatchRequest, BatchResponse
from signal_engine.serving.service import ServingError

REQUEST = BatchRequest.model_validate({"requests": [{"symbol": "GOOG"}, {"symbol": "XYZ", "timeframe": "1d"}]})
ANSWER = BatchResponse(signals=[], errors=[BatchItemError(index=1, symbol="XYZ", status=404, message="unknown")])
T0 = datetime(2026, 12, 4, 9, 30)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Service:
    """Answers ANSWER (or raises ``error``) and records what it was asked."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[tuple[BatchRequest, str | None]] = []

    def batch(self, request: BatchRequest, request_id: str | None = None) -> BatchResponse:
        self.asked.append((request, request_id))
        if self.error is not None:
            raise self.error
        return ANSWER


@pytest.fixture
def jobs(tmp_path: Path) -> tuple[BatchJobs, list[str], Clock]:
    launched: list[str] = []
    clock = Clock()
    return BatchJobs(LocalFolderStore(tmp_path / "jobs"), launched.append, timeout_s=900, clock=clock), launched, clock


def test_a_submitted_job_is_stored_started_and_running_until_its_answer_is_stored(
        jobs: tuple[BatchJobs, list[str], Clock], tmp_path: Path) -> None:
    kept, launched, clock = jobs
    submitted = kept.submit(REQUEST)
    assert (submitted.status, submitted.requests, submitted.submitted_at) == ("running", 2, T0.replace(tzinfo=UTC))
    assert launched == [submitted.job_id] and len(submitted.job_id) == 32
    stored = json.loads((tmp_path / "jobs" / submitted.job_id / "request.json").read_text())
    assert stored == {"submitted_at": "2026-12-04T09:30:00", "request": REQUEST.model_dump(mode="json")}
    clock.now = T0 + timedelta(seconds=899)
    assert kept.view(submitted.job_id).status == "running"
    service = Service()
    done = kept.run(submitted.job_id, service)  # type: ignore[arg-type]
    assert service.asked == [(REQUEST, submitted.job_id)]  # the job id is the batch's request id in the audit log
    clock.now = T0 + timedelta(days=2)  # a finished job stays done, whatever the time
    assert kept.view(submitted.job_id) == done
    assert (done.status, done.result, done.error) == ("done", ANSWER, None)


def test_a_job_that_fails_says_why_and_the_error_still_reaches_the_worker(
        jobs: tuple[BatchJobs, list[str], Clock]) -> None:
    kept, _, _ = jobs
    job_id = kept.submit(REQUEST).job_id
    with pytest.raises(ConnectionError, match="audit database unreachable"):
        kept.run(job_id, Service(ConnectionError("audit database unreachable")))  # type: ignore[arg-type]
    view = kept.view(job_id)
    assert (view.status, view.error, view.result) == ("failed", "ConnectionError: audit database unreachable", None)


def test_a_job_with_no_answer_after_the_workers_timeout_is_failed(jobs: tuple[BatchJobs, list[str], Clock]) -> None:
    kept, _, clock = jobs
    job_id = kept.submit(REQUEST).job_id
    clock.now = T0 + timedelta(seconds=900)
    assert kept.view(job_id).status == "running"  # exactly at the timeout the worker may still be writing
    clock.now = T0 + timedelta(seconds=901)
    view = kept.view(job_id)
    assert view.status == "failed"
    assert view.error == ("the job did not finish within 900 s (the worker's timeout); submit fewer requests per "
                          "job")


@pytest.mark.parametrize("job_id", ["0" * 32, "../../etc", "A" * 32, "0" * 31])
def test_an_unknown_or_malformed_job_id_is_404(jobs: tuple[BatchJobs, list[str], Clock], job_id: str) -> None:
    kept, _, _ = jobs
    kept.submit(REQUEST)
    with pytest.raises(ServingError) as caught:
        kept.view(job_id)
    assert (caught.value.status, caught.value.error) == (404, "job_not_found")
    assert caught.value.message.startswith(f"no batch job {job_id}; POST /signals/batch/jobs starts one")


def test_the_api_answers_202_then_the_job_and_501_without_jobs(jobs: tuple[BatchJobs, list[str], Clock]) -> None:
    from signal_engine.serving.api import build_app

    kept, launched, _ = jobs
    service = Service()
    app = build_app(lambda: service, jobs=lambda: kept)  # type: ignore[arg-type, return-value]
    status, body = _call(app, "POST", "/signals/batch/jobs", REQUEST.model_dump(mode="json"))
    assert status == 202 and body["status"] == "running" and launched == [body["job_id"]]
    kept.run(body["job_id"], service)  # type: ignore[arg-type]
    status, done = _call(app, "GET", f"/signals/batch/jobs/{body['job_id']}")
    assert status == 200 and done["status"] == "done" and done["result"] == ANSWER.model_dump(mode="json")
    status, missing = _call(app, "GET", "/signals/batch/jobs/not-a-job")
    assert status == 422 and missing["fields"][0]["field"] == "job_id"
    bare = build_app(lambda: service)  # type: ignore[arg-type, return-value]
    status, refused = _call(bare, "POST", "/signals/batch/jobs", REQUEST.model_dump(mode="json"))
    assert status == 501 and refused["error"] == "not_configured"


def _call(app: Any, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    event = {"httpMethod": method, "path": path, "resource": path, "headers": {"Content-Type": "application/json"},
             "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
             "pathParameters": None, "requestContext": {"requestId": "test", "stage": "test"},
             "body": None if body is None else json.dumps(body), "isBase64Encoded": False}
    answer = app.resolve(event, None)
    return answer["statusCode"], json.loads(answer["body"])


class BlockingService:
    """Answers ANSWER once ``release`` is set; ``started`` is set when a batch is asked."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.asked: list[str | None] = []

    def batch(self, request: BatchRequest, request_id: str | None = None) -> BatchResponse:
        self.asked.append(request_id)
        self.started.set()
        self.release.wait()
        return ANSWER


def test_a_stopped_worker_lets_the_running_job_finish_within_the_wait(tmp_path: Path) -> None:
    service = BlockingService()
    worker = local_batch_jobs(str(tmp_path), service)  # type: ignore[arg-type]
    job_id = worker.jobs.submit(REQUEST).job_id
    assert service.started.wait(10) and worker.running == job_id
    threading.Timer(0.2, service.release.set).start()
    assert worker.stop(wait_s=30) == []
    assert not worker.is_alive()
    done = worker.jobs.view(job_id)
    assert (done.status, done.result, done.error) == ("done", ANSWER, None)


def test_a_stopped_worker_fails_the_running_and_waiting_jobs_and_starts_none(tmp_path: Path) -> None:
    service = BlockingService()
    worker = local_batch_jobs(str(tmp_path), service)  # type: ignore[arg-type]
    running = worker.jobs.submit(REQUEST).job_id
    assert service.started.wait(10)
    waiting = worker.jobs.submit(REQUEST).job_id
    started = time.monotonic()
    assert worker.stop(wait_s=0.2) == [waiting, running]
    assert time.monotonic() - started < 5  # a bounded wait, not the job's 3,600 s
    with pytest.raises(ServingError) as refused:
        worker.jobs.submit(REQUEST)
    assert (refused.value.status, refused.value.error) == (503, "stopping")
    service.release.set()  # the job's computation ends; its thread stores nothing and ends
    assert _ends(worker, within_s=10) and service.asked == [running]
    views = {view.job_id: view for view in map(worker.jobs.view, _job_ids(tmp_path))}
    assert views.pop(running).error == ("ServerStopped: the server stopped while the job was running (it did not "
                                        "finish within 0.2 s of the stop); submit it again")
    assert views.pop(waiting).error == "ServerStopped: the server stopped before the job started; submit it again"
    [never_started] = views.values()
    assert never_started.status == "failed"
    assert never_started.error == ("ServingError: could not start the job: the server is stopping: no batch job is "
                                   "started; submit it again once the server is back")
    assert sorted(p.name for p in (tmp_path / "signal-batches" / running).iterdir()) == [
        "failure.json", "request.json"]  # no result, no temporary file


def _ends(worker: LocalJobWorker, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not worker.is_alive()


def _job_ids(objects: Path) -> list[str]:
    return sorted(p.name for p in (objects / "signal-batches").iterdir())


STOP_WHILE_A_JOB_RUNS = """
import sys, threading
from signal_engine.commands.serve import local_batch_jobs
from signal_engine.serving.schema import BatchRequest

class Forever:
    started = threading.Event()
    def batch(self, request, request_id=None):
        self.started.set()
        threading.Event().wait()

service = Forever()
worker = local_batch_jobs(sys.argv[1], service)
job_id = worker.jobs.submit(BatchRequest.model_validate({"requests": [{"symbol": "GOOG"}]})).job_id
assert service.started.wait(10)
print(worker.stop(wait_s=0.1) == [job_id], worker.jobs.view(job_id).status)
"""


def test_the_process_exits_while_a_stopped_workers_job_still_computes(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-c", STOP_WHILE_A_JOB_RUNS, str(tmp_path)], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["True", "failed"]
