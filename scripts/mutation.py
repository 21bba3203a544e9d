"""Mutation testing of the modules that carry the project's promises (``make mutation``; docs/mutation.md).

Each group mutates its own modules with mutmut (``[tool.mutmut]`` in pyproject.toml holds the shared settings) and
runs each mutant against only the test files that cover the group, in one worker process. A group works in its own
folder, ``.mutation/<group>/`` (mutmut's ``mutants/`` copy, its cached verdicts, a ``summary.json``), so groups do
not invalidate each other's results and a re-run only tests what changed.

    python scripts/mutation.py                  # every group
    python scripts/mutation.py labels prices    # the named groups
    python scripts/mutation.py --list           # the groups, their modules and tests
    python scripts/mutation.py step --mutants '*_banded__mutmut_*'   # only these mutants (re-run even if cached)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          37: "type check", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


class Group(NamedTuple):
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    names: tuple[str, ...] = ()  # mutant name patterns (functions) when only part of a module carries the promise


ORCHESTRATION_TESTS = ("tests/unit/test_orchestration_components.py", "tests/unit/test_orchestration_properties.py",
                       "tests/unit/test_orchestration_runner.py", "tests/unit/test_orchestration_step.py")
GROUPS: dict[str, Group] = {
    "labels": Group(("signal_engine/labels.py",), ("tests/unit/test_labels.py",)),
    "walkforward": Group(("signal_engine/evaluation/walkforward.py",),
                         ("tests/unit/test_labels.py", "tests/unit/test_trading.py")),
    # the backtest's training-row selection: the functions that choose which rows each model learns from (the
    # online learner's among them); the by-hand file first (the refits with stand-in models, under two seconds)
    "backtest_rows": Group(("signal_engine/evaluation/backtest.py",),
                           ("tests/unit/test_backtest_block_by_hand.py", "tests/integration/test_training_rows.py"),
                           ("*.x__decide_block__mutmut_*", "*.x__combine__mutmut_*", "*.x__stages_block__mutmut_*",
                            "*.x__fit_meta__mutmut_*", "*.x__online_block__mutmut_*", "*.x__trend_block__mutmut_*",
                            "*.x__tuned_trend__mutmut_*", "*.x__trend_outputs__mutmut_*")),
    "metrics": Group(("signal_engine/evaluation/metrics.py",),
                     ("tests/unit/test_trading.py", "tests/unit/test_confidence.py", "tests/unit/test_significance.py",
                      "tests/unit/test_levels.py", "tests/unit/test_metrics_by_hand.py")),
    # the by-hand file first: it pins every function in under a second, so most mutants never reach the four
    "risk": Group(("signal_engine/orchestration/risk.py", "signal_engine/orchestration/drawdown.py"),
                  ("tests/unit/test_orchestration_risk_by_hand.py", *ORCHESTRATION_TESTS)),
    "exposure": Group(("signal_engine/orchestration/exposure.py",),
                      (*ORCHESTRATION_TESTS, "tests/unit/test_orchestration_exposure_by_hand.py")),
    # the by-hand files first: they step small books in under a second, so most mutants never reach the four
    "step": Group(("signal_engine/orchestration/step.py", "signal_engine/orchestration/state.py"),
                  ("tests/unit/test_orchestration_step_parts_by_hand.py",
                   "tests/unit/test_orchestration_step_by_hand.py", *ORCHESTRATION_TESTS,
                   "tests/unit/test_orchestration_state_reading.py")),
    # the by-hand file first: on in-memory SQLite it pins every function in seconds (MariaDB runs only if it is up)
    "prices": Group(("signal_engine/adapters/sql/prices.py",),
                    ("tests/unit/test_sql_prices_by_hand.py", "tests/integration/test_storage_sql.py")),
    "combine": Group(("signal_engine/serving/combine.py",),
                     ("tests/unit/test_serving_combine.py", "tests/unit/test_serving_combine_by_hand.py")),
    # the gates' NumPy forward passes and gradient, abstention included: what the backtest and the Signal API share
    "gate": Group(("signal_engine/moe/numpy_gate.py",),
                  ("tests/unit/test_moe_abstention.py", "tests/unit/test_serving_combine_by_hand.py",
                   "tests/unit/test_moe_gates.py", "tests/unit/test_serving_combine.py")),
}
DEFAULT = tuple(GROUPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"of {', '.join(GROUPS)}; default: {' '.join(DEFAULT)}")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--mutants", nargs="+", default=[], metavar="PATTERN",
                        help="only the mutants whose names match (fnmatch, e.g. '*_banded__mutmut_*'); they are "
                             "re-run even if cached, and the summary counts only them")
    args = parser.parse_args(argv)
    if args.list:
        for name, group in GROUPS.items():
            print(f"{name}: {' '.join(group.modules)} {' '.join(group.names)}\n    tests: {' '.join(group.tests)}")
        return 0
    unknown = [name for name in args.groups if name not in GROUPS]
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}; expected some of {', '.join(GROUPS)}")
    for name in args.groups or DEFAULT:
        group = GROUPS[name]._replace(names=tuple(args.mutants)) if args.mutants else GROUPS[name]
        summary = run_group(name, group)
        print(json.dumps({name: summary}, indent=2), flush=True)
    return 0


def run_group(name: str, group: Group) -> dict[str, object]:
    """Run mutmut over one group in a child process (mutmut keeps its config and state per process)."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for link in ("signal_engine", "tests", "pyproject.toml"):
        if not (folder / link).is_symlink():
            (folder / link).symlink_to(ROOT / link)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child runs mutmut in the group's folder and exits with its status
        os.chdir(folder)
        code = 1
        try:
            code = _mutmut_run(group)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    summary = summarise(folder, group)
    summary.update(seconds=round(time.monotonic() - started), exit_status=os.waitstatus_to_exitcode(status))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _mutmut_run(group: Group) -> int:
    # one OpenMP thread: the clean run starts the scikit-learn models' OpenMP pool in this process, and a forked
    # mutant's models then spin on the parent's pool until the CPU limit kills them (every mutant a "timeout")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    import mutmut.configuration as configuration

    shared = configuration._load_config()
    configuration._config = dataclasses.replace(
        shared, only_mutate=list(group.modules),
        pytest_add_cli_args_test_selection=[*shared.pytest_add_cli_args_test_selection, *group.tests])
    from mutmut.__main__ import cli

    try:
        cli.main(["run", "--max-children", "1", *group.names], prog_name="mutmut")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def summarise(folder: Path, group: Group) -> dict[str, object]:
    """Counts per status over the group's mutants, and the survivors' names."""
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for module in group.modules:
        meta = folder / "mutants" / (module + ".meta")
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for key, code in codes.items():
            if group.names and not any(fnmatch(key, pattern) for pattern in group.names):
                continue
            status = STATUS.get(code, "suspicious")
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "no tests", "timeout", "suspicious"):
                survivors.append(key)
    tested = counts.get("killed", 0) + counts.get("survived", 0) + counts.get("no tests", 0)
    return {"modules": list(group.modules), "tests": list(group.tests), "counts": counts,
            "score": round(counts.get("killed", 0) / tested, 3) if tested else None, "survivors": sorted(survivors)}


if __name__ == "__main__":
    sys.exit(main())
