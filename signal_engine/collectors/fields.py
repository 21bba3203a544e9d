"""Strict reading of JSON payloads: every access names its path, so a format change names the field."""

from __future__ import annotations

import json
import math
from typing import Any

from signal_engine.collectors.errors import SourceFormatError

_MISSING = object()


class Field:
    """A value inside a payload, with its path (``chart.result[0].timestamp[3]``) for error messages.

    Parameters
    ----------
    value
        The decoded JSON value.
    path
        Where it sits in the payload.
    payload
        What the payload is (``yahoo bars AAPL``), for the error message.
    """

    def __init__(self, value: Any, path: str, payload: str) -> None:
        self.value = value
        self.path = path
        self.payload = payload

    @classmethod
    def parse(cls, body: bytes, payload: str) -> Field:
        """Decode a JSON body; an empty or non-JSON body is a SourceFormatError on the root field."""
        if not body.strip():
            raise SourceFormatError(payload, "$", "the response body is empty; expected a JSON document")
        try:
            return cls(json.loads(body), "$", payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceFormatError(payload, "$", f"the response is not JSON ({exc})") from None

    def fail(self, problem: str) -> SourceFormatError:
        return SourceFormatError(self.payload, self.path, problem)

    def __getitem__(self, name: str) -> Field:
        mapping = self.object()
        if name not in mapping:
            raise SourceFormatError(self.payload, self._child(name), "missing; the source changed its format?")
        return Field(mapping[name], self._child(name), self.payload)

    def get(self, name: str) -> Field | None:
        """The member ``name``, or None when it is absent or null."""
        value = self.object().get(name)
        return None if value is None else Field(value, self._child(name), self.payload)

    def object(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected an object, got {_kind(self.value)}")
        return self.value

    def items(self) -> list[Field]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_kind(self.value)}")
        return [Field(v, f"{self.path}[{i}]", self.payload) for i, v in enumerate(self.value)]

    def is_null(self) -> bool:
        return self.value is None

    def text(self) -> str:
        if not isinstance(self.value, str):
            raise self.fail(f"expected text, got {_kind(self.value)}")
        return self.value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail(f"expected a number, got {_kind(self.value)}")
        if not math.isfinite(self.value):
            raise self.fail(f"expected a finite number, got {self.value}")
        return float(self.value)

    def optional_number(self) -> float | None:
        return None if self.value is None else self.number()

    def _child(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path != "$" else name


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    return type(value).__name__ if not isinstance(value, dict | list) else ("an object" if isinstance(value, dict)
                                                                             else "a list")
