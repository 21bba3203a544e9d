"""signal-engine: market data to trading signals with a Mixture of Experts and a risk layer."""

__version__ = "0.1.0"
