"""Table builder (dfdistill/reporting): cells equal their runs and the paper CSV, figures are written,
the sweep planner re-runs nothing, and one table target end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfdistill.reporting import cells as C
from dfdistill.reporting.build import build_table
from dfdistill.reporting.collect import collect
from dfdistill.reporting.layouts import ITE_ROW, LOSS_COL, RANDOM_COL, SPECS, TAB7_COLS, TOTAL_ROW
from dfdistill.reporting.paper import PAPER_CSV, load_paper

from conftest import ROOT
sys.path.insert(0, str(ROOT / "scripts"))
import run_table  # noqa: E402


def _record(method, ipc, accs, pruning="none", ratio=0.0, dataset="cifar10", wall=10.0, spi=0.1, cfg=None, **kw):
    cfg = cfg or {}
    m = sum(accs) / len(accs)
    sd = math.sqrt(sum((a - m) ** 2 for a in accs) / len(accs))
    return {"config_key": f"{method}{ipc}{pruning}{ratio}", "config": {"dataset": {"root": "/data/x"}, **cfg},
            "dataset": dataset, "backbone": "convnet", "method": method, "ipc": ipc, "pruning": pruning,
            "pruning_ratio": ratio, "seed": 0, "profile": "smoke", "accs": accs, "acc_mean": m, "acc_std": sd,
            "n_eval": len(accs), "stage_seconds": {"distill": wall}, "wall_seconds": wall, "sec_per_iter": spi,
            "iterations": 3, "device": "cpu", "device_name": "cpu", "code_version": "abc123", **kw}


def _write(folder: Path, recs: list[dict]) -> None:
    for i, r in enumerate(recs):
        d = folder / f"job{i}"
        d.mkdir(parents=True)
        r["output_dir"] = str(d)
        (d / "results.jsonl").write_text(json.dumps(r) + "\n")


def _paper(table: str, dataset: str, ipc: str, method: str, paper: str = "bilp") -> tuple[float, float]:
    p = load_paper()
    p = p[(p.paper == paper) & (p.table == table) & (p.dataset == dataset) & (p.ipc == ipc) & (p.method == method)]
    return float(p.value.iloc[0]), (float(p["std"].iloc[0]) if p["std"].iloc[0] else math.nan)


# Rows the project adds to the shared reference, read from the papers' text: BiLP Table 2's garbled
# CIFAR-10 IPC 50 / CIFAR-100 rows and DF-CoLearn Table 1's "Improvement" row.
ADDED_TABLES = {("bilp", "tab2"), ("dfcolearn", "tab1")}


def test_paper_csv_is_the_shared_copy_plus_the_rows_read_from_the_papers() -> None:
    shared = ROOT.parent / "shared" / "reference" / "paper_tables.csv"
    if not shared.exists():
        pytest.skip("shared reference not mounted")
    ref, ours = shared.read_text().splitlines(), PAPER_CSV.read_text().splitlines()
    assert [ln for ln in ours if ln in set(ref)] == ref  # every reference row, unchanged, in its order
    added = load_paper().iloc[[i - 1 for i, ln in enumerate(ours) if ln not in set(ref)]]
    assert set(zip(added.paper, added.table)) == ADDED_TABLES
    assert len(added[added.table == "tab2"]) == 21 and len(added[added.method == "Improvement"]) == 5


def test_bilp_tab2_has_the_papers_nine_rows() -> None:
    """CIFAR10 IPC 50 and CIFAR100 IPC 1/10, read from the garbled text (three values per method);
    IDC and IDM print two values for those three cells: shown as printed, marked, with no number."""
    from dfdistill.reporting.grids import build_grid

    g = build_grid(SPECS["bilp_tab2"], [], load_paper())
    assert g.rows == [f"{d} IPC {i}" for d, i in [("CIFAR10", 1), ("CIFAR10", 10), ("CIFAR10", 50), ("CIFAR100", 1),
                                                  ("CIFAR100", 10), ("SVHN", 1), ("SVHN", 10), ("TinyImageNet", 1),
                                                  ("TinyImageNet", 10)]]
    got = {m: [g.cell(r, m).paper.text for r in ("CIFAR10 IPC 50", "CIFAR100 IPC 1", "CIFAR100 IPC 10")]
           for m in g.cols}
    assert got == {"DC": ["70", "95", "90"], "DSA": ["83", "97", "80"], "DM": ["40", "99.5", "90"],
                   "MTT": ["20", "60", "20"], "RFAD": ["20", "80", "80"],
                   "IDC": ["80% 60%†"] * 3, "IDM": ["70% 20%†"] * 3}
    assert g.cell("CIFAR100 IPC 1", "IDC").paper.value is None  # no Δ against a number of unknown cell
    f2 = build_grid(SPECS["bilp_fig2"], [], load_paper())  # Fig. 2 inherits the rows
    assert f2.cell("CIFAR100 IPC 1: DC", LOSS_COL).paper.text == "95"
    assert f2.cell("CIFAR10 IPC 50: IDM", LOSS_COL).paper.text == "70% 20%†"
    assert f2.cell("CIFAR10 IPC 50: IDM", RANDOM_COL).paper.text == "20"


def test_dfcolearn_tab1_has_the_type_column_and_improvement_row(tmp_path: Path) -> None:
    """Improvement = DF-CoLearn minus the best other method of the column (the paper's TESLA), ours
    from our cells; Type is the paper's text column."""
    recs = [_record("dfcolearn", 1, [0.52], cfg={"method": {"variant": "full"}}), _record("tesla", 1, [0.47]),
            _record("mtt", 1, [0.49]), _record("random", 1, [0.14]), _record("dfcolearn", 10, [0.70])]
    _write(tmp_path / "s", recs)
    t = build_table(tmp_path / "s", exp="dfcolearn_tab1", plots=False)
    g = t["grid"]
    imp = g.cell("Improvement", "CIFAR10 IPC 1")
    assert imp.ours.mean == pytest.approx(3.0) and imp.paper.text == "+3.6" and "MTT" in imp.note
    assert g.cell("Improvement", "CIFAR10 IPC 10").ours.empty  # nothing else measured there
    assert g.rows[-1] == "Improvement"
    md = t["markdown"].read_text()
    assert "| method | Type | CIFAR10 IPC 1 |" in md and "| Random | Subset | " in md
    assert "| Improvement | - | +3.0 / +3.6 (Δ -0.6) |" in md


def test_accuracy_cells_equal_records_and_paper(tmp_path: Path) -> None:
    recs = [_record("dc", 1, [0.20, 0.22, 0.24]), _record("dc", 10, [0.40]), _record("dm", 1, [0.3, 0.5]),
            _record("dc", 1, [0.25, 0.27], pruning="bilp", ratio=0.5),
            _record("idc", 10, [0.61, 0.63], pruning="bilp", ratio=0.5, cfg={"method": {"factor": 3}}),
            _record("idc", 10, [0.55], pruning="bilp", ratio=0.5, cfg={"method": {"factor": 2}}),
            _record("whole", 10, [0.83, 0.85]), _record("rfad", 1, [0.5]),
            _record("dc", 1, [0.21], pruning="loss", ratio=0.5)]
    _write(tmp_path / "sweep", recs)
    t = build_table(tmp_path / "sweep", exp="bilp_tab4", out_dir=tmp_path / "out")
    g = t["grid"]
    dc = g.cell("DC", "CIFAR10 IPC 1")
    assert dc.ours == C.pooled_accuracy([recs[0]]) and dc.ours.mean == pytest.approx(22.0) and dc.ours.n == 3
    assert dc.ours.std == pytest.approx(100 * recs[0]["acc_std"])
    assert (dc.paper.value, dc.paper.std) == _paper("tab4", "cifar10", "1", "DC") and dc.delta == pytest.approx(22.0 - 28.3)
    assert g.cell("BiLP+DC", "CIFAR10 IPC 1").ours.mean == pytest.approx(26.0)
    assert g.cell("BiLP+IDC(x3)", "CIFAR10 IPC 10").ours.mean == pytest.approx(62.0)  # factor 3 = the paper's x3
    assert g.cell("BiLP+IDC", "CIFAR10 IPC 10").ours.mean == pytest.approx(55.0)
    assert g.cell("RFAD-NN", "CIFAR10 IPC 1").ours.mean == pytest.approx(50.0)
    for col in ("CIFAR10 IPC 1", "CIFAR10 IPC 10", "CIFAR10 IPC 50"):  # the full-data row spans its columns
        full = g.cell("Full dataset", col)
        assert full.ours.mean == pytest.approx(84.0) and full.paper.value == 84.8
    assert g.cell("Full dataset", "SVHN IPC 1").ours.empty and g.cell("Full dataset", "SVHN IPC 1").paper.value == 95.4
    kip = g.cell("KIP", "CIFAR10 IPC 1")
    assert kip.ours.empty and kip.paper.text == "49.9 ± 0.2"  # paper-only rows: the paper's value, "—" for ours
    assert {c.row for c in g.extra} == {"DM", "DC + loss pruning"}  # no paper row (DM is not in Table 4): apart
    assert g.rows[0] == "Full dataset" and g.rows[-1] == "BiLP+IDC(x3)"
    md = t["markdown"].read_text()
    for key in ("profile**: smoke", "device**: cpu", "runs' code**: abc123", "command**: `python ",
                "| DC | 22.0 ± 1.6 / 28.3 ± 0.5 (Δ -6.3) |", "— / 49.9 ± 0.2", "22.0 ± 1.6 (n=3)",
                "Runs outside the paper's layout"):
        assert key in md, key
    assert "/data/x" not in md and "generated" not in md  # no machine path, nothing from the clock
    assert "\\begin{tabular}" in t["latex"].read_text()
    csv = pd.read_csv(t["csv"], dtype={"ipc": str})
    assert csv.in_paper_layout.sum() == len(g.rows) * len(g.cols) and len(csv) == len(g.rows) * len(g.cols) + 2


def test_stand_in_dataset_is_compared_with_the_tables_first_and_said_so(tmp_path: Path) -> None:
    _write(tmp_path / "s", [_record("dc", 1, [0.2], dataset="digits"), _record("dc", 1, [0.3], dataset="cifar10_jpeg")])
    t = build_table(tmp_path / "s", exp="bilp_tab4", plots=False)
    g = t["grid"]
    assert g.cell("DC", "CIFAR10 IPC 1").ours.mean == pytest.approx(30.0)  # the JPEG copy IS CIFAR10: it wins
    assert [(c.row, c.dataset) for c in g.extra] == [("DC", "digits")]  # the stand-in competes -> apart, not pooled
    assert "digits IPC 1 → paper CIFAR10" in t["markdown"].read_text()


def test_tables_sharing_an_out_dir_keep_their_own_grids(tmp_path: Path) -> None:
    """Two tables with a same-named cell (DC, IPC 1) written to one folder: each links its own picture."""
    from PIL import Image

    for name, colour in (("a", 0), ("b", 255)):
        rec = _record("dc", 1, [0.2])
        _write(tmp_path / name, [rec])
        Image.new("RGB", (4, 4), (colour, colour, colour)).save(Path(rec["output_dir"]) / "synthetic.png")
        build_table(tmp_path / name, exp="bilp_tab4", out_dir=tmp_path / "out", name=f"tab_{name}", plots=False)
    for name, colour in (("a", 0), ("b", 255)):
        md = (tmp_path / "out" / f"tab_{name}.md").read_text()
        link = md.split("![](")[1].split(")")[0]
        assert link.startswith(f"grids/tab_{name}/") and Image.open(tmp_path / "out" / link).getpixel((0, 0))[0] == colour


def _ratio_runs(method, crit, base, at, dataset="cifar10", ipc=1):
    """Unpruned runs with accuracies `base`, and {ratio: [acc per removal trial]} for criterion `crit`."""
    out = [_record(method, ipc, [a], dataset=dataset, seed=i) for i, a in enumerate(base)]
    for r, accs in at.items():
        out += [_record(method, ipc, [a], pruning=crit, ratio=r, dataset=dataset,
                        cfg={"pruning": {"seed_offset": i}}) for i, a in enumerate(accs)]
    return out


def test_max_ratio_tables_equal_the_cell_rule(tmp_path: Path) -> None:
    rnd = _ratio_runs("dc", "random", [0.30, 0.32], {0.5: [0.305, 0.31], 0.83: [0.31, 0.30], 0.9: [0.2, 0.21]})
    loss = _ratio_runs("dc", "loss", [], {0.995: [0.33, 0.32], 0.9: [0.1]})
    stratum = _record("dc", 1, [0.1], pruning="loss", ratio=0.5, cfg={"pruning": {"stratum": 1}})  # Fig. 3's, not a ratio
    _write(tmp_path / "s", rnd + loss + [stratum])
    g1 = build_table(tmp_path / "s", exp="bilp_tab1", out_dir=tmp_path / "o1")["grid"]
    dc = g1.cell("CIFAR10 IPC 1", "DC")
    assert dc.ours.mean == pytest.approx(100 * C.max_ratio(rnd).ratio) == pytest.approx(83.0)  # loss runs ignored
    assert dc.ours.n == 2 and dc.paper.text == "90" and dc.delta == pytest.approx(-7.0)
    g2 = build_table(tmp_path / "s", exp="bilp_tab2", out_dir=tmp_path / "o2")["grid"]
    assert g2.cell("CIFAR10 IPC 1", "DC").ours.mean == pytest.approx(99.5)  # unpruned runs shared, random ignored
    assert "50%" not in g2.cell("CIFAR10 IPC 1", "DC").note  # the stratum run is no 50 % loss pruning
    assert g2.cell("CIFAR10 IPC 1", "DC").paper.text == "99.5"
    md = (tmp_path / "o1" / "bilp_tab1.md").read_text()
    assert "| CIFAR10 IPC 1 | 83 / 90 (Δ -7) |" in md and "max-ratio rule" in md and "5 random removal trials" in md
    assert "fewer than the paper's 5 removal trials" in md
    f = build_table(tmp_path / "s", exp="bilp_fig2", out_dir=tmp_path / "o3")
    a = f["grid"]
    assert a.cell("CIFAR10 IPC 1: DC", RANDOM_COL).ours.mean == pytest.approx(83.0)
    assert a.cell("CIFAR10 IPC 1: DC", LOSS_COL).ours.mean == pytest.approx(99.5)
    assert (a.cell("CIFAR10 IPC 1: DC", RANDOM_COL).paper.value, a.cell("CIFAR10 IPC 1: DC", LOSS_COL).paper.value) == (90, 99.5)
    assert f["figure"].exists() and f["figure"].name == "bilp_fig2.png" and f["csv"].exists()


def test_best_ratio_table_shows_gain_both_sides(tmp_path: Path) -> None:
    recs = _ratio_runs("dm", "loss", [0.26, 0.24], {0.5: [0.30, 0.28], 0.9: [0.27, 0.27]})
    _write(tmp_path / "s", recs)
    g = build_table(tmp_path / "s", exp="bilp_tab3", plots=False)["grid"]
    c = g.cell("CIFAR10 IPC 1", "DM")
    assert c.ours.mean == pytest.approx(29.0) and c.ours.std == pytest.approx(1.0) and c.ours_extra == "(+4.0)"
    assert c.paper.text == "29.7 ± 0.3 (+3.7)"


def test_timing_table_rows_and_speedup_from_training_time(tmp_path: Path) -> None:
    lazy = {"mode": "taylor", "stats": "running", "lazy_every": 10}
    full = {"mode": "exact", "stats": "full", "lazy_every": 1}
    recs = [_record("idc", 10, [0.5], spi=0.40, stage_seconds={"pruning": 0.0, "distill": 100.0, "eval": 1.0}),
            _record("idc", 10, [0.5], pruning="ite", spi=0.47, ite_seconds_per_iter=0.03, cfg={"pruning": {"adaptive": lazy}},
                    stage_seconds={"pruning": 0.0, "distill": 50.0, "eval": 500.0}),
            _record("idc", 10, [0.5], pruning="ite", spi=0.49, ite_seconds_per_iter=0.05, cfg={"pruning": {"adaptive": lazy}},
                    stage_seconds={"pruning": 0.0, "distill": 50.0, "eval": 900.0}),
            _record("idc", 10, [0.5], pruning="ite", spi=9.0, ite_seconds_per_iter=8.0, cfg={"pruning": {"adaptive": full}})]
    _write(tmp_path / "s", recs)
    t = build_table(tmp_path / "s", exp="bilp_tab6", plots=False)
    g = t["grid"]
    assert g.rows == [ITE_ROW, TOTAL_ROW]
    assert g.cell(ITE_ROW, "+lazy selection").ours.mean == pytest.approx(0.04)
    assert g.cell(ITE_ROW, "+lazy selection").paper.text == "0.03"
    tot = g.cell(TOTAL_ROW, "+lazy selection")
    assert tot.ours.mean == pytest.approx(0.48) and tot.ours.n == 2 and tot.paper.text == "0.47"
    assert tot.measures["speed-up vs unpruned (training time)"] == pytest.approx(2.0)  # evaluation excluded
    assert tot.measures["overhead vs unpruned"] == pytest.approx(0.48 / 0.40 - 1)
    assert g.cell(TOTAL_ROW, "no optimisation").ours.mean == pytest.approx(9.0)
    assert g.cell(ITE_ROW, "+running stats").ours.empty and g.cell(ITE_ROW, "+running stats").paper.text == "23.03"


def test_large_scale_table_hours_random_real_and_speedup(tmp_path: Path) -> None:
    recs = [_record("dm", 1, [0.015, 0.017], dataset="imagenet1k", random_accs=[0.004, 0.005],
                    stage_seconds={"data": 99.0, "pruning": 0.0, "prepare": 0.0, "distill": 7200.0, "eval": 5000.0}),
            _record("dm", 1, [0.019], pruning="bilp", ratio=0.5, dataset="imagenet1k", random_accs=[0.009],
                    stage_seconds={"pruning": 360.0, "distill": 3240.0, "eval": 5000.0})]
    _write(tmp_path / "s", recs)
    from PIL import Image

    for r in recs:
        Image.new("RGB", (4, 4)).save(Path(r["output_dir"]) / "synthetic.png")
    t = build_table(tmp_path / "s", exp="bilp_tab7", plots=False)
    assert len(list((tmp_path / "s" / "grids" / "bilp_tab7").iterdir())) == 2  # one picture per run, not per cell
    g = t["grid"]
    row = "ImageNet-1K IPC 1: DM"
    assert g.cell(row, TAB7_COLS[0]).ours.mean == pytest.approx(1.6)
    assert g.cell(row, TAB7_COLS[1]).ours.mean == pytest.approx(2.0) and g.cell(row, TAB7_COLS[1]).paper.text == "22.4h"
    assert g.cell(row, TAB7_COLS[2]).ours.mean == pytest.approx(1.9) and g.cell(row, TAB7_COLS[2]).paper.text == "1.95 ± 0.12"
    # BiLP's training time is experts + distillation: its preemptive scoring (360 s) is not in it
    assert g.cell(row, TAB7_COLS[3]).ours.mean == pytest.approx(0.9)
    assert g.cell(row, TAB7_COLS[3]).measures["speed-up vs full data"] == pytest.approx(2.0 / 0.9)
    assert g.cell(row, TAB7_COLS[4]).ours.mean == pytest.approx(0.45)  # the unpruned run's random baseline
    assert g.cell("ImageNet-1K IPC 1: MTT", TAB7_COLS[1]).paper.text == "205.0h (est.)"
    assert g.cell("ImageNet-1K IPC 1: MTT", TAB7_COLS[0]).paper.value is None
    assert "| ImageNet-1K IPC 1: DM | 1.60 ± 0.10 / 1.58 ± 0.11 (Δ +0.02) | 2h / 22.4h" in t["markdown"].read_text()


def test_strata_figure_one_curve_per_setting(tmp_path: Path) -> None:
    def strat(k, trials, epochs, acc):
        return _record("dc", 1, [acc], pruning="loss", ratio=0.5,
                       cfg={"pruning": {"stratum": k, "trials": trials, "epochs": epochs, "train_epochs": max(epochs)}})

    recs = [strat(k, 5, [1, 2, 3, 4, 5], 0.1 + 0.01 * k) for k in range(1, 11)] + [strat(3, 1, [1], 0.5),
                                                                                   strat(3, 1, [1, 2], 0.4)]
    _write(tmp_path / "s", recs)
    t = build_table(tmp_path / "s", exp="bilp_fig3")
    g = t["grid"]
    assert len(g.rows) == 16 and g.cols == [f"S{k}" for k in range(1, 11)]
    for k in range(1, 11):
        assert g.cell("trials 5, epochs 5", f"S{k}").ours.mean == pytest.approx(10 + k)
    assert g.cell("trials 1, epochs 1", "S3").ours.mean == pytest.approx(50.0)
    assert g.cell("trials 1, epochs 1", "S4").ours.empty
    assert [c.row for c in g.extra] == ["trials 1, epochs 2"]  # not on the paper's grid: apart, still plotted
    assert t["figure"].exists() and pd.read_csv(t["csv"]).shape[0] == 160 + 1


def test_diversity_figure_from_the_producers_rows(tmp_path: Path) -> None:
    d = tmp_path / "s" / "mnist-s0"
    d.mkdir(parents=True)
    rows = [{"dataset": "mnist", "stratum": k, "intra": 10.0 - k, "inter": 1.0, "ratio": 10.0 - k, "profile": "smoke"}
            for k in range(1, 11)]
    (d / "diversity.json").write_text(json.dumps(rows))
    t = build_table(tmp_path / "s", exp="bilp_fig4")
    g = t["grid"]
    assert [g.cell("MNIST", f"S{k}").ours.mean for k in range(1, 11)] == [10.0 - k for k in range(1, 11)]
    assert g.cell("CIFAR10", "S1").ours.empty and t["figure"].exists()
    assert "| MNIST | 9.00 | 8.00 |" in t["markdown"].read_text()


@pytest.mark.slow
def test_make_table_target_end_to_end_smoke(tmp_path: Path) -> None:
    """make table-bilp-4 PROFILE=smoke on digits: table cells == the jobs' results, paper == CSV; re-run: no job."""
    cmd = ["make", "-s", "table-bilp-4", "PROFILE=smoke", "DATASET=digits", f"SWEEP_DIR={tmp_path}",
           f"PYTHON={sys.executable}", "LAUNCHER=local",
           "EXTRA=method=dc,dm ipc=1 pruning=none method.iterations=2 eval.compare_random=false"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    sweep = tmp_path / "bilp_tab4"
    recs = collect(sweep)
    assert len(recs) == 2
    cells = pd.read_csv(sweep / "bilp_tab4.csv", dtype={"ipc": str})
    cells = cells[cells.col == "CIFAR10 IPC 1"].set_index("row")  # digits is a stand-in for CIFAR10
    for r in recs:
        label = r["method"].upper()
        assert cells.loc[label, "ours_mean"] == pytest.approx(100 * r["acc_mean"])
        assert cells.loc[label, "ours_std"] == pytest.approx(100 * r["acc_std"])
        assert cells.loc[label, "n"] == r["n_eval"]
    paper = load_paper()
    p = paper[(paper.paper == "bilp") & (paper.table == "tab4") & (paper.dataset == "cifar10") & (paper.ipc == "1")]
    for _, pr in p.iterrows():
        assert cells.loc[pr.method, "paper"] == pytest.approx(float(pr.value))
    md = (sweep / "bilp_tab4.md").read_text()
    assert "profile**: smoke" in md and "digits IPC 1 → paper CIFAR10" in md
    mtimes = {r["output_dir"]: (Path(r["output_dir"]) / "results.jsonl").stat().st_mtime for r in recs}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "launched 0 job(s)" in again.stdout and "launch:" not in again.stdout
    assert mtimes == {d: (Path(d) / "results.jsonl").stat().st_mtime for d in mtimes}


def test_rerun_of_a_finished_sweep_launches_no_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["bilp_tab4", "--profile", "smoke", "--sweep-dir", str(sweep), "--no-table",
            "dataset=digits", "method=dc,dm", "ipc=1", "pruning=none", "logger=none"]
    launched: list = []

    def fake_launch(jobs):  # write a finished result for each job, as run.py would
        for j in jobs:
            launched.append(j)
            j.out_dir.mkdir(parents=True, exist_ok=True)
            (j.out_dir / "results.jsonl").write_text(json.dumps({"config_key": j.key}) + "\n")
        return [0] * len(jobs)

    first = run_table.main(args, launch=fake_launch)
    assert len(first["jobs"]) == 2 and len(launched) == 2
    assert {j.out_dir.name for j in first["jobs"]} == {
        "+exp=bilp_tab4,dataset=digits,ipc=1,method=dc,profile=smoke,pruning=none",
        "+exp=bilp_tab4,dataset=digits,ipc=1,method=dm,profile=smoke,pruning=none"}  # Hydra's override_dirname

    def no_launch(jobs):
        raise AssertionError(f"re-run launched {len(jobs)} job(s)")

    second = run_table.main(args, launch=no_launch)
    assert second["launched"] == [] and all(j.done for j in second["jobs"])
    # a changed config (different key) is not mistaken for finished
    third = run_table.main(args[:-1] + ["logger=none", "seed=1"], launch=fake_launch)
    assert len(third["launched"]) == 2


def test_added_job_set_says_which_overrides_it_drops(tmp_path: Path, capsys) -> None:
    """A method.* override does not reach an --add 'method=dc' set unless repeated there, and run_table says so."""
    base = ["dataset=digits", "ipc=1", "method.iterations=3", "logger=none"]
    _, jobs = run_table.plan("dfcolearn_tab2", "smoke", base, tmp_path, adds=[["method=dc"]])
    dc = [j for j in jobs if "method=dc" in j.overrides]
    assert len(dc) == 1 and "method.iterations=3" not in dc[0].overrides
    assert "method.iterations=3" in capsys.readouterr().err
    _, jobs = run_table.plan("dfcolearn_tab2", "smoke", base, tmp_path, adds=[["method=dc", "method.iterations=3"]])
    assert "method.iterations=3" in [j for j in jobs if "method=dc" in j.overrides][0].overrides
    assert "do not apply" not in capsys.readouterr().err


def test_added_job_set_drops_axes_of_the_group_it_replaces(tmp_path: Path) -> None:
    """--add 'pruning=none' next to a pruning.ratio sweep gives ONE unpruned job per seed, not one per ratio."""
    _, jobs = run_table.plan("bilp_fig2", "smoke", ["dataset=digits", "method=dm", "ipc=1", "seed=0,1",
                                                    "pruning.ratio=0.5,0.9", "logger=none"],
                             tmp_path, adds=[["pruning=none"]])
    none = [j for j in jobs if "pruning=none" in j.overrides]
    assert len(none) == 2 and not any("pruning.ratio" in o for j in none for o in j.overrides)
    pruned = [j for j in jobs if "pruning=none" not in j.overrides]
    assert len(pruned) == 2 * 2 * 2  # random,loss x 2 ratios x 2 seeds
    assert {o for j in pruned for o in j.overrides if o.startswith("pruning.ratio")} == {"pruning.ratio=0.5",
                                                                                         "pruning.ratio=0.9"}


def test_collect_keeps_every_evaluation_of_a_run_dir(tmp_path):
    """A run dir holds one results.jsonl line per evaluation (e.g. another backbone): all are collected,
    and a recomputed evaluation (same config_key) counts once, with its latest line."""
    from dfdistill.reporting.collect import collect
    from dfdistill.reporting.results import write_results

    run = tmp_path / "job"
    write_results(run, {"config_key": "a", "backbone": "convnet", "acc_mean": 0.1})
    write_results(run, {"config_key": "b", "backbone": "resnet18", "acc_mean": 0.2})
    write_results(run, {"config_key": "a", "backbone": "convnet", "acc_mean": 0.3})
    recs = sorted(collect(tmp_path), key=lambda r: r["config_key"])
    assert [(r["config_key"], r["acc_mean"]) for r in recs] == [("a", 0.3), ("b", 0.2)]
    assert all(r["output_dir"] == str(run) for r in recs)


def test_fig3_readout_epochs_take_the_scorers_range_entries() -> None:
    """Fig. 3's exp sweeps `pruning.epochs=[1-5]`: the table reads the range's last epoch (it raised
    ValueError on '1-5' and the CPU Fig. 3 grid could not be built)."""
    from dfdistill.reporting.collect import readout_epochs

    rec = lambda eps: {"config": {"pruning": {"name": "loss", "train_epochs": 9, "epochs": eps}}}  # noqa: E731
    assert readout_epochs(rec(["1-5"])) == 5
    assert readout_epochs(rec([1])) == 1
    assert readout_epochs(rec(["1-3", 7])) == 7
    assert readout_epochs(rec(["converged"])) == 9
