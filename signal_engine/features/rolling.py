"""Vectorised, point-in-time rolling primitives over panels shaped (T, N).

Every function works along axis 0 (time) of a 2-D float64 array whose N columns are
independent series, so one call covers all symbols and all bars without a Python loop.

Conventions shared by all primitives:

* Point in time: the value at row ``t`` depends only on rows ``<= t``. Cumulative sums
  (``np.cumsum``) and recursive filters (``scipy.signal.lfilter``) are evaluated strictly
  in time order, so computing on ``x[:t + 1]`` gives bitwise the same rows as on ``x``.
* Missing values: a column may start with NaN (the series does not exist yet) and may end
  with NaN (it stopped); in between it must be finite. Leading NaN are treated by
  *anchoring* (see :func:`anchored`); a trailing NaN propagates to every later row, which
  is then masked by the caller anyway.
* Incomplete windows: windowed primitives return NaN in rows ``t < k - 1``; windows that
  reach back into a column's leading NaN are not detected here, the caller masks them
  with the column's warm-up (see ``signal_engine.features.technical``).

Rolling sums use cumulative sums and a difference ``S[t] - S[t - k]``. To limit the
cancellation this suffers, the data are first *anchored* (de-meaned against each column's
first valid value, which is known at every later bar, so the shift is point-in-time) and
the cumulative sums restart every ``BLOCK_ROWS`` rows (see :func:`rolling_sum`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

BLOCK_ROWS = 256
"""Rows per block of the blockwise cumulative sums behind every rolling sum."""


def first_valid_row(x: FloatArray) -> IntArray:
    """Index of the first non-NaN row of each column of ``x`` (``T`` where there is none).

    Parameters
    ----------
    x
        Panel shaped (T, N).

    Returns
    -------
    numpy.ndarray
        Integer array shaped (N,).
    """
    if x.shape[0] == 0:
        return np.zeros(x.shape[1], dtype=np.int64)
    valid = ~np.isnan(x)
    first = np.argmax(valid, axis=0).astype(np.int64)
    return np.where(valid.any(axis=0), first, x.shape[0]).astype(np.int64)


def _starts_complete(x: FloatArray) -> bool:
    """True when no column of ``x`` starts with NaN (then nothing needs zero-filling)."""
    return x.shape[0] == 0 or not np.isnan(x[0]).any()


def first_valid_value(x: FloatArray) -> FloatArray:
    """First non-NaN value of each column of ``x`` (0.0 for an all-NaN column), shaped (1, N)."""
    if x.shape[0] == 0:
        return np.zeros((1, x.shape[1]))
    if _starts_complete(x):
        return x[:1].copy()
    first = first_valid_row(x)
    safe_row = np.minimum(first, x.shape[0] - 1)
    values = np.take_along_axis(x, safe_row[np.newaxis, :], axis=0)
    return np.where(first[np.newaxis, :] < x.shape[0], values, 0.0)


def zero_leading(x: FloatArray) -> FloatArray:
    """``x`` with the NaN before each column's first valid row replaced by 0.0.

    Returns ``x`` itself (not a copy) when no column starts with NaN.
    """
    if _starts_complete(x):
        return x
    before_start = np.arange(x.shape[0])[:, np.newaxis] < first_valid_row(x)[np.newaxis, :]
    return np.where(before_start, 0.0, x)


def anchored(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Subtract each column's first valid value and zero the leading NaN.

    Parameters
    ----------
    x
        Panel shaped (T, N).

    Returns
    -------
    tuple of numpy.ndarray
        ``(u, x0)`` with ``x = u + x0`` from each column's first valid row on; ``u`` is a new
        array, 0.0 before that row (and exactly 0.0 at it); ``x0`` is shaped (1, N).
    """
    x0 = first_valid_value(x)
    return zero_leading(x - x0), x0


def lag(x: FloatArray, k: int) -> FloatArray:
    """``x`` shifted down by ``k`` rows (row ``t`` holds ``x[t - k]``), NaN in the first ``k`` rows."""
    out = np.empty_like(x)
    out[:k] = np.nan
    out[k:] = x[: max(x.shape[0] - k, 0)]
    return out


def difference(x: FloatArray, k: int) -> FloatArray:
    """``x[t] - x[t - k]``, NaN in the first ``k`` rows."""
    out = np.empty_like(x)
    out[:k] = np.nan
    np.subtract(x[k:], x[: max(x.shape[0] - k, 0)], out=out[k:])
    return out


