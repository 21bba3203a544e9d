"""The whole book in a bundle: every timeframe model per symbol and the settings the book is stepped with.

A version folder of the model registry (``docs/model-bundle.md``) holds, beside the MoE's own bundle::

    book.json                     the books: symbols, bar timeframes, periods per year, per-symbol costs, the
                                  orchestration config (short limits included) and the timeframe models
    books/<book>/<model>/         one timeframe model: a complete bundle folder (bundle.json, calibration.json,
                                  gate.npz, experts/) trained on labels of the model's horizon

A timeframe model whose horizon is the MoE's own is the version's bundle itself (``"bundle": "."``).
:meth:`BookBundle.load` reads it all and refuses a bundle that lacks any of it, naming the file and the field:
a live book never steps with a default where the backtest had a setting.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.state import (
    BookState,
    BookStateError,
    config_from_json,
    config_to_json,
    spec_from_json,
)
from signal_engine.orchestration.timeframes import TimeframeSpec
from signal_engine.registry import MANIFEST
from signal_engine.serving.bundle import BUNDLE_FILE, EXPERTS_FOLDER, BundleError, ServingBundle

BOOK_FILE = "book.json"
BOOKS_FOLDER = "books"
BOOK_SCHEMA_VERSION = 1
SAME_BUNDLE = "."
SEED_FILE = "seed.json"
BOOK_FIELDS = ("name", "symbols", "timeframes", "periods_per_year", "cost_bps", "orchestration", "models")
MODEL_FIELDS = ("spec", "bundle")


@dataclass(frozen=True)
class BookModel:
    """One timeframe model of a book: its spec and the bundle folder (relative to the version) that answers it."""

    spec: TimeframeSpec
    bundle: str


@dataclass(frozen=True)
class BookSpec:
    """One book as training left it: what the batch backtest orchestrated, and with which settings."""

    name: str
    symbols: tuple[str, ...]
    timeframes: Mapping[str, str]
    periods_per_year: float
    cost_bps: Mapping[str, float]
    config: OrchestrationConfig
    models: tuple[BookModel, ...]
    seed: str | None = None

    @property
    def specs(self) -> tuple[TimeframeSpec, ...]:
        return tuple(m.spec for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "symbols": list(self.symbols),
            "timeframes": dict(self.timeframes),
            "periods_per_year": self.periods_per_year,
            "cost_bps": dict(self.cost_bps),
            "orchestration": config_to_json(self.config),
            "models": [{"spec": dataclasses.asdict(m.spec), "bundle": m.bundle} for m in self.models],
            "seed": self.seed,
        }


def model_folder(book: str, model: str) -> str:
    """Where a timeframe model of its own is stored in a version folder."""
    return f"{BOOKS_FOLDER}/{book}/{model}"


@dataclass(frozen=True)
class BookBundle:
    """The books of one model version, with each timeframe model's bundle loaded (``docs/model-bundle.md``)."""

    root: Path
    books: tuple[BookSpec, ...]
    bundles: Mapping[str, ServingBundle]

    @property
    def version(self) -> str:
        return self.bundles[SAME_BUNDLE].version if SAME_BUNDLE in self.bundles else self.root.name

    def book(self, name: str) -> BookSpec:
        for book in self.books:
            if book.name == name:
                return book
        known = ", ".join(b.name for b in self.books)
        raise BundleError(f"{self.root / BOOK_FILE}: no book {name!r}; this version has {known}")

    def model_bundle(self, book: BookSpec, model: str) -> ServingBundle:
        for entry in book.models:
            if entry.spec.name == model:
                return self.bundles[entry.bundle]
        raise BundleError(f"{self.root / BOOK_FILE}: book {book.name!r} has no model {model!r}")

    def folder(self, relative: str) -> Path:
        return _folder(self.root, relative)

    def seed_state(self, book: BookSpec) -> BookState | None:
        """The state the book's backtest ended in (``seed.json``), checked against the book's settings; None
        when the book has no seed."""
        if book.seed is None:
            return None
        path = self.root / book.seed
        try:
            state = BookState.from_json(path.read_bytes())
            state.check_settings(book.config, book.periods_per_year, [book.cost_bps[s] for s in book.symbols])
        except FileNotFoundError:
            raise BundleError(f"{path}: missing; {self.root / BOOK_FILE} names it as the seed of book "
                              f"{book.name!r}") from None
        except BookStateError as exc:
            raise BundleError(f"{path}: {exc}") from None
        if state.symbols != book.symbols or state.specs != book.specs:
            raise BundleError(f"{path}: the seed holds symbols {list(state.symbols)} and models "
                              f"{list(state.models)}; book {book.name!r} has {list(book.symbols)} and "
                              f"{[m.spec.name for m in book.models]}")
        return state

    @classmethod
    def load(cls, folder: str | Path) -> BookBundle:
        """Read ``book.json`` and every timeframe model's bundle; :class:`BundleError` names what is missing."""
        root = Path(folder)
        path = root / BOOK_FILE
        if not path.is_file():
            raise BundleError(f"{path}: missing; model version {root.name} carries no book (trained before whole-book "
                              "bundles, or by a run without the book): retrain it with 'signal-engine train' or "
                              "'signal-engine demo', which write book.json and books/")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(document, dict):
            raise BundleError(f"{path}: expected a JSON object with 'schema_version' and 'books'")
        schema = document.get("schema_version")
        if schema != BOOK_SCHEMA_VERSION:
            raise BundleError(f"{path}: field 'schema_version' is {schema!r}; this signal-engine reads "
                              f"{BOOK_SCHEMA_VERSION}")
        raw_books = document.get("books")
        if not isinstance(raw_books, list) or not raw_books:
            raise BundleError(f"{path}: field 'books' must be a non-empty list of books")
        books = tuple(_book(path, raw, f"books[{i}]") for i, raw in enumerate(raw_books))
        names = [b.name for b in books]
        if len(set(names)) != len(names):
            raise BundleError(f"{path}: field 'books': book names must be distinct, got {names}")
        bundles: dict[str, ServingBundle] = {}
        for i, book in enumerate(books):
            for j, model in enumerate(book.models):
                where = f"books[{i}].models[{j}].bundle"
                if model.bundle not in bundles:
                    bundles[model.bundle] = _model_bundle(root, model.bundle, where)
                _check_model(path, where, bundles[model.bundle], book, _folder(root, model.bundle))
        bundle = cls(root, books, bundles)
        for book in books:
            bundle.seed_state(book)
        return bundle


