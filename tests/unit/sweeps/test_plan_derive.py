"""Jobs of one sweep that differ only in leaves no resolution step reads (pruning.ratio,
pruning.seed_offset, pruning.stratum, the dir) are resolved once per shape and the others derived
(dfdistill/sweeps/plan.py `derive`): the derived config, its key and its group choices must be exactly
what a full resolution of the job gives."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import pytest
from omegaconf import OmegaConf

from dfdistill.config.plain_view import PlainView
from dfdistill.sweeps import feasible
from dfdistill.sweeps import plan as P
from dfdistill.sweeps.model import device, estimate
from dfdistill.sweeps.plan import Job, expand_jobs, mark_done, shape
from dfdistill.sweeps.search import MaxRatioSearch, PAPER_LADDER, SearchConfig


def full(job: Job) -> Job:
    """The job resolved from scratch (no sweep to derive from)."""
    fresh = Job(list(job.overrides), job.out_dir)
    mark_done(fresh)
    return fresh


def assert_as_full(jobs: list[Job]) -> None:
    """Every job (already planned) equals its full resolution, to the byte."""
    for job in jobs:
        ref = full(job)
        assert job.error is None and ref.error is None, (job.overrides, job.error, ref.error)
        mine = json.dumps(OmegaConf.to_container(job.resolved, resolve=True))
        theirs = json.dumps(OmegaConf.to_container(ref.resolved, resolve=True))
        assert mine == theirs, job.overrides  # values, their types (0.5 vs 0) and the key order
        assert json.dumps(job.resolved_dict) == theirs, job.overrides  # the plain copy the plan reads
        assert (job.key, job.choices) == (ref.key, ref.choices), job.overrides


@contextmanager
def counting_resolutions(monkeypatch) -> Iterator[list[list[str]]]:
    """Record every full resolution the planner runs (inside the block)."""
    calls: list[list[str]] = []
    real = P.resolve_config
    with monkeypatch.context() as m:
        m.setattr(P, "resolve_config", lambda cfg: calls.append(list(cfg.cli_overrides)) or real(cfg))
        yield calls


CELL = ["dataset=cifar10", "method=dm", "ipc=10"]


def test_a_ratio_grid_resolves_once_per_shape_and_derives_the_rest_exactly(tmp_path, monkeypatch) -> None:
    """bilp_tab3 (a fixed ratio axis) on one cell: ratio 0 (no pruning) and the first non-zero ratio
    are resolved, the other 7 ratios derived, each equal to its own full resolution."""
    with counting_resolutions(monkeypatch) as calls:
        _, jobs = P.plan("bilp_tab3", "full", CELL, sweep_dir=tmp_path)
    assert len(jobs) == 9 and len(calls) == 2
    assert {shape(j.overrides) for j in jobs} == {shape(jobs[0].overrides), shape(jobs[1].overrides)}
    assert_as_full([jobs[2], jobs[-1]])


def test_a_shape_keeps_zero_ratio_apart_and_refuses_what_resolution_refuses(tmp_path) -> None:
    """Validation reads whether the ratio is 0 and range-checks it: a bad leaf is never derived, it gets
    the full resolution's own error. Removal trials (seed_offset) derive like ratios."""
    info = P.SweepInfo(tmp_path, {}, [], exp="bilp_tab3")
    base = ["+exp=bilp_tab3", "profile=full", *CELL]
    assert shape(base + ["pruning.ratio=0.0"]) != shape(base + ["pruning.ratio=0.5"])
    assert shape(base + ["pruning.ratio=0.3"]) == shape(base + ["pruning.ratio=0.5"])
    assert shape(base + ["pruning.stratum=2"]) == shape(base + ["pruning.stratum=9"]) != shape(base + ["pruning.stratum=0"])
    assert shape(base + ["pruning.seed_offset=0"]) == shape(base + ["pruning.seed_offset=4"])
    ok, bad, trial, sibling = expand_jobs([base + ["pruning.ratio=0.5"], base + ["pruning.ratio=1.5"],
                                           base + ["pruning.ratio=0.9", "pruning.seed_offset=3"],
                                           base + ["pruning.ratio=0.7", "pruning.seed_offset=4"]], info)
    for job in (ok, bad, trial, sibling):
        mark_done(job)
    assert ok.error is None and bad.error is not None and "pruning.ratio must be in [0, 1)" in bad.error
    assert bad.error == full(bad).error
    assert (sibling.resolved.pruning.ratio, sibling.resolved.pruning.seed_offset) == (0.7, 4)
    assert_as_full([sibling])


@pytest.mark.slow
def test_derived_jobs_of_real_targets_equal_their_full_resolution(tmp_path, monkeypatch) -> None:
    """Real targets: every 5th job of Table 3's grid (3 methods), every 3rd of Fig. 3's strata, and
    max-ratio searches' jobs (Table 1 and Fig. 2 cells: baseline, ratios x removal trials, random and
    loss selection)."""
    with counting_resolutions(monkeypatch) as calls:
        _, grid = P.plan("bilp_tab3", "full", ["method=dc,mtt,rfad"], sweep_dir=tmp_path / "tab3")
    assert len(calls) < len(grid) / 4
    with counting_resolutions(monkeypatch) as calls:  # BiLP Fig. 3: a stratum axis
        _, strata = P.plan("bilp_fig3", "full", ["pruning.trials=1,5"], sweep_dir=tmp_path / "fig3")
    assert len(calls) == len(strata) / 10
    searched = []
    for exp, narrow in (("bilp_tab1", ["method=dsa,idc"]), ("bilp_fig2", ["method=dm", "dataset=svhn,tinyimagenet"])):
        s = MaxRatioSearch(exp, "full", narrow, lambda jobs: [], SearchConfig(trials=2), tmp_path / exp)
        jobs = [j for c in s.cells for j in [c.baseline, *s._jobs(c, [PAPER_LADDER[0], 0.5, 0.995])]]
        with counting_resolutions(monkeypatch) as calls:
            for job in jobs:
                mark_done(job)
        assert len(calls) < len(jobs) / 2  # most of them derived
        searched += jobs
    assert_as_full(grid[::5] + strata[::3] + searched)


def test_a_derived_job_is_read_without_building_its_config(tmp_path) -> None:
    """A derived job's DictConfig is built only when asked for; the plan's cost model and feasibility
    check read its plain copy (Job.view) and get the figures the DictConfig gives."""
    _, jobs = P.plan("bilp_tab3", "full", ["dataset=cifar10", "method=idc", "ipc=50"], sweep_dir=tmp_path)
    derived = [j for j in jobs if j._recipe is not None]
    assert derived and all(j._resolved is None for j in derived)
    dev = device("a100-80gb")
    for job in jobs:
        by_view = (estimate(job.view(), dev), feasible.why_not(job.view()))
        assert isinstance(job.view(), PlainView)
        assert by_view == (estimate(job.resolved, dev), feasible.why_not(job.resolved)), job.overrides
    assert all(j._resolved is not None for j in derived)
    assert_as_full(derived[:2])
