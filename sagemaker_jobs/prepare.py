"""SageMaker job: prepare the dataset (channel ``raw``: ``<SYMBOL>.csv`` in the Yahoo layout) into SM_MODEL_DIR.

Hyperparameters: ``symbols`` (JSON list), ``start``/``end`` (ISO dates or empty), ``profile``, ``config``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from signal_engine.data.loader import load_prices
from signal_engine.errors import InputError
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job
from signal_engine.workflow.training import prepare_dataset


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, _ = job.settings()
    raw = job.channel("raw")
    series = []
    for symbol in job.symbols():
        path = raw / f"{symbol}.csv"
        if not path.is_file():
            raise InputError(str(path), f"no bars for {symbol}; expected {symbol}.csv in the 'raw' channel "
                             "(the execution input's dataset_prefix)")
        series.append(load_prices(path, symbol))
    dataset = prepare_dataset(series, job.model_dir, config, start=job.get("start") or None,
                              end=job.get("end") or None)
    print(f"prepared {', '.join(dataset.symbols)} into {dataset.root}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("prepare", main))
