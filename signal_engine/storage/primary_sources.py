"""Which source's bars the models read per symbol, as configured (``SIGNAL_ENGINE_PRIMARY_SOURCES``)."""

from __future__ import annotations

from signal_engine.errors import ConfigError

PRIMARY_SOURCES_VARIABLE = "SIGNAL_ENGINE_PRIMARY_SOURCES"


def primary_source_map(text: str) -> dict[str, str]:
    """``AAPL=nasdaq,MSFT=yahoo`` as a mapping; a malformed entry is a ConfigError naming it."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        return {}
    from signal_engine.collectors.registry import SOURCES  # only where the variable is set (combiner cold start)

    mapping: dict[str, str] = {}
    for entry in entries:
        symbol, equals, source = entry.partition("=")
        if not equals or not symbol.strip() or source.strip() not in SOURCES:
            raise ConfigError(f"{PRIMARY_SOURCES_VARIABLE}: {entry!r} is not SYMBOL=SOURCE with SOURCE one of "
                              f"{', '.join(SOURCES)}")
        mapping[symbol.strip().upper()] = source.strip()
    return mapping
