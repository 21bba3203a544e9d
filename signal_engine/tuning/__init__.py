"""Hyper-parameter tuning of the experts, nested inside a walk-forward's training windows.

Optuna is an optional dependency (the ``tune`` extra): it is imported by the tuners only
(:mod:`signal_engine.tuning.lightgbm`, :mod:`~signal_engine.tuning.keras` and the study they share,
:mod:`~signal_engine.tuning.studies`), and nothing on the serving path or in the CLI imports them.
"""
