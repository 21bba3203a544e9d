"""The `signal-engine` command line (also `python -m signal_engine`)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from signal_engine import __version__
from signal_engine import config as config_module
from signal_engine.commands import COMMAND_MODULES
from signal_engine.config import PROFILES, RunConfig, load_config
from signal_engine.data.datasets import (
    DATASETS,
    DEVELOPMENT_DATASETS,
    dataset_costs,
    dataset_short_limits,
    export_all,
)
from signal_engine.data.loader import PriceSeries, load_all
from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.evaluation.planning import check_series
from signal_engine.orchestration.config import symbol_limits

if TYPE_CHECKING:
    from signal_engine.pipeline import BacktestOutput

EXIT_BAD_INPUT = 2
DEMO_OUT = Path("out/demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signal-engine", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    backtest = commands.add_parser("backtest", help="walk forward through price files; write signals, metrics, report")
    backtest.add_argument("--prices", type=Path, action="append", required=True, metavar="FILE.csv",
                          help="Yahoo-layout CSV: Date,Open,High,Low,Close[,Adj Close][,Volume]; repeat for more")
    backtest.add_argument("--symbol", action="append", metavar="SYMBOL",
                          help="symbol for each --prices file, in order (default: the file name)")
    backtest.add_argument("--out", type=Path, required=True, metavar="DIR")
    _add_run_options(backtest)
    backtest.add_argument("--news-from-store", action="store_true",
                          help="with moe.news: a price file without a news_score column gets each bar's news score "
                               "from the document store's news, scored by the text expert as a trained bundle's "
                               "(the config's 'news:' section: model folder, decay, max_documents)")
    backtest.add_argument("--database", metavar="URL",
                          help="the document store of --news-from-store (default: $SIGNAL_ENGINE_DATABASE_URL or "
                               "sqlite:///out/store/signal_engine.db)")

    demo = commands.add_parser("demo", help="the whole local pipeline on real market data shipped with the project")
    demo.add_argument("--out", type=Path, default=DEMO_OUT, metavar="DIR")
    demo.add_argument("--registry", type=Path, default=None, metavar="DIR",
                      help="where the demo trains its model bundle (default: out/models for the default --out, "
                           "which `signal-engine serve` reads; else DIR/models under --out)")
    demo.add_argument("--suite", action="store_true",
                      help="also walk every expert of the catalogue forward against its baseline (the expert "
                           "suite: about twice the demo's time; `make study`)")
    _add_run_options(demo)

    datasets = commands.add_parser("datasets", help="export the real data sets shipped with the dependencies")
    datasets.add_argument("--out", type=Path, default=Path("data"), metavar="DIR")
    datasets.add_argument("--development", action="store_true",
                          help="export the development series that defaults are chosen on instead "
                               f"({', '.join(DEVELOPMENT_DATASETS)}; MSFT needs pmdarima, the dev extra)")

    backtest.set_defaults(handler=_backtest)
    demo.set_defaults(handler=_demo)
    datasets.set_defaults(handler=_datasets)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML or JSON overrides of the profile")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="processes for the walk-forward (default: $SIGNAL_ENGINE_JOBS, else every core; 0: every "
                             "core); any N gives the same results")


def load_configs(profile: str, path: Path | None) -> tuple[RunConfig, dict[str, Any]]:
    """The run config of ``profile`` with the file's overrides, and the file's ``orchestration`` section.

    The ``orchestration`` section holds ``OrchestrationConfig`` settings (checked when the books are set up,
    before any walk-forward); a ``news`` section (the text expert's settings, :mod:`signal_engine.workflow.news`,
    read by ``backtest --news-from-store`` and ``train``) and a ``tuning`` section (``train --tune``) are left to their
    readers; every other section is the run
    config's, read by ``load_config``.
    """
    if path is None:
        return load_config(profile), {}
    overrides = config_module._read_mapping(path)
    if not {"orchestration", "news", "tuning"} & set(overrides):
        return load_config(profile, path), {}
    orchestration = _orchestration(overrides.pop("orchestration", None), path)
    overrides.pop("news", None)
    overrides.pop("tuning", None)
    overrides.pop("profile", None)
    config = load_config(profile)
    if overrides:
        config = config_module._apply(config, overrides, prefix="", source=str(path))
    return config, orchestration


def orchestration_section(path: Path | None) -> dict[str, Any]:
    """The ``orchestration`` section of a config file alone (``{}`` without a file or a section)."""
    if path is None:
        return {}
    return _orchestration(config_module._read_mapping(path).get("orchestration"), path)


def _orchestration(section: Any, path: Path) -> dict[str, Any]:
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'orchestration' must be a mapping of settings, e.g. 'orchestration: "
                          "{conflict_strategy: partial}'")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=120)
    try:
        return int(args.handler(args, console))
    except SignalEngineError as exc:
        print(f"signal-engine: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("signal-engine: interrupted", file=sys.stderr)
        return 130


def _backtest(args: argparse.Namespace, console: Console) -> int:
    config, orchestration = load_configs(args.profile, args.config)
    series = load_all(args.prices, args.symbol)
    if args.news_from_store:
        series = news_from_store(series, config, args.config, args.database, console)
    elif args.database is not None:
        raise ConfigError("--database names the document store of --news-from-store; add --news-from-store or "
                          "drop --database")
    check_series(series, config, orchestration)  # a bad file or setting fails before the models are imported
    from signal_engine.pipeline import backtest_series

    started = time.perf_counter()
    output = backtest_series(series, args.out, config, console=console, orchestration=orchestration, jobs=args.jobs)
    print_summary(output, console, time.perf_counter() - started)
    return 0


def news_from_store(series: list[PriceSeries], config: RunConfig, path: Path | None, database: str | None,
                    console: Console) -> list[PriceSeries]:
    """``backtest --news-from-store``: each series with the news slot's ``news_score`` (the price file's column where
    it has one, else the store's news scored by the text expert: ``signal_engine.workflow.news.slot_series``, as
    training fills the gate's rows)."""
    from signal_engine.config import NEWS_COLUMN

    if not (config.moe.enabled and config.moe.news):
        raise ConfigError("--news-from-store fills the news slot's input, but the config's moe.news is false; set "
                          "moe.news: true in --config (the MoE then weighs the news as a fourth expert)")
    from signal_engine.workflow.news import news_expert, news_section, slot_report, slot_series

    news = news_section(config_module._read_mapping(path) if path else None, str(path))
    lacking = [s.symbol for s in series if NEWS_COLUMN not in s.bars.columns]
    if not lacking:
        console.print(f"--news-from-store: every price file has a {NEWS_COLUMN} column, which wins over the store")
        return series
    from signal_engine.bootstrap import Settings, bootstrap

    expert = news_expert(news, on_training=lambda folder: console.print(
        f"training the text expert's head into {folder} (once; later runs reuse it)"))
    storage = bootstrap(Settings.from_env(database_url=database))
    try:
        scored, sources = slot_series(series, storage.documents, expert, news.max_documents)
    finally:
        storage.close()
    for line in slot_report(scored, sources):
        console.print(line)
    return scored


