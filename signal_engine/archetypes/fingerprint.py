"""The data fingerprint of a whole series and the rule gate (v0) that routes it to an archetype."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from signal_engine.features import feature_frame

IV_PREFIX = "iv_"
DAILY_MINUTES = 1440.0


@dataclass(frozen=True)
class SeriesFingerprint:
    """Seed 001's fingerprint summarised over a series (medians over the bars after warm-up).

    ``vol30`` and ``atr`` are scaled to one day (x sqrt(bars per day)); ``volume_z`` is the 95th
    percentile (how spiky volume gets); ``iv_skew`` is the median of (IV of the lowest strike - ATM IV) /
    ATM IV when the frame carries ``iv_*`` columns, else None; ``kurtosis`` is that of bar returns
    (3 for a normal law).
    """

    bar_minutes: float
    bars_per_day: float
    vol30: float
    trend_r2: float
    hurst: float
    spread: float
    volume_z: float
    atr: float
    kurtosis: float
    iv_skew: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def series_fingerprint(bars: pd.DataFrame, last: int | None = None) -> SeriesFingerprint:
    """Fingerprint of ``bars`` (open, high, low, close[, volume][, iv_*]) over its last ``last`` bars.

    Uses only the rows given: pass ``bars.iloc[: t + 1]`` for the fingerprint known at bar t.
    """
    features = feature_frame(bars.loc[:, [c for c in ("open", "high", "low", "close", "volume") if c in bars]])
    if last is not None:
        features, bars = features.iloc[-last:], bars.iloc[-last:]
    index = pd.DatetimeIndex(bars.index)
    spacing = (np.diff(index.to_numpy()) / np.timedelta64(1, "m")) if len(index) > 1 else np.array([DAILY_MINUTES])
    bar_minutes = float(np.median(spacing))
    bars_per_day = float(pd.Series(1, index=index).groupby(index.normalize()).size().median())
    day = np.sqrt(max(bars_per_day, 1.0))
    returns = np.diff(np.log(bars["close"].to_numpy(dtype=float)))
    centred = returns - returns.mean()
    kurtosis = float(np.mean(centred**4) / np.mean(centred**2) ** 2) if len(returns) > 3 else 3.0

    def median(name: str) -> float:
        values = features[name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else float("nan")

    volume_z = features["volume_z"].to_numpy(dtype=float)
    volume_z = volume_z[np.isfinite(volume_z)]
    iv_columns = [c for c in bars.columns if str(c).startswith(IV_PREFIX)]
    iv_skew = None
    if len(iv_columns) >= 3:
        grid = bars.loc[:, iv_columns].to_numpy(dtype=float)
        atm = grid[:, len(iv_columns) // 2]
        iv_skew = float(np.nanmedian((grid[:, 0] - atm) / atm))
    return SeriesFingerprint(
        bar_minutes=bar_minutes,
        bars_per_day=bars_per_day,
        vol30=median("vol30") * day,
        trend_r2=median("trend_r2"),
        hurst=median("hurst"),
        spread=median("spread"),
        volume_z=float(np.percentile(volume_z, 95)) if len(volume_z) else 0.0,
        atr=median("atr_14") * day,
        kurtosis=kurtosis,
        iv_skew=iv_skew,
    )


def archetype_scores(fp: SeriesFingerprint) -> dict[str, float]:
    """Share of each archetype's fingerprint conditions (seed 001, section 2) that ``fp`` meets."""
    intraday, daily = fp.bar_minutes < DAILY_MINUTES, fp.bar_minutes >= DAILY_MINUTES
    conditions: dict[str, list[bool]] = {
        "crypto_hft": [fp.vol30 >= 0.06, fp.spread <= 0.0005, fp.volume_z >= 3, fp.bar_minutes <= 1],
        "equity_intraday": [0.01 <= fp.vol30 < 0.03, fp.trend_r2 >= 0.6, 1 <= fp.bar_minutes <= 15],
        "equity_daily": [0.005 <= fp.vol30 < 0.02, fp.atr < 0.05, daily],
        "futures_trend": [fp.trend_r2 >= 0.8, fp.hurst > 0.55, intraday and 30 <= fp.bar_minutes <= 240],
        "options_skew": [fp.iv_skew is not None and fp.iv_skew >= 0.10, fp.kurtosis > 4, fp.iv_skew is not None],
        "low_vol_etf": [fp.vol30 < 0.005, fp.volume_z < 1.0, daily],
    }
    return {name: float(np.mean(met)) for name, met in conditions.items()}


def route(fp: SeriesFingerprint) -> str:
    """The rule gate v0 of seed 001 (section 4.2), with each archetype's time-frame as a condition.

    In order: an implied-volatility grid with skew >= 10% and kurtosis > 4 goes to ``options_skew``;
    daily vol30 > 6% to ``crypto_hft``; daily or weekly bars with vol30 < 0.5% to ``low_vol_etf``;
    bars of 15 minutes or less to ``equity_intraday``; 30-minute to 4-hour bars, or any series with
    trend R2 >= 0.8 and Hurst > 0.55, to ``futures_trend``; everything else to ``equity_daily``.
    """
    if fp.iv_skew is not None and fp.iv_skew >= 0.10 and fp.kurtosis > 4:
        return "options_skew"
    if fp.vol30 > 0.06:
        return "crypto_hft"
    if fp.bar_minutes >= DAILY_MINUTES and fp.vol30 < 0.005:
        return "low_vol_etf"
    if fp.bar_minutes <= 15:
        return "equity_intraday"
    if fp.bar_minutes < DAILY_MINUTES or (fp.trend_r2 >= 0.8 and fp.hurst > 0.55):
        return "futures_trend"
    return "equity_daily"
