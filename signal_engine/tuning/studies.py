"""The Optuna study every tuner of the project runs: minimising, seeded TPE, median pruner, replaced when stored."""

from __future__ import annotations

import optuna


def fresh_study(name: str, storage: str | None, *, seed: int, startup_trials: int, warmup_steps: int,
                pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """A fresh minimising study named ``name`` (one of the same name in ``storage`` is deleted first): TPE seeded
    with ``seed``; ``pruner``, else a median pruner that prunes nothing before ``startup_trials`` finished trials or
    before step ``warmup_steps``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is not None and name in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    chosen = pruner or optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    return optuna.create_study(study_name=name, storage=storage, direction="minimize",
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=chosen)
