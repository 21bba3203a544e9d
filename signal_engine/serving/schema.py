"""The Signal API's request and response bodies (pydantic): validation and the OpenAPI document come from here."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

MAX_BARS = 5000
MAX_BATCH = 1000
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.^=_-]{0,31}$"
TIMEFRAME_PATTERN = r"^[0-9]{1,3}(m|h|d|wk|mo)$"

Price = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]


def _iso_text(value: Any) -> Any:
    """Times arrive as ISO-8601 text (a number is not read as epoch seconds)."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError(f"expected an ISO-8601 date or date-time string such as '2024-01-05', got {value!r}")


def _utc_representable(value: datetime) -> datetime:
    """A time whose UTC reading falls outside years 1-9999 (e.g. 0001-01-01T00:00:00+05:00) cannot be compared."""
    try:
        _utc(value)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} falls outside the years 1-9999 once converted to UTC; "
                         "send a time within them") from None
    return value


Time = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_utc_representable)]


def _aware_utc(value: datetime) -> datetime:
    """``value`` with its zone: naive times are UTC (the service keeps bars as naive UTC)."""
    return _utc(value)


UtcTime = Annotated[datetime, AfterValidator(_aware_utc)]
"""A time the API answers: always zone-aware UTC, so its JSON carries the offset (``...Z``) that the document's
``date-time`` format requires (RFC 3339), whatever the service built it from."""


class Bar(BaseModel):
    """One bar in the Yahoo Finance layout (prices adjusted as the model was trained)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: Time = Field(description="bar time (ISO-8601; a date for daily bars); UTC when no zone is given. "
                                        "The bars of a request must have strictly increasing times")
    open: Price
    high: Price = Field(description="the bar's highest price; at least low")
    low: Price = Field(description="the bar's lowest price; at most high")
    close: Price
    volume: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None
    implied_vol: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)] | None = Field(
        default=None, description="implied volatility in annualised % (as the VIX is quoted), known at the bar's "
                                  "close; null or absent where missing. Read by the volatility expert of a model "
                                  "trained with moe.experts.volatility vol_har_implied: where the decided bar has "
                                  "none, that expert abstains (gate weight 0, the others' weights renormalised); "
                                  "its score also reads the past bars' values. Other experts ignore it")
    implied_term_slope: Annotated[float, Field(allow_inf_nan=False, strict=True)] | None = Field(
        default=None, description="the option term slope in % points (at-the-money implied volatility at 90 days "
                                  "minus at 30 days), known at the bar's close; null or absent where missing. Read "
                                  "only by vol_har_implied trained with volatility.implied_terms naming it (it "
                                  "abstains where the decided bar has none)")
    implied_skew: Annotated[float, Field(allow_inf_nan=False, strict=True)] | None = Field(
        default=None, description="the option skew in % points (the 90% put's minus the 110% call's implied "
                                  "volatility), known at the bar's close; null or absent where missing. Read only "
                                  "by vol_har_implied trained with volatility.implied_terms naming it (it abstains "
                                  "where the decided bar has none)")

    @model_validator(mode="after")
    def _high_above_low(self) -> Bar:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}; expected high >= low")
        return self


class SignalRequest(BaseModel):
    """Ask for the signal of one symbol at its latest bar (or at ``as_of``)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL_PATTERN, description="ticker, e.g. GOOG, SPX, EURUSD")
    timeframe: str | None = Field(default=None, pattern=TIMEFRAME_PATTERN,
                                  description="bar length (1d, 1h, ...); default: the one the model was trained on")
    as_of: Time | None = Field(default=None, description="decide at the last bar at or before this time "
                                                             "(default: the latest bar)")
    bars: Annotated[list[Bar], Field(min_length=1, max_length=MAX_BARS)] | None = Field(
        default=None, description="the symbol's recent bars, oldest first (strictly increasing timestamps), at least "
                                  "the model's min_bars (GET /models; fewer: 422); read from the price store when "
                                  "absent (a deployment without one answers 422)")
    position: float | None = Field(default=None, ge=-1, le=1, allow_inf_nan=False, strict=True,
                                   description="exposure held now (-1..1), for the hold rule; flat when absent")

    @field_validator("bars")
    @classmethod
    def _increasing(cls, bars: list[Bar] | None) -> list[Bar] | None:
        if bars is None:
            return bars
        for i in range(1, len(bars)):
            if _utc(bars[i].timestamp) <= _utc(bars[i - 1].timestamp):
                raise ValueError(f"bars[{i}].timestamp {bars[i].timestamp.isoformat()} is not after "
                                 f"bars[{i - 1}].timestamp; expected strictly increasing times, oldest first")
        return bars


