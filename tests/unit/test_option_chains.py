"""At-the-money implied volatility from Yahoo option chains, interpolated in variance to a horizon."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, timedelta

import pytest

from signal_engine.collectors import yahoo
from signal_engine.storage.option_chains import (
    atm_volatility,
    chain_implied_volatility,
    chain_volatility,
    term_structure,
    volatility_at_horizon,
)
from signal_engine.storage.records import OptionQuote
from tests.fixtures.payloads import raw
from tests.fixtures.recorded import yahoo_raw

# yahoo/options_AAPL.json: spot 181.18 at 2024-01-05 21:00:01 UTC; expiry 2024-01-12; IVs: call 175 0.2617,
# put 180 0.1936, call 185 0.1847.
AS_OF = datetime(2024, 1, 5, 21, 0, 1)
SPOT = 181.18
ATM = 0.1936 + (181.18 - 180.0) / (185.0 - 180.0) * (0.1847 - 0.1936)  # 0.1914996


def _aapl_2024() -> list[OptionQuote]:
    return yahoo.parse(raw("yahoo", "options", "yahoo/options_AAPL.json")).options


def test_atm_volatility_is_linear_in_strike_between_the_strikes_around_the_spot() -> None:
    quotes = _aapl_2024()
    assert pytest.approx(0.19149960) == ATM
    assert atm_volatility(quotes, SPOT) == pytest.approx(ATM, abs=1e-12)
    assert atm_volatility(quotes, 180.0) == pytest.approx(0.1936)  # on a strike
    assert atm_volatility(quotes, 190.0) is None  # no strike above: no extrapolation


def test_the_chain_gives_its_atm_volatility_for_a_horizon_before_its_expiry_and_abstains_beyond() -> None:
    quotes = _aapl_2024()
    # Friday close to Monday close: 3 calendar days, inside the 7 days to expiry (linear total variance from 0).
    assert chain_implied_volatility(quotes, SPOT, AS_OF, 3.0) == pytest.approx(100 * ATM, abs=1e-10)
    [(years, iv)] = term_structure(quotes, SPOT, AS_OF)
    assert years * 365.0 == pytest.approx(7.0 - 1.0 / 86400.0) and iv == pytest.approx(ATM)
    assert chain_implied_volatility(quotes, SPOT, AS_OF, 10.0) is None  # past the only expiry


def test_only_quotes_known_at_the_decision_time_and_recent_enough_count() -> None:
    quotes = _aapl_2024()
    assert chain_implied_volatility(quotes, SPOT, AS_OF - timedelta(seconds=1), 3.0) is None  # chain not yet seen
    assert chain_implied_volatility(quotes, SPOT, AS_OF + timedelta(days=5), 1.0) is None  # older than 4 days
    # A later snapshot of the same expiry replaces the earlier one, and one after the decision time is ignored.
    later = [dataclasses.replace(q, as_of=AS_OF + timedelta(days=1), implied_volatility=0.30) for q in quotes]
    future = [dataclasses.replace(q, as_of=AS_OF + timedelta(days=2), implied_volatility=0.90) for q in quotes]
    at = AS_OF + timedelta(days=1, hours=1)
    assert chain_implied_volatility([*quotes, *later, *future], SPOT, at, 3.0) == pytest.approx(30.0)


def test_total_variance_is_linear_in_time_between_expiries() -> None:
    points = [(7 / 365, 0.20), (35 / 365, 0.30)]
    # w(21d) = (0.04 * 7 + 0.09 * 35) / 2 / 365 = 1.715 / 365  ->  iv = sqrt(1.715 / 21)
    assert volatility_at_horizon(points, 21 / 365) == pytest.approx(math.sqrt(1.715 / 21), rel=1e-12)
    assert volatility_at_horizon(points, 35 / 365) == pytest.approx(0.30)
    assert volatility_at_horizon(points, 3 / 365) == pytest.approx(0.20)
    assert volatility_at_horizon(points, 36 / 365) is None
    assert volatility_at_horizon([], 1 / 365) is None
    with pytest.raises(ValueError, match="horizon must be positive"):
        volatility_at_horizon(points, 0.0)


def test_the_recorded_weekend_chain_has_only_placeholder_volatilities_near_the_money_so_it_abstains() -> None:
    # node-yahoo-finance2's recording of Monday 24 Feb 2025 09:24 UTC: spot 245.55 as of Friday's close; no
    # contract near the money has a bid or an ask, so the parser stores their placeholder IVs as missing.
    parsed = yahoo.parse(yahoo_raw("options-AAPL.json"))
    as_of = parsed.options[0].as_of
    assert as_of == datetime(2025, 2, 21, 21, 0, 2) and parsed.skipped
    assert atm_volatility(parsed.options, 245.55) is None
    assert chain_implied_volatility(parsed.options, 245.55, as_of, 3.0) is None


# A made-up chain at 21:00 UTC (the expiries' close, so whole calendar days): expiries in 20, 40 and 100 days,
# strikes 90 / 100 / 110 around a spot of 100. Per expiry: (ATM, 90% put, 110% call); the in-the-money 90 call and
# 110 put carry volatilities (0.90, 0.80) that the skew must not read (it reads out-of-the-money puts and calls).
SMILE_AT = datetime(2024, 1, 5, 21, 0)
SMILE = {20: (0.20, 0.26, 0.18), 40: (0.25, 0.31, 0.22), 100: (0.30, 0.34, 0.27)}


def _smile_chain() -> list[OptionQuote]:
    quotes = []
    for days, (atm, put_90, call_110) in SMILE.items():
        expiration = (SMILE_AT + timedelta(days=days)).date()
        for side, strike, iv in (("call", 100.0, atm), ("put", 100.0, atm), ("put", 90.0, put_90),
                                 ("call", 110.0, call_110), ("call", 90.0, 0.90), ("put", 110.0, 0.80)):
            quotes.append(OptionQuote(f"X{days}{side[0]}{strike:g}", "X", side, expiration, strike,  # type: ignore[arg-type]
                                      SMILE_AT - timedelta(hours=2), None, 1.0, 1.1, iv, None, None, "test"))
    return quotes


def test_term_slope_and_skew_are_read_in_total_variance_like_the_atm_value() -> None:
    reading = chain_volatility(_smile_chain(), 100.0, SMILE_AT, 30.0)
    # 30 days, halfway between the 20- and 40-day expiries in time: w = (iv20^2 * 20 + iv40^2 * 40) / 2 (x 1/365).
    atm_30 = 100 * math.sqrt((0.20**2 * 20 + 0.25**2 * 40) / 2 / 30)  # 23.4521
    # 90 days: 50/60 of the way from the 40- to the 100-day expiry.
    atm_90 = 100 * math.sqrt((0.25**2 * 40 + 50 / 60 * (0.30**2 * 100 - 0.25**2 * 40)) / 90)  # 29.6586
    put_30 = 100 * math.sqrt((0.26**2 * 20 + 0.31**2 * 40) / 2 / 30)  # 29.4279
    call_30 = 100 * math.sqrt((0.18**2 * 20 + 0.22**2 * 40) / 2 / 30)  # 20.7525
    assert reading.atm == pytest.approx(atm_30, rel=1e-12) and atm_30 == pytest.approx(23.4521, abs=1e-4)
    assert reading.term_slope == pytest.approx(atm_90 - atm_30, rel=1e-12) and atm_90 - atm_30 == pytest.approx(
        6.2065, abs=1e-4)
    assert reading.skew == pytest.approx(put_30 - call_30, rel=1e-12) and put_30 - call_30 == pytest.approx(
        8.6754, abs=1e-4)
    assert reading.atm == pytest.approx(chain_implied_volatility(_smile_chain(), 100.0, SMILE_AT, 30.0), rel=1e-12)


def test_term_slope_and_skew_abstain_where_the_chain_does_not_reach() -> None:
    short = [q for q in _smile_chain() if q.expiration < date(2024, 3, 1)]  # no expiry at or beyond 90 days
    reading = chain_volatility(short, 100.0, SMILE_AT, 30.0)
    assert reading.atm is not None and reading.term_slope is None and reading.skew is not None
    no_wings = [q for q in _smile_chain() if q.strike == 100.0]
    assert chain_volatility(no_wings, 100.0, SMILE_AT, 30.0).skew is None
    # the wings are read at 90% and 110% of the spot even where float arithmetic misses the strike (1.1 * 100)
    # (10 days: before the first expiry, whose volatilities hold)
    assert 1.1 * 100.0 != 110.0
    assert chain_volatility(_smile_chain(), 100.0, SMILE_AT, 10.0).skew == pytest.approx(26.0 - 18.0)
    with pytest.raises(ValueError, match="moneyness"):
        chain_volatility(_smile_chain(), 100.0, SMILE_AT, 30.0, low=1.1, high=0.9)
