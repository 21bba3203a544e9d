"""Load and validate price files in the Yahoo Finance export layout.

`Date,Open,High,Low,Close[,Adj Close][,Volume][,implied_vol][,implied_term_slope][,implied_skew][,news_score]`,
column names case-insensitive, Date with an optional time for intraday bars. Anything that cannot be used raises
:class:`InputError` naming the file, the line or column, and what is expected.

The optional ``implied_vol`` column is implied volatility in annualised % (as the VIX is quoted) known at each
bar's close; an empty cell means it is missing on that bar (the experts that read it abstain there). It is kept
as the ``implied_vol`` column of the bars, unadjusted.

The optional ``implied_term_slope`` and ``implied_skew`` columns are the option surface's shape at each bar's close in %
points (any sign): the at-the-money volatility at 90 days minus the horizon's, and the 90% put's minus the 110%
call's volatility (:mod:`signal_engine.storage.implied_vol`). An empty cell means missing on that bar; they are
kept as columns of those names, read by ``vol_har_implied`` when ``volatility.implied_terms`` names them.

The optional ``news_score`` column is the text expert's point-in-time news aggregate at each bar's close (a
direction in [-1, 1], :mod:`signal_engine.text.aggregate`); an empty cell means the bar had no news in its window
(the ``news`` expert of ``moe.news`` abstains there). It is kept as the ``news_score`` column of the bars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from signal_engine.errors import InputError

PRICE_COLUMNS = ("open", "high", "low", "close")
IMPLIED_VOL = "implied_vol"
IV_NAME = "implied vol"  # the header as _map_columns compares it (lower case, '_' as ' ')
IV_TERM_SLOPE = "implied_term_slope"
IV_SKEW = "implied_skew"
IV_STRUCTURE = (IV_TERM_SLOPE, IV_SKEW)  # the option surface's shape, % points (config.IV_STRUCTURE_COLUMNS)
NEWS_SCORE = "news_score"
NEWS_NAME = "news score"
DATE_ALIASES = ("date", "datetime", "timestamp")
EXPECTED_LAYOUT = "Date,Open,High,Low,Close[,Adj Close][,Volume]"
_MISSING_MARKERS = {"", "null", "nan", "na", "n/a", "none", "-"}
_FIRST_DATA_LINE = 2


@dataclass(frozen=True)
class PriceSeries:
    """One symbol's validated bars.

    ``bars`` is indexed by a strictly increasing ``timestamp`` and holds float columns open, high,
    low, close and, when the file has them, volume, implied_vol, implied_term_slope, implied_skew and news_score
    (NaN where missing). Prices are adjusted by Adj Close / Close when the file carries Adj Close, so returns include
    dividends and splits.
    """

    symbol: str
    source: str
    bars: pd.DataFrame

    @property
    def has_volume(self) -> bool:
        return "volume" in self.bars.columns

    @property
    def close_only(self) -> bool:
        """One price a bar (:func:`close_only`): no range for range-based estimators to read."""
        return close_only(self.bars)

    @property
    def intraday(self) -> bool:
        index = pd.DatetimeIndex(self.bars.index)
        return bool((index != index.normalize()).any())

    def __len__(self) -> int:
        return len(self.bars)


def close_only(bars: pd.DataFrame) -> bool:
    """Whether every bar has Open = High = Low = Close: a file of one price a bar (a daily reference rate, a close-only
    export) written in the OHLC layout. Range-based estimators read nothing from such bars (their range is 0)."""
    if len(bars) == 0:
        return False
    prices = bars.loc[:, list(PRICE_COLUMNS)].to_numpy(dtype=float)
    return bool((prices == prices[:, 3:4]).all())


def load_prices(path: str | Path, symbol: str | None = None) -> PriceSeries:
    """Read, validate and adjust one price file; ``symbol`` defaults to the file name."""
    path = Path(path)
    source = str(path)
    raw = _read_table(path, source)
    columns = _map_columns(raw, source)
    dates = _parse_dates(raw[columns["date"]], source, columns["date"])
    values = {
        name: _parse_numbers(raw[columns[name]], source, columns[name])
        for name in (*PRICE_COLUMNS, "adj close", "volume")
        if name in columns
    }
    _check_prices(values, source, columns)
    _check_increasing(dates, source, columns["date"])
    bars = _assemble(dates, values)
    if IV_NAME in columns:
        bars[IMPLIED_VOL] = _parse_implied_vol(raw[columns[IV_NAME]], source, columns[IV_NAME])
    for term in IV_STRUCTURE:
        if _header(term) in columns:
            bars[term] = _parse_surface_term(raw[columns[_header(term)]], source, columns[_header(term)])
    if NEWS_NAME in columns:
        bars[NEWS_SCORE] = _parse_news_score(raw[columns[NEWS_NAME]], source, columns[NEWS_NAME])
    return PriceSeries(symbol=(symbol or path.stem).upper(), source=source, bars=bars)


def load_all(paths: Sequence[Path], symbols: Sequence[str] | None) -> list[PriceSeries]:
    """Load and validate every file before any long work starts."""
    if symbols and len(symbols) != len(paths):
        raise InputError("--symbol", f"given {len(symbols)} times for {len(paths)} --prices files; give one per file")
    loaded = [load_prices(p, symbols[i] if symbols else None) for i, p in enumerate(paths)]
    seen: dict[str, str] = {}
    for series in loaded:
        if series.symbol in seen:
            raise InputError(series.source, f"symbol {series.symbol} is also taken by {seen[series.symbol]}; "
                             "rename the file or pass --symbol for each file")
        seen[series.symbol] = series.source
    return loaded


def _read_table(path: Path, source: str) -> pd.DataFrame:
    try:
        head = path.read_bytes()[:65536]
    except FileNotFoundError:
        raise InputError(source, "file not found; expected a CSV file in the layout " + EXPECTED_LAYOUT) from None
    except IsADirectoryError:
        raise InputError(source, "is a directory; expected a CSV file") from None
    if b"\x00" in head or not _is_utf8(head):
        raise InputError(source, "is a binary file, not CSV text; expected the layout " + EXPECTED_LAYOUT)
    if not head.strip():
        raise InputError(source, "is empty; expected a header line " + EXPECTED_LAYOUT + " and one line per bar")
    separator = _separator(head)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=separator)
    except pd.errors.ParserError as exc:
        raise InputError(source, f"is not valid CSV ({exc}); expected the layout {EXPECTED_LAYOUT}") from None
    except UnicodeDecodeError:
        raise InputError(source, "is a binary file, not CSV text; expected the layout " + EXPECTED_LAYOUT) from None
    if table.empty:
        raise InputError(source, "has a header but no bars; expected one line per bar after the header")
    return table if separator == "," else _decimal_commas_to_points(table)


def _separator(head: bytes) -> str:
    """The header's field separator: ',' (Yahoo's export), or ';' / tab where a spreadsheet wrote the file."""
    header = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    counts = {separator: header.count(separator) for separator in (",", ";", "\t")}
    best = max(counts, key=lambda separator: counts[separator])
    return best if counts[best] > counts[","] else ","


def _decimal_commas_to_points(table: pd.DataFrame) -> pd.DataFrame:
    """Columns whose every cell is a number written with a decimal comma (``101,25``), as ``101.25``."""
    out = table.copy()
    for column in out.columns:
        cells = out[column].str.strip()
        filled = cells[cells != ""]
        if len(filled) and filled.str.fullmatch(_DECIMAL_COMMA).all() and filled.str.contains(",").any():
            out[column] = cells.str.replace(",", ".", regex=False)
    return out


_DECIMAL_COMMA = r"-?\d+(,\d+)?"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3
    return True


def _map_columns(table: pd.DataFrame, source: str) -> dict[str, str]:
    by_lower = {str(c).strip().lower().replace("_", " "): str(c) for c in table.columns}
    columns: dict[str, str] = {}
    date_column = next((by_lower[a] for a in DATE_ALIASES if a in by_lower), None)
    if date_column is None:
        raise InputError(source, _header_problem(list(by_lower)) or
                         f"missing the date column; expected 'Date' first, as in {EXPECTED_LAYOUT}", column="Date")
    columns["date"] = date_column
    for name in (*PRICE_COLUMNS, "adj close", "volume", IV_NAME, *map(_header, IV_STRUCTURE), NEWS_NAME):
        if name in by_lower:
            columns[name] = by_lower[name]
        elif name in PRICE_COLUMNS:
            raise InputError(source, _header_problem(list(by_lower)) or
                             f"missing column; expected the layout {EXPECTED_LAYOUT}", column=name.title())
    return columns


# Column names that spreadsheets and brokers write in other languages, by language: header -> our column.
_TRANSLATED_HEADERS: dict[str, dict[str, str]] = {
    "German": {"datum": "Date", "eröffnung": "Open", "eroeffnung": "Open", "erster": "Open", "hoch": "High",
               "tief": "Low", "schluss": "Close", "schlusskurs": "Close", "letzter": "Close", "volumen": "Volume",
               "umsatz": "Volume"},
    "French": {"ouverture": "Open", "plus haut": "High", "haut": "High", "plus bas": "Low", "bas": "Low",
               "clôture": "Close", "cloture": "Close", "dernier": "Close"},
    "Spanish": {"fecha": "Date", "apertura": "Open", "máximo": "High", "maximo": "High", "mínimo": "Low",
                "minimo": "Low", "cierre": "Close", "último": "Close", "volumen": "Volume"},
    "Italian": {"data": "Date", "apertura": "Open", "massimo": "High", "minimo": "Low", "chiusura": "Close",
                "ultimo": "Close", "volume": "Volume"},
    "Dutch": {"datum": "Date", "openingskoers": "Open", "hoog": "High", "laag": "Low", "slotkoers": "Close",
              "slot": "Close"},
    "Portuguese": {"data": "Date", "abertura": "Open", "máxima": "High", "maxima": "High", "mínima": "Low",
                   "minima": "Low", "fechamento": "Close", "fecho": "Close", "último": "Close"},
}
_OTHER_SEPARATORS = ("|", ":", " ")


def _header_problem(header: list[str]) -> str | None:
    """Why a header that lacks our columns was not understood, when the cause can be named: the fields are
    separated by a character other than ',', ';' or tab, or the column names are in another language."""
    if len(header) == 1:
        line = header[0]
        for separator in _OTHER_SEPARATORS:
            fields = [f.strip() for f in line.split(separator) if f.strip()]
            if len(fields) >= 5 and any(f in DATE_ALIASES for f in fields):
                shown = "space" if separator == " " else f"'{separator}'"
                return (f"the header's fields are separated by {shown} ('{line}'); separate them with ',' "
                        f"(or ';' or tab), as in {EXPECTED_LAYOUT}")
    scores = {language: [(name, ours) for name in header if (ours := table.get(name))]
              for language, table in _TRANSLATED_HEADERS.items()}
    language, matched = max(scores.items(), key=lambda item: len({ours for _, ours in item[1]}))
    if len({ours for _, ours in matched}) >= 3:
        renames = ", ".join(f"'{name}' -> {ours}" for name, ours in matched)
        return (f"the header looks {language} ({renames}); rename the columns to English, as in "
                f"{EXPECTED_LAYOUT}")
    return None


def _line(position: int) -> int:
    return position + _FIRST_DATA_LINE


def _first_missing(cells: pd.Series) -> int | None:
    missing = cells.str.strip().str.lower().isin(_MISSING_MARKERS).to_numpy()
    return int(np.argmax(missing)) if missing.any() else None


def _parse_dates(cells: pd.Series, source: str, column: str) -> pd.DatetimeIndex:
    empty = _first_missing(cells)
    if empty is not None:
        raise InputError(source, "is empty; every bar needs a date", line=_line(empty), column=column)
    has_offset = bool(cells.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True).any())
    parsed = pd.to_datetime(cells, format="ISO8601", errors="coerce", utc=has_offset)
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(source, f"'{cells.iloc[first]}' is not a date; expected YYYY-MM-DD or "
                         "YYYY-MM-DD HH:MM:SS", line=_line(first), column=column)
    index = pd.DatetimeIndex(parsed)
    if has_offset:
        index = index.tz_convert(None)
    return index.rename("timestamp")


def _parse_numbers(cells: pd.Series, source: str, column: str) -> np.ndarray:
    empty = _first_missing(cells)
    if empty is not None:
        raise InputError(source, f"is empty ('{cells.iloc[empty]}'); every bar needs a number here",
                         line=_line(empty), column=column)
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers)
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(source, f"'{cells.iloc[first]}' is not a finite number", line=_line(first),
                         column=column)
    return numbers


def _parse_optional(cells: pd.Series, source: str, column: str, valid: Callable[[np.ndarray], np.ndarray],
                    expected: str) -> np.ndarray:
    """An optional per-bar column: NaN for an empty cell (missing on that bar), else a number that ``valid`` accepts;
    the first other cell is an InputError naming its line and column, and ``expected`` (what the cell should hold)."""
    missing = cells.str.strip().str.lower().isin(_MISSING_MARKERS).to_numpy()
    numbers = pd.to_numeric(cells.where(~missing, "nan"), errors="coerce").to_numpy(dtype=float)
    bad = ~missing & ~(np.isfinite(numbers) & valid(numbers))
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(source, f"'{cells.iloc[first]}' is not {expected}", line=_line(first), column=column)
    return np.where(missing, np.nan, numbers)


def _parse_implied_vol(cells: pd.Series, source: str, column: str) -> np.ndarray:
    """Implied volatility in annualised %: NaN for an empty cell (missing on that bar), else a number > 0."""
    return _parse_optional(cells, source, column, lambda numbers: numbers > 0,
                           "an implied volatility; expected a number > 0 in annualised % (e.g. 15.3), or an empty "
                           "cell where it is missing")


def _parse_surface_term(cells: pd.Series, source: str, column: str) -> np.ndarray:
    """An option term slope or skew in % points: NaN for an empty cell (missing on that bar), else a finite number."""
    return _parse_optional(cells, source, column, lambda numbers: np.ones(len(numbers), dtype=bool),
                           "a number; expected the option term slope or skew in % points (e.g. 2.5 or -1.2), or an "
                           "empty cell where it is missing")


def _parse_news_score(cells: pd.Series, source: str, column: str) -> np.ndarray:
    """A bar's news direction in [-1, 1]: NaN for an empty cell (no news in the bar's window: an abstention)."""
    return _parse_optional(cells, source, column, lambda numbers: np.abs(numbers) <= 1,
                           "a news score; expected a number in [-1, 1] (the news aggregate's direction), or an empty "
                           "cell where the bar had no news")


def _header(column: str) -> str:
    """A column name as _map_columns compares headers (lower case, '_' as ' ')."""
    return column.replace("_", " ")


def _check_prices(values: dict[str, np.ndarray], source: str, columns: dict[str, str]) -> None:
    for name in (*PRICE_COLUMNS, "adj close"):
        if name not in values:
            continue
        non_positive = values[name] <= 0
        if non_positive.any():
            first = int(np.argmax(non_positive))
            raise InputError(source, f"price {values[name][first]:g} is not positive; prices must be > 0",
                             line=_line(first), column=columns[name])
    if "volume" in values and (values["volume"] < 0).any():
        first = int(np.argmax(values["volume"] < 0))
        raise InputError(source, f"volume {values['volume'][first]:g} is negative; volume must be >= 0",
                         line=_line(first), column=columns["volume"])
    inverted = values["high"] < values["low"]
    if inverted.any():
        first = int(np.argmax(inverted))
        raise InputError(source, f"High {values['high'][first]:g} is below Low {values['low'][first]:g}; "
                         "expected High >= Low", line=_line(first), column=columns["high"])


def _check_increasing(dates: pd.DatetimeIndex, source: str, column: str) -> None:
    steps = np.diff(dates.asi8)
    not_increasing = steps <= 0
    if not_increasing.any():
        first = int(np.argmax(not_increasing)) + 1
        raise InputError(source, f"{dates[first]} is not after the previous bar's {dates[first - 1]}; "
                         "dates must be strictly increasing (sort the file, drop repeated bars)",
                         line=_line(first), column=column)


def _assemble(dates: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> pd.DataFrame:
    adjustment = values["adj close"] / values["close"] if "adj close" in values else 1.0
    bars = pd.DataFrame({name: values[name] * adjustment for name in PRICE_COLUMNS}, index=dates)
    if "volume" in values:
        bars["volume"] = values["volume"]
    return bars