class BatchRequest(BaseModel):
    """Several signals in one call (at most 1,000)."""

    model_config = ConfigDict(extra="forbid")

    requests: list[SignalRequest] = Field(min_length=1, max_length=MAX_BATCH)


class ExpertView(BaseModel):
    """One expert's part in a signal."""

    ok: bool
    outputs: dict[str, float | None] = Field(default_factory=dict)
    score: float | None = Field(default=None, description="the output mapped to [-1, 1] (positive argues for buying)")
    error: str | None = None
    latency_ms: float
    model: str = Field(default="", description="what answered: endpoint name or model file")


class Adjustment(BaseModel):
    """One thing the risk layer did to the position.

    In a book answer (``source: book``) each adjustment is one event of the book's bar, the row of ``events.csv``:
    ``component``, ``kind``, ``rule``, ``symbol`` and ``model`` name it ("" for the whole book or all models),
    ``value`` and ``threshold`` are its headline number and limit, ``detail`` its further numbers as JSON text.
    """

    rule: str
    detail: str
    value: float | None = None
    component: str | None = Field(default=None, description="book answers: the orchestrator's part that acted "
                                                            "(allocation, conflicts, exposure, drawdown, ...)")
    kind: str | None = Field(default=None, description="book answers: what happened (allocation_change, conflict, "
                                                       "risk_limit_activated, ...)")
    symbol: str | None = Field(default=None, description="book answers: the symbol concerned (\"\": the whole book)")
    model: str | None = Field(default=None, description="book answers: the timeframe model concerned (\"\": all)")
    threshold: float | None = Field(default=None, description="book answers: the limit the value was compared with")


class RiskView(BaseModel):
    adjustments: list[Adjustment]
    vol_forecast: float | None = Field(description="forecast std of the next bar's log return")
    held: Literal["long", "short", "flat"]


class ActiveLimit(BaseModel):
    """A risk limit of a live book binding at its bar (it activated at an earlier bar and is not released)."""

    component: str
    rule: str
    symbol: str = Field(description="\"\": the whole book")
    model: str = Field(description="\"\": all models")


class BookSignal(BaseModel):
    """Where a book answer's position comes from: the live book, its bar, and each model's part."""

    name: str = Field(description="the book (named by bar frequency: daily, 1h, ...)")
    bar_time: UtcTime = Field(description="the stepped bar whose position is answered (UTC)")
    first_bar_time: UtcTime = Field(description="the book's first stepped bar")
    latest_bar_time: UtcTime = Field(description="the book's latest stepped bar")
    contributions: dict[str, float] = Field(description="each timeframe model's part of the position (they sum "
                                                        "to it)")
    allocation: dict[str, float] = Field(description="each model's capital share in force at the bar")
    model_scores: dict[str, float | None] = Field(description="each model's signed score in [-1, 1] behind the "
                                                              "position (null before its first call)")
    harmony: float | None = Field(description="how far the models' calls on the symbol agree, in [0, 1]")
    active_limits: list[ActiveLimit] = Field(description="risk limits binding at the bar on the whole book or this "
                                                         "symbol (risk.adjustments lists only this bar's events)")
    symbol_bar_time: UtcTime | None = Field(
        default=None, description="the symbol's own latest stored bar at or before bar_time (null when the store "
                                  "has none): earlier than bar_time when no bar of the symbol came since, and the "
                                  "book has held this position from then on without a new price")


class MoeView(BaseModel):
    """In a book answer: what the unmanaged Mixture of Experts alone would answer at the same bar."""

    signal: Literal["buy", "sell", "hold"]
    score: float = Field(ge=-1, le=1)
    confidence: float = Field(ge=0, le=1)
    position: float = Field(ge=-1, le=1)
    risk: RiskView


class NewsHeadline(BaseModel):
    """One stored headline the text expert read, and how much it weighs in the news score."""

    id: str = Field(description="the document's stable id in the document store")
    title: str
    published_at: UtcTime = Field(description="publication time (UTC); always before the decision time")
    score: float = Field(ge=-1, le=1, description="the headline's direction, p_bullish - p_bearish of the text model")
    weight: float = Field(ge=0, le=1, description="its share of the summed age-decayed weight of the headlines "
                                                  "that count (the shares sum to 1)")
    contribution: float = Field(ge=-1, le=1, description="weight x score: the contributions of every counted "
                                                         "headline sum to the news score")


