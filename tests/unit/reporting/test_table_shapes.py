"""Every table target renders in its paper's shape (issue 15 item 5) and plans every paper cell
(issue 21 item 12).

For each table spec (= each Makefile table-*/fig-* target) we write smoke-sized records that look like
real runs -- one distinct value per paper cell -- build the table, and read the rendered markdown:
- the paper-layout table's row and column labels are the paper's (derived here from results/paper,
  independently of the layout code),
- no pooled cells: each cell shows exactly its own runs' value (and count),
- every number the paper prints for that table is in its cell.
And we plan each target at PROFILE=full as `make` would (run_table's planning, in-process, nothing
launched) and place every planned job where its run would land: every paper cell gets a job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfdistill.reporting.build import build_table
from dfdistill.reporting.layouts import SPECS
from dfdistill.reporting.paper import PAPER_CSV
from dfdistill.sweeps.coverage import target_jobs, uncovered

from conftest import ROOT
PAPER = pd.read_csv(PAPER_CSV, dtype=str, keep_default_na=False)
NAMES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN", "tinyimagenet": "TinyImageNet",
         "imagenet1k": "ImageNet-1K", "kinetics400": "Kinetics-400", "mnist": "MNIST"}
TABLE_SPECS = sorted(e for e, s in SPECS.items() if s.paper != "none")


def paper_rows(paper: str, table: str) -> pd.DataFrame:
    return PAPER[(PAPER.paper == paper) & (PAPER.table == table)]


def uniq(xs) -> list:
    return list(dict.fromkeys(xs))


def lab(ds: str, ipc: str) -> str:
    return f"{NAMES[ds]} IPC {ipc}"


# ---------------------------------------------------------------------------------------------- #
# what the paper's table looks like (rows, columns, {(row, col): [printed numbers]})
# ---------------------------------------------------------------------------------------------- #
def expected(exp: str) -> tuple[list[str], list[str], dict[tuple[str, str], list[str]]]:
    s = SPECS[exp]
    p = paper_rows(s.paper, s.table)
    nums: dict[tuple[str, str], list[str]] = {}
    if exp in ("bilp_tab1", "bilp_tab2", "bilp_tab3", "bilp_tab5"):  # rows dataset × IPC, columns methods
        rows, cols = uniq(lab(r.dataset, r.ipc) for r in p.itertuples()), uniq(p.method)
        for r in p.itertuples():
            g = re.search(r"gain vs full real data ([+-][\d.]+)", r.note)
            printed = re.search(r"printed '([^']+)'", r.note)  # Table 2's IDC / IDM text for three cells
            nums[(lab(r.dataset, r.ipc), r.method)] = [r.value, r.std] + ([g.group(1)] if g else []) + \
                ([printed.group(1)] if printed else [])
    elif exp == "bilp_tab6":
        rows, cols = ["ITE computation (s/iter)", "Total iteration (s/iter)"], uniq(p.method)
        for r in p.itertuples():
            nums[(rows[0], r.method)] = [re.search(r"ITE part ([\d.]+) s/iter", r.note).group(1)]
            nums[(rows[1], r.method)] = [r.value]
    elif exp == "bilp_tab7":
        cols = ["Full data accuracy", "Full data training time", "BiLP accuracy", "BiLP training time", "Random real"]
        rows = uniq(f"{lab(r.dataset, r.ipc)}: {r.method}" for r in p.itertuples()
                    if not r.method.startswith("BiLP+") and r.method != "Random real")
        for r in p.itertuples():
            hours = re.search(r"train time ([\d.]+)h", r.note)
            if r.method == "Random real":
                for row in rows:
                    if row.startswith(lab(r.dataset, r.ipc) + ":"):
                        nums[(row, cols[4])] = [r.value, r.std]
            else:
                bilp = r.method.startswith("BiLP+")
                row = f"{lab(r.dataset, r.ipc)}: {r.method.removeprefix('BiLP+')}"
                nums[(row, cols[2 if bilp else 0])] = [r.value, r.std]
                nums[(row, cols[3 if bilp else 1])] = [hours.group(1)]
    elif exp == "bilp_fig2":
        t1, t2 = paper_rows("bilp", "tab1"), paper_rows("bilp", "tab2")
        both = {(r.dataset, r.ipc, r.method): r.value or re.search(r"printed '([^']+)'", r.note).group(1)
                for r in t2.itertuples()}
        rows, cols = [], ["random selection (max ratio %)", "loss selection (max ratio %)"]
        for r in t1.itertuples():
            if (r.dataset, r.ipc, r.method) in both:
                row = f"{lab(r.dataset, r.ipc)}: {r.method}"
                rows.append(row)
                nums[(row, cols[0])], nums[(row, cols[1])] = [r.value], [both[(r.dataset, r.ipc, r.method)]]
    elif exp == "bilp_fig3":  # BiLP §5.4: trials {1,5,10,50} × first {1,5,10,100} epochs, strata S1..S10
        rows = [f"trials {t}, epochs {e}" for t in (1, 5, 10, 50) for e in (1, 5, 10, 100)]
        cols = [f"S{k}" for k in range(1, 11)]
    elif exp == "bilp_fig4":
        rows, cols = ["MNIST", "CIFAR10", "CIFAR100", "SVHN"], [f"S{k}" for k in range(1, 11)]
    else:  # rows methods, columns dataset × IPC (Table 4's full-data row spans its dataset's columns)
        keys = uniq((r.dataset, r.ipc) for r in p.itertuples() if r.ipc != "full")
        methods = uniq(p.method)
        rows = (["Full dataset"] + [m for m in methods if m != "Full dataset"]) if "Full dataset" in methods else methods
        cols = [lab(*k) for k in keys]
        for r in p.itertuples():
            for d, i in ([k for k in keys if k[0] == r.dataset] if r.ipc == "full" else [(r.dataset, r.ipc)]):
                nums[(r.method, lab(d, i))] = [r.value, r.std]
        if exp == "dfcolearn_tab1":  # the paper's "Type" column before its numbers
            cols = ["Type"] + cols
            nums.update({(row, "Type"): [DFCOLEARN_TYPES[row]] for row in rows})
    return rows, cols, {k: [x for x in v if x] for k, v in nums.items()}


# ---------------------------------------------------------------------------------------------- #
# records that look like real runs, one distinct value per cell
# ---------------------------------------------------------------------------------------------- #
def rec(method, dataset, ipc, accs, pruning="none", ratio=0.0, method_cfg=None, pruning_cfg=None, **kw):
    m = sum(accs) / len(accs)
    return {"config": {"dataset": {"root": "/data"}, "method": method_cfg or {}, "pruning": pruning_cfg or {}},
            "dataset": dataset, "backbone": "convnet", "method": method, "ipc": int(ipc), "pruning": pruning,
            "pruning_ratio": ratio, "seed": 0, "profile": "smoke", "accs": accs, "acc_mean": m, "acc_std": 0.0,
            "n_eval": len(accs), "stage_seconds": {"pruning": 1.0, "distill": 10.0, "eval": 50.0},
            "sec_per_iter": 0.1, "device_name": "cpu", "code_version": "test", **kw}


DS = {v: k for k, v in NAMES.items()}
BASE = {"DC": "dc", "DSA": "dsa", "DM": "dm", "MTT": "mtt", "IDC": "idc", "IDM": "idm", "RFAD": "rfad",
        "RFAD-NN": "rfad", "Random": "random", "Herding": "herding", "TESLA": "tesla", "DF-CoLearn": "dfcolearn",
        "DC+DSA": "dsa", "EDD": "edd"}
# accuracy rows: paper label -> (method, pruning, method cfg, pruning cfg); rows absent here are other papers' methods
ACCURACY_ROWS = {
    **{k: (v, "none", {}, {}) for k, v in BASE.items()},
    "Full dataset": ("whole", "none", {}, {}), "BiLP+DC": ("dc", "bilp", {}, {}),
    "BiLP+IDC": ("idc", "bilp", {"factor": 2}, {}), "BiLP+IDC(x3)": ("idc", "bilp", {"factor": 3}, {}),
    "DF-CoLearn": ("dfcolearn", "none", {"variant": "full"}, {}),  # the default variant
    **{f"{a}: {b}": (f"dfcolearn_{v}" if v != "full" else "dfcolearn", "none", {"variant": v}, {}) for a, b, v in [
        ("Baseline A", "random selection", "random"), ("Baseline B", "filtering only", "filter_only"),
        ("Baseline C", "distillation only", "distill_only"), ("Variant D", "filter then distill", "filter_then_distill"),
        ("DF-CoLearn", "full loop", "full")]},
    "IDC (no pruning)": ("idc", "none", {}, {}), "+preemptive": ("idc", "loss", {}, {}),
    "+preemptive +prune large ITE": ("idc", "bilp", {}, {"adaptive": {"tail": "large"}}),
    "+preemptive +prune small ITE": ("idc", "bilp", {}, {"adaptive": {"tail": "small"}}),
    "BiLP (full)": ("idc", "bilp", {}, {"adaptive": {"tail": "both"}})}
# DF-CoLearn Table 1's "Type" column as the paper prints it (not in results/paper: text, no number)
DFCOLEARN_TYPES = {"Random": "Subset", "Herding": "Coreset", "DC+DSA": "Distill", "MTT": "Distill", "TESLA": "Distill",
                   "DF-CoLearn": "Ours", "Improvement": "-"}
ITE_SETTINGS = {"no optimisation": ("exact", "full", 1), "+running stats": ("exact", "running", 1),
                "+Taylor approximation": ("taylor", "running", 1), "+lazy selection": ("taylor", "running", 10)}


def split_lab(label: str) -> tuple[str, str]:
    name, ipc = label.rsplit(" IPC ", 1)
    return DS[name], ipc


def records_for(exp: str, row: str, col: str, v: float) -> tuple[list[dict], float]:
    """Runs that belong to paper cell (row, col) alone, and the value the cell must show."""
    kind = SPECS[exp].kind
    if kind in ("max_ratio", "best_ratio"):
        (ds, ipc), method = split_lab(row), BASE[col]
        crit = SPECS[exp].criterion
        base = [rec(method, ds, ipc, [0.40]), rec(method, ds, ipc, [0.42])]
        if kind == "best_ratio":  # above the unpruned 41 %, so the best ratio is 0.5
            return base + [rec(method, ds, ipc, [0.5 + v / 1000], crit, 0.5) for _ in range(5)], 50 + v / 10
        r = round(v / 1000, 4)  # a distinct ratio per cell; 5 trials that keep, one higher ratio that drops
        return base + [rec(method, ds, ipc, [0.41], crit, r, pruning_cfg={"seed_offset": i}) for i in range(5)] + \
            [rec(method, ds, ipc, [0.10], crit, min(0.999, r + 0.3))], 100 * r
    if kind == "arrows":
        head, m = row.rsplit(": ", 1)
        (ds, ipc), method = split_lab(head), BASE[m]
        crit = "random" if col.startswith("random") else "loss"
        r = round(v / 1000, 4)
        base = [rec(method, ds, ipc, [0.40]), rec(method, ds, ipc, [0.42])]
        return base + [rec(method, ds, ipc, [0.41], crit, r, pruning_cfg={"seed_offset": i}) for i in range(5)], 100 * r
    if kind == "timing":
        mode, stats, lazy = ITE_SETTINGS[col]
        key = "ite_seconds_per_iter" if row.startswith("ITE") else "sec_per_iter"
        r = rec("idc", "cifar10", 10, [0.5], "ite", pruning_cfg={"adaptive": {"mode": mode, "stats": stats,
                                                                             "lazy_every": lazy}})
        r[key] = v
        r["ite_seconds_per_iter" if key == "sec_per_iter" else "sec_per_iter"] = None
        return [r], v
    if kind == "large_scale":  # one unpruned and one BiLP run fill the row's five cells (see the test loop)
        head, m = row.rsplit(": ", 1)
        (ds, ipc), method = split_lab(head), BASE[m]
        i = ["Full data accuracy", "Full data training time", "BiLP accuracy", "BiLP training time"].index(col) \
            if col != "Random real" else 4
        if i != 0:
            return [], float("nan")
        full = rec(method, ds, ipc, [v / 100], random_accs=[(v + 4) / 100],
                   stage_seconds={"distill": 3600.0 * (v + 1), "eval": 9.0})
        bilp = rec(method, ds, ipc, [(v + 2) / 100], "bilp", 0.5, random_accs=[0.99],
                   stage_seconds={"pruning": 0.0, "distill": 3600.0 * (v + 3), "eval": 9.0})
        return [full, bilp], v
    if kind == "strata":
        t, e = (int(x) for x in re.findall(r"\d+", row))
        r = rec("dc", "cifar10", 1, [v / 100], "loss", 0.5, pruning_cfg={"stratum": int(col[1:]), "trials": t,
                                                                         "epochs": list(range(1, e + 1))})
        return [r], v
    # accuracy
    if SPECS[exp].methods_as_columns:
        row, col = col, row
    if row not in ACCURACY_ROWS:
        return [], float("nan")
    method, pruning, mcfg, pcfg = ACCURACY_ROWS[row]
    ds, ipc = split_lab(col)
    return [rec(method, ds, ipc, [v / 100, v / 100], pruning, 0.5 if pruning != "none" else 0.0, mcfg, pcfg)], v


def write(folder: Path, recs: list[dict]) -> None:
    for i, r in enumerate(recs):
        d = folder / f"+exp=x,job={i}"
        d.mkdir(parents=True)
        (d / "results.jsonl").write_text(json.dumps({**r, "output_dir": str(d)}) + "\n")


def markdown_grid(md: str) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    lines = md.split("## Paper layout", 1)[1].splitlines()[2:]
    table = [ln for ln in lines[: lines.index("")]] if "" in lines else lines
    split = [ln.strip().strip("|").split(" | ") for ln in table]
    cols = [c.strip() for c in split[0][1:]]
    rows = [r[0].strip() for r in split[2:]]
    return rows, cols, {(r[0].strip(), c): v.strip() for r in split[2:] for c, v in zip(cols, r[1:])}


def test_every_make_target_has_a_table_spec() -> None:
    targets = set(re.findall(r"call RUN_TABLE,([a-z0-9_]+)", (ROOT / "Makefile").read_text()))
    assert targets and targets <= set(SPECS)


@pytest.mark.parametrize("exp", TABLE_SPECS)
def test_table_renders_in_the_papers_shape(exp: str, tmp_path: Path) -> None:
    rows, cols, nums = expected(exp)
    recs, want, value = [], {}, 1.0
    if exp == "bilp_fig4":
        for ds in ("mnist", "cifar10", "cifar100", "svhn"):
            d = tmp_path / "runs" / ds
            d.mkdir(parents=True)
            div = [{"dataset": ds, "stratum": k, "intra": 1.0, "inter": 1.0, "ratio": (value := value + 1.0) / 100}
                   for k in range(1, 11)]
            (d / "diversity.json").write_text(json.dumps(div))
            want.update({(NAMES[ds], f"S{r['stratum']}"): r["ratio"] for r in div})
    else:
        spanned: set[str] = set()
        for row in rows:
            for col in cols:
                if col == "Type":  # text the paper prints, no run
                    continue
                value += 1.0
                if row == "Full dataset" and split_lab(col)[0] in spanned:  # one full-data run spans the columns
                    continue
                rs, v = records_for(exp, row, col, value)
                if rs:
                    recs += rs
                    want[(row, col)] = v
                    if SPECS[exp].kind == "large_scale":  # the rest of the row, from the same two runs
                        want.update({(row, c): v + k for k, c in enumerate(cols) if k})
                    if row == "Full dataset":
                        spanned.add(split_lab(col)[0])
                        want.update({(row, c): v for c in cols if split_lab(c)[0] == split_lab(col)[0]})
    write(tmp_path / "runs", recs)
    t = build_table(tmp_path / "runs", exp=exp, out_dir=tmp_path / "out", plots=SPECS[exp].kind in ("arrows", "strata", "diversity"), extra_plots=False)
    md = t["markdown"].read_text()
    got_rows, got_cols, text = markdown_grid(md)
    assert got_rows == rows and got_cols == cols  # the paper's labels, the paper's order
    grid = t["grid"]
    assert not grid.extra, [(c.row, c.col) for c in grid.extra]  # every record found its own paper cell
    for (row, col), v in want.items():  # no pooling: each cell is exactly its own runs' value
        cell = grid.cell(row, col)
        assert cell.ours.mean == pytest.approx(v), (row, col)
        assert text[(row, col)].startswith(cell.prefix + format(cell.ours.mean, cell.fmt)), (row, col, text[(row, col)])
    for (row, col), printed in nums.items():  # every paper number, in its cell
        for x in printed:
            assert x in text[(row, col)].split(" / ", 1)[-1], (row, col, x, text[(row, col)])
    assert {k for k, v in text.items() if v != "—" and not v.startswith("— / ")} >= set(want)
    if SPECS[exp].kind in ("arrows", "strata", "diversity"):
        assert t["figure"].exists() and t["figure"].with_suffix(".csv").exists()


# ---------------------------------------------------------------------------------------------- #
# what each target plans at PROFILE=full
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("exp", TABLE_SPECS)
def test_every_target_plans_every_paper_cell(exp: str) -> None:
    """`make <target> PROFILE=full` plans a job for every paper cell (paper-only rows excepted: other
    papers' methods in Table 4, Kinetics-400 in Table 7; Layout.paper_only)."""
    assert uncovered(exp, "full") == []


def test_coverage_sees_a_missing_job_set() -> None:
    """Without its extra sets (the CIFAR10 IPC 50 row, Table 6's first and last columns) the plan
    leaves exactly those paper cells empty."""
    tab2 = uncovered("bilp_tab2", "full", adds=[])
    assert tab2 and {r for r, _ in tab2} == {"CIFAR10 IPC 50"}
    tab6 = uncovered("bilp_tab6", "full", adds=[])
    assert {c for _, c in tab6} == {"no optimisation", "+lazy selection"}


def test_table6_plans_the_papers_four_settings() -> None:
    """Table 6's columns add one optimisation at a time; "no optimisation" is exact ITE of all data
    every iteration, and runs only a few iterations (its cells are s/iter)."""
    jobs = target_jobs("bilp_tab6", "full")
    settings = {}
    for j in jobs:
        kv = dict(o.split("=", 1) for o in j.overrides)
        if kv["pruning"] == "none":
            continue
        a = {k: kv.get(f"pruning.adaptive.{k}") for k in ("mode", "stats", "lazy_every")}
        settings[(a["mode"], a["stats"] or "running", a["lazy_every"])] = kv.get("method.iterations")
    assert settings == {("exact", "full", "1"): "3", ("exact", "running", "1"): None,
                        ("taylor", "running", "1"): None, ("taylor", "running", "10"): None}
    assert any("pruning=none" in j.overrides for j in jobs)  # the speed-up's unpruned IDC


@pytest.mark.slow
@pytest.mark.parametrize("exp", TABLE_SPECS)
def test_every_target_plans_every_paper_cell_exactly(exp: str) -> None:
    """The same with every job composed and resolved as `--plan` and the run do (recipes, profile):
    the fast check's configs (each exp composed once, group options and values on top) miss nothing."""
    assert uncovered(exp, "full", exact=True) == []


def test_search_cells_are_the_searchs_cells(tmp_path: Path) -> None:
    """coverage.search_cells builds a max-ratio search's cells as MaxRatioSearch does."""
    from dfdistill.sweeps import jobsets
    from dfdistill.sweeps.coverage import search_cells
    from dfdistill.sweeps.search import MaxRatioSearch

    over = ["method=dc", "ipc=1,50", "dataset=digits"]
    adds = jobsets.extra_sets("bilp_tab2", over)
    s = MaxRatioSearch("bilp_tab2", "smoke", over, lambda jobs: [], sweep_dir=None, adds=adds)
    ours = search_cells("bilp_tab2", "smoke", over, adds)
    strip = lambda lines: [o for o in lines if not o.startswith(("pruning.ratio=", "pruning.seed_offset="))]  # noqa: E731
    assert [strip(j.overrides) for j in ours] == [c.lines for c in s.cells] and len(ours) == 2


# ---------------------------------------------------------------------------------------------- #
# figure targets: each runs what its figure needs, then draws it; `make tables` includes them all
# ---------------------------------------------------------------------------------------------- #
def _make_n(*args: str) -> str:
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("target,kind,exp", [("fig-bilp-4", "diversity", "bilp_fig4"), ("fig-edd", "edd", "edd_figs")])
def test_figure_target_runs_its_sweep_then_draws(target: str, kind: str, exp: str) -> None:
    lines = _make_n(target, "PROFILE=full", "SWEEP_DIR=/s").splitlines()
    run = next(i for i, ln in enumerate(lines) if "scripts/run_table.py" in ln and f" {exp} " in ln)
    draw = next(i for i, ln in enumerate(lines) if f"scripts/make_figure.py {kind} --exp {exp} --profile full" in ln)
    assert run < draw and f"--sweep-dir /s/{exp}" in lines[draw]  # the figure reads the jobs the sweep ran
    assert "make_figure.py" not in _make_n(target, "PLAN=1")  # PLAN=1 plans, draws nothing


def test_make_tables_includes_every_table_and_figure_target() -> None:
    targets = re.findall(r"^((?:table|fig)-[a-z0-9-]+):", (ROOT / "Makefile").read_text(), re.M)
    every = _make_n("tables", "PROFILE=full")
    for t in targets:
        recipe = [ln for ln in _make_n(t, "PROFILE=full").splitlines() if ln.strip()]
        assert recipe and all(ln in every for ln in recipe), t


def test_edd_figure_target_plans_an_edd_run_and_its_base() -> None:
    """Fig. 1 compares EDD's update signals with its base method's (IDC) from the same seed and data."""
    from dfdistill.sweeps.coverage import sketch_config

    cfgs = [sketch_config(j) for j in target_jobs("edd_figs", "full")]
    by = {c["method"]["name"]: (c["dataset"]["name"], c["ipc"], c["seed"]) for c in cfgs}
    edd = next(c for c in cfgs if c["method"]["name"] == "edd")
    assert set(by) == {"edd", edd["method"]["base"]} and by["edd"] == by[edd["method"]["base"]]


@pytest.mark.slow
def test_fig_bilp_4_target_end_to_end_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(["make", "fig-bilp-4", "PROFILE=smoke", "DATASET=digits", "LAUNCHER=inprocess",
                    f"SWEEP_DIR={tmp_path}", f"PYTHON={sys.executable}"], cwd=ROOT, env=env, check=True)
    rows = json.loads(next((tmp_path / "bilp_fig4").rglob("diversity.json")).read_text())
    assert [r["stratum"] for r in rows] == list(range(1, 11))
    assert (tmp_path / "bilp_fig4" / "bilp_fig4.png").exists()


@pytest.mark.slow
def test_fig_edd_target_end_to_end_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(["make", "fig-edd", "PROFILE=smoke", "DATASET=digits", "LAUNCHER=inprocess", f"SWEEP_DIR={tmp_path}",
                    "EXTRA=ipc=4 eval.compare_random=false", f"PYTHON={sys.executable}"], cwd=ROOT, env=env, check=True)
    out = tmp_path / "edd_figs"
    for f in ("edd_digits_ipc4_fig1.png", "edd_digits_ipc4_fig2.png", "edd_digits_ipc4.md"):
        assert (out / f).exists(), f
    assert "IDC" in (out / "edd_digits_ipc4_fig1.csv").read_text()  # the base run is in Fig. 1
