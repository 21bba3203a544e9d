"""The text expert's model: train the head on the shipped corpus, evaluate it, persist it, score texts.

Nothing binary ships: the head is trained on first use from the corpus and the encoder (a minute or two on
one core; deterministic) and cached in a model folder, written with the registry's conventions
(:func:`signal_engine.registry.save_experts`: ``manifest.json`` with checksums, ``experts/text_sentiment/``)
plus ``text.json`` (what it was trained on, its fingerprint, its held-out evaluation against the baselines).

The head is trained on the training part of the corpus's fixed split; the held-out part only measures it,
so the evaluation in ``text.json`` is that of the very model that scores.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine import __version__
from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.text import LABELS
from signal_engine.text.corpus import CORPUS_SHA256, HELD_OUT_SHARE, SPLIT_SEED, load_corpus, split_corpus, subsample
from signal_engine.text.encoder import MODEL_ID, MODEL_SHA256, VOCABULARY_SHA256, MiniLMEncoder
from signal_engine.text.head import SentimentHead

EXPERT_NAME = "text_sentiment"
METADATA = "text.json"
MODEL_VARIABLE = "SIGNAL_ENGINE_TEXT_MODEL"
SCHEMA_VERSION = 1
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: texts embedded so far in a stage ("train", "held-out", "score")."""


@dataclass
class TextModel:
    """The encoder and the fitted head; ``metadata`` is ``text.json``'s content."""

    encoder: MiniLMEncoder
    head: SentimentHead
    metadata: dict[str, Any]

    def score(self, texts: Sequence[str], progress: Progress | None = None) -> pd.DataFrame:
        """One row per text, in order: ``label`` and ``p_bearish``, ``p_bullish``, ``p_neutral`` (summing to 1)."""
        embeddings = _embed(self.encoder, texts, "score", progress)
        return probability_frame(self.head.predict_proba(embeddings), self.head.classes_)


