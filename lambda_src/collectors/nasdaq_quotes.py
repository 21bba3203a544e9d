"""Lambda: Nasdaq quotes (last sale, change, volume), for the window its EventBridge event names."""

from .runtime import make_handler

handler = make_handler("nasdaq", "quotes")
