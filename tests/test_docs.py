"""The README and docs/ link only to files that exist, and the README keeps the benchmark's markers."""

from __future__ import annotations

import re
from pathlib import Path

from xvit_edge.bench.report import END, START

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_point_to_files_that_exist():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 7
    missing = [(page.name, target) for page in pages for target in LINK.findall(page.read_text())
               if "://" not in target and not (page.parent / target).exists()]
    assert not missing, missing


def test_readme_links_every_doc_and_keeps_the_benchmark_block():
    text = (ROOT / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1 and text.index(START) < text.index(END)
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in text, doc.name
