"""docs/sweeps.md quotes the committed sharing measurement (results/measured/plan_sharing_full.md):
its before and after hours and factors are that file's, not figures of an older run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _row(text: str, starts: str) -> list[str]:
    [line] = [x for x in text.splitlines() if x.startswith(starts)]
    return [c.strip() for c in line.strip("|").split("|")]


def test_docs_quote_the_committed_sharing_figures() -> None:
    measured = (ROOT / "results" / "measured" / "plan_sharing_full.md").read_text()
    docs = " ".join((ROOT / "docs" / "sweeps.md").read_text().split())
    before = _row(measured, "| **before**")
    after = _row(measured, "| **after**")
    _, _, most_before, _, _, paper_before, _ = before
    _, _, most_after, most_factor, _, paper_after, paper_factor = after
    hours = lambda cell: re.sub(r" h$", "", cell)  # noqa: E731
    assert f"({hours(most_before)} A100-hours at most; {paper_before} if every verdict is the paper's)" in docs
    assert f"needs {paper_after} if every verdict is the paper's (**{paper_factor}x fewer**)" in docs
    assert f"and {most_after} at most ({most_factor}x)" in docs
