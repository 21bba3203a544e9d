"""The guard that keeps tests out of the user's out/, cdk.out/ and build/ folders (tests/user_files.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.user_files import changes, snapshot


def test_the_guard_names_created_changed_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "out" / "models").mkdir(parents=True)
    kept, edited, gone = (tmp_path / "out" / "models" / name for name in ("CURRENT", "a.json", "b.json"))
    for path in (kept, edited, gone):
        path.write_text("v1")
    (tmp_path / "elsewhere.txt").write_text("not watched")
    before = snapshot(tmp_path, ("out", "cdk.out"))
    edited.write_text("v2, longer")
    os.utime(kept, ns=(before["out/models/CURRENT"][1], before["out/models/CURRENT"][1]))
    gone.unlink()
    (tmp_path / "cdk.out").mkdir()
    (tmp_path / "cdk.out" / "manifest.json").write_text("{}")
    (tmp_path / "elsewhere.txt").write_text("changed, but not a user folder")
    assert changes(before, snapshot(tmp_path, ("out", "cdk.out"))) == [
        "created cdk.out/manifest.json", "changed out/models/a.json", "removed out/models/b.json"]


def test_no_change_is_no_finding(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "x").write_text("1")
    assert changes(snapshot(tmp_path, ("build",)), snapshot(tmp_path, ("build",))) == []
