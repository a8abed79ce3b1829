"""Sweep planning (Hydra's expansion and job dirs), launchers' GPU assignment, the max-ratio search."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dfdistill.sweeps import overrides as ov
from dfdistill.sweeps.gpus import GpuSlot
from dfdistill.sweeps.launch import launch_local
from dfdistill.sweeps.plan import Job, plan
from dfdistill.sweeps import search as search_mod
from dfdistill.sweeps.search import (PAPER_LADDER, FINE_LADDER, MaxRatioSearch, SearchConfig, next_points, points_at_most,
                                     points_if, rung_off_points)

PAPER_VALUES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.83, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995]


# ------------------------------------------------------------------------------------------------ #
# planning = Hydra's own expansion and dir names
# ------------------------------------------------------------------------------------------------ #
def test_expansion_and_dirnames_equal_hydras() -> None:
    """Same job order as BasicSweeper (command line replaces an axis in place), same override_dirname."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = ["method=dc,dm", "ipc=1,10", "+exp=bilp_tab4", "pruning.epochs=[1],[5]", "ipc=1,10,50", "seed=0"]
    parsed = OverridesParser.create().parse_overrides(lines)
    assert ov.expand(lines) == BasicSweeper.split_arguments(parsed, None)[0]
    assert len(ov.expand(lines)) == 2 * 3 * 2
    for job in ov.expand(lines):
        want = get_overrides_dirname(OverridesParser.create().parse_overrides(job), ["seed"], ",", "=")
        assert ov.dirname(job, ["seed"]) == want


def test_rerun_of_a_finished_sweep_finds_every_job_done(tmp_path: Path) -> None:
    base = ["dataset=digits", "method=dc,dm", "ipc=1", "pruning=none", "logger=none"]
    sweep, jobs = plan("bilp_tab4", "smoke", base, tmp_path)
    assert sweep == tmp_path.resolve() and len(jobs) == 2 and not any(j.done for j in jobs)
    for j in jobs:
        j.out_dir.mkdir(parents=True)
        (j.out_dir / "results.jsonl").write_text(json.dumps({"config_key": j.key}) + "\n")
    _, again = plan("bilp_tab4", "smoke", base, tmp_path)
    assert all(j.done for j in again)
    _, other = plan("bilp_tab4", "smoke", base[:-1] + ["seed=1", "logger=none"], tmp_path)
    assert not any(j.done for j in other)  # another config in another dir: not finished


# ------------------------------------------------------------------------------------------------ #
# launchers: one GPU per running job
# ------------------------------------------------------------------------------------------------ #
def test_local_launcher_never_shares_a_device_between_running_jobs() -> None:
    held: dict[str, int] = {}
    seen: list[str] = []
    lock = threading.Lock()

    def runner(job: Job, env: dict) -> int:
        dev = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert held.get(dev, 0) == 0, f"device {dev} given to two running jobs"
            held[dev] = 1
            seen.append(dev)
        time.sleep(0.02)
        with lock:
            held[dev] = 0
        return 0

    jobs = [Job([f"seed={i}"], Path(f"/tmp/j{i}")) for i in range(7)]
    rcs = launch_local(jobs, n_parallel=4, devices=["3", "5"], runner=runner)
    assert rcs == [0] * 7 and sorted(set(seen)) == ["3", "5"] and len(seen) == 7


