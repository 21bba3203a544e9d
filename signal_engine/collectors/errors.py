"""Errors of the collectors, each one line that names the host or the field at fault."""

from __future__ import annotations

from signal_engine.errors import SignalEngineError


class SourceUnavailable(SignalEngineError):
    """The source could not be reached or kept failing (network, timeout, HTTP 429/5xx after retries)."""

    def __init__(self, host: str, problem: str) -> None:
        self.host = host
        self.problem = problem
        super().__init__(f"cannot reach {host}: {problem}")


class SourceRejected(SignalEngineError):
    """The source answered with a client error (HTTP 4xx other than 429): retrying will not help."""

    def __init__(self, host: str, status: int, detail: str) -> None:
        self.host = host
        self.status = status
        super().__init__(f"{host} answered HTTP {status}: {detail}")


class SourceFormatError(SignalEngineError):
    """A payload that does not have the shape the parser expects; names the field that broke.

    The raw payload is already in the object store when this is raised, so nothing is lost: fix the
    parser and run ``signal-engine replay``.
    """

    def __init__(self, payload: str, field: str, problem: str) -> None:
        self.payload = payload
        self.field = field
        self.problem = problem
        super().__init__(f"{payload}: field '{field}': {problem}")