def probability_frame(proba: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    """Class probabilities (columns in the order of ``classes``, integer labels) as the text-score layout."""
    frame = pd.DataFrame(0.0, index=range(len(proba)), columns=[f"p_{label}" for label in LABELS])
    for column, cls in enumerate(classes):
        frame[f"p_{LABELS[int(cls)]}"] = proba[:, column]
    values = frame.to_numpy()
    labels = np.array(LABELS)[np.argmax(values, axis=1)] if len(values) else np.array([], dtype=str)
    frame.insert(0, "label", labels)
    return frame


def fingerprint(rows: int | None, corpus_sha256: str | None = None) -> dict[str, Any]:
    """What determines the trained head: data (the shipped corpus unless ``corpus_sha256`` names another), encoder,
    split, head settings, code version."""
    return {"corpus_sha256": corpus_sha256 or CORPUS_SHA256, "encoder": MODEL_ID, "encoder_sha256": MODEL_SHA256,
            "vocabulary_sha256": VOCABULARY_SHA256, "split_seed": SPLIT_SEED, "rows": rows,
            "head": {k: (list(v) if isinstance(v, tuple) else v) for k, v in SentimentHead().get_params().items()},
            "signal_engine": __version__}


def default_model_folder() -> Path:
    """``$SIGNAL_ENGINE_TEXT_MODEL``, else the user cache (``$XDG_CACHE_HOME`` or ``~/.cache``)
    ``signal-engine/text/<fingerprint>``: a new corpus, encoder or code version trains a new head."""
    if os.environ.get(MODEL_VARIABLE):
        return Path(os.environ[MODEL_VARIABLE])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(json.dumps(fingerprint(None), sort_keys=True).encode()).hexdigest()[:16]
    return cache / "signal-engine" / "text" / key


def train_text_model(*, rows: int | None = None, encoder: MiniLMEncoder | None = None,
                     progress: Progress | None = None, baselines: bool = True, reps: int = 1000,
                     seed: int = 0, corpus_path: str | Path | None = None) -> TextModel:
    """Train the head on the corpus's training part and evaluate it, the majority class and (``baselines``) the
    lexicon baselines on the held-out part. ``corpus_path``: another labelled corpus (``text``, ``label``
    columns), e.g. collected news labelled by the moves that followed them (``text-labels --corpus``); default
    the corpus shipped with the project.

    ``rows`` (quick trials, tests): use a stratified subsample of ``rows`` corpus texts instead, taken from the
    two parts in their proportions (so it too is evaluated on texts it was not trained on).
    """
    from signal_engine.text.evaluation import scored

    if rows is not None and rows < 10:
        raise ConfigError(f"rows must be at least 10 (a stratified subsample of the corpus), got {rows}")
    encoder = encoder or MiniLMEncoder()
    corpus = load_corpus(corpus_path)
    labels = corpus["label"].to_numpy()
    split = split_corpus(labels)
    train, held_out = split.train, split.held_out
    if rows is not None:
        train_rows = round(rows * (1.0 - HELD_OUT_SHARE))
        train = subsample(split.train, labels, train_rows)
        held_out = subsample(split.held_out, labels, rows - train_rows)
    texts = corpus["text"].tolist()
    train_x = _embed(encoder, [texts[i] for i in train], "train", progress)
    head = SentimentHead().fit(train_x, labels[train])
    held_texts = [texts[i] for i in held_out]
    held_x = _embed(encoder, held_texts, "held-out", progress)
    truth = labels[held_out]
    majority = int(np.bincount(labels[train]).argmax())
    predictions = {"text_sentiment": head.predict(held_x),
                   "baseline_majority": np.full(len(truth), majority)}
    if baselines:
        from signal_engine.text.lexicons import LoughranMcDonald, Vader

        for baseline in (LoughranMcDonald(), Vader()):
            predictions[baseline.name] = baseline.predict(held_texts)
    evaluation = scored(truth, predictions, reference="text_sentiment", reps=reps, seed=seed)
    corpus_sha256 = None if corpus_path is None else hashlib.sha256(Path(corpus_path).read_bytes()).hexdigest()
    metadata = {"schema_version": SCHEMA_VERSION, "fingerprint": fingerprint(rows, corpus_sha256),
                "labels": list(LABELS),
                "train_texts": len(train), "held_out_texts": len(held_out),
                "head": {"C": head.C_, "cv_log_loss": dict(zip(map(str, head.Cs), head.cv_log_loss_, strict=True))},
                "evaluation": {"bootstrap": {"reps": reps, "level": 0.9, "seed": seed, "kind": "iid, paired"},
                               "models": evaluation}}
    return TextModel(encoder=encoder, head=head, metadata=metadata)


def save_text_model(model: TextModel, folder: str | Path) -> Path:
    """Write the head (``save_experts`` layout) and ``text.json`` into ``folder``."""
    from signal_engine.registry import save_experts

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    save_experts({EXPERT_NAME: model.head}, root)
    (root / METADATA).write_text(json.dumps(model.metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return root


def load_text_model(folder: str | Path, encoder: MiniLMEncoder | None = None) -> TextModel:
    """The model saved in ``folder`` (checksums verified); only load folders you wrote: the head is a pickle."""
    from signal_engine.registry import load_experts

    root = Path(folder)
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SignalEngineError(f"{root}: no {METADATA}; train a text model there with "
                                f"`signal-engine text-train --model {root}`") from None
    stored = metadata.get("fingerprint", {})
    current = fingerprint(stored.get("rows"))
    changed = sorted(k for k in current if stored.get(k) != current[k] and k != "signal_engine")
    if changed:
        raise SignalEngineError(f"{root}: the text model was trained with another {', '.join(changed)}; "
                                f"retrain it: signal-engine text-train --model {root}")
    head = load_experts(root, [EXPERT_NAME])[EXPERT_NAME]
    return TextModel(encoder=encoder or MiniLMEncoder(), head=head, metadata=metadata)


def _embed(encoder: MiniLMEncoder, texts: Sequence[str], stage: str, progress: Progress | None) -> np.ndarray:
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(stage, done, len(texts))

    return encoder.encode(texts, on_batch=step)
