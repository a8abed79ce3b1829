"""Shared work is keyed by the config that produced it, never by the table that asks for it, and a
set of jobs pays each shared artifact (and each job two tables plan) once."""

from __future__ import annotations

import copy

import pytest
from omegaconf import OmegaConf, open_dict

from dfdistill.config.resolve import resolve_config
from dfdistill.sweeps import jobsets
from dfdistill.sweeps.compose_cache import compose_job
from dfdistill.sweeps.model import JobCost
from dfdistill.sweeps.sharing import Shared, experts_key, scores_key

CELL = ["dataset=cifar10", "method=mtt", "pruning=loss", "pruning.ratio=0.5", "pruning.seed_offset=1"]


def resolved(*overrides: str) -> dict:
    cfg, _ = compose_job(list(overrides))
    with open_dict(cfg):
        cfg.output_dir = "unused"  # a job's dir (the plan sets it): it enters no key
    return OmegaConf.to_container(resolve_config(cfg), resolve=True)


@pytest.fixture(scope="module")
def cells() -> dict[str, dict]:
    return {"tab1": resolved("+exp=bilp_tab1", "profile=full", *CELL, "ipc=1"),
            "tab2": resolved("+exp=bilp_tab2", "profile=full", *CELL, "ipc=1"),
            "ipc10": resolved("+exp=bilp_tab2", "profile=full", *CELL, "ipc=10")}


def test_a_tables_context_does_not_enter_the_artifact_keys(cells):
    assert scores_key(cells["tab1"]) is not None and experts_key(cells["tab1"]) is not None
    assert scores_key(cells["tab1"]) == scores_key(cells["tab2"])
    assert experts_key(cells["tab1"]) == experts_key(cells["tab2"])
    # nor does the IPC: one bank per (dataset, kept data, backbone, expert recipe) serves every IPC
    assert experts_key(cells["tab2"]) == experts_key(cells["ipc10"])


def test_what_produces_an_artifact_does_enter_its_key(cells):
    base = cells["tab2"]
    other_ratio = copy.deepcopy(base)
    other_ratio["pruning"]["ratio"] = 0.9
    assert scores_key(other_ratio) == scores_key(base)  # scores do not depend on the ratio
    assert experts_key(other_ratio) != experts_key(base)  # the kept rows do
    other_trial = copy.deepcopy(base)
    other_trial["pruning"]["seed_offset"] = 2  # another removal trial: other scoring networks
    assert scores_key(other_trial) != scores_key(base) and experts_key(other_trial) != experts_key(base)
    other_recipe = copy.deepcopy(base)
    other_recipe["method"]["expert_train_epochs"] += 1
    assert experts_key(other_recipe) != experts_key(base)
    unpruned = copy.deepcopy(base)
    unpruned["pruning"] = {"name": "none", "_target_": None}
    assert scores_key(unpruned) is None
    dm = copy.deepcopy(base)
    dm["method"]["name"] = "dm"
    assert experts_key(dm) is None


def _cost(**stages: float) -> JobCost:
    return JobCost(stages=dict(stages))


def test_a_shared_artifact_and_a_job_two_tables_plan_are_paid_once(cells):
    s = Shared()
    s.add("a", cells["tab1"], _cost(pruning=10.0, prepare=100.0, distill=5.0, eval=1.0))
    s.add("b", cells["ipc10"], _cost(pruning=10.0, prepare=100.0, distill=7.0, eval=2.0))
    s.add("a", cells["tab2"], _cost(pruning=10.0, prepare=100.0, distill=5.0, eval=1.0))  # same job, other table
    assert s.jobs == 2
    assert s.naive_seconds == 116.0 + 119.0
    assert s.shared_seconds == 10.0 + 100.0 + 5.0 + 1.0 + 7.0 + 2.0
    assert s.artifact_count("pruning") == 1 and s.artifact_count("prepare") == 1
    s.add("c", cells["tab1"], _cost(pruning=10.0, prepare=100.0), salt="|round1")  # a search round's own bank
    assert s.artifact_count("prepare") == 2 and s.artifact_count("pruning") == 1


def test_tables_1_and_2_read_each_others_runs():
    """Their cells' unpruned baselines are the same runs: each table finds the other's."""
    assert "bilp_tab2" in jobsets.REUSE["bilp_tab1"] and "bilp_tab1" in jobsets.REUSE["bilp_tab2"]