class NewsView(BaseModel):
    """The text expert's reading of the symbol's stored news at the decision time.

    When the model version's gate has the news slot (trained with ``moe.news``), ``score`` is the slot's input:
    the news is part of the combined score (``in_combined_score`` true) with the weight ``gate.news``. Otherwise
    the news is evidence shown beside the signal and does not move ``score``, ``signal`` or ``position``
    (``in_combined_score`` false). No headline in the window is an abstention: ``score`` null and ``count`` 0,
    never a neutral 0 (the slot's weight is then 0 and the other experts' weights are renormalised).
    """

    in_combined_score: bool = Field(default=False, description="true: the model's gate has the news slot and "
                                    "``score`` is its input (its weight is gate.news, 0 when the news abstains); "
                                    "false: the news is shown beside the signal, outside the combined score")
    ok: bool = Field(description="whether the text expert answered (false: error says why, and the news abstains)")
    abstained: bool = Field(description="true when no headline counts at the decision time, or the expert did not "
                                        "answer: score is null")
    score: float | None = Field(ge=-1, le=1, description="age-weighted mean direction (p_bullish - p_bearish) of "
                                                          "the headlines that count; null when abstaining")
    confidence: float = Field(ge=0, le=1, description="W / (W + 1), W the summed age-decayed weight: 0 without "
                                                      "news, towards 1 with many fresh headlines")
    count: int = Field(ge=0, description="the headlines that count: published strictly before the decision time and "
                                         "at most the bundle's news.max_age_hours old")
    decision_time: UtcTime | None = Field(description="the close of the bar decided (UTC): only headlines "
                                                      "published strictly before it are read; null when the bars' "
                                                      "timeframe has no defined close (the news then abstains)")
    headlines: list[NewsHeadline] = Field(description="the headlines that weigh most in the score (largest "
                                                      "|contribution| first), at most the bundle's news.headlines")
    error: str | None = None
    latency_ms: float
    model: str = Field(default="", description="what answered: endpoint name or model file")


class SignalResponse(BaseModel):
    """A signal (DESIGN.md section 3, Signal API).

    ``source`` says where it comes from. ``book``: the symbol is held by a live book and the request sent no bars;
    ``position`` is the book's at its latest stepped bar (or the last at or before ``as_of``), ``signal`` its sign,
    ``score`` the models' scores weighted by their capital shares, ``confidence`` the models' harmony, and
    ``risk.adjustments`` every event of that bar for the symbol or the whole book; ``experts``, ``gate`` and
    ``moe`` show the Mixture of Experts at the same bar (empty, with ``moe_unavailable``, when it cannot answer).
    ``unmanaged``: the Mixture of Experts with the risk layer on the request's (or the stored) bars, no book.
    """

    symbol: str
    timeframe: str
    as_of: UtcTime = Field(description="time of the last bar the signal was decided with (UTC)")
    signal: Literal["buy", "sell", "hold"]
    score: float = Field(ge=-1, le=1)
    confidence: float = Field(ge=0, le=1)
    position: float = Field(ge=-1, le=1, description="target exposure after the risk layer")
    experts: dict[str, ExpertView]
    gate: dict[str, float]
    risk: RiskView
    model_version: str
    degraded: bool = Field(description="true when some expert did not answer; degraded_experts names them")
    degraded_experts: list[str] = Field(default_factory=list)
    request_id: str
    source: Literal["book", "unmanaged"] = Field(description="book: the live book's position; unmanaged: the "
                                                             "Mixture of Experts alone (a request that sends bars, "
                                                             "or a symbol no book holds)")
    book: BookSignal | None = Field(default=None, description="book answers: the book, its bar and the models' parts")
    moe: MoeView | None = Field(default=None, description="book answers: the unmanaged answer at the same bar")
    moe_unavailable: str | None = Field(default=None, description="book answers: why experts, gate and moe are empty")
    news: NewsView | None = Field(default=None, description="the text expert's reading of the stored headlines: "
                                  "the news slot's input when the gate has one (in_combined_score true), else "
                                  "shown beside the signal (in_combined_score false); null when the model version "
                                  "carries no text expert")


