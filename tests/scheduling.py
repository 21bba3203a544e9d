"""pytest-xdist's ``--dist loadgroup`` with the longest work units sent first (LPT scheduling).

loadgroup sends each group (tests sharing an expensive fixture, tests/conftest.py) to one worker as one unit, in
the order of its queue: by number of tests, then in collection order. A unit of a few long tests (the SageMaker
toolkit's chain of jobs, the demo end to end) could then start last and keep one worker busy while the other has
nothing left to do. Here the queue is ordered by each unit's measured seconds, longest first, so that the last
units to start are short ones and the workers finish together.

The seconds come from ``tests/xdist_costs.json``: per group (its name) and per ungrouped test function (its node
id without parameters: the seconds of one of its tests), from a measured run. A unit it does not name counts as
nothing and keeps loadgroup's place. The numbers only order the queue, so rough ones do; regenerate them after a
large change of the suite's running times:

    python -m pytest -n 2 --dist loadgroup --durations=0 -q > durations.log
    python -m tests.scheduling durations.log > tests/xdist_costs.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COSTS_FILE = Path(__file__).with_name("xdist_costs.json")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s (?:setup|call|teardown)\s+(\S.*?)\s*$")
SMALLEST_COST = 1.0  # seconds: units below this stay where loadgroup puts them


def group_of(nodeid: str) -> str | None:
    """The xdist group a node id names (``...::test@group``), as loadgroup reads it; None for a test alone."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    return None


def function_of(nodeid: str) -> str:
    """``path::test`` of a node id: without its parameters and group."""
    if group_of(nodeid) is not None:
        nodeid = nodeid.rsplit("@", 1)[0]
    return nodeid.split("[", 1)[0]


def unit_cost(scope: str, nodeids: Iterable[str], costs: Mapping[str, float]) -> float:
    """The seconds of one work unit of loadgroup: its group's, or the sum over its tests' functions."""
    if scope in costs:
        return costs[scope]
    return sum(costs.get(function_of(nodeid), 0.0) for nodeid in nodeids)


def longest_first(units: Iterable[tuple[str, dict[str, bool]]], costs: Mapping[str, float]
                  ) -> list[tuple[str, dict[str, bool]]]:
    """loadgroup's work units (scope, {node id: done}), longest first; equal ones keep their order."""
    return sorted(units, key=lambda unit: -unit_cost(unit[0], unit[1], costs))


def load_costs(path: Path = COSTS_FILE) -> dict[str, float]:
    return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def make_scheduler(config: Any, log: Any, costs: Mapping[str, float] | None = None) -> Any:
    """The LoadGroupScheduling of pytest-xdist with its queue ordered by :func:`longest_first` (``costs``: those
    of COSTS_FILE)."""
    from xdist.scheduler import LoadGroupScheduling

    known = load_costs() if costs is None else dict(costs)

    class LongestFirstScheduling(LoadGroupScheduling):
        ordered = False

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:  # the first assignment comes once the whole queue is built
                self.ordered = True
                units = longest_first(self.workqueue.items(), known)
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    return LongestFirstScheduling(config, log)


def measured_costs(log: Iterable[str]) -> dict[str, float]:
    """Seconds per unit from the ``--durations=0`` lines of a loadgroup run: a group's tests summed, an ungrouped
    function's tests averaged (each is a unit of its own); largest first, only those of SMALLEST_COST or more."""
    grouped: dict[str, float] = defaultdict(float)
    tests: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in log:
        match = DURATION.match(line)
        if not match:
            continue
        seconds, nodeid = float(match[1]), match[2]
        group = group_of(nodeid)
        if group is not None:
            grouped[group] += seconds
        else:
            tests[function_of(nodeid)][nodeid] += seconds
    costs = {**grouped, **{name: sum(runs.values()) / len(runs) for name, runs in tests.items()}}
    return {name: round(seconds, 1) for name, seconds in sorted(costs.items(), key=lambda item: (-item[1], item[0]))
            if seconds >= SMALLEST_COST}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as lines:
        print(json.dumps(measured_costs(lines), indent=1))
