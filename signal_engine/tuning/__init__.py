"""Hyper-parameter tuning of the experts, nested inside a walk-forward's training windows (issue 23, item 3).

Optuna is an optional dependency (the ``tune`` extra): it is imported by :mod:`signal_engine.tuning.lightgbm`
only, and nothing on the serving path or in the CLI without ``--tune`` imports that module.
"""
