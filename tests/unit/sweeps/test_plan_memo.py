"""The plan's memoised parts give what a fresh computation gives (no timing here: speed is
scripts/bench_plan.py's business)."""

from __future__ import annotations

import json

import pytest

from dfdistill.sweeps import passes


def test_kept_network_counts_were_made_by_this_code():
    """pass_costs.json is read only under its fingerprint; a stale file is refreshed by
    `python scripts/plan_table.py --write-pass-costs` (a stale one costs speed, never numbers)."""
    if not passes.COUNTED_FILE.exists():
        pytest.skip("no kept counts")
    assert json.loads(passes.COUNTED_FILE.read_text())["fingerprint"] == passes.fingerprint()
    assert passes.counted(), "kept counts present but not used"


def test_fingerprint_follows_the_backbone_code(tmp_path, monkeypatch):
    before = passes.fingerprint()
    models = tmp_path / "dfdistill" / "models"
    models.mkdir(parents=True)
    monkeypatch.setattr(passes, "__file__", str(tmp_path / "dfdistill" / "sweeps" / "passes.py"))
    (tmp_path / "dfdistill" / "sweeps").mkdir(parents=True)
    (tmp_path / "dfdistill" / "sweeps" / "passes.py").write_text("x")
    (models / "convnet.py").write_text("a")
    one = passes.fingerprint()
    (models / "convnet.py").write_text("b")
    assert passes.fingerprint() != one != before


@pytest.mark.slow
def test_a_kept_count_equals_a_fresh_one(tmp_path, monkeypatch):
    key = ("convnet", (("depth", 2), ("width", 8)), 1, 10, 16)
    fresh = passes.count_pass_cost(*key)
    monkeypatch.setattr(passes, "_seen", {passes._key(*key): fresh})
    path = passes.write_counted(tmp_path / "kept.json")
    monkeypatch.setattr(passes, "COUNTED_FILE", path)
    monkeypatch.setattr(passes, "_seen", {})
    passes.counted.cache_clear()
    try:
        assert passes.pass_cost(*key) == fresh
        assert passes.counted()[passes._key(*key)] == fresh
    finally:
        passes.counted.cache_clear()
