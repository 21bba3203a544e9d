"""Lambda: Yahoo Finance option chains (nearest expirations), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("yahoo", "options")
