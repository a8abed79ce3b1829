"""docs/sweeps.md's PROFILE=full table is what `--plan` says: each row equals the row
scripts/plan_table.py builds from the target's plan now (a model change must regenerate it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))

from plan_table import TARGETS, target_row  # noqa: E402


def _docs_row(target: str) -> str:
    text = (ROOT / "docs" / "sweeps.md").read_text()
    table = text[text.index("Every target at `PROFILE=full`"):].split("\n\n")[1]  # the block after that line
    rows = [line for line in table.splitlines() if line.startswith(f"| `make {target}` |")]
    assert len(rows) == 1, f"docs/sweeps.md's PROFILE=full table has {len(rows)} rows for {target}"
    return rows[0]


@pytest.mark.parametrize("target", ["table-bilp-6", "fig-bilp-4", "table-dfcolearn-2", "table-bilp-1"])
def test_docs_full_profile_row_equals_the_plan(target: str) -> None:
    exp = dict(TARGETS)[target]
    assert _docs_row(target) == target_row(target, exp, "a100-80gb")
