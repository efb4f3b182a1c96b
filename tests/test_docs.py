"""The README is a map and the manual in docs/ points at things that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 10_000  # bytes: a map, not the manual (the architecture issue's bound)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)}


def test_readme_is_a_map_with_both_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= README_LIMIT
    assert "../shared" not in text  # the repository stands alone
    for marker in ("main-command", "test-command"):
        block = text[text.index(f"<!-- {marker} -->") : text.index(f"<!-- /{marker} -->")]
        assert "python3 -m venv .venv" in block, marker
    assert 'pytest -m "not slow"' in text  # the fast tier is documented


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve_to_files_and_headings(page: Path):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(dest), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_repository_paths_named_in_the_docs_exist(page: Path):
    named = re.findall(
        r"`((?:platform|search_spaces|tests|docker|dashboards|docs)/[\w./-]*\w)`", page.read_text()
    )
    placeholder = re.compile(r"[A-Z]{3,}|\*")  # methods/NAME.py, search_spaces/NAME_*.yaml
    real = [p for p in named if not placeholder.search(p) and p != "docker/.env"]
    missing = [p for p in real if not (ROOT / p).exists()]
    assert missing == [], f"{page.name}: {missing}"
