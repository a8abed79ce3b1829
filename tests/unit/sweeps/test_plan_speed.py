"""Sweep planning composes each job from cached parts (dfdistill/sweeps/compose_cache.py): the
result must be exactly Hydra's composition of the job's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.schema.options import CONF_DIR
from dfdistill.sweeps.compose_cache import Composer, is_group_override

JOBS = [
    ["+exp=bilp_tab4", "profile=full", "dataset=cifar10", "method=dm", "ipc=10", "pruning=bilp"],
    ["+exp=bilp_tab4", "profile=full", "dataset=svhn", "method=idc", "ipc=50", "pruning=bilp", "method.factor=3"],
    ["+exp=bilp_tab7", "profile=cpu", "method=mtt", "ipc=1", "pruning=bilp", "pruning.ratio=0.5"],
    ["method=dc", "dataset=digits", "ipc=1", "eval.num_eval=3", "+memory.extra=1"],
]


@pytest.mark.slow
def test_cached_composition_equals_hydras() -> None:
    c = Composer()
    for job in JOBS:
        mine, choices = c.compose(job)
        ref = compose_run_config(job, return_hydra_config=True)
        assert choices["method"] == str(ref.hydra.runtime.choices["method"])
        with open_dict(ref):
            del ref["hydra"]
        assert OmegaConf.to_container(mine) == OmegaConf.to_container(ref), job


def test_group_options_write_only_their_own_group() -> None:
    """What makes per-group caching exact: no option under conf/<group>/ declares another package or
    overrides another group (exp files may; they are composed as context)."""
    for group in ("dataset", "backbone", "method", "pruning", "eval", "profile", "logger"):
        for path in (CONF_DIR / group).glob("*.yaml"):
            text = Path(path).read_text()
            assert "@package" not in text and "override /" not in text, path


def test_group_and_value_overrides_are_told_apart() -> None:
    assert is_group_override("method=dm") and is_group_override("+exp=bilp_tab4")
    assert not is_group_override("ipc=10") and not is_group_override("method.factor=3")
    assert not is_group_override("pruning.ratio=0.5")


@pytest.mark.slow
def test_prefetched_parts_compose_as_hydra() -> None:
    """Parts composed one option of each group per composition (prefetch) give Hydra's config too."""
    c = Composer()
    c.prefetch(JOBS)
    for job in JOBS:
        mine, _ = c.compose(job)
        ref = compose_run_config(job)
        assert OmegaConf.to_container(mine) == OmegaConf.to_container(ref), job


def test_prefetch_composes_one_option_of_each_group_at_once(monkeypatch) -> None:
    """3 methods x 2 datasets: 3 compositions (the most options of one group), not 5; made when a
    job is first composed (a plan whose jobs all come from its memo composes nothing)."""
    import dfdistill.sweeps.compose_cache as cc

    calls: list[list[str]] = []
    real = cc.compose_run_config
    monkeypatch.setattr(cc, "compose_run_config", lambda o, **k: calls.append(list(o)) or real(o, **k))
    jobs = [[f"method={m}", f"dataset={d}", "ipc=1"] for m in ("dc", "dm", "mtt") for d in ("cifar10", "svhn")]
    c = Composer()
    c.prefetch(jobs)
    assert not calls
    mine, _ = c.compose(jobs[-1])
    assert len(calls) == 3 and all(len(x) <= 2 for x in calls)  # the batches; one serves as the skeleton
    c.compose(jobs[0])
    assert len(calls) == 3  # the parts were all there
    assert OmegaConf.to_container(mine) == OmegaConf.to_container(compose_run_config(jobs[-1]))
    c.compose(["dataset=svhn", "ipc=1"])  # picks fewer groups than every batch: the context alone is composed
    assert calls[-1] == [] and len(calls) == 4


def _hydra_subtrees(picks: list[str]) -> dict[str, dict]:
    """Each `group=option` of `picks` as Hydra composes it (one composition, one option of each group)."""
    cfg = compose_run_config(picks)
    return {p: OmegaConf.to_container(cfg[p.partition("=")[0]], resolve=False) for p in picks}


def test_an_options_defaults_are_what_hydra_composes_for_it() -> None:
    """`--plan` compares each job with its options' defaults taken from config.resolve.option_defaults
    (the YAML on its schema, no composition): that is Hydra's subtree for the option."""
    from dfdistill.config.resolve import option_defaults

    picks = ["method=mtt", "dataset=cifar10", "pruning=loss", "eval=idc", "backbone=convnet_d4"]
    for pick, subtree in _hydra_subtrees(picks).items():
        assert option_defaults(*pick.split("=")) == subtree, pick


@pytest.mark.slow
def test_every_options_defaults_are_what_hydra_composes_for_it() -> None:
    from dfdistill.config.resolve import option_defaults
    from dfdistill.schema.options import groups

    options = {g: groups()[g] for g in ("dataset", "method", "eval", "backbone", "pruning")}
    for i in range(max(len(v) for v in options.values())):
        picks = [f"{g}={v[i]}" for g, v in options.items() if i < len(v)]
        for pick, subtree in _hydra_subtrees(picks).items():
            assert option_defaults(*pick.split("=")) == subtree, pick


def test_the_top_level_check_keeps_each_runs_own_dir_and_typed_lines(compose_cfg, tmp_path) -> None:
    """config.resolve.check_top_level checks the rest once and puts in each run's own output_dir and
    cli_overrides: two runs that differ only there must not get each other's."""
    from dfdistill.config.resolve import resolve_run

    runs = [resolve_run(compose_cfg(["method=dm", "dataset=digits", "ipc=1", *extra], tmp_path / name))
            for name, extra in (("a", []), ("b", ["seed=0"]))]
    assert [r.top.output_dir for r in runs] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert [r.top.cli_overrides[-1] for r in runs] == ["ipc=1", "seed=0"]
    assert runs[0].top.memory == runs[1].top.memory and runs[0].top.ipc == 1


def test_the_committed_pass_counts_are_this_codes() -> None:
    """pass_costs.json matches the code it counts (passes.py, models/, data/augment/): otherwise every
    plan counts its networks afresh on the meta device (~2 s of CPU: torch's FLOP counter and dynamo),
    so an edit there comes with `python scripts/plan_table.py --write-pass-costs`."""
    from dfdistill.sweeps import passes

    assert passes.counted(), "pass_costs.json is stale: python scripts/plan_table.py --write-pass-costs"
