"""ObjectStore on a local folder: the embedded default for raw payloads and files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath


class LocalFolderStore:
    """Objects as files under ``root``; keys are POSIX-style relative paths.

    Parameters
    ----------
    root
        The folder that holds the objects (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write atomically: a reader never sees half an object."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        found = (path.relative_to(self.root).as_posix() for path in self.root.rglob("*")
                 if path.is_file() and not path.name.startswith(".tmp-"))
        yield from sorted(key for key in found if key.startswith(prefix))

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise ValueError(f"object key {key!r} must be a relative path without '..'")
        return self.root.joinpath(*parts)
