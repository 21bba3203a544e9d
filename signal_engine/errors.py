"""Errors the command line turns into one clear line and a non-zero exit."""

from __future__ import annotations


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


class ConfigError(SignalEngineError):
    """A configuration value that is unknown or out of range."""
