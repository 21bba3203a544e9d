"""Market data: the price-file loader and the real data sets shipped with the project's dependencies."""

from signal_engine.data.loader import PriceSeries, load_prices

__all__ = ["PriceSeries", "load_prices"]
