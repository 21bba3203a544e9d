"""What a SageMaker script-mode job sees: channels, the model folder, hyperparameters (no AWS imports).

The SageMaker training toolkit (``sagemaker-training``, the image's ``train`` command) sets ``SM_MODEL_DIR``
(packed as ``model.tar.gz`` when the job ends), ``SM_OUTPUT_DIR`` (where ``failure`` goes), ``SM_OUTPUT_DATA_DIR``,
``SM_CHANNELS`` and ``SM_CHANNEL_<NAME>`` (the downloaded input of each channel) and ``SM_HPS``: the
hyperparameters as JSON, after the toolkit json-decoded each string value of ``hyperparameters.json`` (so the
``symbols`` string ``'["SPX"]'`` arrives as a list, ``config`` as an object). ``SM_HPS`` is the source of truth.
The toolkit also passes them as arguments, but renders a list as ``['SPX']`` (Python repr) and an object as
``k=v,k2=v2``, which is not JSON: arguments only fill names that ``SM_HPS`` lacks (a local run without the
toolkit: ``python prepare.py --symbols '["SPX"]'``). A channel that holds another job's ``model.tar.gz`` is
unpacked next to it.

:func:`run_job` runs an entry point's ``main`` the way the job needs it to fail: a non-zero exit and one line
naming the problem in ``<SM_OUTPUT_DIR>/failure``, which SageMaker shows as the job's ``FailureReason`` (the
toolkit writes its own, less useful, reason only when that file does not exist yet).
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from signal_engine.config import PROFILES, RunConfig
from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.workflow.news import NewsTraining, news_section
from signal_engine.workflow.quality import QualityConfig
from signal_engine.workflow.settings import training_settings
from signal_engine.workflow.tuning import TuningRun, tuning_section


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
        hyperparameters = _arguments(argv or [])
        hyperparameters.update(_hyperparameters(env.get("SM_HPS", "{}")))
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

    def book(self) -> bool:
        """Hyperparameter ``book``: train the whole book (its timeframe models) unless it is ``false``. Without it,
        the book is trained unless the config's trend expert is the pooled network (``trend_pooled``), which the
        book's per-symbol timeframe walk-forwards cannot fit: such a run trains the MoE's bundle alone."""
        raw = self.get("book").strip().lower()
        if raw:
            return raw != "false"
        return not self._moe_alone()

    def _moe_alone(self) -> bool:
        from signal_engine.config import POOLED_TRENDS

        config, _ = self._config()
        return bool({config.moe.experts.trend, config.moe.experts.intraday_trend} & set(POOLED_TRENDS))

    def jobs(self) -> int | None:
        """Hyperparameter ``jobs``: processes for the walk-forwards, 0 for every core; without it, None:
        ``$SIGNAL_ENGINE_JOBS`` where it is set (never on SageMaker, so every core there), else every core."""
        raw = self.get("jobs").strip()
        if not raw:
            return None
        try:
            jobs = int(raw)
        except ValueError:
            raise ConfigError(f"hyperparameter 'jobs' is {raw!r}; expected a whole number of processes "
                              "(0 for every core of the instance)") from None
        if jobs < 0:
            raise ConfigError(f"hyperparameter 'jobs' is {jobs}; expected 0 (every core) or more")
        return jobs

    def _config_sections(self) -> dict[str, Any]:
        raw = self.get("config", "{}") or "{}"
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"hyperparameter 'config' is not JSON: {raw[:80]!r}; expected e.g. "
                              "{\"trend\": {\"n_estimators\": 200}}") from None
        if not isinstance(overrides, dict):
            raise ConfigError("hyperparameter 'config' must be a JSON object of --config sections")
        return overrides

    def orchestration(self) -> dict[str, Any]:
        """The ``orchestration`` section of the ``config`` hyperparameter (the books' settings; ``{}`` if none)."""
        section = self._config_sections().get("orchestration") or {}
        if not isinstance(section, dict):
            raise ConfigError("hyperparameter 'config': section 'orchestration' must be an object of settings, e.g. "
                              "{\"orchestration\": {\"timeframes\": [\"short\", \"medium\"]}}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}

    def news(self) -> NewsTraining:
        """The ``news`` section of the ``config`` hyperparameter (``signal_engine.workflow.news``): whether the
        bundle carries the text expert. The ``text`` channel, when given, is the text model folder to reuse
        (text-train's); else the text model the prepare job scored the stored news with (``text/`` in the
        ``dataset`` channel, with ``moe.news``); without either the job trains the head on the shipped corpus."""
        news = news_section(self._config_sections(), "hyperparameter 'config'")
        if news.enabled and "text" in self.channels:
            return replace(news, model=str(self.channel("text")))
        prepared = self._prepared_text_model() if news.enabled and "dataset" in self.channels else None
        return replace(news, model=str(prepared)) if prepared is not None else news

    def _prepared_text_model(self) -> Path | None:
        from signal_engine.text.model import METADATA
        from signal_engine.workflow.news import DATASET_TEXT_FOLDER
        from signal_engine.workflow.steps import DATASET_FILE

        folder = single_root(self.channel("dataset"), DATASET_FILE) / DATASET_TEXT_FOLDER
        return folder if (folder / METADATA).is_file() else None

    def tuning(self) -> TuningRun:
        """The ``tuning`` section of the ``config`` hyperparameter, turned on by hyperparameter ``tune`` (``true``:
        what the workflow sends for an execution input with ``"tune": true``). Its storage is left None: the
        train_expert job keeps the studies in its model folder, ``tuning/optuna.db`` in its ``model.tar.gz``."""
        tuning = tuning_section(self._config_sections(), "hyperparameter 'config'")
        raw = self.get("tune", "false").strip().lower() or "false"
        if raw not in ("true", "false"):
            raise ConfigError(f"hyperparameter 'tune' is {raw!r}; expected true or false (the execution input's "
                              "'tune')")
        return replace(tuning, enabled=tuning.enabled or raw == "true", storage=None)

    def settings(self) -> tuple[RunConfig, QualityConfig]:
        """The run config (``profile`` + the ``config`` JSON of --config sections) and the quality thresholds."""
        from signal_engine.workflow.training import check_exportable

        config, quality = self._config()
        # with moe.news the prepare job gives each bar its news_score (the raw file's column, else the news channel's
        # stored news); the other jobs read it from the dataset
        check_exportable(config, self.news(), book=self.book())
        return config, quality

    def _config(self) -> tuple[RunConfig, QualityConfig]:
        overrides = self._config_sections()
        profile = self.get("profile", "quick") or "quick"
        if profile not in PROFILES:
            raise ConfigError(f"hyperparameter 'profile' is {profile!r}; expected one of {', '.join(PROFILES)}")
        return training_settings(profile, overrides, source="hyperparameter 'config'")

    def symbols(self) -> list[str]:
        raw = self.require("symbols")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = [s for s in raw.split(",") if s]
        if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
            raise ConfigError(f"hyperparameter 'symbols' is {raw!r}; expected a JSON list such as [\"SPX\", \"IXIC\"]")
        return [s.upper() for s in value]


def _hyperparameters(raw: str) -> dict[str, str]:
    """``SM_HPS`` as strings: strings as they are, other JSON values (lists, objects, numbers) as JSON text."""
    try:
        decoded = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise ConfigError(f"SM_HPS is not JSON: {raw[:80]!r}; the training toolkit sets it to the hyperparameters "
                          "as a JSON object") from None
    if not isinstance(decoded, dict):
        raise ConfigError(f"SM_HPS is {type(decoded).__name__}; expected a JSON object of hyperparameters")
    return {str(k): "" if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}


def _arguments(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` pairs of a local run; under the toolkit ``SM_HPS`` replaces every one of them."""
    out: dict[str, str] = {}
    items = list(argv)
    for i, item in enumerate(items):
        if item.startswith("--") and i + 1 < len(items):
            out[item[2:].replace("-", "_")] = items[i + 1]
    return out


def failure_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where SageMaker reads a failed job's reason: ``<SM_OUTPUT_DIR>/failure`` (``/opt/ml/output/failure`` in a
    job); None outside a job (no SM_OUTPUT_DIR and no /opt/ml/output)."""
    env = os.environ if environ is None else environ
    output = env.get("SM_OUTPUT_DIR") or ("/opt/ml/output" if Path("/opt/ml/output").is_dir() else "")
    return Path(output) / "failure" if output else None


def run_job(name: str, main: Callable[[], int], environ: Mapping[str, str] | None = None) -> int:
    """Run an entry point's ``main``; on error print the reason, write it to :func:`failure_file` and return
    non-zero: 2 for an error a user can fix (bad hyperparameter, missing channel, bad data), 1 for anything else
    (the full traceback goes to the log, the reason keeps its type, message and where it was raised)."""
    try:
        return main()
    except SignalEngineError as exc:
        reason, code = f"{name}: {exc}", 2
    except Exception as exc:
        print(traceback.format_exc(), file=sys.stderr, end="")
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{name}: unexpected {type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"
        code = 1
    print(f"error: {reason}", file=sys.stderr, flush=True)
    target = failure_file(environ)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(reason + "\n", encoding="utf-8")
    return code


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
