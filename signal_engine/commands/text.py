"""`signal-engine text-score`, `text-train` and `text-labels`: the text expert on the command line.

``text-score FILE.csv --out OUT.csv`` scores each row of FILE's ``text`` column; OUT has one row per input
row, in order: ``label`` (bearish, bullish or neutral), ``p_bearish``, ``p_bullish``, ``p_neutral``
(summing to 1). The model is the folder ``--model DIR`` (default: ``$SIGNAL_ENGINE_TEXT_MODEL``, else the
user cache, ``~/.cache/signal-engine/text/<fingerprint>``); when it holds no trained head, the head is
trained there first on the corpus shipped with the project (deterministic; a minute or two on one core).
``text-train`` does that training explicitly and prints the held-out evaluation against the baselines
(``--corpus FILE``: another labelled corpus, e.g. the one ``text-labels`` writes). ``text-labels`` labels a
symbol's stored news and reports by the price move that followed each (``signal_engine.text.timeline_labels``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from signal_engine.text.model import TextModel

TEXT_COLUMN = "text"
MODEL_VARIABLE = "SIGNAL_ENGINE_TEXT_MODEL"  # signal_engine.text.model's (not imported here: --help stays fast)


def register(subparsers: Any) -> None:
    """Add the text-score, text-train and text-labels sub-commands."""
    score = subparsers.add_parser(
        "text-score", help="score each row of a CSV's text column: bearish / bullish / neutral with probabilities",
        description="Writes OUT.csv with one row per input row, in order: label (bearish, bullish or neutral), "
                    "p_bearish, p_bullish, p_neutral (summing to 1). Trains the head into the model folder "
                    "first when it has none (on the labelled corpus shipped with the project).")
    score.add_argument("file", type=Path, metavar="FILE.csv", help="CSV with a header row and a 'text' column")
    score.add_argument("--out", type=Path, required=True, metavar="OUT.csv")
    _model_options(score)
    score.set_defaults(handler=_score)

    train = subparsers.add_parser(
        "text-train", help="train the text expert's head on the shipped corpus and evaluate it on the held-out part",
        description="Trains the head (logistic regression on MiniLM embeddings, C by 5-fold CV on the training "
                    "part), evaluates it, the majority class, Loughran-McDonald and VADER on the held-out part "
                    "(accuracy, macro-F1, 90%% bootstrap intervals) and saves it with text.json.")
    _model_options(train)
    train.add_argument("--rows", type=int, metavar="N",
                       help="a stratified subsample of N corpus texts instead of all (quick trials; noisier)")
    train.add_argument("--reps", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    train.add_argument("--json", action="store_true", help="print text.json instead of the table")
    train.add_argument("--corpus", type=Path, metavar="FILE.csv",
                       help="train and evaluate on this labelled corpus (columns text,label; label 0 bearish, "
                            "1 bullish, 2 neutral), e.g. from text-labels --corpus, instead of the shipped one")
    train.set_defaults(handler=_train)

    labels = subparsers.add_parser(
        "text-labels", help="label a symbol's stored news and reports by the price move that followed each",
        description="Each document counts from the first bar closing after its publication; its label is that "
                    "bar's trend label over --horizon bars (the walk-forward's rule): bearish, bullish or "
                    "neutral, unknown while the horizon runs past the stored bars. Only prices after "
                    "publication decide it.")
    labels.add_argument("--symbol", required=True)
    labels.add_argument("--timeframe", default="1d", help="the bars' timeframe (default 1d)")
    labels.add_argument("--horizon", type=int, metavar="BARS", help="label horizon (default: the profile's)")
    labels.add_argument("--threshold", type=float, help="in volatility units (default: the profile's)")
    labels.add_argument("--profile", default="quick", choices=("quick", "full"))
    labels.add_argument("--database", metavar="URL",
                        help="the price and document store (default: $SIGNAL_ENGINE_DATABASE_URL, else the "
                             "demo's SQLite store)")
    labels.add_argument("--out", type=Path, required=True, metavar="OUT.csv",
                        help="one row per document: id, published_at, bar, known_at, forward_return, label, text")
    labels.add_argument("--corpus", type=Path, metavar="CORPUS.csv",
                        help="also write the known labels as a corpus for text-train --corpus")
    labels.set_defaults(handler=_labels)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help=f"the text model folder (default: ${MODEL_VARIABLE}, else the user cache "
                             "~/.cache/signal-engine/text/<fingerprint>)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="ONNX Runtime threads for the encoder (default 1; results do not depend on it)")


def read_texts(path: Path) -> list[str]:
    """The ``text`` column of a CSV (header row required; the column name is matched case-insensitively)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except pd.errors.EmptyDataError:
        raise InputError(str(path), "the file is empty; expected a header row with a 'text' column") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"not a readable CSV file ({exc}); expected UTF-8 CSV with a header row "
                                    "and a 'text' column (quote texts that hold commas)") from None
    matches = [c for c in frame.columns if str(c).strip().lower() == TEXT_COLUMN]
    if not matches:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        raise InputError(str(path), f"no '{TEXT_COLUMN}' column (found {found}); add a header row with a column "
                                    f"named {TEXT_COLUMN} holding one document per row", column=TEXT_COLUMN)
    if len(matches) > 1:
        raise InputError(str(path), f"{len(matches)} columns are named '{TEXT_COLUMN}'; keep one",
                         column=TEXT_COLUMN)
    return frame[matches[0]].astype(str).tolist()


