"""Which jobs a table plans: cells the paper does not report are left out; the search ladder's size
is stated the same way by the plan and the docs."""

from __future__ import annotations

from pathlib import Path

from dfdistill.sweeps.search import points_at_most, rung_off_points
from dfdistill.sweeps.plan import SweepInfo, expand_jobs
from dfdistill.sweeps.search import PAPER_LADDER

from conftest import ROOT


def _jobs(exp: str, lines: list[str]) -> list[list[str]]:
    info = SweepInfo(Path("/tmp/dfdistill-plan-cells"), {}, [], exp=exp)
    return [j.overrides for j in expand_jobs([lines], info)]


def test_table5_plans_no_cifar100_ipc10() -> None:
    jobs = _jobs("bilp_tab5", ["dataset=cifar10,cifar100", "ipc=1,10", "pruning=none,loss"])
    cells = {(j[0], j[1]) for j in jobs}
    assert cells == {("dataset=cifar10", "ipc=1"), ("dataset=cifar10", "ipc=10"), ("dataset=cifar100", "ipc=1")}


def test_tables_2_3_plan_no_rfad_on_tiny_but_keep_rfad_elsewhere() -> None:
    for exp in ("bilp_tab2", "bilp_tab3"):
        jobs = _jobs(exp, ["dataset=cifar10,tinyimagenet", "method=dm,rfad", "ipc=1"])
        assert ["dataset=tinyimagenet", "method=rfad", "ipc=1"] not in jobs
        assert ["dataset=cifar10", "method=rfad", "ipc=1"] in jobs and len(jobs) == 3
    assert len(_jobs("bilp_tab4", ["dataset=tinyimagenet", "method=rfad"])) == 1  # other tables untouched


def test_ladder_size_and_rounds_agree_with_the_docs() -> None:
    text = " ".join((ROOT / "docs" / "sweeps.md").read_text().split())  # line breaks as spaces
    assert len(PAPER_LADDER) == 16 and points_at_most(PAPER_LADDER) == 5  # bisection, one ratio a round
    assert f"the {len(PAPER_LADDER)} ratios BiLP reports" in text
    assert f"⌈log2({len(PAPER_LADDER)} + 1)⌉ = {points_at_most(PAPER_LADDER)} rounds" in text
    assert f"never run more ratios than bisection's bound ({max(points_at_most(PAPER_LADDER, 1, r) for r in PAPER_LADDER)} on the paper ladder" in text
    assert f"search over {len(PAPER_LADDER)} ratios (towards the paper's ratio, at most bisection's count)" in text
    ours, plain = rung_off_points(PAPER_LADDER)
    assert f"a cell one rung off runs {ours:.1f} ratios on average, bisection {plain:.1f}" in text
