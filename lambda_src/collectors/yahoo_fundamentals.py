"""Lambda: Yahoo Finance fundamentals by fiscal period, for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("yahoo", "fundamentals")
