"""ModelRegistry on a local folder (``out/models`` by default): bundles by version and the ``CURRENT`` pointer."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from signal_engine.errors import ConfigError

CURRENT = "CURRENT"
BUNDLE_FILE = "bundle.json"


def check_version(version: str) -> str:
    """A version must be one plain folder name (``20261123T150102Z-3f9a1c2e``)."""
    if not version or version.startswith(".") or any(c in version for c in "/\\ \n") or version == CURRENT:
        raise ConfigError(f"model version {version!r} is not a plain folder name; "
                          "expected e.g. 20261123T150102Z-3f9a1c2e")
    return version


class LocalModelRegistry:
    """Bundles as folders ``root/<version>/``; ``root/CURRENT`` holds the serving version's name.

    A bundle is copied under a temporary name and renamed into place, and ``CURRENT`` is replaced atomically,
    so a reader sees a whole bundle or none. Publishing never overwrites an existing version.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def publish(self, folder: Path, version: str) -> str:
        target = self.root / check_version(version)
        if not (Path(folder) / BUNDLE_FILE).is_file():
            raise ConfigError(f"{folder}: no {BUNDLE_FILE}; only a complete bundle folder can be published")
        if target.exists():
            raise ConfigError(f"{target}: version {version} is already published; versions are never overwritten")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{version}-"))
        try:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return str(target)

    def promote(self, version: str) -> None:
        if not (self.root / check_version(version) / BUNDLE_FILE).is_file():
            raise ConfigError(f"{self.root / version}: not a published bundle; publish it before promoting it")
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".tmp-CURRENT-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(version + "\n")
            os.replace(temporary, self.root / CURRENT)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def current(self) -> str | None:
        try:
            return (self.root / CURRENT).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / BUNDLE_FILE).is_file())
