"""Find the bundle to serve: a bundle folder, a local registry (``CURRENT``), or the same in S3.

The combiner needs only the JSON/NumPy files of a bundle (never ``experts/``); from S3 they are copied into a
local folder at a cold start, and again when ``CurrentWatch`` sees the registry's ``CURRENT`` change.
The live book's step runs the experts in process, so ``fetch_book_bundle`` copies the whole-book bundle: ``book.json``,
the main bundle's files with its ``experts/`` folder, and every ``books/<book>/<model>/`` bundle it names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from signal_engine.serving.bundle import (
    BUNDLE_FILE,
    CALIBRATION_FILE,
    EXPERTS_FOLDER,
    GATE_FILE,
    BundleError,
    read_current,
)

if TYPE_CHECKING:
    from signal_engine.ports import ObjectStore

BOOK_FILE = "book.json"  # signal_engine.serving.book_bundle's (not imported: it pulls in the orchestration)
SAME_FOLDER = "."  # a timeframe model that is the version's own MoE
EXPERTS_MANIFEST = "manifest.json"  # signal_engine.registry.MANIFEST (not imported: it pulls in the experts' modules)


class TaggedObjects(Protocol):
    """An object store that tells an object's entity tag without reading it (the S3 adapter: HEAD)."""

    def etag(self, key: str) -> str | None: ...


class CurrentWatch:
    """Whether the registry's ``CURRENT`` pointer changed, asked at most once every ``interval_s`` seconds.

    ``probe()`` returns a token of the pointer (its S3 ETag, or the file's text; None when there is none) and is
    called once at construction (before the bundle is fetched, so a change during the fetch is seen next time)
    and then only when ``interval_s`` has passed on ``clock`` since the last call. A change is reported until
    ``accept(token)`` records it, so a new version that fails to load is tried again at the next interval.
    """

    def __init__(self, probe: Callable[[], str | None], interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"the CURRENT check interval must be 0 or more seconds, got {interval_s}")
        self._probe = probe
        self.interval_s = interval_s
        self._clock = clock
        self.token = probe()
        self._checked = clock()

    def changed(self) -> str | None:
        """The new token when the interval has passed and ``CURRENT`` differs from the accepted one, else None."""
        now = self._clock()
        if now - self._checked < self.interval_s:
            return None
        self._checked = now
        token = self._probe()
        return token if token != self.token else None

    def accept(self, token: str | None) -> None:
        """Record ``token`` as the pointer whose bundle is now served."""
        self.token = token


def current_probe(uri: str, objects: Callable[[str, str], TaggedObjects]) -> Callable[[], str | None]:
    """A cheap probe of ``<uri>/CURRENT``: its ETag in S3 (one HEAD request), its text in a local folder."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        store = objects(bucket, prefix)
        return lambda: store.etag("CURRENT")
    pointer = Path(uri) / "CURRENT"
    return lambda: pointer.read_text(encoding="utf-8") if pointer.is_file() else None


def local_bundle(location: str | Path) -> Path:
    """``location`` itself when it holds ``bundle.json``, else the version its ``CURRENT`` names."""
    root = Path(location)
    if (root / BUNDLE_FILE).is_file():
        return root
    return read_current(root)


def fetch_bundle(uri: str, objects: Callable[[str, str], ObjectStore], target: Path) -> Path:
    """Copy the serving files of the bundle at ``s3://BUCKET/PREFIX`` (a bundle or a registry) into ``target``.

    ``objects(bucket, prefix)`` gives an ObjectStore rooted there (the S3 adapter in AWS).
    """
    if not uri.startswith("s3://"):
        return local_bundle(uri)
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise BundleError(f"MODEL_BUNDLE_URI {uri!r} names no bucket; expected s3://BUCKET/models/[VERSION/]")
    store = objects(bucket, prefix)
    document = _get(store, BUNDLE_FILE)
    if document is None:
        pointer = _get(store, "CURRENT")
        if pointer is None:
            raise BundleError(f"{uri}: neither {BUNDLE_FILE} nor CURRENT found; expected a bundle or a model "
                              "registry written by the training workflow")
        version = pointer.decode().strip()
        if not version or "/" in version:
            raise BundleError(f"{uri}CURRENT holds {version!r}; expected one version name")
        prefix = f"{prefix.rstrip('/')}/{version}" if prefix.strip("/") else version
        store = objects(bucket, prefix)
        document = _get(store, BUNDLE_FILE)
        if document is None:
            raise BundleError(f"s3://{bucket}/{prefix}/{BUNDLE_FILE}: missing; CURRENT names a version "
                              "without a bundle")
    try:
        doc = json.loads(document)
    except json.JSONDecodeError as exc:
        raise BundleError(f"s3://{bucket}/{prefix}/{BUNDLE_FILE}: not valid JSON ({exc})") from None
    version = str(doc.get("version", "bundle"))
    folder = target / version
    folder.mkdir(parents=True, exist_ok=True)
    for name in serving_files(doc, f"s3://{bucket}/{prefix}/{BUNDLE_FILE}"):
        try:
            (folder / name).write_bytes(document if name == BUNDLE_FILE else store.get(name))
        except KeyError:
            raise BundleError(f"s3://{bucket}/{prefix}/{name}: missing; the bundle is incomplete") from None
    return folder


def serving_files(doc: dict[str, Any], where: str) -> list[str]:
    """The files a bundle's ``bundle.json`` (``doc``, read from ``where``) names, itself included, sorted."""
    files = {BUNDLE_FILE, str((doc.get("calibration") or {}).get("file") or CALIBRATION_FILE)}
    if (doc.get("gate") or {}).get("kind") != "rule":  # a rule gate's parameters are in bundle.json, no gate.npz
        files.add(str((doc.get("gate") or {}).get("file") or GATE_FILE))
    meta = (doc.get("combiner") or {}).get("file")
    if meta:
        files.add(str(meta))
    for name in files:
        if "/" in name or name.startswith("."):
            raise BundleError(f"{where}: file name {name!r} must be a plain file name")
    return sorted(files)