def _score(args: argparse.Namespace, console: Console) -> int:
    texts = read_texts(args.file)
    model = _model(args, console)
    with _progress(console) as progress:
        scores = model.score(texts, progress=progress)
    write_scores(scores, args.out)
    counts = scores["label"].value_counts()
    summary = ", ".join(f"{int(counts.get(label, 0))} {label}" for label in ("bearish", "bullish", "neutral"))
    console.print(f"Scored {len(scores)} texts ({summary}) into {args.out}")
    return 0


def write_scores(scores: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False, float_format="%.9g", lineterminator="\n")


def _model(args: argparse.Namespace, console: Console) -> TextModel:
    from signal_engine.text.encoder import MiniLMEncoder
    from signal_engine.text.model import METADATA, default_model_folder, load_text_model, save_text_model

    folder = args.model or default_model_folder()
    encoder = MiniLMEncoder(threads=args.threads)
    if (folder / METADATA).exists():
        return load_text_model(folder, encoder)
    console.print(f"No trained text head in {folder}: training it on the shipped corpus (once)")
    model = _trained(encoder, console, rows=None, reps=1000)
    save_text_model(model, folder)
    console.print(f"Saved the text model to {folder}: {_headline(model.metadata)}")
    return model


def _train(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.text.encoder import MiniLMEncoder
    from signal_engine.text.model import default_model_folder, save_text_model

    folder = args.model or default_model_folder()
    model = _trained(MiniLMEncoder(threads=args.threads), console, rows=args.rows, reps=args.reps,
                     corpus=args.corpus)
    save_text_model(model, folder)
    if args.json:
        print(json.dumps(model.metadata, indent=2, sort_keys=True))
        return 0
    console.print(evaluation_table(model.metadata))
    console.print(f"Saved the text model to {folder}: {_headline(model.metadata)}")
    return 0


def _trained(encoder: Any, console: Console, *, rows: int | None, reps: int, corpus: Path | None = None) -> TextModel:
    from signal_engine.errors import ConfigError
    from signal_engine.text.model import train_text_model

    if reps < 10:
        raise ConfigError(f"--reps must be at least 10, got {reps}")
    with _progress(console) as progress:
        return train_text_model(rows=rows, encoder=encoder, progress=progress, reps=reps, corpus_path=corpus)


def _labels(args: argparse.Namespace, console: Console) -> int:
    import os

    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.commands.step import DEFAULT_DATABASE
    from signal_engine.config import load_config
    from signal_engine.evaluation.backtest import series_frame
    from signal_engine.text.timeline_labels import UNKNOWN, corpus_rows, timeline_labels

    config = load_config(args.profile)
    database = args.database or os.environ.get("SIGNAL_ENGINE_DATABASE_URL") or DEFAULT_DATABASE
    storage = bootstrap(Settings.from_env(database_url=database))
    series = storage.prices.read_bars(args.symbol, args.timeframe)
    if len(series.bars) == 0:
        raise InputError(args.symbol, f"no {args.timeframe} bars stored in {database}; ingest or collect them first")
    documents = sorted([*storage.documents.read_documents("news", args.symbol),
                        *storage.documents.read_documents("reports", args.symbol)],
                       key=lambda d: (d.published_at, d.id))
    labelled = timeline_labels(documents, series, series_frame(series)["vol30"].to_numpy(),
                               timeframe=args.timeframe, horizon=args.horizon or config.labels.horizon,
                               threshold=config.labels.threshold if args.threshold is None else args.threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labelled.to_csv(args.out, index=False, float_format="%.9g", lineterminator="\n")
    counts = labelled["label"].value_counts()
    console.print(f"Labelled {len(labelled)} documents of {args.symbol} into {args.out}: "
                  + ", ".join(f"{int(counts.get(k, 0))} {k}" for k in ("bearish", "bullish", "neutral", UNKNOWN)))
    if args.corpus is not None:
        corpus = corpus_rows(labelled)
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        corpus.to_csv(args.corpus, index=False, lineterminator="\n")
        console.print(f"Wrote {len(corpus)} known labels as a corpus into {args.corpus} (text-train --corpus)")
    return 0


def _headline(metadata: dict[str, Any]) -> str:
    scores = metadata["evaluation"]["models"]["text_sentiment"]
    return (f"trained on {metadata['train_texts']} texts (C={metadata['head']['C']:g}); held-out "
            f"({metadata['held_out_texts']} texts) accuracy {scores['accuracy']:.3f}, "
            f"macro-F1 {scores['macro_f1']:.3f}")


def evaluation_table(metadata: dict[str, Any]) -> Any:
    """The held-out evaluation of ``text.json`` as a rich table."""
    from rich.table import Table

    table = Table(title=f"Held-out evaluation ({metadata['held_out_texts']} texts; 90% bootstrap intervals)")
    for column in ("model", "accuracy", "macro-F1", "text_sentiment's macro-F1 lead"):
        table.add_column(column)
    for name, s in metadata["evaluation"]["models"].items():
        lead = (f"{s['macro_f1_gap']:+.3f} [{s['macro_f1_gap_low']:+.3f}, {s['macro_f1_gap_high']:+.3f}]"
                if "macro_f1_gap" in s else "")
        table.add_row(name, f"{s['accuracy']:.3f} [{s['accuracy_low']:.3f}, {s['accuracy_high']:.3f}]",
                      f"{s['macro_f1']:.3f} [{s['macro_f1_low']:.3f}, {s['macro_f1_high']:.3f}]", lead)
    return table


class _progress:
    """A rich progress bar per stage of texts (transient); without a terminal, one line per stage and quarter."""

    def __init__(self, console: Console) -> None:
        self._console = console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=console, transient=True)
        self._tasks: dict[str, Any] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> Any:
        self._bar.__enter__()

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(f"embedding {stage} texts", total=total)
                self._done[stage] = 0
            before, self._done[stage] = self._done[stage], done
            self._bar.update(self._tasks[stage], completed=done)
            if not self._console.is_terminal and (4 * done) // total > (4 * before) // total:
                self._console.print(f"embedded {done} of {total} {stage} texts")

        return update

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)
