"""The backtest command's orchestration settings: a bad one exits 2 with one line naming it, before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("section", "named"), [
    ("orchestration:\n  max_leverage: 2\n", "orchestration: unknown setting"),
    ("orchestration:\n  timeframes: [weekly]\n", "'timeframes' must be distinct names"),
    ("orchestration:\n  min_allocation: 0.3\n", "min_allocation 0.3 x 4 models"),
    ("orchestration: [1, 2]\n", "'orchestration' must be a mapping"),
])
def test_a_bad_orchestration_setting_exits_2_with_one_line(
    goog_csv: Path, tmp_path: Path, section: str, named: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(section)
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "backtest", "--prices", str(goog_csv), "--out", str(tmp_path / "out"),
         "--config", str(config)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], completed.stderr
    assert not (tmp_path / "out" / "signals.csv").exists()
