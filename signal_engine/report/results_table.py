"""The results table of a backtest as markdown: what ``signal-engine demo`` writes to ``results.md``.

One table from a ``metrics.json`` document: per book (the symbols of one bar frequency) the orchestrated book,
the unmanaged MoE and buy & hold, and per symbol the unmanaged MoE, each with its net Sharpe, the Sharpe
difference to buy & hold with its paired-bootstrap interval, CAGR, max drawdown and turnover; with the quality
gate's verdict per symbol when the document carries one (``quality``, as a trained bundle's ``metrics.json`` does).
The README's results section is this output (``signal_engine.report.readme_results``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from signal_engine.errors import InputError

BOOK_ROWS: tuple[tuple[str, str, str | None], ...] = (
    # strategy key in metrics.json, row title, comparison against buy & hold (None: it is buy & hold)
    ("orchestrated", "orchestrated", "orchestrated_vs_baseline_buy_and_hold"),
    ("moe", "unmanaged MoE", "moe_vs_baseline_buy_and_hold"),
    ("baseline_buy_and_hold", "buy & hold", None),
)
SYMBOL_STRATEGY = "moe"
SYMBOL_COMPARISON = "moe_vs_baseline_buy_and_hold"


def results_markdown(metrics: Mapping[str, Any]) -> str:
    """The results table of ``metrics`` (a ``metrics.json`` document with its ``portfolio`` section) as markdown.

    Raises
    ------
    InputError
        when ``metrics`` has no ``portfolio`` section or a book lacks one of the strategies the table shows.
    """
    books = metrics.get("portfolio")
    if not isinstance(books, Mapping) or not books:
        raise InputError("portfolio", "metrics.json has no 'portfolio' section; expected the metrics.json of "
                         "`signal-engine backtest` or `signal-engine demo` (schema_version 1)")
    quality = metrics.get("quality") if isinstance(metrics.get("quality"), Mapping) else None
    level = _interval_level(books)
    columns = ["book / symbol", "strategy", "Sharpe", f"Sharpe - buy & hold [{level} interval]", "CAGR",
               "max drawdown", "turnover / yr"]
    if quality is not None:
        columns.append("quality gate")
    rows: list[list[str]] = []
    for name, book in books.items():
        span = f"{_day(book.get('start'))} to {_day(book.get('end'))}"
        label = f"{name} book: {', '.join(book.get('symbols', []))}, {span}"
        for key, title, comparison in BOOK_ROWS:
            strategy = _strategy(book.get("strategies", {}), key, f"portfolio.{name}.strategies")
            versus = book.get("comparisons", {}).get(comparison) if comparison else None
            rows.append([label, title, *_numbers(strategy, versus, baseline=comparison is None)]
                        + ([""] if quality is not None else []))
            label = ""
    per_symbol = metrics.get("per_symbol", {})
    symbols = metrics.get("data", {}).get("symbols", {})
    for symbol in _symbols_by_book(books, per_symbol):
        entry = per_symbol[symbol]
        strategy = _strategy(entry.get("strategies", {}), SYMBOL_STRATEGY, f"per_symbol.{symbol}.strategies")
        versus = entry.get("comparisons", {}).get(SYMBOL_COMPARISON)
        book = symbols.get(symbol, {}).get("book")
        label = f"{symbol} ({book})" if book else symbol
        rows.append([label, "unmanaged MoE", *_numbers(strategy, versus, baseline=False)]
                    + ([_verdict(quality, symbol)] if quality is not None else []))
    lines = [_row(columns), _row(["---"] * len(columns)), *(_row(r) for r in rows)]
    return "\n".join(lines) + "\n"


def _interval_level(books: Mapping[str, Any]) -> str:
    """The bootstrap intervals' coverage (``level`` of the comparisons) as text: ``90%``."""
    for book in books.values():
        for comparison in book.get("comparisons", {}).values():
            level = comparison.get("level")
            if isinstance(level, int | float) and math.isfinite(level):
                return f"{level:.0%}"
    return "90%"


def _strategy(table: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    if key not in table:
        raise InputError(where, f"has no '{key}' strategy (it has {', '.join(table) or 'none'}); expected the "
                         "metrics.json of a backtest that ran the orchestration layer")
    return dict(table[key])


def _symbols_by_book(books: Mapping[str, Any], per_symbol: Mapping[str, Any]) -> list[str]:
    """The symbols in book order, then any symbol no book names (a document without book membership)."""
    ordered = [s for book in books.values() for s in book.get("symbols", []) if s in per_symbol]
    return ordered + [s for s in per_symbol if s not in ordered]


def _numbers(strategy: Mapping[str, Any], versus: Mapping[str, Any] | None, *, baseline: bool) -> list[str]:
    return [_fixed(strategy.get("sharpe"), "{:.2f}"), "" if baseline else _difference(versus),
            _fixed(strategy.get("cagr"), "{:.1%}"), _fixed(strategy.get("max_drawdown"), "{:.1%}"),
            _fixed(strategy.get("turnover"), "{:.1f}")]


def _fixed(value: Any, template: str) -> str:
    """``template`` of a finite number; ``n/a`` for a missing one (metrics.json writes NaN as null)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    text = template.format(value)
    return text[1:] if text.startswith("-") and float(text.strip("%")) == 0 else text  # no "-0.00"


def _difference(comparison: Mapping[str, Any] | None) -> str:
    """``+0.05 [-0.21, +0.34]``: the Sharpe difference and its bootstrap interval; blank when not measured."""
    if not comparison:
        return ""
    difference, low, high = (comparison.get(k) for k in ("difference", "low", "high"))
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (difference, low, high)):
        return "n/a"
    return f"{difference:+.2f} [{low:+.2f}, {high:+.2f}]"


def _verdict(quality: Mapping[str, Any], symbol: str) -> str:
    """``served``, or ``withheld: <failed checks>``, from the quality gate's decision."""
    withheld = quality.get("withheld", {})
    if symbol in withheld:
        return "withheld: " + str(withheld[symbol]).removeprefix("failed ")
    if symbol in quality.get("served_symbols", []):
        return "served"
    return "not judged"


def _day(value: Any) -> str:
    """``2002-01-08 00:00:00`` -> ``2002-01-08``; an intraday book keeps its day only too."""
    return str(value).split(" ")[0].split("T")[0] if value else "?"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


__all__ = ["results_markdown"]
