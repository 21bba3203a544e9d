"""The demo's results table (signal_engine.report.results_table) and the README block it fills (readme_results).

The metrics are an excerpt of a real `make demo` run's out/demo/metrics.json with its bundle's quality gate
(tests/fixtures/metrics/README.md); the cells below were checked by hand against those numbers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from signal_engine.errors import InputError
from signal_engine.evaluation.portfolio import BOOK_STRATEGIES, COMPARISONS, SYMBOL_COMPARISONS
from signal_engine.report import readme_results
from signal_engine.report.readme_results import END, START, readme_difference, update_readme
from signal_engine.report.results_table import BOOK_ROWS, SYMBOL_COMPARISON, SYMBOL_STRATEGY, results_markdown

DEMO_METRICS = Path(__file__).resolve().parents[1] / "fixtures" / "metrics" / "demo_metrics_excerpt.json"


@pytest.fixture()
def metrics() -> dict[str, Any]:
    return dict(json.loads(DEMO_METRICS.read_text(encoding="utf-8")))


def rows(markdown: str) -> list[list[str]]:
    """The table's cells, header first, without the separator line."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines if "---" not in line]


def test_each_book_and_symbol_of_the_demo(metrics: dict[str, Any]) -> None:
    table = rows(results_markdown(metrics))
    assert table[0] == ["book / symbol", "strategy", "Sharpe", "Sharpe - buy & hold [90% interval]", "CAGR",
                        "max drawdown", "turnover / yr", "quality gate"]
    assert table[1] == ["daily book: SPX, IXIC, GOOG, 2002-01-08 to 2018-12-31", "orchestrated", "0.43",
                        "+0.05 [-0.21, +0.34]", "1.8%", "-14.8%", "2.3", ""]
    assert table[2] == ["", "unmanaged MoE", "0.46", "+0.07 [-0.27, +0.44]", "3.3%", "-24.1%", "4.4", ""]
    assert table[3] == ["", "buy & hold", "0.38", "", "5.3%", "-56.4%", "0.1", ""]
    assert table[4] == ["1h book: EURUSD, 2017-06-01 to 2018-02-07", "orchestrated", "-0.61",
                        "-2.53 [-3.96, -1.26]", "-2.2%", "-2.8%", "300.3", ""]
    assert table[6][1:3] == ["buy & hold", "1.91"]
    assert [r[0] for r in table[7:]] == ["SPX (daily)", "IXIC (daily)", "GOOG (daily)", "EURUSD (1h)"]
    assert table[7] == ["SPX (daily)", "unmanaged MoE", "0.15", "-0.18 [-0.48, +0.12]", "1.1%", "-40.8%", "6.7",
                        "served"]
    assert table[10][-1] == "withheld: moe_sharpe_vs_buy_and_hold -3.436 (needs >= -0.5)"
    assert len(table) == 11


def test_without_a_quality_gate_the_column_is_left_out(metrics: dict[str, Any]) -> None:
    del metrics["quality"]
    table = rows(results_markdown(metrics))
    assert table[0][-1] == "turnover / yr"
    assert {len(r) for r in table} == {7}


def test_missing_numbers_read_n_a_and_unmeasured_intervals_are_blank(metrics: dict[str, Any]) -> None:
    daily = metrics["portfolio"]["daily"]
    daily["strategies"]["orchestrated"]["sharpe"] = None  # metrics.json writes NaN as null
    del daily["comparisons"]["moe_vs_baseline_buy_and_hold"]
    daily["strategies"]["baseline_buy_and_hold"]["max_drawdown"] = -0.00001
    table = rows(results_markdown(metrics))
    assert table[1][2] == "n/a"
    assert table[2][3] == ""
    assert table[3][5] == "0.0%"  # never "-0.0%"


