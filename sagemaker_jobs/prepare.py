"""SageMaker job: prepare the dataset (channel ``raw``: ``<SYMBOL>.csv`` in the Yahoo layout) into SM_MODEL_DIR.

Hyperparameters: ``symbols`` (JSON list), ``start``/``end`` (ISO dates or empty), ``profile``, ``config``.

With the MoE's news slot (``moe.news`` and ``news: {enabled: true}`` in ``config``) each bar gets its ``news_score``
here, as ``signal-engine train --database`` does locally (``signal_engine.workflow.news.with_news_scores``): the raw
file's ``news_score`` column where it has one, else the stored news of the optional channel ``news``
(``<SYMBOL>.jsonl`` as the bars export writes them, ``signal_engine.storage.news_files``; read through
``signal_engine.adapters.news_files.NewsFileStore``) scored by the text expert at each bar's close, point in time.
The text model that scored them (the ``text`` channel's, else trained on the shipped corpus) goes into the dataset as
``text/``: the evaluate job puts that head in the bundle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from signal_engine.config import RunConfig
from signal_engine.errors import ConfigError, InputError
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job
from signal_engine.workflow.steps import EXPERTS as PLAN_EXPERTS

if TYPE_CHECKING:
    from signal_engine.data.loader import PriceSeries


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, _ = job.settings()
    raw = job.channel("raw")
    # pandas and the models only once the hyperparameters and channels are known good: a bad job fails in a second
    from signal_engine.data.loader import load_prices
    from signal_engine.workflow.training import prepare_dataset

    series = []
    for symbol in job.symbols():
        path = raw / f"{symbol}.csv"
        if not path.is_file():
            raise InputError(str(path), f"no bars for {symbol}; expected {symbol}.csv in the 'raw' channel "
                             "(the execution input's dataset_prefix)")
        series.append(load_prices(path, symbol))
    if config.moe.news:
        series = news_slot_series(job, series)
    dataset = prepare_dataset(series, job.model_dir, config, start=job.get("start") or None,
                              end=job.get("end") or None)
    print(f"prepared {', '.join(dataset.symbols)} into {dataset.root}")
    write_plan(job, config, series)
    return 0


def news_slot_series(job: JobEnvironment, series: list[PriceSeries]) -> list[PriceSeries]:
    """The series with the news slot's ``news_score`` (module docstring); the text model used goes to ``text/``."""
    import shutil

    from signal_engine.adapters.news_files import NewsFileStore
    from signal_engine.workflow.news import DATASET_TEXT_FOLDER, with_news_scores

    news = job.news()
    folder = job.model_dir / DATASET_TEXT_FOLDER
    if news.model:  # the text channel's model: copied, so the dataset names the head that scored its rows
        shutil.copytree(news.model, folder, dirs_exist_ok=True)
    documents = NewsFileStore(job.channel("news")) if "news" in job.channels else None
    return with_news_scores(series, news, documents, model_folder=folder,
                            on_training=lambda at: print(f"training the text expert's head into {at}"))


def write_plan(job: JobEnvironment, config: RunConfig, series: Sequence[PriceSeries]) -> None:
    """The training plan (the accelerator of each expert's job and of the train_gate and evaluate jobs, which train
    the whole book as this job's hyperparameters say: ``book``) to hyperparameter ``plan`` (an ``s3://`` URI or a
    path), when given; hyperparameter ``experts`` is the run's JSON list of experts (all of them when empty)."""
    target = job.get("plan")
    if not target:
        return
    raw = job.get("experts") or "[]"
    try:
        experts = json.loads(raw) or list(PLAN_EXPERTS)
    except json.JSONDecodeError:
        raise ConfigError(f"hyperparameter 'experts' is {raw!r}; expected a JSON list such as [\"trend\"]") from None
    if not isinstance(experts, list) or not all(isinstance(e, str) for e in experts):
        raise ConfigError(f"hyperparameter 'experts' is {raw!r}; expected a JSON list such as [\"trend\"]")
    from signal_engine.workflow.plan import training_plan

    plan = training_plan(experts, config, [s.intraday for s in series], book=job.book())
    body = (json.dumps(plan, indent=2) + "\n").encode("utf-8")
    if target.startswith("s3://"):
        import boto3

        bucket, _, key = target[len("s3://"):].partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    else:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    jobs = [*((e["expert"], e["accelerator"]) for e in plan["experts"]),
            *((step, job["accelerator"]) for step, job in plan["steps"].items())]
    print("plan " + ", ".join(f"{name}={accelerator}" for name, accelerator in jobs))


if __name__ == "__main__":
    sys.exit(run_job("prepare", main))
