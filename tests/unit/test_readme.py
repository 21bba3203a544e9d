"""The README and docs/ as a clone has them: every relative link resolves, no reference leaves the repository,
and the README keeps the results block that `make readme-results` fills from the demo's own output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signal_engine.report.readme_results import END, START

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
FORBIDDEN = re.compile(r"\.\./shared|DESIGN\.md|\bsession [0-9]|\bseed 00|\bstudy [0-9]|\bstudies [0-9]", re.I)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page, plus explicit ``<a id="...">`` ones."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``page`` that leaves ``root``, names no file, or names a heading its page lacks."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if root not in resolved.parents and resolved != root:
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(root)})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken_links(page) == [], f"{page.relative_to(ROOT)}: broken links"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_repository_or_to_internal_records(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    hits = [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}" for m in FORBIDDEN.finditer(text)]
    assert hits == [], f"{page.relative_to(ROOT)} names what a clone does not have or explain: {hits}"


def test_the_readme_has_one_results_block_holding_a_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == "" or block.strip().startswith("| book / symbol | strategy | Sharpe |")


def test_the_link_check_finds_what_a_clone_lacks(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "files.md").write_text("# Files\n\n## report.html\n\n```\n## not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/files.md#reporthtml) [web](https://example.org) [self](#files)\n"
                    "[gone](docs/cli.md) [anchor](docs/files.md#not-a-heading) [out](../shared/DESIGN.md)\n"
                    "```\n[in a code block](nowhere.md)\n```\n# Files\n")
    assert broken_links(page, tmp_path) == ["docs/cli.md (no such file)",
                                            "docs/files.md#not-a-heading (no heading #not-a-heading in docs/files.md)",
                                            "../shared/DESIGN.md (outside the repository)"]
    assert FORBIDDEN.search("see ../shared/DESIGN.md section 3") and FORBIDDEN.search("(session 7)")
    assert not FORBIDDEN.search("seeded by the run's `seed`")


def test_the_quick_start_serve_example_is_what_ci_runs() -> None:
    """scripts/check_quickstart.py (run by CI after `make demo` and `make test`) finds the README's serve
    command (on the demo's store, which holds its live books) and its curl calls: a signal for SPX, the live
    books and the models in use."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_quickstart", ROOT / "scripts" / "check_quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    serve, curls = module.quickstart_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert serve.startswith(".venv/bin/signal-engine serve") and module.port_of(serve) == 8000
    assert "--database sqlite:///out/demo/store.db" in serve
    assert [c.split()[4] if "-X" in c else c.split()[-1] for c in curls] == [
        "localhost:8000/signals", "localhost:8000/book", "localhost:8000/models"]
    assert all("\\" not in c for c in curls)
