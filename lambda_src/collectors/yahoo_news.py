"""Lambda: Yahoo Finance news headlines (search API), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("yahoo", "news")
