"""Table targets without the paper's datasets: a missing dataset is one line before any job, and on the
embedded digits every `make table-*` target runs end to end at PROFILE=smoke, skipping (and naming)
the cells that cannot run at that size."""

from __future__ import annotations

import re

import pytest
from omegaconf import open_dict

from conftest import ROOT
from dfdistill.config.compose import compose_run_config
from dfdistill.config.resolve import resolve_config
from dfdistill.sweeps import cli as run_table
from dfdistill.sweeps import feasible

BASE = ["--profile", "smoke", "logger=none"]


def _resolved(*overrides: str):
    cfg = compose_run_config(["profile=smoke", "logger=none", *overrides])
    with open_dict(cfg):
        cfg.output_dir = "."
    return resolve_config(cfg)


@pytest.mark.parametrize("overrides,why", [
    (["ipc=50"], "ipc=50 needs 50 real images per class, the split has 20"),
    (["ipc=10"], None),
    (["ipc=20", "pruning=random"], "the split has 20 (10 after pruning)"),
    (["ipc=50", "method.init=noise", "eval.compare_random=false"], None),  # draws no real image
    (["ipc=50", "method=random", "eval.compare_random=false"], "needs 50 real images"),  # a coreset does
])
def test_which_jobs_cannot_run_at_the_smoke_size(overrides, why):
    got = feasible.why_not(_resolved(*overrides))
    assert (got is None) if why is None else (got is not None and why in got), got


def test_missing_dataset_is_one_line_before_any_job(monkeypatch, tmp_path, capsys):
    """`make table-bilp-4 PROFILE=smoke` without CIFAR-10 launched every job, each failing the same way."""
    monkeypatch.setenv("DFDISTILL_DATA", str(tmp_path / "nodata"))
    launched = []
    monkeypatch.setattr(run_table, "make_launch", lambda *a, **k: launched.append(1) or (lambda jobs: [0] * len(jobs)))
    rc = run_table.cli(["bilp_tab4", *BASE, "--sweep-dir", str(tmp_path / "sw"), "--no-extra",
                        "dataset=cifar10,svhn", "method=random", "ipc=1"])
    err = capsys.readouterr().err
    assert rc == 2 and not launched
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "CIFAR-10 not found under" in lines[0] and "no job of this sweep" in lines[0], err


def _skip_run(tmp_path, capsys, *flags: str) -> tuple[dict, list, str]:
    launched: list = []
    res = run_table.main(["bilp_tab4", *BASE, "--sweep-dir", str(tmp_path / "sw"), "--no-extra", *flags,
                          "dataset=digits", "method=random", "ipc=1,50"],
                         launch=lambda jobs: launched.extend(jobs) or [0] * len(jobs))
    return res, launched, capsys.readouterr().out


def test_cells_too_big_for_the_data_are_skipped_before_launch_in_one_line(tmp_path, capsys):
    """DATASET=digits: the IPC 50 cells (50 images per class; the smoke split has 20) failed after launch."""
    res, launched, out = _skip_run(tmp_path, capsys, "--no-table")
    assert [j.overrides for j in launched] and all("ipc=1" in j.overrides for j in launched)
    skip_lines = [l for l in out.splitlines() if l.startswith("[run_table] skipped before launch")]
    assert len(skip_lines) == 1 and "ipc=50" in skip_lines[0] and "+exp=" not in skip_lines[0], out
    assert run_table.exit_code(res) == 0 and list(res["skipped"]) == [j.out_dir.name for j in res["jobs"]
                                                                       if "ipc=50" in j.overrides]


def test_skipped_jobs_are_listed_in_the_table_text():
    from dfdistill.reporting.build import skipped_section

    assert skipped_section({}) == ""
    md = skipped_section({"dataset=digits,ipc=50": "ipc=50 needs 50 real images per class"})
    assert "## Skipped before launch" in md and "| dataset=digits,ipc=50 | ipc=50 needs" in md


