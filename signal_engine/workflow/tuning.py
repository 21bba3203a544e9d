"""``signal-engine train --tune``: the trend expert's LightGBM settings chosen by an Optuna study before its final fit.

The ``tuning:`` section of the training config (or ``--tune``, which turns it on)::

    tuning:
      enabled: true      # --tune
      trials: 20         # Optuna trials per study (the first is the config's own settings)
      timeout_s: 300     # a study stops starting trials after this many seconds (null: no limit)

For each symbol whose trend expert is LightGBM, :func:`tuned_trend` runs one study on the rows that fit is trained on
(every label known at the last bar less the embargo) with the nested inner split of
:mod:`signal_engine.tuning.lightgbm`: the last quarter of those rows is the inner validation fold, the inner training
rows are purged of labels not known by the fold's first bar less the embargo, boosting stops early on the fold and a
median pruner stops poor trials. The expert is then fitted on all the rows with the best trial's settings. The study
never sees a bar after the fit's last bar, which is where the served model starts deciding.

The walk-forward whose metrics the quality gate reads tunes every refit the same way (``run_symbol(...,
tuning=...)`` calls :func:`tuned_trend` on each refit's training rows, its study kept in memory), so the gate judges
the procedure that is served; :func:`walk_forward_section` is what its ``metrics.json`` and the bundle then record.

The studies are kept in an Optuna storage (any SQLAlchemy URL Optuna takes: ``sqlite:///PATH``, or an RDS MySQL
``mysql+pymysql://user:password@host/db``), one study per symbol named ``trend/<SYMBOL>@<last bar>`` (a rerun on the
same data replaces it). What each fit chose is written beside the experts as ``tuning.json`` and lands in the bundle's
``bundle.json`` under ``tuning``; the served settings are also the trend expert's kwargs in ``experts/manifest.json``.

With ``moe.experts.trend: trend_pooled`` the trend job tunes the pooled Keras network instead: :func:`tuned_pooled`
runs one study over every series' rows of the final fit (:mod:`signal_engine.tuning.keras`: each trial scored on
the validation tails the expert holds out, pruned per epoch), named ``trend_pooled@<last bar>``, whose record each
pooled symbol gets in ``tuning.json``; every refit of the pooled walk-forward is tuned the same way
(:func:`tuned_pooled_expert`), its records in ``pooled_tuning.json`` beside ``pooled_trend.npz``
(:func:`write_pooled_refits`), which the gate step reads into its metrics (:func:`read_pooled_refits`).

Optuna is the ``tune`` extra: this module imports it only inside :func:`tuned_trend` and the pooled functions, after
:func:`require_optuna`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.errors import ConfigError

if TYPE_CHECKING:  # the jobs read this section before they import pandas
    import numpy as np
    import pandas as pd

    from signal_engine.config import RunConfig

SECTION = "tuning"
TUNING_FILE = "tuning.json"
STORAGE_FILE = Path("tuning") / "optuna.db"
INSTALL_HINT = "pip install 'signal-engine[tune]'"
TUNED_EXPERT = "trend"
POOLED_TUNING_FILE = "pooled_tuning.json"


@dataclass(frozen=True)
class TuningRun:
    """The ``tuning:`` section (module docstring); ``storage`` None: the caller's SQLite file."""

    enabled: bool = False
    trials: int = 20
    timeout_s: float | None = 300.0
    storage: str | None = None

    @classmethod
    def from_mapping(cls, section: Any, source: str) -> TuningRun:
        """The section as read from ``source`` (a config file or the ``config`` hyperparameter); None: off."""
        if section is None:
            return cls()
        if isinstance(section, bool):
            return cls(enabled=section)
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: 'tuning' must be a mapping such as 'tuning: {{enabled: true, trials: 20}}', "
                              f"got {section!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"storage"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"{source}: 'tuning' has unknown key(s) {unknown}; expected {sorted(known)} (the "
                              "storage URL is --tune-storage, so a password stays out of config files)")
        values = dict(section)
        if not isinstance(values.get("enabled", False), bool):
            raise ConfigError(f"{source}: 'tuning.enabled' is {values['enabled']!r}; expected true or false")
        trials = values.get("trials", cls.trials)
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"{source}: 'tuning.trials' is {trials!r}; expected a whole number >= 1")
        timeout = values.get("timeout_s", cls.timeout_s)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or not math.isfinite(timeout) or timeout <= 0):
            raise ConfigError(f"{source}: 'tuning.timeout_s' is {timeout!r}; expected a positive number of seconds "
                              "or null (no limit)")
        return cls(**values)


