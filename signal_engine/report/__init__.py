"""The HTML backtest report: equity curves, drawdown, gate weights, volatility, metric tables."""

from signal_engine.report.html import render_report

__all__ = ["render_report"]
