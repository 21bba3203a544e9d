"""Running a SageMaker job's entry point in-process, as the training toolkit would start it (its SM_* environment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def run_entry_point(module: Any, monkeypatch: pytest.MonkeyPatch, model_dir: Path, channels: dict[str, Path],
                    hyperparameters: dict[str, str]) -> Path:
    """``module.main([])`` with ``SM_MODEL_DIR`` (created), ``SM_OUTPUT_DATA_DIR``, the channels and ``SM_HPS`` set;
    asserts it returns 0, unsets the channels again and returns the model folder."""
    model_dir.mkdir(parents=True)
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(model_dir.parent / "output"))
    monkeypatch.setenv("SM_CHANNELS", json.dumps(sorted(channels)))
    for name, path in channels.items():
        monkeypatch.setenv(f"SM_CHANNEL_{name.upper()}", str(path))
    monkeypatch.setenv("SM_HPS", json.dumps(hyperparameters))
    try:
        assert module.main([]) == 0
    finally:
        for name in channels:
            monkeypatch.delenv(f"SM_CHANNEL_{name.upper()}")
    return model_dir
