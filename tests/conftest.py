"""Shared fixtures: real price files exported from the data sets the dependencies ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from signal_engine.data.datasets import export_dataset


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-data")


@pytest.fixture(scope="session")
def goog_csv(real_data_dir: Path) -> Path:
    """Alphabet daily bars 2004-2013 (2,148 rows), shipped by `backtesting`."""
    return export_dataset("GOOG", real_data_dir)


@pytest.fixture(scope="session")
def eurusd_csv(real_data_dir: Path) -> Path:
    """EUR/USD hourly bars 2017-2018 (5,000 rows), shipped by `backtesting`."""
    return export_dataset("EURUSD", real_data_dir)


@pytest.fixture(scope="session")
def spx_csv(real_data_dir: Path) -> Path:
    """S&P 500 daily bars 1999-2018 (5,031 rows), shipped by `arch`."""
    return export_dataset("SPX", real_data_dir)
