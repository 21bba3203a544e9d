"""Keep the README's results table equal to what the demo wrote (``out/demo/results.md``).

``python -m signal_engine.report.readme_results README.md out/demo/results.md`` replaces the block between
``<!-- results:start -->`` and ``<!-- results:end -->`` with the file (``make readme-results``); with ``--check``
it changes nothing and exits 1, naming the first differing line, when the block differs (``make check-readme``).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from signal_engine.errors import InputError

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def _parts(text: str, readme: Path) -> tuple[str, str, str]:
    """The README's text before the block (through the start marker), the block, and the rest (from the end marker)."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise InputError(str(readme), f"expected one '{START}' line and one '{END}' line around the results "
                         f"table (found {text.count(START)} and {text.count(END)}); add them where the table goes")
    head, _, rest = text.partition(START)
    block, _, tail = rest.partition(END)
    if not head.endswith("\n") and head:
        raise InputError(str(readme), f"'{START}' must start a line")
    return head + START + "\n", block.removeprefix("\n"), END + tail


def _results(results_md: Path) -> str:
    if not results_md.is_file():
        raise InputError(str(results_md), "not found; run `make demo` (it writes out/demo/results.md) first")
    text = results_md.read_text(encoding="utf-8")
    if START in text or END in text:
        raise InputError(str(results_md), "holds the README's markers; expected the table `signal-engine demo` wrote")
    return text if text.endswith("\n") else text + "\n"


def update_readme(readme: Path, results_md: Path) -> bool:
    """Put ``results_md`` between the README's results markers; True when the README changed."""
    text = readme.read_text(encoding="utf-8")
    head, block, tail = _parts(text, readme)
    results = _results(results_md)
    if block == results:
        return False
    readme.write_text(head + results + tail, encoding="utf-8")
    return True


def readme_difference(readme: Path, results_md: Path) -> str | None:
    """None when the README's block equals ``results_md``; else the first differing line of each, in one message."""
    _, block, _ = _parts(readme.read_text(encoding="utf-8"), readme)
    results = _results(results_md)
    if block == results:
        return None
    ours, theirs = block.splitlines(), results.splitlines()
    matcher = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
    tag, i, _, j, _ = next(op for op in matcher.get_opcodes() if op[0] != "equal")
    in_readme = ours[i] if i < len(ours) else "(nothing)"
    in_results = theirs[j] if j < len(theirs) else "(nothing)"
    return (f"{readme}: the results table differs from {results_md} at its line {i + 1} ({tag}):\n"
            f"  README:     {in_readme}\n  results.md: {in_results}\n"
            "run `make readme-results` to copy the demo's table into the README")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signal_engine.report.readme_results", description=__doc__)
    parser.add_argument("readme", type=Path, help="README.md")
    parser.add_argument("results", type=Path, help="results.md written by `signal-engine demo`")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the block differs")
    args = parser.parse_args(argv)
    try:
        if args.check:
            difference = readme_difference(args.readme, args.results)
            if difference is not None:
                print(difference, file=sys.stderr)
                return 1
            print(f"{args.readme}: the results table matches {args.results}")
            return 0
        changed = update_readme(args.readme, args.results)
    except InputError as exc:
        print(f"readme_results: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.readme}: results table {'updated from' if changed else 'already equals'} {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
