"""Lambda: Yahoo Finance quote statistics (quoteSummary), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("yahoo", "statistics")