def tuning_section(overrides: Mapping[str, Any] | None, source: str) -> TuningRun:
    """The ``tuning`` section of ``--config`` sections (or of the ``config`` hyperparameter)."""
    return TuningRun.from_mapping((overrides or {}).get(SECTION), source)


def require_optuna(what: str) -> None:
    """Fail with the extra to install when Optuna cannot be imported (before any work)."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} needs Optuna, which is not installed: {INSTALL_HINT} (the 'tune' extra)") from None


def sqlite_storage(folder: Path) -> str:
    """The SQLite storage URL of ``folder/tuning/optuna.db`` (the folder is made)."""
    path = (Path(folder) / STORAGE_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def shown_storage(url: str) -> str:
    """``url`` with its password hidden (what the bundle records)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def study_name(symbol: str, last_bar: Any) -> str:
    """``trend/<SYMBOL>@<last bar>``: one study per symbol and training end."""
    import pandas as pd

    return f"{TUNED_EXPERT}/{symbol}@{pd.Timestamp(last_bar).isoformat()}"


def tuned_trend(model: Any, X: pd.DataFrame, y: np.ndarray, bars: np.ndarray, known_at: np.ndarray, *,
                config: RunConfig, tuning: TuningRun, name: str, storage: str | None) -> tuple[Any, dict[str, Any]]:
    """``model`` fitted on ``X, y`` with the settings an Optuna study chose on those rows, and the study's record.

    ``bars`` are the rows' bar positions and ``known_at`` the bar at whose close each label is known. A model that
    is not the LightGBM trend expert (``trend_linear``) is fitted as it is; its record says why it was not tuned.
    ``storage`` None: the study is kept in memory only (the walk-forward's refits; their records are the metrics').
    """
    from signal_engine.experts.trend import GradientBoostedTrendExpert

    if not isinstance(model, GradientBoostedTrendExpert):
        return model.fit(X, y), {"tuned": False, "reason": f"{type(model).__name__} has no LightGBM settings to tune"}
    from signal_engine.tuning.lightgbm import TuningSettings, expert_params, fit_tuned

    settings = TuningSettings(trials=tuning.trials, timeout_s=tuning.timeout_s, embargo=config.walk_forward.embargo,
                              seed=config.seed)
    fitted, result = fit_tuned(model, X, y, bars, known_at, settings=settings, name=name, storage=storage)
    record = {"tuned": result.trials > 0, **result.to_dict(),
              "storage": None if storage is None else shown_storage(storage),
              "defaults": {**expert_params(model), "n_estimators": model.n_estimators}}
    if not math.isfinite(result.best_value):  # no study (too few inner rows): the defaults, no figure
        record["best_value"] = None
    return fitted, record


def pooled_network(config: RunConfig) -> str:
    """The pooled trend network the config picks (``trend_pooled`` or ``trend_pooled_lstm``): its studies' name."""
    from signal_engine.config import POOLED_TRENDS

    experts = config.moe.experts
    return next(name for name in (experts.trend, experts.intraday_trend) if name in POOLED_TRENDS)


def pooled_study_name(config: RunConfig, last_bar: Any) -> str:
    """``trend_pooled@<last bar>``: the pooled network's one study per training end (every series at once)."""
    import pandas as pd

    return f"{pooled_network(config)}@{pd.Timestamp(last_bar).isoformat()}"


def pooled_settings(config: RunConfig, tuning: TuningRun) -> Any:
    """The pooled network's study budget (:class:`~signal_engine.tuning.keras.PooledTuningSettings`)."""
    from signal_engine.tuning.keras import PooledTuningSettings

    return PooledTuningSettings(trials=tuning.trials, timeout_s=tuning.timeout_s, seed=config.seed)


