"""Lambda: Nasdaq earnings reports (EPS against consensus), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("nasdaq", "earnings")
