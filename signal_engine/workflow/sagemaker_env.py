"""What a SageMaker script-mode job sees: channels, the model folder, hyperparameters (no AWS imports).

SageMaker sets ``SM_MODEL_DIR`` (packed as ``model.tar.gz`` when the job ends), ``SM_OUTPUT_DATA_DIR``,
``SM_CHANNELS`` and ``SM_CHANNEL_<NAME>`` (the downloaded input of each channel) and ``SM_HPS`` (the
hyperparameters as JSON, also passed as ``--name value`` arguments). A channel that holds another job's
``model.tar.gz`` is unpacked next to it.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signal_engine.config import RunConfig
from signal_engine.errors import ConfigError
from signal_engine.workflow.quality import QualityConfig
from signal_engine.workflow.settings import training_settings


@dataclass(frozen=True)
class JobEnvironment:
    """The folders and hyperparameters of one training job."""

    model_dir: Path
    output_dir: Path
    channels: dict[str, Path]
    hyperparameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> JobEnvironment:
        env = os.environ if environ is None else environ
        model_dir = env.get("SM_MODEL_DIR")
        if not model_dir:
            raise ConfigError("SM_MODEL_DIR is not set: run this entry point as a SageMaker training job, or set "
                              "SM_MODEL_DIR and SM_CHANNEL_<NAME> to local folders")
        names = json.loads(env.get("SM_CHANNELS", "[]"))
        channels = {name: Path(env[f"SM_CHANNEL_{name.upper()}"]) for name in names
                    if f"SM_CHANNEL_{name.upper()}" in env}
        for key, value in env.items():
            if key.startswith("SM_CHANNEL_") and key != "SM_CHANNELS":
                channels.setdefault(key[len("SM_CHANNEL_"):].lower(), Path(value))
        hyperparameters = {str(k): v if isinstance(v, str) else json.dumps(v)
                           for k, v in json.loads(env.get("SM_HPS", "{}")).items()}
        hyperparameters.update(_arguments(argv or []))
        output = env.get("SM_OUTPUT_DATA_DIR", str(Path(model_dir).parent / "output"))
        return cls(Path(model_dir), Path(output), channels, hyperparameters)

    def channel(self, name: str) -> Path:
        """The local folder of input channel ``name`` (a clear error when the job was started without it)."""
        if name not in self.channels:
            raise ConfigError(f"SM_CHANNEL_{name.upper()} is not set: this job needs an input channel named "
                              f"'{name}' (InputDataConfig ChannelName '{name}')")
        return self.channels[name]

    def get(self, name: str, default: str = "") -> str:
        return self.hyperparameters.get(name, default)

    def require(self, name: str) -> str:
        value = self.hyperparameters.get(name, "")
        if not value:
            raise ConfigError(f"hyperparameter '{name}' is missing; pass it in HyperParameters")
        return value

    def settings(self) -> tuple[RunConfig, QualityConfig]:
        """The run config (``profile`` + the ``config`` JSON of --config sections) and the quality thresholds."""
        raw = self.get("config", "{}") or "{}"
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"hyperparameter 'config' is not JSON: {raw[:80]!r}; expected e.g. "
                              "{\"trend\": {\"n_estimators\": 200}}") from None
        if not isinstance(overrides, dict):
            raise ConfigError("hyperparameter 'config' must be a JSON object of --config sections")
        from signal_engine.workflow.training import check_exportable

        config, quality = training_settings(self.get("profile", "quick") or "quick", overrides,
                                            source="hyperparameter 'config'")
        check_exportable(config)
        return config, quality

    def symbols(self) -> list[str]:
        raw = self.require("symbols")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = [s for s in raw.split(",") if s]
        if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
            raise ConfigError(f"hyperparameter 'symbols' is {raw!r}; expected a JSON list such as [\"SPX\", \"IXIC\"]")
        return [s.upper() for s in value]


def _arguments(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` pairs (how script mode passes hyperparameters)."""
    out: dict[str, str] = {}
    items = list(argv)
    for i, item in enumerate(items):
        if item.startswith("--") and i + 1 < len(items):
            out[item[2:].replace("-", "_")] = items[i + 1]
    return out


def unpack(channel: Path) -> list[Path]:
    """Roots of the artefacts in a channel: each ``*.tar.gz`` unpacked beside itself, else the channel itself."""
    archives = sorted(channel.rglob("*.tar.gz"))
    if not archives:
        return [channel]
    roots = []
    for archive in archives:
        target = archive.with_name(archive.name[: -len(".tar.gz")] + ".unpacked")
        if not target.exists():
            target.mkdir(parents=True)
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(target, filter="data")
        roots.append(target)
    return roots


def single_root(channel: Path, marker: str) -> Path:
    """The one artefact root of a channel that holds ``marker`` (e.g. ``dataset.json``)."""
    roots = [r for r in unpack(channel) if (r / marker).is_file()]
    if len(roots) != 1:
        raise ConfigError(f"{channel}: expected one artefact with {marker}, found {len(roots)}; point the channel at "
                          "the previous job's model.tar.gz")
    return roots[0]
