"""Lambda: Nasdaq daily historical bars, for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("nasdaq", "bars")