def write_book(root: Path, books: Sequence[BookSpec]) -> Path:
    """Write ``book.json`` into the version folder ``root`` (the models' bundle folders are already there)."""
    document = {"schema_version": BOOK_SCHEMA_VERSION, "books": [b.to_json() for b in books]}
    path = root / BOOK_FILE
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _book(path: Path, raw: Any, where: str) -> BookSpec:
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: field '{where}' must be an object with {', '.join(BOOK_FIELDS)}")
    missing = [f for f in BOOK_FIELDS if f not in raw]
    if missing:
        raise BundleError(f"{path}: field '{where}.{missing[0]}' is missing; a book needs {', '.join(BOOK_FIELDS)} "
                          "(retrain to write it)")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise BundleError(f"{path}: field '{where}.name' must be a non-empty string")
    symbols = raw["symbols"]
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s for s in symbols):
        raise BundleError(f"{path}: field '{where}.symbols' must be a non-empty list of symbols")
    ppy = raw["periods_per_year"]
    if isinstance(ppy, bool) or not isinstance(ppy, (int, float)) or not ppy > 0:
        raise BundleError(f"{path}: field '{where}.periods_per_year' is {ppy!r}; expected a positive number")
    timeframes = _per_symbol(path, raw["timeframes"], f"{where}.timeframes", symbols, str, "a bar timeframe")
    costs = _per_symbol(path, raw["cost_bps"], f"{where}.cost_bps", symbols, (int, float), "a cost in bps")
    try:
        config = config_from_json(raw["orchestration"], f"{where}.orchestration")
    except BookStateError as exc:
        raise BundleError(f"{path}: {exc}".replace("book state: ", "")) from None
    models = raw["models"]
    if not isinstance(models, list) or not models:
        raise BundleError(f"{path}: field '{where}.models' must be a non-empty list of timeframe models")
    entries = tuple(_model(path, m, f"{where}.models[{k}]") for k, m in enumerate(models))
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, str) or seed.startswith("/") or ".." in seed.split("/")):
        raise BundleError(f"{path}: field '{where}.seed' is {seed!r}; expected a file inside the version or null")
    return BookSpec(name=name, symbols=tuple(symbols), timeframes=timeframes, periods_per_year=float(ppy),
                    cost_bps={s: float(v) for s, v in costs.items()}, config=config, models=entries, seed=seed)


def _per_symbol(path: Path, raw: Any, where: str, symbols: Sequence[str], kind: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: field '{where}' must map each symbol to {what}")
    for symbol in symbols:
        value = raw.get(symbol)
        if value is None:
            raise BundleError(f"{path}: field '{where}' lacks {symbol}; every symbol of the book needs {what}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BundleError(f"{path}: field '{where}.{symbol}' is {value!r}; expected {what}")
    return {s: raw[s] for s in symbols}


def _model(path: Path, raw: Any, where: str) -> BookModel:
    if not isinstance(raw, dict) or any(f not in raw for f in MODEL_FIELDS):
        raise BundleError(f"{path}: field '{where}' must be an object with 'spec' and 'bundle'")
    try:
        spec = spec_from_json(raw["spec"], f"{where}.spec")
    except BookStateError as exc:
        raise BundleError(f"{path}: {exc}".replace("book state: ", "")) from None
    bundle = raw["bundle"]
    if not isinstance(bundle, str) or bundle.startswith("/") or ".." in bundle.split("/"):
        raise BundleError(f"{path}: field '{where}.bundle' is {bundle!r}; expected '.' or a folder inside the version")
    return BookModel(spec, bundle)


def _folder(root: Path, relative: str) -> Path:
    return root if relative == SAME_BUNDLE else root / relative


def _model_bundle(root: Path, relative: str, where: str) -> ServingBundle:
    folder = _folder(root, relative)
    if not (folder / BUNDLE_FILE).is_file():
        raise BundleError(f"{folder / BUNDLE_FILE}: missing; {root / BOOK_FILE} field '{where}' names this timeframe "
                          "model, whose bundle is not in the version (an incomplete copy?)")
    return ServingBundle.load(folder)


def _check_model(path: Path, where: str, bundle: ServingBundle, book: BookSpec, folder: Path) -> None:
    lacking = [s for s in book.symbols if s not in bundle.symbols]
    if lacking:
        raise BundleError(f"{path}: field '{where}': the model's bundle {bundle.version} is not trained for "
                          f"{lacking}; a timeframe model must answer for every symbol of its book")
    manifest = folder / EXPERTS_FOLDER / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{manifest}: missing; the timeframe model of {path} field '{where}' has no fitted experts "
                          "(the book steps with its experts in process)")
