"""The training run's settings: the profile and ``--config`` overrides, plus the ``quality:`` section of the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signal_engine import config as run_config
from signal_engine.config import PROFILES, RunConfig
from signal_engine.errors import ConfigError
from signal_engine.workflow.quality import QualityConfig


def training_settings(profile: str, overrides: dict[str, Any] | None = None,
                      source: str = "hyperparameters") -> tuple[RunConfig, QualityConfig]:
    """The profile with ``overrides`` (``--config`` sections) applied, and the quality gate's thresholds."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile '{profile}'; expected one of {', '.join(PROFILES)}")
    values = dict(overrides or {})
    values.pop("profile", None)
    values.pop("orchestration", None)  # the demo's multi-timeframe books; training does not use them
    values.pop("news", None)  # the text expert in the bundle (signal_engine.workflow.news), not a RunConfig section
    values.pop("tuning", None)  # train --tune's Optuna study (signal_engine.workflow.tuning), not a RunConfig section
    quality = values.pop("quality", None) or {}
    if not isinstance(quality, dict):
        raise ConfigError(f"{source}: 'quality' must be a mapping of thresholds, e.g. {{max_confidence_ece: 0.1}}")
    config = run_config._apply(PROFILES[profile], values, prefix="", source=source) if values else PROFILES[profile]
    return config, QualityConfig.from_mapping(quality, source)


def load_training_settings(profile: str, path: Path | None) -> tuple[RunConfig, QualityConfig]:
    """``training_settings`` from a YAML or JSON ``--config`` file (None for the bare profile)."""
    if path is None:
        return training_settings(profile)
    return training_settings(profile, run_config._read_mapping(path), source=str(path))
