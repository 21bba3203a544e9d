"""The registry of experts: build them by name from a YAML catalogue, save and load an artefact folder.

The catalogue (``signal_engine/experts/catalogue.yaml`` by default) maps a name to a class, inside
``signal_engine``, and its keyword arguments. An artefact folder holds one fitted expert per
sub-folder and a ``manifest.json`` naming each one's class, kwargs and file; it is the layout that is
later packed as ``model.tar.gz`` for SageMaker (:func:`pack_artefact`).

::

    artefact/
      manifest.json            {"schema_version": 1, "experts": {name: {"class", "kind", "kwargs", "file", "sha256"}}}
      experts/<name>/model.pkl the fitted estimator (Keras experts keep their weights as NumPy arrays)
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import pickle
import random
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from signal_engine.errors import ConfigError

DEFAULT_CATALOGUE = Path(__file__).parent / "experts" / "catalogue.yaml"
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
KINDS = ("trend", "volatility", "levels")
SCHEDULES = ("classical", "tensorflow")
ALLOWED_PACKAGE = "signal_engine."


@dataclass(frozen=True)
class ExpertSpec:
    """One catalogue entry: how to build an expert and how it is evaluated."""

    name: str
    kind: str
    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    schedule: str = "classical"
    inputs: str = "bars"

    @property
    def is_baseline(self) -> bool:
        return self.name.startswith("baseline_")


def load_catalogue(path: str | Path | None = None) -> dict[str, ExpertSpec]:
    """Read a catalogue YAML file into specs by name (the packaged catalogue by default)."""
    source = Path(path) if path is not None else DEFAULT_CATALOGUE
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: expert catalogue not found") from None
    if not isinstance(document, dict) or not isinstance(document.get("experts"), dict):
        raise ConfigError(f"{source}: expected a mapping with an 'experts' mapping of name -> {{class, kwargs}}")
    specs = {name: _spec(name, entry, source) for name, entry in document["experts"].items()}
    for spec in specs.values():
        members = spec.kwargs.get("members")
        for member in members if isinstance(members, list) else []:
            if member not in specs:
                raise ConfigError(f"{source}: expert '{spec.name}' names member '{member}', not in the catalogue")
    return specs


def _spec(name: str, entry: Any, source: Path) -> ExpertSpec:
    if not isinstance(entry, dict) or "class" not in entry or "kind" not in entry:
        raise ConfigError(f"{source}: expert '{name}' needs 'class' and 'kind'")
    unknown = set(entry) - {"class", "kind", "kwargs", "baseline", "schedule", "inputs"}
    if unknown:
        raise ConfigError(f"{source}: expert '{name}' has unknown key(s) {sorted(unknown)}")
    if entry["kind"] not in KINDS:
        raise ConfigError(f"{source}: expert '{name}' has kind '{entry['kind']}'; expected one of {KINDS}")
    schedule = entry.get("schedule", "classical")
    if schedule not in SCHEDULES:
        raise ConfigError(f"{source}: expert '{name}' has schedule '{schedule}'; expected one of {SCHEDULES}")
    kwargs = entry.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{source}: expert '{name}': kwargs must be a mapping")
    return ExpertSpec(name=name, kind=entry["kind"], cls=str(entry["class"]), kwargs=dict(kwargs),
                      baseline=entry.get("baseline"), schedule=schedule, inputs=entry.get("inputs", "bars"))


def resolve_class(path: str) -> type:
    """Import a class by its dotted path; only classes inside ``signal_engine`` are allowed."""
    if not path.startswith(ALLOWED_PACKAGE):
        raise ConfigError(f"expert class '{path}' is outside {ALLOWED_PACKAGE.rstrip('.')}; refusing to import it")
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import expert class '{path}': {exc}") from None
    if not isinstance(cls, type):
        raise ConfigError(f"'{path}' is not a class")
    return cls


def build(name: str, catalogue: Mapping[str, ExpertSpec] | None = None, **overrides: Any) -> Any:
    """An unfitted expert from its catalogue entry; ``overrides`` replace entries of its kwargs."""
    specs = catalogue if catalogue is not None else load_catalogue()
    if name not in specs:
        raise ConfigError(f"unknown expert '{name}'; expected one of {', '.join(sorted(specs))}")
    spec = specs[name]
    kwargs = {**spec.kwargs, **overrides}
    members = kwargs.get("members")
    if isinstance(members, list) and all(isinstance(m, str) for m in members):
        kwargs["members"] = [(member, build(member, specs)) for member in members]
    kwargs = {key: tuple(value) if isinstance(value, list) and key != "members" else value
              for key, value in kwargs.items()}
    try:
        return resolve_class(spec.cls)(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"expert '{name}' ({spec.cls}): {exc}") from None


def set_seeds(seed: int) -> None:
    """Seed Python's and NumPy's global generators (the experts also take their own ``random_state``)."""
    random.seed(seed)
    np.random.seed(seed)


def save_experts(experts: Mapping[str, Any], folder: str | Path,
                 catalogue: Mapping[str, ExpertSpec] | None = None) -> Path:
    """Write fitted experts to ``folder`` (``manifest.json`` + ``experts/<name>/model.pkl``)."""
    root = Path(folder)
    entries = {}
    for name, expert in experts.items():
        target = root / "experts" / name / "model.pkl"
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = pickle.dumps(expert, protocol=pickle.HIGHEST_PROTOCOL)
        target.write_bytes(payload)
        spec = catalogue.get(name) if catalogue is not None else None
        entries[name] = {
            "class": f"{type(expert).__module__}.{type(expert).__qualname__}",
            "kind": spec.kind if spec else None,
            "kwargs": _json_params(expert),
            "file": str(target.relative_to(root)),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
    manifest = {"schema_version": SCHEMA_VERSION, "experts": entries}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return root


def load_experts(folder: str | Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Read the experts of an artefact folder written by :func:`save_experts` (checksums verified).

    Only load artefacts you produced: the model files are pickles.
    """
    root = Path(folder)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{root}: no {MANIFEST}; expected a folder written by save_experts") from None
    entries = manifest.get("experts", {})
    wanted = list(entries) if names is None else list(names)
    experts = {}
    for name in wanted:
        if name not in entries:
            raise ConfigError(f"{root}: the artefact has no expert '{name}'; it has {', '.join(entries)}")
        entry = entries[name]
        resolve_class(entry["class"])
        payload = (root / entry["file"]).read_bytes()
        if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            raise ConfigError(f"{root / entry['file']}: checksum differs from {MANIFEST}; the file was changed")
        experts[name] = pickle.loads(payload)
    return experts


def pack_artefact(folder: str | Path, tar_path: str | Path) -> Path:
    """Pack an artefact folder as a gzip tarball (``model.tar.gz``), sorted and with fixed times."""
    root, target = Path(folder), Path(tar_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(str(path.relative_to(root)))
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    target.write_bytes(buffer.getvalue())
    return target


def _json_params(expert: Any) -> dict[str, Any]:
    params = expert.get_params(deep=False) if hasattr(expert, "get_params") else {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "members":
            out[key] = [name for name, _ in value]
        elif isinstance(value, tuple):
            out[key] = list(value)
        elif value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        else:
            out[key] = repr(value)
    return out
