"""The expert contract shared by every model the gate can route to."""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator


class Expert(BaseEstimator):
    """A scikit-learn estimator over a market frame (bars and features indexed by time).

    ``__init__`` only stores hyper-parameters; ``fit(X, y)`` learns attributes ending in ``_`` and
    returns self; ``transform(X)`` gives one row of ``outputs`` per row of ``X``, where the row for bar
    t depends only on rows up to t of ``X`` (experts are causal). ``target`` names the
    :class:`~signal_engine.labels.Labels` field the expert learns from.
    """

    name: ClassVar[str]
    target: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    uses_tensorflow: ClassVar[bool] = False

    def context_bars(self) -> int | None:
        """Bars of history before a row that its output depends on; None when it needs all of them.

        An expert whose row t depends on rows t - k .. t only returns k: ``transform`` on a slice that
        starts k bars before the first wanted row gives the same rows as on the whole history. Recursive
        models (GARCH, EWMA) return None.
        """
        return None

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        raise NotImplementedError

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def output_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """``transform`` as a frame with the expert's output names."""
        return pd.DataFrame(self.transform(X), index=X.index, columns=list(self.outputs))


def log_returns(X: pd.DataFrame) -> np.ndarray:
    """One-bar log returns of ``X['close']``; the first row is NaN."""
    return np.diff(np.log(X["close"].to_numpy(dtype=float)), prepend=np.nan)
