"""Walk-forward evaluation: the schedule, the per-symbol backtest, baselines and metrics."""
