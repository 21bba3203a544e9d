"""Collector Lambdas: one handler module per source and kind, sharing ``runtime``."""
