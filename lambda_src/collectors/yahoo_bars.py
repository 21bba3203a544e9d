"""Lambda: Yahoo Finance daily and intraday bars (chart API), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("yahoo", "bars")
