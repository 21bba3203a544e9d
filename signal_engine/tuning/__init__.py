"""Hyper-parameter tuning of the experts, nested inside a walk-forward's training windows.

Optuna is an optional dependency (the ``tune`` extra): it is imported by :mod:`signal_engine.tuning.lightgbm`
only, and nothing on the serving path or in the CLI imports that module.
"""