def local_book_bundle(location: str | Path) -> Path:
    """``location`` itself when it holds ``book.json``, else the version its ``CURRENT`` names (which must)."""
    root = Path(location)
    folder = root if (root / BOOK_FILE).is_file() else read_current(root)
    if not (folder / BOOK_FILE).is_file():
        raise BundleError(f"{folder / BOOK_FILE}: missing; this version holds no whole-book bundle (the training "
                          "workflow writes book.json beside bundle.json)")
    return folder


def fetch_book_bundle(uri: str, objects: Callable[[str, str], ObjectStore], target: Path) -> Path:
    """Copy the whole-book bundle at ``s3://BUCKET/PREFIX`` (a version folder or a registry with ``CURRENT``) into
    ``target/<version>/`` and return that folder; a local ``uri`` is used in place (``local_book_bundle``).

    Copied: the version's top-level JSON and NumPy files (``book.json``, ``bundle.json`` and the files it names,
    the small reports), each book's seed state and, for every timeframe model that ``book.json`` names, its bundle
    folder: ``experts/`` for
    the version's own MoE (``"bundle": "."``), the whole ``books/<book>/<model>/`` folder for the others. Nothing
    else (``model.tar.gz``, the endpoint's copy of the experts). Every model's folder must hold the files its
    ``bundle.json`` and its ``experts/manifest.json`` name, else a BundleError names the missing one. A version is
    immutable once written, so a folder already fetched is reused without a request beyond reading ``CURRENT`` (a
    warm Lambda environment); the copy is made in a temporary folder and renamed into place, so a fetch that fails
    leaves nothing half-copied.
    """
    if not uri.startswith("s3://"):
        return local_book_bundle(uri)
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise BundleError(f"model bundle URI {uri!r} names no bucket; expected s3://BUCKET/models/[VERSION/]")
    prefix = prefix.strip("/")
    store = objects(bucket, prefix)
    if _get(store, BOOK_FILE) is not None:
        version = prefix.rsplit("/", 1)[-1] or "bundle"
    else:
        pointer = _get(store, "CURRENT")
        if pointer is None:
            raise BundleError(f"s3://{bucket}/{prefix}/: neither {BOOK_FILE} nor CURRENT found; expected a whole-book "
                              "bundle or a model registry written by the training workflow")
        version = pointer.decode().strip()
        if not version or "/" in version or version.startswith("."):
            raise BundleError(f"s3://{bucket}/{prefix}/CURRENT holds {version!r}; expected one version name")
        prefix = f"{prefix}/{version}" if prefix else version
        store = objects(bucket, prefix)
    where = f"s3://{bucket}/{prefix}"
    folder = target / version
    if (folder / BOOK_FILE).is_file():
        return folder
    document = _get(store, BOOK_FILE)
    if document is None:
        raise BundleError(f"{where}/{BOOK_FILE}: missing; this version holds no whole-book bundle (trained before "
                          "whole-book bundles, or without the book): retrain it")
    models = _model_folders(document, f"{where}/{BOOK_FILE}")
    seeds = _seed_files(document, f"{where}/{BOOK_FILE}")
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target))
    try:
        for key in store.keys():  # noqa: SIM118 (a store, not a dict)
            if key in seeds or _book_needs(key, models):
                path = staging / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(store.get(key))
        for model in models:
            _check_bundle_folder(staging if model == SAME_FOLDER else staging / model, staging, where)
        for seed in seeds:
            if not (staging / seed).is_file():
                raise BundleError(f"{where}/{seed}: missing; {BOOK_FILE} names it as a book's seed state")
        try:
            staging.rename(folder)
        except OSError:  # another fetch finished first; its copy is the same immutable version
            if not (folder / BOOK_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _model_folders(document: bytes, where: str) -> list[str]:
    """The bundle folders of every timeframe model that ``book.json`` names (``"."``: the version's own)."""
    try:
        books = json.loads(document).get("books")
        folders = {str(model["bundle"]) for book in books for model in book["models"]}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise BundleError(f"{where}: expected {{\"books\": [{{\"models\": [{{\"bundle\": ...}}]}}]}} ({exc!r})") \
            from None
    for folder in folders:
        if folder != SAME_FOLDER and (not folder or folder.startswith("/") or
                                      any(part in ("", ".", "..") for part in folder.split("/"))):
            raise BundleError(f"{where}: model bundle {folder!r}; expected '.' or a folder inside the version")
    if not folders:
        raise BundleError(f"{where}: names no timeframe model")
    return sorted(folders)


def _seed_files(document: bytes, where: str) -> set[str]:
    """The seed state files ``book.json`` names (a book's ``seed``; null or absent: none)."""
    seeds = {book.get("seed") for book in json.loads(document)["books"]} - {None}
    for seed in seeds:
        if not isinstance(seed, str) or seed.startswith("/") or any(p in ("", ".", "..") for p in seed.split("/")):
            raise BundleError(f"{where}: seed {seed!r}; expected a file inside the version")
    return {str(seed) for seed in seeds}


def _book_needs(key: str, models: Sequence[str]) -> bool:
    """Whether a key under a version prefix is part of the whole-book bundle (see ``fetch_book_bundle``)."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError(f"object key {key!r} under the version is not a plain relative path")
    if len(parts) == 1:
        return key.endswith((".json", ".npz"))
    if parts[0] == EXPERTS_FOLDER:
        return SAME_FOLDER in models
    return any(key.startswith(f"{model}/") for model in models if model != SAME_FOLDER)


def _check_bundle_folder(folder: Path, root: Path, where: str) -> None:
    """The files ``folder/bundle.json`` and ``folder/experts/manifest.json`` name are all there."""
    relative = folder.relative_to(root).as_posix()
    base = where if relative == "." else f"{where}/{relative}"
    try:
        doc = json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{base}/{BUNDLE_FILE}: missing; every bundle folder of a whole-book bundle needs "
                          "one") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{base}/{BUNDLE_FILE}: not valid JSON ({exc})") from None
    for name in serving_files(doc, f"{base}/{BUNDLE_FILE}"):
        if not (folder / name).is_file():
            raise BundleError(f"{base}/{name}: missing; the bundle is incomplete")
    manifest = folder / EXPERTS_FOLDER / EXPERTS_MANIFEST
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8")).get("experts", {})
    except FileNotFoundError:
        raise BundleError(f"{base}/{EXPERTS_FOLDER}/{EXPERTS_MANIFEST}: missing; the book step runs this bundle's "
                          "experts in process") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{base}/{EXPERTS_FOLDER}/{EXPERTS_MANIFEST}: not valid JSON ({exc})") from None
    for name, entry in sorted(entries.items()):
        file = str(entry.get("file", ""))
        if not file or not (folder / EXPERTS_FOLDER / file).is_file():
            raise BundleError(f"{base}/{EXPERTS_FOLDER}/{file or '?'}: missing; expert {name!r} of "
                              f"{EXPERTS_FOLDER}/{EXPERTS_MANIFEST} has no model file")


def _get(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except KeyError:
        return None
