"""Errors the command line turns into one clear line and a non-zero exit."""

from __future__ import annotations

from typing import Any


class SignalEngineError(Exception):
    """Base of the errors a user can fix; the message is the whole explanation."""


class InputError(SignalEngineError):
    """A price file or config that cannot be used as given.

    The message names the file, the line (counting the header as line 1) or column, and what is expected.
    """

    def __init__(self, source: str, problem: str, *, line: int | None = None, column: str | None = None):
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        where = [source]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{': '.join(where)}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by the fields (the walk-forward's worker processes send errors back to the parent)."""
        return _input_error, (self.source, self.problem, self.line, self.column)


def _input_error(source: str, problem: str, line: int | None, column: str | None) -> InputError:
    return InputError(source, problem, line=line, column=column)


class ConfigError(SignalEngineError):
    """A configuration value that is unknown or out of range."""
