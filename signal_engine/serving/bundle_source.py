"""Find the bundle to serve: a bundle folder, a local registry (``CURRENT``), or the same in S3.

The combiner needs only the JSON/NumPy files of a bundle (never ``experts/``); from S3 they are copied into a
local folder at a cold start, and again when ``CurrentWatch`` sees the registry's ``CURRENT`` change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from signal_engine.serving.bundle import BUNDLE_FILE, CALIBRATION_FILE, GATE_FILE, BundleError, read_current

if TYPE_CHECKING:
    from signal_engine.ports import ObjectStore


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
    files = {BUNDLE_FILE, str((doc.get("calibration") or {}).get("file") or CALIBRATION_FILE)}
    if (doc.get("gate") or {}).get("kind") != "rule":  # a rule gate's parameters are in bundle.json, no gate.npz
        files.add(str((doc.get("gate") or {}).get("file") or GATE_FILE))
    meta = (doc.get("combiner") or {}).get("file")
    if meta:
        files.add(str(meta))
    for name in sorted(files):
        if "/" in name or name.startswith("."):
            raise BundleError(f"s3://{bucket}/{prefix}/{BUNDLE_FILE}: file name {name!r} must be a plain file name")
        try:
            (folder / name).write_bytes(document if name == BUNDLE_FILE else store.get(name))
        except KeyError:
            raise BundleError(f"s3://{bucket}/{prefix}/{name}: missing; the bundle is incomplete") from None
    return folder


def _get(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except KeyError:
        return None
