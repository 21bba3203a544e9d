"""The architecture diagram (docs/architecture.md) names constructs that exist in the synthesized app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from stacks.stage import SignalEngineStage

pytestmark = pytest.mark.infra

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
BLOCK = re.compile(r"<!-- architecture:begin -->\s*```mermaid\n(.*?)```\s*<!-- architecture:end -->", re.S)
NODE = re.compile(r"^\s*(\w+)\[\"[^\"]+\"\]\s*$")
EDGE_ENDPOINT = re.compile(r"(\w+)\s*(?:-->|---|-\.->)")
EDGE_TARGET = re.compile(r"(?:-->|---|-\.->)\s*(?:\|[^|]*\|\s*)?(\w+)")


def diagram() -> str:
    match = BLOCK.search(ARCHITECTURE.read_text())
    assert match, "docs/architecture.md has no <!-- architecture:begin --> mermaid block"
    return match.group(1)


def nodes(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := NODE.match(line))]


def missing_constructs(stage: SignalEngineStage, declared: list[str]) -> list[str]:
    """Nodes `<Stack>_<construct id>` with no such construct in the stage (``ext_`` nodes are outside the app)."""
    missing = []
    for node in declared:
        if node.startswith("ext_"):
            continue
        stack_id, _, construct_id = node.partition("_")
        stack = stage.node.try_find_child(stack_id)
        if stack is None or not construct_id or stack.node.try_find_child(construct_id) is None:
            missing.append(node)
    return missing


def test_every_node_names_a_construct_of_the_app(dev_stage: SignalEngineStage) -> None:
    declared = nodes(diagram())
    assert len(declared) >= 15
    assert missing_constructs(dev_stage, declared) == []


def test_every_stack_appears(dev_stage: SignalEngineStage) -> None:
    stacks_drawn = {node.split("_", 1)[0] for node in nodes(diagram()) if not node.startswith("ext_")}
    stacks = {child.node.id for child in dev_stage.node.children if hasattr(child, "template_options")}
    assert stacks_drawn == stacks


def test_edges_connect_declared_nodes() -> None:
    text = diagram()
    declared = set(nodes(text))
    edges = [line for line in text.splitlines() if re.search(r"-->|---|-\.->", line)]
    assert edges
    for line in edges:
        used = set(EDGE_ENDPOINT.findall(line)) | set(EDGE_TARGET.findall(line))
        assert used <= declared, f"{line.strip()}: undeclared {sorted(used - declared)}"


def test_the_check_catches_a_missing_construct(dev_stage: SignalEngineStage) -> None:
    text = "\n".join(
        ["graph LR", 'Serving_Combiner["ok"]', 'Serving_NoSuchThing["gone"]', 'Nowhere_Vpc["x"]', 'ext_Web["y"]']
    )
    assert missing_constructs(dev_stage, nodes(text)) == ["Serving_NoSuchThing", "Nowhere_Vpc"]
