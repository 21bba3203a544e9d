"""The text expert: encoder, corpus split, head, lexicon baselines, evaluation, and `signal-engine text-score`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score

from signal_engine.cli import main
from signal_engine.text.corpus import load_corpus, split_corpus, subsample
from signal_engine.text.encoder import MiniLMEncoder, mean_pool
from signal_engine.text.evaluation import macro_f1, scored
from signal_engine.text.head import SentimentHead
from signal_engine.text.lexicons import LoughranMcDonald, Vader
from signal_engine.text.model import load_text_model

ROWS = 60


@pytest.fixture(scope="session")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder(batch_size=4)


@pytest.fixture(scope="session")
def corpus() -> pd.DataFrame:
    return load_corpus()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("text-model")
    assert main(["text-train", "--model", str(folder), "--rows", str(ROWS), "--reps", "50"]) == 0
    return folder


def test_the_tokenizer_gives_bert_uncased_ids(encoder: MiniLMEncoder) -> None:
    # bert-base-uncased / all-MiniLM-L6-v2 ids: [CLS] hello world [SEP]; "Hello" is lower-cased
    assert encoder.token_ids(["Hello world"]) == [[101, 7592, 2088, 102]]
    assert len(encoder.token_ids(["word " * 400])[0]) == 256


def test_mean_pooling_ignores_padding_and_normalises() -> None:
    hidden = np.array([[[3.0, 0.0], [1.0, 2.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, np.array([[1, 1, 0]]))
    np.testing.assert_allclose(pooled, [[2.0 / np.sqrt(5.0), 1.0 / np.sqrt(5.0)]], rtol=1e-6)


def test_embeddings_are_unit_length_and_do_not_depend_on_the_batch(encoder: MiniLMEncoder) -> None:
    texts = ["Shares of Acme plunge after profit warning", "Acme stock tumbles as it cuts its outlook",
             "The weather in Paris is sunny today", ""]
    together = encoder.encode(texts)
    alone = np.vstack([MiniLMEncoder(batch_size=1).encode([t]) for t in texts])
    assert together.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-6)
    similar, unrelated = together[0] @ together[1], together[0] @ together[2]
    assert similar > unrelated + 0.3


def test_the_split_is_stratified_disjoint_and_fixed(corpus: pd.DataFrame) -> None:
    labels = corpus["label"].to_numpy()
    split = split_corpus(labels)
    assert len(corpus) == 9543 and np.bincount(labels).tolist() == [1442, 1923, 6178]
    assert not set(split.train) & set(split.held_out)
    assert len(split.train) + len(split.held_out) == len(labels)
    np.testing.assert_allclose(np.bincount(labels[split.held_out]) / len(split.held_out),
                               np.bincount(labels) / len(labels), atol=0.002)
    np.testing.assert_array_equal(split.held_out, split_corpus(labels).held_out)
    small = subsample(split.train, labels, 30)
    assert len(small) == 30 and set(small) <= set(split.train)


def test_the_head_follows_the_scikit_learn_contract() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    y = np.repeat([0, 1, 2], 20)
    X = centres[y] + 0.3 * rng.normal(size=(60, 8))
    head = SentimentHead(Cs=(0.1, 1.0, 10.0), folds=3).fit(X, y)
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert accuracy_score(y, head.predict(X)) > 0.9
    assert head.C_ in (0.1, 1.0, 10.0) and len(head.cv_log_loss_) == 3
    assert clone(head).get_params() == head.get_params()
    with pytest.raises(ValueError, match="at least two classes"):
        SentimentHead().fit(X[:3], np.array([0, 0, 0]))


def test_macro_f1_and_the_bootstrap_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=200)
    good = np.where(rng.random(200) < 0.8, truth, rng.integers(0, 3, size=200))
    constant = np.full(200, 2)
    assert macro_f1(truth, good) == pytest.approx(f1_score(truth, good, average="macro"))
    assert macro_f1(truth, constant) == pytest.approx(f1_score(truth, constant, average="macro", labels=[0, 1, 2],
                                                               zero_division=0))
    result = scored(truth, {"model": good, "baseline": constant}, reference="model", reps=200)
    assert result["model"]["accuracy"] == pytest.approx(accuracy_score(truth, good))
    assert result["model"]["macro_f1_low"] < result["model"]["macro_f1"] < result["model"]["macro_f1_high"]
    assert result["baseline"]["macro_f1_gap_low"] > 0 and result["baseline"]["macro_f1_gap_p_value"] < 0.01


def test_lexicon_baselines_read_the_finance_and_vader_lexicons() -> None:
    texts = ["The company reported a loss and a decline in sales", "Strong gains and record profitability",
             "The meeting is on Tuesday"]
    assert LoughranMcDonald().predict(texts).tolist() == [0, 1, 2]
    assert Vader().predict(["This is a terrible disaster", "What a great success", "The meeting is on Tuesday"]
                           ).tolist() == [0, 1, 2]


def test_text_score_scores_corpus_rows_in_order(model_folder: Path, corpus: pd.DataFrame, tmp_path: Path) -> None:
    held_out = split_corpus(corpus["label"].to_numpy()).held_out[:6]
    source = tmp_path / "headlines.csv"
    corpus.iloc[held_out][["text"]].assign(id=range(6)).to_csv(source, index=False)
    out = tmp_path / "scores.csv"
    assert main(["text-score", str(source), "--out", str(out), "--model", str(model_folder)]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["label", "p_bearish", "p_bullish", "p_neutral"]
    assert len(scores) == 6
    assert set(scores["label"]) <= {"bearish", "bullish", "neutral"}
    probabilities = scores[["p_bearish", "p_bullish", "p_neutral"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-8)
    assert (scores["label"] == pd.Series(["bearish", "bullish", "neutral"])[probabilities.argmax(axis=1)].to_numpy()
            ).all()
    model = load_text_model(model_folder)
    direct = model.score(corpus["text"].iloc[held_out].tolist())
    np.testing.assert_allclose(probabilities, direct[["p_bearish", "p_bullish", "p_neutral"]].to_numpy(), atol=1e-8)
    again = tmp_path / "again.csv"
    assert main(["text-score", str(source), "--out", str(again), "--model", str(model_folder)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_training_is_deterministic(model_folder: Path, tmp_path: Path) -> None:
    assert main(["text-train", "--model", str(tmp_path), "--rows", str(ROWS), "--reps", "50"]) == 0
    assert (tmp_path / "text.json").read_text() == (model_folder / "text.json").read_text()
    first, second = load_text_model(model_folder).head, load_text_model(tmp_path).head
    np.testing.assert_array_equal(first.coef_, second.coef_)


def test_a_file_without_a_text_column_names_the_column_and_the_fix(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "news.csv"
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows([["headline"], ["Acme beats estimates"]])
    assert main(["text-score", str(source), "--out", str(tmp_path / "o.csv"), "--model", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "column 'text'" in error and "'headline'" in error and "named text" in error
    assert not (tmp_path / "o.csv").exists()


def test_a_model_trained_for_another_corpus_is_refused(model_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    metadata = (folder / "text.json").read_text().replace('"corpus_sha256": "71aa', '"corpus_sha256": "0000')
    (folder / "text.json").write_text(metadata)
    source = tmp_path / "in.csv"
    source.write_text("text\nAcme beats estimates\n")
    assert main(["text-score", str(source), "--out", str(tmp_path / "o.csv"), "--model", str(folder)]) == 2
    assert "another corpus_sha256" in capsys.readouterr().err


def test_the_default_model_folder_is_the_variable_else_the_user_cache_by_fingerprint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from signal_engine.commands import text as command
    from signal_engine.text import model

    assert command.MODEL_VARIABLE == model.MODEL_VARIABLE
    monkeypatch.delenv(model.MODEL_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = model.default_model_folder()
    assert cached.parent == tmp_path / "signal-engine" / "text" and len(cached.name) == 16
    monkeypatch.setattr(model, "CORPUS_SHA256", "0" * 64)
    assert model.default_model_folder() != cached
    monkeypatch.setenv(model.MODEL_VARIABLE, str(tmp_path / "mine"))
    assert model.default_model_folder() == tmp_path / "mine"


def test_text_score_trains_the_head_on_first_use_and_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from signal_engine.commands import text as command

    calls: list[int | None] = []
    original = command._trained

    def small(encoder: MiniLMEncoder, console: object, *, rows: int | None, reps: int) -> object:
        calls.append(rows)  # the first-use training is the full corpus; here a small subsample stands in for it
        return original(encoder, console, rows=ROWS, reps=20)  # type: ignore[arg-type]

    monkeypatch.setattr(command, "_trained", small)
    monkeypatch.setenv("SIGNAL_ENGINE_TEXT_MODEL", str(tmp_path / "cache"))
    source = tmp_path / "in.csv"
    source.write_text('Text,id\n"Acme cuts its outlook, shares slide",1\n')
    assert main(["text-score", str(source), "--out", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "cache" / "text.json").is_file() and calls == [None]
    assert "No trained text head" in capsys.readouterr().err
    assert main(["text-score", str(source), "--out", str(tmp_path / "b.csv")]) == 0
    assert calls == [None]
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_text_train_trains_and_evaluates_on_another_corpus(corpus: pd.DataFrame, tmp_path: Path) -> None:
    """The loop of labels with timelines: `text-labels --corpus` writes text,label; `text-train --corpus` reads it.
    Here the other corpus is a stratified part of the shipped one, so its hash and sizes are its own."""
    import hashlib
    import json

    part = corpus.iloc[subsample(np.arange(len(corpus)), corpus["label"].to_numpy(), ROWS)]
    path = tmp_path / "collected.csv"
    part.to_csv(path, index=False)
    folder = tmp_path / "model"
    assert main(["text-train", "--model", str(folder), "--corpus", str(path), "--reps", "20"]) == 0
    metadata = json.loads((folder / "text.json").read_text())
    assert metadata["fingerprint"]["corpus_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert metadata["train_texts"] + metadata["held_out_texts"] == ROWS
