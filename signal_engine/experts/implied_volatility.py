"""Volatility forecasts from implied volatility (the market's own forecast): alone, and as a HAR term.

The market frame carries an implied-volatility column (default ``implied_vol``): an annualised
percentage, as the VIX is quoted, whose value on bar t is known at bar t's close (point in time: the
caller aligns it; the expert never shifts it). A bar whose value is missing (NaN: no chain or index
value was stored for it) gets a NaN forecast: the expert abstains there instead of guessing.

:class:`HarImpliedVolatility` can also read the option surface's shape (``structure_terms``): the term slope
(``implied_term_slope``, the at-the-money volatility at 90 days minus the horizon's, % points) and the skew
(``implied_skew``, the 90% put's minus the 110% call's volatility, % points), as the store derives them from
collected chains (:mod:`signal_engine.storage.implied_vol`). Off by default. Built but not measured: no offline
daily history of term structure or skew beside the S&P 500 is available here (the ``arch`` package ships only the
VIX level; no installed package carries VIX9D, VIX3M/VXV or the CBOE SKEW index), so whether they help is unknown.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from signal_engine.config import IV_COLUMN, IV_STRUCTURE_COLUMNS
from signal_engine.experts.base import Expert
from signal_engine.experts.har import HarVolatility

__all__ = ["IV_COLUMN", "IV_STRUCTURE_COLUMNS", "HarImpliedVolatility", "ImpliedVolatility", "implied_bar_variance",
           "structure_columns"]


def implied_bar_variance(X: pd.DataFrame, column: str, periods_per_year: float) -> np.ndarray:
    """``(IV / 100)^2 / periods_per_year`` per row of ``X[column]``: the annualised % as a one-bar variance.

    NaN where the value is missing. Raises ValueError when the column is absent or holds a value <= 0.
    """
    if column not in X.columns:
        raise ValueError(f"implied volatility: the frame has no column '{column}'; join the implied volatility "
                         "(annualised %, known at each bar's close, NaN where missing) to the bars under that "
                         "name or pass column=...")
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    iv = pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isfinite(iv) & (iv <= 0)
    if bad.any():
        first = X.index[int(np.flatnonzero(bad)[0])]
        raise ValueError(f"implied volatility: column '{column}' holds {int(bad.sum())} value(s) <= 0 (first at "
                         f"{first}); expected an annualised percentage such as 15.3, or NaN where missing")
    return (iv / 100.0) ** 2 / periods_per_year


def structure_columns(X: pd.DataFrame, terms: tuple[str, ...]) -> np.ndarray:
    """The ``terms`` columns of ``X`` (term slope, skew: % points, any sign) as a (rows, terms) array; NaN: missing.

    Raises ValueError for a term not in :data:`IV_STRUCTURE_COLUMNS` or a column the frame lacks.
    """
    unknown = [t for t in terms if t not in IV_STRUCTURE_COLUMNS]
    if unknown:
        raise ValueError(f"implied volatility: unknown structure term(s) {unknown}; expected some of "
                         f"{list(IV_STRUCTURE_COLUMNS)}")
    absent = [t for t in terms if t not in X.columns]
    if absent:
        raise ValueError(f"implied volatility: the frame has no column(s) {absent}; join the option term slope and "
                         "skew (% points, known at each bar's close, NaN where missing) to the bars under those names "
                         "or leave structure_terms empty")
    columns = [pd.to_numeric(X[t], errors="coerce").to_numpy(dtype=float) for t in terms]
    return np.column_stack(columns) if columns else np.zeros((len(X), 0))


class ImpliedVolatility(Expert):
    """Next-bar variance ``f_t = s * (IV_t / 100)^2 / periods_per_year`` with the scale s fitted by QLIKE.

    The QLIKE-optimal scale has a closed form, ``s = mean(y / v)`` over the training rows where both the
    target y (next bar's squared log return) and the implied bar variance v are known. s absorbs the
    variance risk premium (implied above realised) and the gap between the index's horizon (30 calendar
    days for the VIX) and one bar. Rows with a missing IV value forecast NaN (abstention).

    Parameters
    ----------
    column : the frame column holding the implied volatility in annualised %.
    periods_per_year : bars per year (252 for daily equity bars).

    References
    ----------
    Christensen and Prabhala (1998), "The relation between implied and realized volatility", J. Financial
    Economics 50(2); Patton (2011) for QLIKE.
    """

    name = "implied_volatility"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(self, column: str = IV_COLUMN, periods_per_year: float = 252.0) -> None:
        self.column = column
        self.periods_per_year = periods_per_year

    def context_bars(self) -> int | None:
        return 0

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        variance = implied_bar_variance(X, self.column, self.periods_per_year)
        target = np.asarray(y, dtype=float)
        ok = np.isfinite(variance) & np.isfinite(target)
        if not ok.any():
            raise ValueError(f"implied volatility: no training row has both '{self.column}' and a known target")
        self.scale_ = float(np.mean(target[ok] / variance[ok]))
        self.n_rows_ = int(ok.sum())
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return self.scale_ * implied_bar_variance(X, self.column, self.periods_per_year)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)[:, None]


class HarImpliedVolatility(HarVolatility):
    """:class:`~signal_engine.experts.har.HarVolatility` with ``log((IV_t / 100)^2 / periods_per_year)`` added.

    The HAR design (realised measures over 1, 5 and 22 bars, leverage terms) gets one more column, the
    log implied bar variance, and the coefficients are fitted by QLIKE as HAR's are; training rows with a
    missing IV value are left out of the fit, and forecast rows with one are NaN (abstention).

    With ``structure_terms``, each named column (``implied_term_slope``, ``implied_skew``; % points) enters the log
    forecast linearly after the log implied variance; a row missing any of them is left out of the fit and forecasts
    NaN, as a row missing the IV does. ``structure_coef_`` holds their fitted coefficients in log variance per % point.
    Built but unmeasured offline (see the module docstring).

    Parameters
    ----------
    column, periods_per_year : as :class:`ImpliedVolatility`.
    measures, lags, leverage, seasonal, ridge : as :class:`~signal_engine.experts.har.HarVolatility`.
    structure_terms : option-surface columns to add (some of :data:`IV_STRUCTURE_COLUMNS`); empty: off.

    References
    ----------
    Busch, Christensen and Nielsen (2011), "The role of implied volatility in forecasting future realized
    volatility and jumps in foreign exchange, stock, and bond markets", J. Econometrics 160(1); Corsi (2009).
    """

    name = "har_implied_volatility"

    def __init__(
        self,
        column: str = IV_COLUMN,
        periods_per_year: float = 252.0,
        measures: tuple[str, ...] = ("garman_klass", "parkinson", "squared_return"),
        lags: tuple[int, ...] = (1, 5, 22),
        leverage: bool = True,
        seasonal: bool = True,
        ridge: float = 1e-3,
        structure_terms: tuple[str, ...] = (),
    ) -> None:
        super().__init__(measures=measures, lags=lags, leverage=leverage, seasonal=seasonal, ridge=ridge)
        self.column = column
        self.periods_per_year = periods_per_year
        self.structure_terms = structure_terms

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        variance = implied_bar_variance(X, self.column, self.periods_per_year)
        known = np.isfinite(variance) & np.isfinite(structure_columns(X, self._terms)).all(axis=1)
        target = np.asarray(y, dtype=float)
        if not (known[:-1] & np.isfinite(target[:-1])).any():
            needed = "', '".join((self.column, *self._terms))
            raise ValueError(f"implied volatility: no training row has {'all of' if self._terms else 'both'} "
                             f"'{needed}' and a known target")
        super().fit(X, y)
        if self._terms:
            width = len(self._terms)
            self.structure_coef_ = self.model_.coef_[-width:] / self.model_.scale_[-width:]
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        design = self._design(X)
        width = 1 + len(self._terms)
        missing = ~np.isfinite(design[:, -width:]).all(axis=1)
        design[missing, -width:] = 0.0
        forecast = self.model_.predict(design)
        forecast[missing] = np.nan
        return forecast

    @property
    def _terms(self) -> tuple[str, ...]:
        return tuple(getattr(self, "structure_terms", ()))  # a model pickled before structure_terms has none

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        log_iv = np.log(implied_bar_variance(X, self.column, self.periods_per_year))
        return np.column_stack((super()._design(X), log_iv, structure_columns(X, self._terms)))
