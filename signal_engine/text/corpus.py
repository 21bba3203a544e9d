"""The labelled financial corpus shipped with the project and its fixed held-out split.

``files/twitter-financial-news-sentiment.csv`` (MIT; ``files/README.md`` has the source and the notice):
finance headlines and tweets labelled 0 bearish, 1 bullish, 2 neutral. :func:`split_corpus` holds out a
stratified 20 % with a fixed seed; the held-out part is for the final numbers only (never for choosing
anything), the training part is where cross-validation chooses the head's regularisation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.text import LABELS

CORPUS = Path(__file__).parent / "files" / "twitter-financial-news-sentiment.csv"
CORPUS_SHA256 = "71aa99d0d37feced03c999ec23b5b25302c92f39d69b6acb0a37aa076c5420e8"
HELD_OUT_SHARE = 0.2
SPLIT_SEED = 20240519


@dataclass(frozen=True)
class CorpusSplit:
    """Row positions of the corpus: the training part and the held-out part (disjoint, both sorted)."""

    train: np.ndarray
    held_out: np.ndarray


def load_corpus(path: str | Path | None = None) -> pd.DataFrame:
    """The corpus as ``text`` (str) and ``label`` (int 0..2) columns; the shipped file's checksum is verified."""
    source = Path(path) if path is not None else CORPUS
    payload = source.read_bytes()
    if path is None and hashlib.sha256(payload).hexdigest() != CORPUS_SHA256:
        raise SignalEngineError(f"{source}: the corpus file was changed (sha256 differs from {CORPUS_SHA256})")
    frame = pd.read_csv(source, dtype={"text": str}, keep_default_na=False)
    if list(frame.columns) != ["text", "label"]:
        raise SignalEngineError(f"{source}: expected the columns text,label; found {','.join(frame.columns)}")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = ~labels.isin(range(len(LABELS)))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SignalEngineError(f"{source}: row {row + 1} has label {frame['label'].iloc[row]!r}; "
                                f"expected 0 ({LABELS[0]}), 1 ({LABELS[1]}) or 2 ({LABELS[2]})")
    return pd.DataFrame({"text": frame["text"].astype(str), "label": labels.astype(int)})


def split_corpus(labels: np.ndarray, *, held_out: float = HELD_OUT_SHARE, seed: int = SPLIT_SEED) -> CorpusSplit:
    """A stratified split of row positions: ``held_out`` of each class's rows are held out (rounded)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels)
    positions = np.arange(len(y))
    train, test = train_test_split(positions, test_size=held_out, random_state=seed, stratify=y, shuffle=True)
    return CorpusSplit(train=np.sort(train), held_out=np.sort(test))


def subsample(positions: np.ndarray, labels: np.ndarray, rows: int, *, seed: int = SPLIT_SEED) -> np.ndarray:
    """A stratified subsample of ``rows`` of ``positions`` (sorted); all of them when ``rows`` is not smaller."""
    from sklearn.model_selection import train_test_split

    if rows >= len(positions):
        return np.sort(positions)
    y = np.asarray(labels)[positions]
    chosen, _ = train_test_split(positions, train_size=rows, random_state=seed, stratify=y, shuffle=True)
    return np.sort(chosen)