def _demo(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.pipeline import backtest_series, persist_events, seed_live_books
    from signal_engine.report.results_table import results_markdown
    from signal_engine.storage.ingest import ingest_prices
    from signal_engine.workflow.local import BookTraining, train_bundle

    run_config, orchestration = load_configs(args.profile, args.config)
    config = with_dataset_costs(run_config)
    if not args.suite:
        config = replace(config, suite=replace(config.suite, enabled=False))
    orchestration = with_dataset_limits(orchestration)
    paths = export_all(args.out / "data")
    console.print(f"Real data: {', '.join(f'{d.symbol} ({d.description})' for d in DATASETS.values())}")
    storage = bootstrap(Settings.from_env(database_url=f"sqlite:///{args.out / 'store.db'}",
                                          object_store=str(args.out / "objects")))
    try:
        ingested = [ingest_prices(path, storage.prices) for path in paths]
        for done in ingested:
            console.print(f"  stored {done.symbol} {done.timeframe}: {done.bars} bars "
                          f"({done.result.inserted} new, {done.result.updated} restated)")
        series = [storage.prices.read_bars(done.symbol, done.timeframe) for done in ingested]
    finally:
        storage.close()
    started = time.perf_counter()
    output = backtest_series(series, args.out, config, console=console, orchestration=orchestration, jobs=args.jobs)
    print_summary(output, console, time.perf_counter() - started)
    storage = bootstrap(Settings.from_env(database_url=f"sqlite:///{args.out / 'store.db'}",
                                          object_store=str(args.out / "objects")))
    try:
        stored = persist_events(storage.risk, output.portfolio.events) if output.portfolio else 0
        seeded = seed_live_books(storage.books, output.portfolio) if output.portfolio else []
    finally:
        storage.close()
    console.print(f"  stored {stored} new orchestration events in the risk log ({args.out / 'store.db'})")
    for line in seeded:
        console.print(f"  {line}")
    portfolio = output.portfolio
    book = BookTraining(orchestration, portfolio.timeframes if portfolio else None,
                        {s: frames for b in portfolio.books for s, frames in b.signals.items()} if portfolio else None,
                        {b.name: b.result.final_state for b in portfolio.books if b.result.final_state is not None}
                        if portfolio else None)
    run = train_bundle(series, config, demo_registry(args.out, args.registry), console=console,
                       walk_forward_results=output.results, book=book)
    (args.out / "results.md").write_text(results_markdown({**output.metrics, "quality": run.metrics.get("quality")}))
    console.print(f"Wrote {args.out / 'results.md'} (`make readme-results` puts it in README.md)")
    return 0


def demo_registry(out: Path, registry: Path | None) -> Path:
    """Where the demo trains: ``--registry``; for the default ``--out``, serve's default registry; else ``out/models``.

    A demo pointed at another folder (a test's temporary one, say) never replaces the bundle in ``out/models``.
    """
    from signal_engine.commands.train import default_registry

    if registry is not None:
        return registry
    if out.resolve() == DEMO_OUT.resolve():
        return default_registry()
    return out / "models"


def with_dataset_costs(config: RunConfig) -> RunConfig:
    """The shipped series' typical costs, under any the user's config sets per symbol."""
    costs = {**dataset_costs(), **dict(config.trading.symbol_cost_bps)}
    return replace(config, trading=replace(config.trading, symbol_cost_bps=tuple(sorted(costs.items()))))


def with_dataset_limits(orchestration: Mapping[str, Any]) -> dict[str, Any]:
    """The shipped series' per-symbol short limits, under any the user's ``orchestration`` section sets."""
    own = symbol_limits(orchestration.get("max_asset_short_exposure", ()))
    return {**orchestration, "max_asset_short_exposure": {**dataset_short_limits(), **dict(own)}}


def _datasets(args: argparse.Namespace, console: Console) -> int:
    catalogue = DEVELOPMENT_DATASETS if args.development else DATASETS
    for path in export_all(args.out, catalogue):
        dataset = catalogue[path.stem]
        console.print(f"{path}  {dataset.description}  [dim]from {dataset.source}[/dim]")
    return 0


def _best(table: dict[str, dict[str, float]], key: str, *, lowest: bool = True) -> tuple[str, float]:
    """The non-baseline model with the lowest (or highest) ``key``."""
    candidates = {name: m[key] for name, m in table.items() if not name.startswith("baseline_") and key in m}
    name = (min if lowest else max)(candidates, key=lambda n: candidates[n])
    return name, candidates[name]


def _experts_table(per_symbol: dict[str, Any]) -> Table:
    table = Table(title="Expert suite: best expert of each kind against its baseline (walk-forward)")
    for column in ("symbol", "volatility QLIKE", "GARCH(1,1)", "trend log loss", "class prior",
                   "level error", "pivots"):
        table.add_column(column, justify="right")
    for symbol, m in per_symbol.items():
        experts = m["experts"]
        vol_name, vol = _best(experts["volatility"], "qlike")
        trend_name, trend = _best(experts["trend"], "log_loss")
        level_name, level = _best(experts["levels"], "support_error")
        table.add_row(
            symbol,
            f"{vol:.4f} {vol_name}", f"{experts['volatility']['baseline_garch11']['qlike']:.4f}",
            f"{trend:.4f} {trend_name}", f"{experts['trend']['baseline_majority']['log_loss']:.4f}",
            f"{level:.2%} {level_name}", f"{experts['levels']['baseline_pivot']['support_error']:.2%}",
        )
    return table


_PORTFOLIO_ROWS = {
    "orchestrated": "orchestrated", "moe": "unmanaged MoE", "timeframes_equal_weight": "timeframes, equal weight",
    "baseline_buy_and_hold": "buy & hold (equal weight)",
}


def _portfolio_table(books: dict[str, Any]) -> Table:
    table = Table(title="Portfolio: each bar frequency's symbols as one book, net of costs; Sharpe - B&H with its "
                        "paired-bootstrap interval")
    for column in ("book", "strategy", "Sharpe", "gross Sharpe", "CAGR", "max DD", "turnover / yr", "costs / yr",
                   "Sharpe - B&H"):
        table.add_column(column, justify="right")
    for name, book in books.items():
        label = f"{name} ({', '.join(book['symbols'])})"
        for key, title in _PORTFOLIO_ROWS.items():
            m = book["strategies"][key]
            versus = book.get("comparisons", {}).get(f"{key}_vs_baseline_buy_and_hold")
            table.add_row(label, title, f"{m['sharpe']:.2f}", _optional(m, "gross_sharpe", "{:.2f}"),
                          f"{m['cagr']:.1%}", f"{m['max_drawdown']:.1%}", f"{m['turnover']:.1f}",
                          _optional(m, "cost_drag", "{:.2%}"), _difference(versus))
            label = ""
    return table


def _optional(metrics: dict[str, Any], key: str, template: str) -> str:
    """``template`` of ``metrics[key]``, blank for metrics written before the key existed."""
    return template.format(metrics[key]) if key in metrics else ""


def _difference(comparison: dict[str, float] | None) -> str:
    if comparison is None:
        return ""
    return f"{comparison['difference']:+.2f} [{comparison['low']:+.2f}, {comparison['high']:+.2f}]"


def print_summary(output: BacktestOutput, console: Console, seconds: float) -> None:
    """The per-symbol table; ``trend acc`` is the accuracy of the MoE's own trend expert (``data.symbols.<S>.
    trend_expert``: ``moe.experts.trend``, or ``intraday_trend`` on intraday bars)."""
    per_symbol: dict[str, Any] = output.metrics["per_symbol"]
    symbols: dict[str, Any] = output.metrics["data"]["symbols"]
    table = Table(title="Walk-forward, out of sample, net of costs")
    for column in ("symbol", "orch. Sharpe", "MoE Sharpe", "B&H Sharpe", "orch. max DD", "MoE max DD",
                   "B&H max DD", "trend acc", "majority acc", "QLIKE expert", "QLIKE GARCH"):
        table.add_column(column, justify="right")
    for symbol, m in per_symbol.items():
        strategies, trend, vol = m["strategies"], m["trend"], m["volatility"]
        own_trend = trend[symbols[symbol]["trend_expert"]]
        orchestrated = strategies.get("orchestrated", {"sharpe": float("nan"), "max_drawdown": float("nan")})
        table.add_row(
            symbol, f"{orchestrated['sharpe']:.2f}",
            f"{strategies['moe']['sharpe']:.2f}", f"{strategies['baseline_buy_and_hold']['sharpe']:.2f}",
            f"{orchestrated['max_drawdown']:.1%}", f"{strategies['moe']['max_drawdown']:.1%}",
            f"{strategies['baseline_buy_and_hold']['max_drawdown']:.1%}",
            f"{own_trend['accuracy']:.3f}", f"{trend['baseline_majority']['accuracy']:.3f}",
            f"{vol['volatility_blend']['qlike']:.4f}", f"{vol['baseline_garch11']['qlike']:.4f}",
        )
    console.print(table)
    if "portfolio" in output.metrics:
        console.print(_portfolio_table(output.metrics["portfolio"]))
    if "experts" in output.metrics:
        console.print(_experts_table(per_symbol))
    console.print(f"Wrote {output.signals_path}, {output.metrics_path}, {output.report_path} in {seconds:.0f} s")
