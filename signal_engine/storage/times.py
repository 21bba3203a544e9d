"""Time helpers: every stored time is naive UTC with whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_utc(value: datetime) -> datetime:
    """``value`` in UTC without tzinfo or fractional seconds (naive values are taken as UTC already)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0)


def utc_now() -> datetime:
    """The current time as a naive UTC datetime with whole seconds."""
    return naive_utc(datetime.now(UTC))


def from_epoch(seconds: float) -> datetime:
    """A Unix timestamp as a naive UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