def blockwise_cumsum(x: FloatArray, block_rows: int) -> tuple[FloatArray, FloatArray]:
    """Cumulative sums restarted every ``block_rows`` rows, and the total of each complete block.

    Blocks start at fixed rows (0, ``block_rows``, ``2 * block_rows``, ...), and each sum
    is accumulated strictly in time order, so a prefix of ``x`` gets bitwise the same sums.

    Returns
    -------
    tuple of numpy.ndarray
        ``(within, block_totals)``: ``within`` is shaped like ``x`` and ``within[t]`` sums
        ``x`` from the start of ``t``'s block to ``t``; ``block_totals[b]`` (shaped
        (T // block_rows, N)) is the sum over the whole block ``b``.
    """
    rows, columns = x.shape
    n_complete = rows // block_rows
    complete_rows = n_complete * block_rows
    within = np.empty((rows, columns))
    blocked_shape = (n_complete, block_rows, columns)
    np.cumsum(x[:complete_rows].reshape(blocked_shape), axis=1, out=within[:complete_rows].reshape(blocked_shape))
    np.cumsum(x[complete_rows:], axis=0, out=within[complete_rows:])
    return within, within[block_rows - 1 : complete_rows : block_rows]


def rolling_sum(x: FloatArray, k: int) -> FloatArray:
    """Sum of the last ``k`` rows as a difference of (blockwise) cumulative sums.

    A plain cumulative sum ``S[t] - S[t - k]`` loses about ``eps * |S[t]|`` of absolute
    accuracy, which grows with the length of the series. Here the cumulative sum restarts
    every ``max(k, BLOCK_ROWS)`` rows (see :func:`blockwise_cumsum`); a window that reaches
    into the previous block adds that block's total, so the error stays bounded by the
    block's magnitude however long the series. A window of exact zeros sums to exactly 0.0.

    Parameters
    ----------
    x
        Panel shaped (T, N), finite except for trailing NaN (zero-fill leading NaN first,
        e.g. with :func:`anchored`).
    k
        Window length, at least 1.

    Returns
    -------
    numpy.ndarray
        Shaped like ``x``; NaN in rows ``t < k - 1``.
    """
    block_rows = max(k, BLOCK_ROWS)
    within, block_totals = blockwise_cumsum(x, block_rows)
    out = difference(within, k)
    out[:k] = within[:k]
    later_rows = np.arange(block_rows, x.shape[0])
    straddling = later_rows[later_rows % block_rows < k]
    previous_block_rest = block_totals[straddling // block_rows - 1] - within[straddling - k]
    out[straddling] = within[straddling] + previous_block_rest
    out[: k - 1] = np.nan
    return out


def rolling_mean(x: FloatArray, k: int) -> FloatArray:
    """Mean of the last ``k`` rows, computed on the anchored series for accuracy."""
    u, x0 = anchored(x)
    return x0 + rolling_sum(u, k) / k


def _rolling_extreme(x: FloatArray, k: int, pick: np.ufunc) -> FloatArray:
    """Rolling max/min by doubling windows (a sparse table): ``O(T N log k)``, exact."""
    span = 1
    out = x.copy()
    while 2 * span <= k:
        out = pick(out, lag(out, span))
        span *= 2
    if span < k:
        out = pick(out, lag(out, k - span))
    out[: k - 1] = np.nan
    return out


def rolling_max(x: FloatArray, k: int) -> FloatArray:
    """Maximum of the last ``k`` rows (exact); NaN in rows ``t < k - 1`` and where the window has NaN."""
    return _rolling_extreme(x, k, np.maximum)


def rolling_min(x: FloatArray, k: int) -> FloatArray:
    """Minimum of the last ``k`` rows (exact); NaN in rows ``t < k - 1`` and where the window has NaN."""
    return _rolling_extreme(x, k, np.minimum)


def is_flat_window(x: FloatArray, k: int) -> BoolArray:
    """True where the last ``k`` rows of a column are all equal, tested exactly.

    Counts the rows whose value differs from the previous row over the last ``k - 1``
    rows; the counts are small integers, so their rolling sums are exact. NaN count as a
    change; rows ``t < k - 1`` are False.
    """
    if k == 1:
        return np.ones(x.shape, dtype=np.bool_)
    changed = np.ones_like(x)
    np.not_equal(x[1:], x[:-1], out=changed[1:], casting="unsafe")
    return rolling_sum(changed, k - 1) == 0.0


def rolling_var(x: FloatArray, k: int, ddof: int = 0) -> FloatArray:
    """Variance of the last ``k`` rows from rolling sums of the anchored series.

    ``var = (sum(u**2) - sum(u)**2 / k) / (k - ddof)``. Rounding in the difference of
    cumulative sums can leave a tiny negative value, which is clipped to 0; a window whose
    values are all equal gets exactly 0.

    Parameters
    ----------
    x
        Panel shaped (T, N).
    k
        Window length (``k > ddof``).
    ddof
        Delta degrees of freedom: 0 for the population variance, 1 for the sample variance.

    Returns
    -------
    numpy.ndarray
        Shaped like ``x``; NaN in rows ``t < k - 1``.
    """
    u, _ = anchored(x)
    sum_u = rolling_sum(u, k)
    sum_u2 = rolling_sum(u * u, k)
    var = np.maximum(sum_u2 - sum_u * sum_u / k, 0.0) / (k - ddof)
    return np.where(is_flat_window(x, k), 0.0, var)


def rolling_std(x: FloatArray, k: int, ddof: int = 0) -> FloatArray:
    """Standard deviation of the last ``k`` rows; see :func:`rolling_var`."""
    return np.sqrt(rolling_var(x, k, ddof))


def rolling_zscore(x: FloatArray, k: int) -> FloatArray:
    """``(x - mean) / std`` over the last ``k`` rows (population std); 0.0 where the std is 0."""
    deviation = x - rolling_mean(x, k)
    std = rolling_std(x, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = deviation / std
    return np.where(std == 0.0, 0.0, z)


def rolling_time_cov(x: FloatArray, k: int) -> FloatArray:
    """Population covariance of the last ``k`` rows with the time index ``0 .. k-1``.

    ``cov = sum((tau - mean(tau)) * u) / k`` over the window, evaluated as a ``k``-tap FIR
    filter (``scipy.signal.lfilter`` along axis 0) on the anchored series ``u``. Unlike a
    cumulative sum of ``tau * u``, whose magnitude grows like ``T**2`` and costs about
    ``T**2 * eps`` of absolute accuracy, the filter only ever adds the ``k`` terms of the window.
    """
    u, _ = anchored(x)
    if x.shape[0] == 0:
        return u
    centred_time_newest_first = (k - 1) / 2.0 - np.arange(k, dtype=np.float64)
    weighted: FloatArray = _fir(centred_time_newest_first, u)
    weighted[: k - 1] = np.nan
    return weighted / k


def ema(x: FloatArray, alpha: float) -> FloatArray:
    """Recursive exponential moving average, seeded with each column's first valid value.

    ``y[f] = x[f]`` at the first valid row ``f`` and ``y[t] = alpha * x[t] + (1 - alpha) * y[t - 1]``
    afterwards, the same as ``pandas.Series.ewm(alpha=alpha, adjust=False).mean()``.
    Evaluated with ``scipy.signal.lfilter`` along axis 0 on the anchored series (which
    starts at exactly 0, so the filter needs no initial state).

    Parameters
    ----------
    x
        Panel shaped (T, N), finite between each column's leading and trailing NaN.
    alpha
        Smoothing factor in (0, 1]: ``2 / (span + 1)`` for a span, ``1 / n`` for Wilder's smoothing.

    Returns
    -------
    numpy.ndarray
        Shaped like ``x``; the rows before a column's first valid value hold ``x0`` (the
        caller masks them).
    """
    from scipy.signal import lfilter

    u, x0 = anchored(x)
    if x.shape[0] == 0:
        return u
    smoothed: FloatArray = lfilter([alpha], [1.0, alpha - 1.0], u, axis=0)
    return x0 + smoothed


def _fir(taps: FloatArray, u: FloatArray) -> FloatArray:
    """``scipy.signal.lfilter(taps, [1.0], u, axis=0)``; a NumPy sum of shifted columns where SciPy is absent.

    SciPy is imported lazily so that the serving path (the combiner Lambda, which ships without SciPy) can
    compute the fingerprint with NumPy only; the NumPy sum agrees with the filter to rounding (~1e-14).
    """
    try:
        from scipy.signal import lfilter
    except ImportError:
        out = np.zeros_like(u)
        for j, tap in enumerate(taps):
            if j < u.shape[0]:
                out[j:] += tap * u[: u.shape[0] - j]
        return out
    filtered: FloatArray = lfilter(taps, [1.0], u, axis=0)
    return filtered
