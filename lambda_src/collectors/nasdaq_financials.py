"""Lambda: Nasdaq financial statements (annual and quarterly), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("nasdaq", "financials")