@pytest.mark.slow
def test_skipped_cells_appear_in_the_built_table(tmp_path, capsys):
    res, _, _ = _skip_run(tmp_path, capsys)
    md = res["table"]["markdown"].read_text()
    assert "## Skipped before launch" in md and "ipc=50" in md.split("## Skipped before launch")[1]


# ---------------------------------------------------------------------------------------------- #
# every make table target, end to end on digits at PROFILE=smoke (slow suite)
# ---------------------------------------------------------------------------------------------- #
# Per target: the narrowing that keeps its smoke run to a few jobs (each still composes the table's
# own job sets, search and reuse) with at least one cell too big for the smoke split where the
# table has one, so the skip path runs too.
NARROW: dict[str, list[str]] = {
    "bilp_tab1": ["--trials", "1", "--ladder", "0.5", "method=dm", "ipc=1,50"],
    "bilp_tab2": ["--trials", "1", "--ladder", "0.5", "method=dm", "ipc=1"],
    "bilp_fig2": ["--trials", "1", "--ladder", "0.5", "method=dm", "ipc=1"],  # reuses tab1/tab2's runs
    "bilp_tab3": ["method=dm", "ipc=1", "pruning.ratio=0.0,0.5"],
    "bilp_tab4": ["method=dc", "ipc=1,50"],
    "bilp_tab5": ["ipc=1,50", "pruning=none"],
    "bilp_tab6": ["pruning.adaptive.mode=taylor", "pruning.adaptive.lazy_every=10"],
    "bilp_tab7": ["method=dm", "pruning=none"],
    "bilp_fig3": ["pruning.stratum=1", "pruning.trials=1", "pruning.epochs=[1]"],
    "bilp_fig4": [],
    "dfcolearn_tab1": ["method=dfcolearn", "ipc=1,50"],
    "dfcolearn_tab2": ["method.variant=full", "ipc=1"],  # its IPC 10 distils for ~80 s even at smoke
    "edd_tinyimagenet": [],
    "edd_figs": ["ipc=1"],  # the figures' CIFAR-10 IPC 50 cell does not fit the smoke split
}


def make_targets() -> dict[str, list[str]]:
    """`make table-*`/`fig-*` target -> [exp, run_table flags] as the Makefile calls run_table."""
    out = {}
    for name, exp, flags in re.findall(r"^((?:table|fig)-[\w-]+):.*\n\t\$\(call RUN_TABLE,(\w+)(?:,([^)]*))?\)",
                                       (ROOT / "Makefile").read_text(), flags=re.M):
        out[name] = [exp, *flags.split()]
    return out


def test_every_make_table_target_has_a_smoke_narrowing():
    targets = make_targets()
    assert len(targets) >= 13
    assert {exp for exp, *_ in targets.values()} == set(NARROW)


@pytest.mark.slow
@pytest.mark.parametrize("target", list(make_targets()))  # Makefile order: Tables 1-2 before Fig. 2 reuses them
def test_make_table_target_runs_offline_on_digits(target, tmp_path_factory, capsys):
    """What `make <target> PROFILE=smoke DATASET=digits LAUNCHER=inprocess EXTRA=...` runs; the sweep
    dirs share one parent so Fig. 2 / Table 3 reuse Tables 1-2's runs as the Makefile's SWEEP_DIR does."""
    exp, *flags = make_targets()[target]
    root = tmp_path_factory.getbasetemp() / "tables"
    argv = [exp, *flags, *BASE, "--launcher", "inprocess", "--sweep-dir", str(root / exp),
            "dataset=digits", *NARROW[exp]]
    res = run_table.main(argv)
    out = capsys.readouterr()
    assert run_table.exit_code(res) == 0, out.err[-2000:]
    assert "error: " not in out.err, out.err[-2000:]
    if "--no-table" not in flags:
        assert res["table"]["markdown"].exists()
    if res.get("skipped"):
        assert "[run_table] skipped before launch" in out.out
        assert "## Skipped before launch" in res["table"]["markdown"].read_text()