def test_a_document_without_the_orchestration_section_is_refused(metrics: dict[str, Any]) -> None:
    del metrics["portfolio"]
    with pytest.raises(InputError, match="no 'portfolio' section"):
        results_markdown(metrics)
    broken = json.loads(DEMO_METRICS.read_text(encoding="utf-8"))
    del broken["portfolio"]["1h"]["strategies"]["moe"]
    with pytest.raises(InputError, match=r"portfolio\.1h\.strategies: has no 'moe' strategy"):
        results_markdown(broken)


def test_it_reads_the_strategies_and_comparisons_the_pipeline_writes() -> None:
    assert {key for key, _, _ in BOOK_ROWS} <= set(BOOK_STRATEGIES)
    assert {c for _, _, c in BOOK_ROWS if c} <= {f"{a}_vs_{b}" for a, b in COMPARISONS}
    assert SYMBOL_STRATEGY in BOOK_STRATEGIES
    assert SYMBOL_COMPARISON in {f"{a}_vs_{b}" for a, b in SYMBOL_COMPARISONS}


README_TEXT = f"# Project\n\nIntro.\n\n## Results\n\n{START}\nold table\n{END}\n\nAfter the table.\n"


@pytest.fixture()
def files(tmp_path: Path, metrics: dict[str, Any]) -> tuple[Path, Path]:
    readme, results = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text(README_TEXT, encoding="utf-8")
    results.write_text(results_markdown(metrics), encoding="utf-8")
    return readme, results


def test_the_block_is_replaced_and_a_second_run_changes_nothing(files: tuple[Path, Path]) -> None:
    readme, results = files
    assert update_readme(readme, results) is True
    text = readme.read_text(encoding="utf-8")
    assert text == README_TEXT.replace("old table\n", results.read_text(encoding="utf-8"))
    assert update_readme(readme, results) is False
    assert readme.read_text(encoding="utf-8") == text
    assert readme_difference(readme, results) is None


def test_a_readme_without_the_markers_is_refused(files: tuple[Path, Path]) -> None:
    readme, results = files
    readme.write_text("# Project\n\nNo table here.\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected one '<!-- results:start -->' line"):
        update_readme(readme, results)
    assert readme.read_text(encoding="utf-8") == "# Project\n\nNo table here.\n"
    readme.write_text(README_TEXT + START + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"found 2 and 1"):
        update_readme(readme, results)


def test_a_missing_results_file_says_to_run_the_demo(files: tuple[Path, Path], tmp_path: Path) -> None:
    readme, _ = files
    with pytest.raises(InputError, match="run `make demo`"):
        update_readme(readme, tmp_path / "absent.md")


def test_check_mode_fails_on_a_changed_number_and_names_it(files: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    readme, results = files
    assert readme_results.main([str(readme), str(results)]) == 0
    assert readme_results.main(["--check", str(readme), str(results)]) == 0
    edited = readme.read_text(encoding="utf-8").replace("| 0.43 |", "| 0.44 |", 1)
    readme.write_text(edited, encoding="utf-8")
    capsys.readouterr()
    assert readme_results.main(["--check", str(readme), str(results)]) == 1
    message = capsys.readouterr().err
    assert "at its line 3" in message
    assert "| orchestrated | 0.44 |" in message.splitlines()[1]
    assert "| orchestrated | 0.43 |" in message.splitlines()[2]
    assert "make readme-results" in message
    assert readme.read_text(encoding="utf-8") == edited  # check mode writes nothing


def test_the_command_exits_2_on_a_readme_without_markers(files: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    readme, results = files
    readme.write_text("# Project\n", encoding="utf-8")
    assert readme_results.main(["--check", str(readme), str(results)]) == 2
    assert "results:start" in capsys.readouterr().err


def test_the_table_is_rendered_from_the_document_not_remembered(metrics: dict[str, Any]) -> None:
    changed = copy.deepcopy(metrics)
    changed["portfolio"]["daily"]["strategies"]["orchestrated"]["sharpe"] = 1.2345
    assert rows(results_markdown(changed))[1][2] == "1.23"