def tuned_pooled(model: Any, X: pd.DataFrame, y: np.ndarray, *, config: RunConfig, tuning: TuningRun, name: str,
                 storage: str | None) -> tuple[Any, dict[str, Any]]:
    """The pooled network ``model`` fitted on ``X, y`` (every series' rows, ``y`` -1 for history only) with the
    settings an Optuna study chose on those rows (:mod:`signal_engine.tuning.keras`), and the study's record."""
    from signal_engine.tuning.keras import expert_params, fit_tuned_pooled

    fitted, result = fit_tuned_pooled(model, X, y, settings=pooled_settings(config, tuning), name=name,
                                      storage=storage)
    return fitted, {"tuned": result.tuned, "network": pooled_network(config), **result.to_dict(),
                    "storage": None if storage is None else shown_storage(storage), "defaults": expert_params(model)}


def tuned_pooled_expert(model: Any, config: RunConfig, tuning: TuningRun) -> Any:
    """``model`` as an expert that tunes itself at every fit (:class:`~signal_engine.tuning.keras.TunedPooledExpert`,
    its studies in memory): what the pooled walk-forward refits when tuning is on."""
    from signal_engine.tuning.keras import TunedPooledExpert

    settings = pooled_settings(config, tuning)
    return TunedPooledExpert(model, trials=settings.trials, timeout_s=settings.timeout_s, seed=settings.seed,
                             startup_trials=settings.startup_trials, warmup_epochs=settings.warmup_epochs,
                             study_name=pooled_network(config))


def write_pooled_refits(refits: Sequence[Mapping[str, Any]], folder: Path) -> Path:
    """``folder/pooled_tuning.json``: the study record of every refit of the pooled walk-forward (each with its
    ``fit_date`` and the series it ``decide``s)."""
    path = Path(folder) / POOLED_TUNING_FILE
    path.write_text(json.dumps({"refits": list(refits)}, indent=2, sort_keys=True, default=_number) + "\n",
                    encoding="utf-8")
    return path


def read_pooled_refits(folders: Any) -> dict[str, list[dict[str, Any]]] | None:
    """Per series, the records of the pooled walk-forward's refits that decided some of its bars, from the first of
    ``folders`` holding ``pooled_tuning.json`` (None when none does: the pooled walk-forward was not tuned)."""
    for folder in folders:
        path = Path(folder) / POOLED_TUNING_FILE
        if path.is_file():
            out: dict[str, list[dict[str, Any]]] = {}
            for record in json.loads(path.read_text(encoding="utf-8"))["refits"]:
                for name in record["decide"]:
                    out.setdefault(name, []).append(record)
            return out
    return None


def walk_forward_section(tuning: TuningRun, refits: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The ``tuning`` section of the walk-forward's ``metrics.json`` (and of the bundle's ``tuning``, as
    ``walk_forward``): the budget each refit's study had and, per symbol, how many refits were tuned.

    ``refits``: each symbol's refit records (:func:`tuned_trend`'s, the ``tuning`` list of its diagnostics)."""
    return {
        "expert": TUNED_EXPERT,
        "every_refit": True,
        "trials": tuning.trials,
        "timeout_s": tuning.timeout_s,
        "refits": {symbol: {"refits": len(records), "tuned": sum(bool(r.get("tuned")) for r in records),
                            "trials": sum(int(r.get("trials", 0)) for r in records)}
                   for symbol, records in refits.items()},
    }


def write_records(records: Mapping[str, Any], folder: Path) -> Path:
    """``folder/tuning.json``: each symbol's record, under the tuned expert's name."""
    path = Path(folder) / TUNING_FILE
    path.write_text(json.dumps({TUNED_EXPERT: dict(records)}, indent=2, sort_keys=True, default=_number) + "\n",
                    encoding="utf-8")
    return path


def read_records(folders: Any) -> dict[str, Any]:
    """The ``tuning.json`` records of expert artefact folders, merged (empty when none was tuned)."""
    merged: dict[str, Any] = {}
    for folder in folders:
        path = Path(folder) / TUNING_FILE
        if path.is_file():
            for expert, records in json.loads(path.read_text(encoding="utf-8")).items():
                merged.setdefault(expert, {}).update(records)
    return merged


def _number(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
