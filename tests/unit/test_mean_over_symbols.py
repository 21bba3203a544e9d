"""The several-symbol summary of ``metrics.json``: counts add up, every other number is the mean of the symbols
that have it, and a number no symbol has stays NaN without a warning."""

from __future__ import annotations

import math
import warnings

from signal_engine.pipeline import _mean_over_symbols


def test_counts_add_up_and_other_numbers_are_the_mean_of_the_symbols_that_have_them() -> None:
    tables = [{"moe": {"rows": 10.0, "trades": 3.0, "sharpe": 0.5, "ece": float("nan")}},
              {"moe": {"rows": 30.0, "trades": 1.0, "sharpe": 1.5, "ece": 0.25}},
              {"moe": {"rows": 2.0, "trades": 0.0, "sharpe": -0.5}, "only_here": {"sharpe": 9.0}}]
    merged = _mean_over_symbols(tables)
    assert set(merged) == {"moe"}
    assert merged["moe"]["rows"] == 42.0 and merged["moe"]["trades"] == 4.0
    assert merged["moe"]["sharpe"] == 0.5  # (0.5 + 1.5 - 0.5) / 3
    assert merged["moe"]["ece"] == 0.25  # the one symbol that has it


def test_a_number_no_symbol_has_stays_nan_without_a_warning() -> None:
    tables = [{"moe": {"qlike": float("nan")}}, {"moe": {"qlike": float("nan")}}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged = _mean_over_symbols(tables)
    assert math.isnan(merged["moe"]["qlike"])