class BatchItemError(BaseModel):
    index: int
    symbol: str
    status: int
    message: str


class BatchResponse(BaseModel):
    signals: list[SignalResponse]
    errors: list[BatchItemError]


class BatchJobView(BaseModel):
    """A batch job (``POST /signals/batch/jobs``): ``running``, ``done`` with the batch's answer, or ``failed``."""

    job_id: str
    status: Literal["running", "done", "failed"]
    submitted_at: UtcTime = Field(description="when the job was stored (UTC)")
    requests: int = Field(description="the items of the batch")
    result: BatchResponse | None = Field(default=None, description="when done: what POST /signals/batch answers")
    error: str | None = Field(default=None, description="when failed: why")


class ModelsResponse(BaseModel):
    """The model version in use and what answers for each expert."""

    model_version: str
    created_at: str = Field(description="when the version was trained (ISO-8601 UTC, e.g. 2026-11-23T15:01:02Z)")
    profile: str
    timeframe: str
    symbols: list[str] = Field(description="the symbols this version serves (they passed its quality gate)")
    withheld: dict[str, str] = Field(default_factory=dict,
                                     description="symbols trained but refused (404 symbol_withheld): each failed "
                                                 "the quality gate, with the failed checks")
    trained_through: dict[str, str] = Field(description="each symbol's last training bar (ISO-8601)")
    min_bars: int
    experts: dict[str, str]
    gate: str
    combiner: str
    news: str | None = Field(default=None, description="what answers the text expert (news) that reads the stored "
                                                       "headlines beside the signal; null when the version has none")


class BookEvent(BaseModel):
    """One event of a live book: a row of ``events.csv``."""

    bar_time: UtcTime
    component: str
    kind: str
    rule: str
    symbol: str = Field(description="\"\": the whole book")
    model: str = Field(description="\"\": all models")
    value: float | None
    threshold: float | None
    detail: dict[str, float | str | None]


class BookPositionView(BaseModel):
    symbol: str
    position: float = Field(description="fraction of the book's capital, held from the bar's close to the next")
    contributions: dict[str, float] = Field(description="each timeframe model's part (they sum to position)")


class ModelState(BaseModel):
    """One timeframe model of a book: its capital share and its own track record (standalone, after costs)."""

    allocation: float = Field(description="capital share in force")
    target: float = Field(description="the optimiser's latest target share")
    equity: float
    peak: float
    max_drawdown: float


class DefenderView(BaseModel):
    """The drawdown defender: the book's equity against its peak, and the thresholds that scale it down."""

    status: Literal["normal", "reducing", "emergency"] = Field(
        description="reducing: the drawdown limit binds (positions scaled down); emergency: emergency deleveraging")
    equity: float
    peak: float
    drawdown: float = Field(description="1 - equity / peak")
    start: float = Field(description="drawdown at which scaling starts")
    limit: float = Field(description="drawdown at which the floor is reached")
    emergency: float = Field(description="drawdown beyond which the book deleverages")


class Regime(BaseModel):
    trend: str
    volatility: str
    liquidity: str


class BookRisk(BaseModel):
    defender: DefenderView
    active_limits: list[ActiveLimit]
    vol_forecast: dict[str, float | None] = Field(description="per symbol: forecast std of the next bar's return")
    regime: Regime | None


class BookView(BaseModel):
    """A live book at its latest stepped bar."""

    name: str
    timeframe: str | None = Field(description="the bars' timeframe (1d, 1h, ...) when the name is a bar frequency")
    bar_time: UtcTime = Field(description="the latest stepped bar")
    first_bar_time: UtcTime
    bars: int = Field(description="how many bars were stepped")
    positions: list[BookPositionView]
    allocations: dict[str, float] = Field(description="each timeframe model's capital share in force")
    models: dict[str, ModelState]
    risk: BookRisk
    recent_events: list[BookEvent] = Field(description="the events of the last recent_bars stepped bars, in order")
    recent_bars: int


class BookResponse(BaseModel):
    """The live books (GET /book): positions, allocations, risk state and recent events."""

    books: list[BookView]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_version: str


class FieldProblem(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what went wrong and, for bad input, which fields."""

    status: int
    error: str
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)


def _utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_naive(value: datetime) -> datetime:
    """``value`` as a naive UTC datetime (bars without a zone are UTC)."""
    return _utc(value).replace(tzinfo=None)


def finite_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
