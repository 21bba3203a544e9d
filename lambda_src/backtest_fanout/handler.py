"""Lambda: the steps of a backtest fanned out by the ``BacktestFanOut`` state machine
(step_functions/backtest_fanout.py).

One container image (containers/book_step/Dockerfile: pandas, scikit-learn, LightGBM, arch), four handlers:

- ``plan``: ``{"run", "input": {symbols, profile?, config?, batch_symbols?, runner?}}`` -> copies each symbol's
  ``DATASETS_STORE/<SYMBOL>.csv`` into the run, checks the series and config, writes
  ``batches.json``; returns the plan's summary (batches, runners, where the merge runs).
- ``batch``: one ``batches.json`` item -> walks forward its symbols, uploads its folder (``batch.json`` last).
- ``check``: ``{"run", "batches": [the Map's results]}`` -> raises ``BatchesFailed`` naming every batch that failed
  after its retries, with its error and cause; else the number of batches.
- ``merge``: ``{"run"}`` -> merges the batches into ``<run>/result/``; returns its files and headline numbers.

Environment: ``DATASETS_STORE`` (``s3://DATASETS_BUCKET/bars/1d``) and ``BACKTESTS_STORE``
(``s3://ARTIFACTS_BUCKET/backtests``); every run lives under ``BACKTESTS_STORE/<run>/`` (``signal_engine.fanout_run``).
Input
errors raise ``FanOutError``, ``ConfigError``, ``InputError`` or ``BatchError`` (the state machine does not retry
them); anything else is retried.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from rich.console import Console

from signal_engine.bootstrap import object_store
from signal_engine.errors import ConfigError
from signal_engine.fanout_run import FanOutRequest, failed_batches, plan_run, stored_batch, stored_merge
from signal_engine.ports import ObjectStore

SERVICE = "signal-engine-backtest"
DATASETS_STORE, BACKTESTS_STORE = "DATASETS_STORE", "BACKTESTS_STORE"

logger = Logger(service=SERVICE)


class BatchesFailed(Exception):
    """Batches that failed after their retries; the run is not merged."""


def _setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set; the BacktestFanOut construct sets it (see this module's docstring)")
    return value


@cache
def runs() -> ObjectStore:
    """The runs' store, ``BACKTESTS_STORE``."""
    return object_store(_setting(BACKTESTS_STORE))


@cache
def datasets() -> ObjectStore:
    """The collected bars, ``DATASETS_STORE/<SYMBOL>.csv``."""
    return object_store(_setting(DATASETS_STORE))


def _console() -> Console:
    return Console(stderr=True, force_terminal=False, width=160)


@logger.inject_lambda_context(log_event=True)
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FanOutRequest.parse(event.get("input") or {})
    store = datasets()
    where = _setting(DATASETS_STORE).rstrip("/")
    summary = plan_run(runs(), str(event["run"]), request, lambda symbol: store.get(f"{symbol}.csv"),
                       source=lambda symbol: f"{where}/{symbol}.csv", console=_console()).summary()
    prefix = _setting(BACKTESTS_STORE).removeprefix("s3://").partition("/")[2].strip("/")
    summary["items_key"] = f"{prefix}/{summary['items']}" if prefix else summary["items"]
    logger.info("planned", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=True)
def batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="signal-engine-batch-") as workdir:
        result = stored_batch(runs(), event, Path(workdir), console=_console())
    logger.info("batch done", extra=result)
    return result


@logger.inject_lambda_context(log_event=False)
def check(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = event.get("batches") or []
    failures = failed_batches(results)
    if failures:
        logger.error("batches failed", extra={"run": event.get("run"), "failures": failures})
        raise BatchesFailed(f"{len(failures)} of {len(results)} batch(es) of {event.get('run')} failed after their "
                            "retries, so the run is not merged: " + "; ".join(failures))
    return {"run": event.get("run"), "batches": len(results)}


@logger.inject_lambda_context(log_event=True)
def merge(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="signal-engine-merge-") as workdir:
        result = stored_merge(runs(), str(event["run"]), Path(workdir), console=_console())
    logger.info("merged", extra=result)
    return result