def test_local_launcher_without_devices_sets_no_cuda_env(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    envs = []
    launch_local([Job([], Path("/tmp/x"))], devices=[], runner=lambda j, env: envs.append(env) or 0)
    assert "CUDA_VISIBLE_DEVICES" not in envs[0]


def test_gpu_slots_are_exclusive_across_holders(tmp_path: Path) -> None:
    a, b, c = (GpuSlot(["0", "1"], tmp_path) for _ in range(3))
    assert a.try_acquire() == 0 and b.try_acquire() == 1
    assert c.try_acquire() is None  # both devices held: a third job waits
    a.release()
    assert c.try_acquire() == 0
    assert GpuSlot([], tmp_path).acquire() is None  # CPU-only: nothing to hold


# ------------------------------------------------------------------------------------------------ #
# max-ratio search
# ------------------------------------------------------------------------------------------------ #
def _simulate(ladder, threshold: float, k: int = 1) -> tuple[float, int]:
    keeps: dict[float, bool] = {}
    rounds = 0
    while pts := next_points(ladder, keeps, k):
        rounds += 1
        keeps.update({p: p <= threshold + 1e-9 for p in pts})
    return max([p for p, ok in keeps.items() if ok], default=0.0), rounds


@pytest.mark.parametrize("ladder", [PAPER_LADDER, FINE_LADDER], ids=["paper", "fine"])
def test_bracket_reaches_every_value_the_paper_reports(ladder) -> None:
    import math

    for value in PAPER_VALUES:
        got, rounds = _simulate(ladder, value)
        assert got == value
        assert rounds <= math.ceil(math.log2(len(ladder) + 1))  # bisection
        got3, rounds3 = _simulate(ladder, value, k=3)
        assert got3 == value and rounds3 <= rounds


def _simulate_first(ladder, verdict, first) -> tuple[float, int, int]:
    keeps: dict[float, bool] = {}
    rounds = 0
    while pts := next_points(ladder, keeps, 1, first):
        rounds += 1
        keeps.update({p: verdict(p) for p in pts})
    return max([p for p, ok in keeps.items() if ok], default=0.0), rounds, len(keeps)


def test_paper_first_order_finds_what_bisection_finds_never_probes_more_and_two_when_the_paper_is_right() -> None:
    """Every (true answer, paper's answer) pair on the ladder, monotone verdicts: the same max ratio as
    bisection, never more ratios than bisection's bound (5 for 16 rungs) and, when the paper is right,
    2 ratios (1 at the top rung: nothing above it to fail)."""
    bound = points_at_most(PAPER_LADDER)
    assert bound == 5 and points_if(PAPER_LADDER, 0.83) == 4  # bisection
    for truth in [None] + PAPER_VALUES:
        verdict = lambda p: truth is not None and p <= truth + 1e-9  # noqa: E731
        plain, _ = _simulate(PAPER_LADDER, -1.0 if truth is None else truth)
        for first in PAPER_VALUES:
            got, rounds, points = _simulate_first(PAPER_LADDER, verdict, first)
            assert got == plain
            assert points <= points_at_most(PAPER_LADDER, 1, first) == bound
            if first == truth:
                assert points == rounds == (1 if first == PAPER_LADDER[-1] else 2)
                assert points == points_if(PAPER_LADDER, truth, 1, first)


def test_paper_first_order_costs_less_than_bisection_when_the_paper_is_a_rung_off() -> None:
    """Where the true answer is the rung below or above the paper's, heading for the paper's answer
    still settles the cell in fewer ratios than bisection, on average over every paper ratio."""
    ours, plain = rung_off_points(PAPER_LADDER)
    assert ours < 0.85 * plain and plain == pytest.approx(4.1, abs=0.01), (ours, plain)


@pytest.mark.parametrize("first", [0.05, 0.5, 0.83, 0.99, 0.995])
def test_paper_first_order_keeps_bisections_bound_on_the_fine_ladder(first: float) -> None:
    assert points_at_most(FINE_LADDER, 1, first) == points_at_most(FINE_LADDER) == 7


def test_paper_first_probes_one_ratio_a_round_or_the_pair_with_two_points_a_round() -> None:
    assert next_points(PAPER_LADDER, {}, 1, 0.83)[0] in (0.83, 0.85)
    assert next_points(PAPER_LADDER, {}, 2, 0.83) == [0.83, 0.85]
    # the paper's answer now lies below the bracket: its lowest ratio is the one expected to fail first
    assert next_points(PAPER_LADDER, {0.9: True}, 1, 0.83) == [0.95]
    assert next_points(PAPER_LADDER, {0.9: False}, 2, 0.95) == next_points(PAPER_LADDER, {0.9: False}, 2)  # outside


def test_search_runs_the_papers_ratio_first_and_stops_when_it_agrees(tmp_path: Path, monkeypatch) -> None:
    """The paper says 83 % for this cell (patched in for digits) and the runs agree: two rounds, the
    baseline + 0.83 and 0.85 x 2 trials; `start=bisect` runs more ratios for the same answer."""
    monkeypatch.setattr(search_mod, "_paper_ratios", lambda: {("tab1", "digits", "1", "DC"): 0.83})
    acc = lambda r, t: 0.5 if r <= 0.83 else 0.3  # noqa: E731
    launched: list[Job] = []
    s = MaxRatioSearch("bilp_tab1", "smoke", CELL, _fake_runs(acc, launched), SearchConfig(trials=2), tmp_path / "a")
    [cell] = s.run()
    ratios = sorted({float(j.resolved.pruning.ratio) for j in launched if j.resolved.pruning.name != "none"})
    assert cell.result.ratio == 0.83 and cell.rounds == 2 and cell.start == 0.83 and ratios == [0.83, 0.85]
    assert len(launched) == 1 + 2 * 2
    plain: list[Job] = []
    [bis] = MaxRatioSearch("bilp_tab1", "smoke", CELL, _fake_runs(acc, plain), SearchConfig(trials=2, start="bisect"),
                           tmp_path / "b").run()
    assert bis.result.ratio == 0.83 and bis.start is None and len(plain) > len(launched)


def test_bracket_takes_the_largest_keeping_ratio_above_a_failure() -> None:
    keeps = {0.5: True, 0.8: False, 0.95: True}  # loss pruning: a dip, then a gain at high ratios
    assert all(p > 0.95 for p in next_points(PAPER_LADDER, keeps, 2))
    assert next_points(PAPER_LADDER, {0.97: True, 0.99: False}) == []


def _fake_runs(acc_of_ratio, launched: list):
    def launch(jobs: list[Job]) -> list[int]:
        for j in jobs:
            launched.append(j)
            cfg = OmegaConf.to_container(j.resolved, resolve=True)
            ratio = float(cfg["pruning"].get("ratio", 0.0)) if cfg["pruning"]["name"] != "none" else 0.0
            acc = acc_of_ratio(ratio, int(cfg["pruning"].get("seed_offset", 0) or 0))
            rec = {"config_key": j.key, "config": cfg, "pruning": cfg["pruning"]["name"], "pruning_ratio": ratio,
                   "acc_mean": acc, "acc_std": 0.01, "accs": [acc], "method": cfg["method"]["name"]}
            j.out_dir.mkdir(parents=True, exist_ok=True)
            (j.out_dir / "results.jsonl").write_text(json.dumps(rec) + "\n")
        return [0] * len(jobs)

    return launch


CELL = ["dataset=digits", "method=dc", "ipc=1", "logger=none"]


def test_search_finds_the_max_ratio_with_five_removal_trials_and_resumes(tmp_path: Path) -> None:
    """Accuracy is a known function of the ratio: keeps 0.50 up to 83 %, then drops (trial noise < std)."""
    launched: list[Job] = []
    acc = lambda r, t: 0.50 + 0.002 * (t - 2) if r <= 0.83 else 0.40  # noqa: E731
    s = MaxRatioSearch("bilp_tab1", "smoke", CELL, _fake_runs(acc, launched), SearchConfig(trials=5), tmp_path)
    [cell] = s.run()
    assert cell.error is None and cell.converged and cell.result.ratio == 0.83
    assert cell.selection == "random" and cell.result.unpruned.mean == pytest.approx(49.6)  # percent
    trials = {}
    for j in launched:
        c = j.resolved.pruning
        if c.name != "none":
            trials.setdefault(float(c.ratio), set()).add(int(c.seed_offset))
    assert all(t == {0, 1, 2, 3, 4} for t in trials.values())
    assert len(trials) <= 5 and 0.83 in trials and 0.85 in trials  # bisection over 16 rungs
    assert sum(1 for j in launched if j.resolved.pruning.name == "none") == 1
    summary = json.loads(s.write_summary().read_text())
    assert summary["cells"][0]["max_ratio"] == 0.83 and summary["trials"] == 5

    def no_launch(jobs):
        raise AssertionError(f"a finished search relaunched {len(jobs)} job(s)")

    [again] = MaxRatioSearch("bilp_tab1", "smoke", CELL, no_launch, SearchConfig(trials=5), tmp_path).run()
    assert again.result.ratio == 0.83 and again.converged


def test_search_reuses_finished_runs_off_the_ladder(tmp_path: Path) -> None:
    """Runs of the exp's fixed grid (any ratio, same cell) count: 0.6 finished beforehand is not rerun."""
    launched: list[Job] = []
    acc = lambda r, t: 0.5 if r <= 0.6 else 0.3  # noqa: E731
    grid = MaxRatioSearch("bilp_tab2", "smoke", CELL, _fake_runs(acc, []), SearchConfig(trials=2, ladder=(0.6,)), tmp_path)
    grid.run()
    s = MaxRatioSearch("bilp_tab2", "smoke", CELL, _fake_runs(acc, launched), SearchConfig(trials=2), tmp_path)
    [cell] = s.run()
    assert cell.selection == "loss" and cell.result.ratio == 0.6
    assert not any(float(j.resolved.pruning.get("ratio", 0)) == 0.6 for j in launched if j.resolved.pruning.name != "none")


def test_search_settled_by_another_tables_runs_copies_them_into_its_own_dir(tmp_path: Path) -> None:
    """Fig. 2 reusing Table 1's runs: nothing relaunched, and the runs its verdict rests on land in its
    own sweep dir (its table is built from there; before, it rendered with 0 runs)."""
    acc = lambda r, t: 0.5 if r <= 0.6 else 0.3  # noqa: E731
    tab1 = tmp_path / "tab1"
    [first] = MaxRatioSearch("bilp_tab1", "smoke", CELL, _fake_runs(acc, []), SearchConfig(trials=2), tab1).run()

    def no_launch(jobs):
        raise AssertionError(f"relaunched {len(jobs)} job(s)")

    fig2 = tmp_path / "fig2"
    s = MaxRatioSearch("bilp_fig2", "smoke", CELL + ["pruning=random"], no_launch, SearchConfig(trials=2), fig2,
                       reuse=[tab1])
    [cell] = s.run()
    assert cell.result.ratio == first.result.ratio == 0.6
    copied = sorted(fig2.rglob("results.jsonl"))
    assert len(copied) == len(list(tab1.rglob("results.jsonl")))  # baseline + 2 trials per judged ratio
    keys = {json.loads(p.read_text())["config_key"] for p in copied}
    assert keys == {json.loads(p.read_text())["config_key"] for p in tab1.rglob("results.jsonl")}


def test_loss_removal_trials_draw_other_scoring_networks(compose_cfg) -> None:
    """pruning.seed_offset changes which rows loss pruning keeps (BiLP Table 2's removal trials)."""
    import torch

    from dfdistill.core.artifacts import ArtifactCache
    from dfdistill.config.resolve import resolve_run
    from dfdistill.data.datasets import load_dataset
    from dfdistill.run.pipeline import make_model_factory
    from dfdistill.pruning import apply_static_pruning

    kept = []
    for off in (0, 0, 1):
        r = resolve_run(compose_cfg(["profile=smoke", "pruning=loss", "pruning.ratio=0.5", f"pruning.seed_offset={off}"]))
        cache = ArtifactCache(r.top.cache_dir)
        train, _ = load_dataset(r.dataset, device=torch.device("cpu"), cache_dir=cache.root)
        factory = make_model_factory(r.cfg.backbone, train, torch.device("cpu"))
        sub, _ = apply_static_pruning(r.pruning, train, factory, cache, r.seed, r.inputs)
        kept.append(set(sub.source_index.tolist()))
    assert kept[0] == kept[1] and kept[0] != kept[2]


def test_planned_key_is_the_key_the_pipeline_records(tmp_path: Path) -> None:
    """A job run for real (in-process) is found finished by the planner: same `config_key`."""
    from dfdistill.sweeps.launch import launch_inprocess

    base = ["dataset=digits", "method=dm", "ipc=1", "pruning=none", "logger=none", "eval.compare_random=false"]
    _, jobs = plan("bilp_tab4", "smoke", base, tmp_path)
    assert launch_inprocess(jobs) == [0]
    _, again = plan("bilp_tab4", "smoke", base, tmp_path)
    assert again[0].done


def test_search_verdict_rests_on_every_baseline_record_whatever_the_order(tmp_path: Path) -> None:
    """Two finished baselines of one config in two dirs: the search pools both, so reading the dirs in
    either order gives one verdict (it used to keep the last record found)."""
    acc = lambda r, t: 0.50 if r <= 0.6 else 0.45  # noqa: E731
    first = tmp_path / "a"
    MaxRatioSearch("bilp_tab1", "smoke", CELL, _fake_runs(acc, []), SearchConfig(trials=2), first).run()
    second = tmp_path / "b"
    [base] = [p for p in first.rglob("results.jsonl") if json.loads(p.read_text())["pruning"] == "none"]
    rec = json.loads(base.read_text())
    rec["accs"], rec["acc_mean"], rec["code_version"] = [0.46], 0.46, "other"
    (second / "base").mkdir(parents=True)
    (second / "base" / "results.jsonl").write_text(json.dumps(rec) + "\n")

    def no_launch(jobs):
        raise AssertionError(f"relaunched {len(jobs)} job(s)")

    verdicts = set()
    for order in ([first, second], [second, first]):
        s = MaxRatioSearch("bilp_tab1", "smoke", CELL, no_launch, SearchConfig(trials=2), tmp_path / "c", reuse=order)
        [cell] = s.run()
        assert cell.result.unpruned.n == 2  # both baselines' networks
        verdicts.add(cell.result.ratio)
    assert len(verdicts) == 1


def test_an_unknown_keep_rule_is_one_line(capsys) -> None:
    from dfdistill.sweeps.cli import cli

    assert cli(["bilp_tab1", "--profile", "smoke", "--plan", "search.rule=loose", "dataset=digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: search.rule must be one of both_std, unpruned_std, se, got 'loose'"]
