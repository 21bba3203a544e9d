"""Lambda: export the stored bars as the training workflow's input, ``bars/<timeframe>/<SYMBOL>.csv`` in the datasets
bucket (Yahoo layout), on an EventBridge schedule after the daily bar collectors and before the weekly training.

Before the files are written, the implied volatility of the bars whose option chains are stored is derived and
stored (``signal_engine.storage.implied_vol``, the ``implied_volatility`` table beside the bars in MySQL) and joined
as the ``implied_vol`` column of the symbols that have any.

Environment (besides the store settings read by ``signal_engine.bootstrap``, of which it uses the price store and
the market store, both in MySQL):

- ``SIGNAL_ENGINE_DATASETS_STORE``: where the files go, ``s3://DATASETS_BUCKET`` (or a folder, locally)
- ``SYMBOLS``: comma-separated symbols when the event's detail names none
- ``TIMEFRAME``: the bars to export when the detail gives none (default ``1d``)
- ``EXPORT_NEWS``: ``true`` to also write each symbol's stored news, read from the document store (DocumentDB via
  ``SIGNAL_ENGINE_DOCUMENT_SECRET`` in AWS), to ``news/<SYMBOL>.jsonl`` (``signal_engine.storage.news_files``): the
  prepare job's ``news`` channel when the MoE's news slot is trained (``moe.news``). Default off: bars only.

A symbol without stored bars (or with bars the price loader rejects) keeps its previous file, is logged with the
reason and counted in the metric ``SymbolsMissing`` (an alarm watches it); a symbol whose file reaches further back
than the stored bars keeps it too (metric ``SymbolsKept``, a warning naming the backfill). When nothing was written
and some symbol has no usable bars, the handler raises, so Lambda's retries, the DLQ and the errors alarm apply.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from signal_engine.bootstrap import object_store
from signal_engine.errors import SignalEngineError
from signal_engine.ports import ObjectStore
from signal_engine.storage.export import NewsExportResult, export_bars, export_news

from .runtime import logger, metrics, storage, tracer

DATASETS_STORE = "SIGNAL_ENGINE_DATASETS_STORE"
EXPORT_NEWS = "EXPORT_NEWS"


class ExportDetail(BaseModel):
    """The event detail: all optional (a plain schedule sends ``{}``), overriding the function's defaults."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] | None = Field(default=None, min_length=1)
    timeframe: str | None = None


class ExportEvent(EventBridgeModel):
    """An EventBridge event (a schedule rule, EventBridge Scheduler, or PutEvents with the detail above)."""

    detail: ExportDetail


class NothingExported(SignalEngineError):
    """Not one symbol's bars could be exported: the store is empty for them, or the settings point elsewhere."""


@cache
def datasets() -> ObjectStore:
    """The datasets store (``SIGNAL_ENGINE_DATASETS_STORE``), built once per execution environment."""
    location = os.environ.get(DATASETS_STORE, "")
    if not location:
        raise ValueError(f"{DATASETS_STORE} is not set; expected s3://DATASETS_BUCKET (the training input bucket)")
    return object_store(location)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        detail = parse(event=event, model=ExportEvent).detail
    except ValueError:  # pydantic's ValidationError included
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    symbols = detail.symbols or [s for s in os.environ.get("SYMBOLS", "").split(",") if s.strip()]
    timeframe = detail.timeframe or os.environ.get("TIMEFRAME", "1d")
    metrics.add_metric(name="ExportRequests", unit=MetricUnit.Count, value=1)
    result = export_bars(storage().prices, datasets(), symbols, timeframe, market=storage().market)
    metrics.add_metric(name="SymbolsExported", unit=MetricUnit.Count, value=len(result.exported))
    metrics.add_metric(name="SymbolsMissing", unit=MetricUnit.Count, value=len(result.missing))
    metrics.add_metric(name="SymbolsKept", unit=MetricUnit.Count, value=len(result.kept))
    response = result.as_dict()
    if _news_wanted():
        response["news"] = _export_news(symbols).as_dict()
    if result.missing:
        logger.warning("symbols without usable stored bars; their previous files are kept",
                       extra={"missing": result.missing})
    if result.kept:
        logger.warning("files with longer history than the store kept", extra={"kept": result.kept})
    if not result.exported and result.missing:
        raise NothingExported(f"no bars exported for {', '.join(result.missing)} at {timeframe}: "
                              + "; ".join(result.missing.values()))
    logger.info("bars exported", extra={"exported": response["exported"]})
    return response


def _news_wanted() -> bool:
    raw = os.environ.get(EXPORT_NEWS, "false").strip().lower() or "false"
    if raw not in ("true", "false"):
        raise ValueError(f"{EXPORT_NEWS} is {raw!r}; expected true or false")
    return raw == "true"


def _export_news(symbols: list[str]) -> NewsExportResult:
    """Each symbol's stored news to ``news/<SYMBOL>.jsonl``; a symbol without news keeps its previous file."""
    news = export_news(storage().documents, datasets(), symbols)
    metrics.add_metric(name="NewsExported", unit=MetricUnit.Count, value=len(news.exported))
    metrics.add_metric(name="NewsMissing", unit=MetricUnit.Count, value=len(news.missing))
    if news.missing or news.kept:
        logger.warning("symbols without stored news, or with longer news files than the store, keep their files",
                       extra={"missing": news.missing, "kept": news.kept})
    return news
