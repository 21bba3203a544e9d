"""The user's own outputs in the checkout (``out/``, ``cdk.out/``, ``build/``): no test may create or change them.

``tests/conftest.py`` takes a snapshot when the session starts and fails the run, naming each path, when a test
wrote there: a user who runs ``make demo`` and then ``make test`` keeps the bundle ``signal-engine serve`` reads.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_FOLDERS = ("out", "cdk.out", "build")

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path = ROOT, folders: tuple[str, ...] = USER_FOLDERS) -> Snapshot:
    """Every file under the user's folders: path -> (size, modification time in ns)."""
    files: Snapshot = {}
    for folder in folders:
        base = root / folder
        if not base.exists():
            continue
        for path in base.rglob("*"):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return files


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What a test run did to the user's files, one line each (created, changed, removed)."""
    created = [f"created {p}" for p in sorted(after.keys() - before.keys())]
    removed = [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    changed = [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return created + changed + removed
