"""A repeated `run_table.py --plan` takes its compositions and resolutions from the plan memo
(dfdistill/sweeps/plan_memo.py): the same bytes as a cold plan, nothing composed or resolved again,
whether a job is done read fresh, a new file after any input changes, a broken file ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dfdistill.config import resolve
from dfdistill.sweeps import coverage, feasible, plan, plan_memo, preview
from dfdistill.sweeps.cli import main

ARGS = ["bilp_tab4", "--profile", "full", "--plan", "--no-extra", "dataset=cifar10", "method=dc,dm", "ipc=1"]
SEARCH = ["bilp_tab1", "--profile", "full", "--plan", "--no-extra", "dataset=svhn", "method=dm", "ipc=1,10"]


@pytest.fixture
def memo_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DFDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(plan_memo.SWITCH, raising=False)
    monkeypatch.delenv("DFDISTILL_PLUGINS", raising=False)
    return tmp_path / "cache" / "plans"


def run_plan(capsys, args: list[str]) -> tuple[str, dict]:
    """stdout + stderr of a plan as a fresh process gives it (no recipe note said, nothing kept in-process)."""
    resolve._SAID.clear()
    preview._DEFAULTS.clear()
    coverage._base.cache_clear()
    out = main(args, memo=True)
    got = capsys.readouterr()
    return got.out + got.err, out


def forbid_computing(monkeypatch) -> None:
    """Every composition, resolution and figure the memo keeps raises if it is computed again."""
    def kept_already(*a, **k):
        raise AssertionError("computed again although the plan memo keeps it")

    for module, name in [(plan, "resolve_config"), (plan, "compose_job"), (plan, "compose_run_config"),
                         (coverage, "compose_run_config"), (preview, "defaults_for"), (preview, "estimate"),
                         (feasible, "why_not")]:
        monkeypatch.setattr(module, name, kept_already)


def memo_files(memo_dir: Path) -> list[Path]:
    return sorted(memo_dir.glob("*/*.pkl"))


@pytest.mark.parametrize("args", [ARGS, SEARCH], ids=["grid", "search"])
def test_a_warm_plan_prints_the_same_bytes_and_computes_nothing(memo_dir, tmp_path, capsys, monkeypatch, args):
    args = [*args, "--sweep-dir", str(tmp_path / "sweep")]
    cold, cold_out = run_plan(capsys, args)
    assert "pending  " in cold and "[dfdistill] recipe:" in cold  # a recipe note: said again when warm
    assert len(memo_files(memo_dir)) == 1
    with monkeypatch.context() as m:
        forbid_computing(m)
        warm, warm_out = run_plan(capsys, args)
    assert warm == cold
    if "cells" in cold_out:  # a search: its cells' baselines
        warm_out["jobs"], cold_out["jobs"] = ([c.baseline for c in o["cells"]] for o in (warm_out, cold_out))
    job, fresh = warm_out["jobs"][-1], cold_out["jobs"][-1]
    assert job.pickled is not None or "cells" in cold_out  # the config is loaded on first use only ...
    assert OmegaConf.to_container(job.resolved) == OmegaConf.to_container(fresh.resolved)  # ... and is the same
    assert job.key == fresh.key and job.choices == fresh.choices


def test_a_job_finished_between_two_plans_is_done_in_the_warm_one(memo_dir, tmp_path, capsys, monkeypatch):
    args = [*ARGS, "--sweep-dir", str(tmp_path / "sweep")]
    _, out = run_plan(capsys, args)
    job = out["jobs"][0]
    job.out_dir.mkdir(parents=True)
    (job.out_dir / plan.RESULTS_FILE).write_text(json.dumps({"config_key": job.key}) + "\n")
    with monkeypatch.context() as m:
        forbid_computing(m)
        warm, warm_out = run_plan(capsys, args)
    assert [j.done for j in warm_out["jobs"]] == [True, False]
    assert f"done     {' '.join(job.overrides)}\n" in warm and "(1 new, 1 reused/finished" in warm


def test_mark_done_takes_a_kept_resolution_and_reads_done_fresh(memo_dir, tmp_path, monkeypatch, capsys):
    """The memo's part of mark_done without Hydra: a second session resolves nothing, gets the same key,
    choices, config (loaded on first use) and recipe note, and reads results.jsonl afresh; an error is kept too."""
    made = []
    resolved = {"ipc": 1, "seed": 0, "provenance": {"recipe": {"dc": {"note": "a kept note"}}}}
    monkeypatch.setattr(plan, "job_config", lambda job: made.append(job.overrides) or job.choices.update(method="dc"))
    monkeypatch.setattr(plan, "resolve_config",  # as config.resolve.effective: says its recipes' notes
                        lambda cfg: resolve.say_notes(resolved["provenance"]["recipe"]) or OmegaConf.create(resolved))

    def marked(overrides: list[str]) -> plan.Job:
        resolve._SAID.clear()  # a fresh process
        with plan_memo.session("t", ["t"]):
            job = plan.Job(overrides, tmp_path / "job")
            plan.mark_done(job)
        return job

    cold = marked(["ipc=1"])
    assert "[dfdistill] recipe: a kept note" in capsys.readouterr().out and not cold.done
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / plan.RESULTS_FILE).write_text(json.dumps({"config_key": cold.key}) + "\n")
    warm = marked(["ipc=1"])
    assert made == [["ipc=1"]] and warm.done
    assert "[dfdistill] recipe: a kept note" in capsys.readouterr().out
    assert (warm.key, warm.choices, warm.resolved_dict) == (cold.key, {"method": "dc"}, resolved)
    assert warm.pickled is not None and OmegaConf.to_container(warm.resolved) == resolved and warm.pickled is None

    monkeypatch.setattr(plan, "resolve_config", lambda cfg: (_ for _ in ()).throw(ValueError("no such option")))
    assert marked(["ipc=2"]).error == marked(["ipc=2"]).error == "ValueError: no such option"
    assert made == [["ipc=1"], ["ipc=2"]]


def test_a_broken_memo_file_is_ignored_and_written_again(memo_dir):
    path = plan_memo.memo_path("t", ["t"])
    path.parent.mkdir(parents=True)
    for broken in (b"not a memo", b"", plan_memo.zlib.compress(b"\x80\x05 truncated pickle")):
        path.write_bytes(broken)
        with plan_memo.session("t", ["t"]):
            assert plan_memo.get("k") is None
            assert plan_memo.recall("k", lambda: 1) == 1
        with plan_memo.session("t", ["t"]):
            assert plan_memo.recall("k", lambda: 2) == 1


def test_no_memo_when_switched_off(memo_dir, monkeypatch):
    """--no-plan-memo, DFDISTILL_PLAN_MEMO=off, DFDISTILL_PLUGINS (code outside the fingerprint), an
    in-process caller (tests, scripts that may patch code) and a launch: nothing kept, nothing read."""
    from dfdistill.sweeps import cli

    seen = []
    monkeypatch.setattr(cli, "_main", lambda a, launch: seen.append(plan_memo.active()) or {})
    cli.main(["bilp_tab4", "--plan"], memo=True)
    cli.main(["bilp_tab4", "--dry-run"], memo=True)
    cli.main(["bilp_tab4", "--plan", "--no-plan-memo"], memo=True)
    cli.main(["bilp_tab4", "--plan"])
    cli.main(["bilp_tab4"], memo=True)
    monkeypatch.setenv(plan_memo.SWITCH, "off")
    cli.main(["bilp_tab4", "--plan"], memo=True)
    monkeypatch.setenv(plan_memo.SWITCH, "on")
    monkeypatch.setenv("DFDISTILL_PLUGINS", "my_methods")
    cli.main(["bilp_tab4", "--plan"], memo=True)
    assert seen == [True, True, False, False, False, False, False]
    assert plan_memo.recall("k", lambda: 1) == 1 and not plan_memo.active()


def test_the_memo_file_follows_every_input(tmp_path, monkeypatch, memo_dir):
    """A new file (so a cold plan) after an edit of conf/, of the code, of the papers' numbers, of an
    environment variable conf/ names, or another command or working directory; the same file otherwise."""
    repo = tmp_path / "repo"
    files = {"conf/dataset/x.yaml": "root: ${oc.env:MY_DATA_ROOT,data}\n", "dfdistill/sweeps/plan.py": "a = 1\n",
             "results/paper/paper_tables.csv": "paper,table\n", "README.md": "hello\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    monkeypatch.setattr(plan_memo, "REPO", repo)
    monkeypatch.delenv("MY_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    seen = [plan_memo.memo_path("bilp_tab4", ["bilp_tab4", "--plan"])]

    def moved() -> bool:
        seen.append(plan_memo.memo_path("bilp_tab4", ["bilp_tab4", "--plan"]))
        return seen[-1] not in seen[:-1]

    (repo / "README.md").write_text("not read by planning\n")
    (repo / "dfdistill" / "sweeps" / "__pycache__").mkdir()
    (repo / "dfdistill" / "sweeps" / "__pycache__" / "plan.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setenv("SOME_OTHER_VARIABLE", "1")
    assert not moved()
    (repo / "conf" / "dataset" / "x.yaml").write_text("root: ${oc.env:MY_DATA_ROOT,data2}\n")
    assert moved()
    (repo / "dfdistill" / "sweeps" / "plan.py").write_text("a = 2\n")
    assert moved()
    (repo / "results" / "paper" / "paper_tables.csv").write_text("paper,table,value\n")
    assert moved()
    monkeypatch.setenv("MY_DATA_ROOT", "/data")
    assert moved()
    monkeypatch.setenv("DFDISTILL_ANYTHING", "1")
    assert moved()
    os.chdir(repo)
    assert moved()
    assert plan_memo.memo_path("bilp_tab4", ["bilp_tab4", "--dry-run"]) != seen[-1]


def test_old_fingerprints_are_pruned(tmp_path, monkeypatch, memo_dir):
    for i in range(plan_memo.KEEP + 3):
        (memo_dir / f"old{i:02d}").mkdir(parents=True)
        os.utime(memo_dir / f"old{i:02d}", ns=(i * 10**9, i * 10**9))
    memo = plan_memo.Memo(memo_dir / "current" / "x.pkl")
    memo.put("k", 1)
    memo.save()
    left = sorted(d.name for d in memo_dir.iterdir())
    assert left == ["current"] + [f"old{i:02d}" for i in range(4, plan_memo.KEEP + 3)]
    assert plan_memo.Memo(memo_dir / "current" / "x.pkl").get("k") == 1


def test_a_derived_job_is_kept_as_its_recipe_and_built_alike(memo_dir, tmp_path):
    """A derived job not built yet is kept as its shape's pickle + its own leaves (not built to be
    pickled); the next session builds the config a full resolution gives."""
    cell = ["dataset=cifar10", "method=dm", "ipc=10"]

    def planned() -> list[plan.Job]:
        with plan_memo.session("t", ["t"]):
            return plan.plan("bilp_tab3", "full", cell, sweep_dir=tmp_path)[1]

    cold = planned()
    assert any(j._recipe is not None for j in cold)
    warm = planned()
    for a, b in zip(cold, warm):
        assert b.pickled is not None or b._recipe is not None
        assert json.dumps(OmegaConf.to_container(a.resolved)) == json.dumps(OmegaConf.to_container(b.resolved))
