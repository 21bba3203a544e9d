"""Tables and dictionaries written by the batches of a fanned-out backtest read back as exactly what was written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.result_files import ResultFileError, exact_json, read_table, write_table


def _frame(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({
        "value": [0.1 + 0.2, -0.0, math.nan, math.inf, 1e-310],
        "count": np.array([1, -2, 3, 2**62, 0], dtype=np.int64),
        "kept": [True, False, True, True, False],
        "text": pd.array(["", "a, \"quoted\"", "two\nlines", "nan", "NA"], dtype="str"),
        "label": np.array(["", "x", "None", "1.0", "é"], dtype=object),
    }, index=index)


@pytest.mark.parametrize("index", [
    pd.RangeIndex(5),
    pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"], name="timestamp"),
    pd.DatetimeIndex(pd.date_range("2024-03-10 05:00", periods=5, freq="37min123456789ns",
                                   tz="America/New_York")).as_unit("ns"),
], ids=["range", "dates", "nanoseconds-across-dst"])
def test_a_table_reads_back_bit_for_bit(index: pd.Index, tmp_path: Path) -> None:
    frame = _frame(index)
    schema = write_table(frame, tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv", json.loads(json.dumps(schema)))
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_freq=False)
    assert back["value"].to_numpy().tobytes() == frame["value"].to_numpy().tobytes()  # -0.0 and the subnormal too
    assert back.dtypes.to_dict() == frame.dtypes.to_dict()


def test_values_that_would_not_read_back_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="column 'x'"):
        write_table(pd.DataFrame({"x": np.array(["a", None], dtype=object)}), tmp_path / "gap.csv")
    with pytest.raises(ResultFileError, match="column 'x'"):
        write_table(pd.DataFrame({"x": np.array([1.5], dtype=np.float32)}), tmp_path / "f32.csv")
    with pytest.raises(ResultFileError, match=r"strategies\.moe\.windows: tuple"):
        exact_json({"strategies": {"moe": {"windows": (20, 60)}}})
    with pytest.raises(ResultFileError, match="key 1 is not text"):
        exact_json({"levels": {1: 0.5}})
    assert exact_json({"n": np.int64(3), "x": np.float64(math.nan), "ok": np.bool_(True)}) == {
        "n": 3, "x": pytest.approx(math.nan, nan_ok=True), "ok": True}
