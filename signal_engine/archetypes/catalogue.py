"""The six market archetypes of seed 001 and what each expects of its data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archetype:
    """A market archetype: its typical time-frame, data fingerprint and inputs.

    ``inputs`` is ``"bars"`` (OHLCV) or ``"iv_surface"`` (implied-volatility grids); ``waits_for`` names
    data the project cannot load offline yet (None when the shipped series suffice).
    """

    name: str
    market: str
    timeframe: str
    fingerprint: str
    inputs: str
    waits_for: str | None


ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        Archetype("crypto_hft", "Crypto, high-frequency trading", "1 s - 1 min bars",
                  "vol30 >= 6% (daily) and spread <= 0.05% and volume z >= 3", "bars",
                  "1 s - 1 min crypto bars with tick bid-ask spreads (the Abdi-Ranaldo estimate from OHLC stands in)"),
        Archetype("equity_intraday", "Large-cap equities intraday", "1 min - 15 min bars",
                  "1% <= vol30 < 3% (daily) and trend R2 >= 0.6", "bars",
                  "1 - 15 min equity bars (the shipped data are daily, and hourly FX)"),
        Archetype("equity_daily", "Regular daily stocks", "daily bars",
                  "0.5% <= vol30 < 2% and ATR < 5%", "bars", None),
        Archetype("futures_trend", "Commodity/FX futures, long trends", "30 min - 4 h bars",
                  "trend R2 >= 0.8 and Hurst > 0.55", "bars", None),
        Archetype("options_skew", "Options implied-volatility surfaces", "daily snapshot grids",
                  "skew dIV >= 10% and kurtosis > 4", "iv_surface",
                  "daily implied-volatility surfaces (strike x maturity grids) of listed options"),
        Archetype("low_vol_etf", "Low-volatility ETFs", "daily/weekly bars",
                  "vol30 < 0.5% and turnover z < -1", "bars",
                  "daily bars of a low-volatility ETF (bond or utilities funds) with volume"),
    )
}
