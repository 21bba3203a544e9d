"""Paper trading: a backtest's books replayed bar by bar through the live path, traded in a ledger and
compared with what the backtest expected (``signal-engine paper``)."""
