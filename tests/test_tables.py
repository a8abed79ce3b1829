"""Table builder, sweep planner (re-runs launch nothing) and one table target end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfdistill.tables import PAPER_CSV, SPECS, build_cells, build_table, collect, load_paper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import run_table  # noqa: E402


def _record(method, ipc, accs, pruning="none", ratio=0.0, dataset="cifar10", wall=10.0, spi=0.1, cfg=None):
    cfg = cfg or {}
    m = sum(accs) / len(accs)
    sd = math.sqrt(sum((a - m) ** 2 for a in accs) / len(accs))
    return {"config_key": f"{method}{ipc}{pruning}{ratio}", "config": {"dataset": {"root": "/data/x"}, **cfg},
            "dataset": dataset, "backbone": "convnet", "method": method, "ipc": ipc, "pruning": pruning,
            "pruning_ratio": ratio, "seed": 0, "profile": "smoke", "accs": accs, "acc_mean": m, "acc_std": sd,
            "n_eval": len(accs), "stage_seconds": {}, "wall_seconds": wall, "sec_per_iter": spi, "iterations": 3,
            "device": "cpu", "device_name": "cpu", "code_version": "abc123"}


def _write(folder: Path, recs: list[dict]) -> None:
    for i, r in enumerate(recs):
        d = folder / f"job{i}"
        d.mkdir(parents=True)
        r["output_dir"] = str(d)
        (d / "results.jsonl").write_text(json.dumps(r) + "\n")


def test_paper_csv_is_the_shared_copy() -> None:
    shared = ROOT.parent / "shared" / "reference" / "paper_tables.csv"
    if not shared.exists():
        pytest.skip("shared reference not mounted")
    assert PAPER_CSV.read_text() == shared.read_text()


def test_accuracy_cells_equal_records_and_paper(tmp_path: Path) -> None:
    recs = [_record("dc", 1, [0.20, 0.22, 0.24]), _record("dc", 10, [0.40]), _record("dm", 1, [0.3, 0.5]),
            _record("dc", 1, [0.25, 0.27], pruning="bilp", ratio=0.5)]
    _write(tmp_path / "sweep", recs)
    t = build_table(tmp_path / "sweep", exp="bilp_tab4", out_dir=tmp_path / "out")
    cells, paper = t["cells"], load_paper()
    got = cells.set_index(["row", "ipc"])
    assert got.loc[("DC", "1"), "ours_mean"] == pytest.approx(22.0)
    assert got.loc[("DC", "1"), "ours_std"] == pytest.approx(100 * recs[0]["acc_std"])
    assert got.loc[("DC", "1"), "n"] == 3
    assert got.loc[("BiLP+DC", "1"), "ours_mean"] == pytest.approx(26.0)
    for (row, ipc), c in got.iterrows():  # paper column == CSV for every row that has a paper value
        p = paper[(paper.paper == "bilp") & (paper.table == "tab4") & (paper.dataset == "cifar10")
                  & (paper.ipc == ipc) & (paper.method == row)]
        if len(p):
            assert c.paper == pytest.approx(float(p.value.iloc[0]))
            if c.n:
                assert c.delta == pytest.approx(c.ours_mean - c.paper)
        else:
            assert math.isnan(c.paper)
    assert got.loc[("DC", "1"), "paper"] == 28.3 and got.loc[("BiLP+DC", "1"), "paper"] == 30.5
    assert got.loc[("KIP", "1"), "n"] == 0  # paper-only rows are shown for the measured columns
    md = t["markdown"].read_text()
    for key in ("profile**: smoke", "device**: cpu", "dataset path**: /data/x", "code version**: abc123",
                "22.0 ± 1.6 (n=3)", "28.3"):
        assert key in md
    assert "\\begin{tabular}" in t["latex"].read_text()
    assert pd.read_csv(t["csv"]).shape[0] == len(cells)


def test_tables_sharing_an_out_dir_keep_their_own_grids(tmp_path: Path) -> None:
    """Two tables with a same-named cell (DC, IPC 1) written to one folder: each links its own picture."""
    for name, colour in (("a", 0), ("b", 255)):
        rec = _record("dc", 1, [0.2])
        _write(tmp_path / name, [rec])
        from PIL import Image

        Image.new("RGB", (4, 4), (colour, colour, colour)).save(Path(rec["output_dir"]) / "synthetic.png")
        build_table(tmp_path / name, exp="bilp_tab4", out_dir=tmp_path / "out", name=f"tab_{name}", plots=False)
    for name, colour in (("a", 0), ("b", 255)):
        md = (tmp_path / "out" / f"tab_{name}.md").read_text()
        link = md.split("![](")[1].split(")")[0]
        from PIL import Image

        assert link.startswith(f"grids/tab_{name}/") and Image.open(tmp_path / "out" / link).getpixel((0, 0))[0] == colour


def test_max_ratio_and_timing_kinds(tmp_path: Path) -> None:
    recs = [_record("dc", 1, [0.30, 0.32], pruning="random", ratio=0.0),
            _record("dc", 1, [0.305], pruning="random", ratio=0.5),
            _record("dc", 1, [0.20], pruning="random", ratio=0.9)]
    cells = build_cells(recs, SPECS["bilp_tab1"])
    dc = cells[(cells.row == "DC") & (cells.ipc == "1")].iloc[0]
    assert dc.ours_mean == pytest.approx(50.0) and dc.paper == 90.0  # 0.5 keeps >= 31 - 1; 0.9 does not
    adaptive = {"mode": "taylor", "lazy_every": 10}
    recs = [_record("idc", 10, [0.5], wall=100.0, spi=0.40),
            _record("idc", 10, [0.5], pruning="ite", wall=50.0, spi=0.47, cfg={"pruning": {"adaptive": adaptive}})]
    cells = build_cells(recs, SPECS["bilp_tab6"]).set_index("row")
    lazy = cells.loc["+lazy selection"]
    assert lazy.ours_mean == pytest.approx(0.47) and lazy.paper == pytest.approx(0.47)
    assert lazy.speedup == pytest.approx(2.0)


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
    cells = pd.read_csv(sweep / "bilp_tab4.csv", dtype={"ipc": str}).set_index("row")
    for r in recs:
        label = r["method"].upper()
        assert cells.loc[label, "ours_mean"] == pytest.approx(100 * r["acc_mean"])
        assert cells.loc[label, "ours_std"] == pytest.approx(100 * r["acc_std"])
        assert cells.loc[label, "n"] == r["n_eval"]
    paper = load_paper()
    p = paper[(paper.paper == "bilp") & (paper.table == "tab4") & (paper.dataset == "cifar10") & (paper.ipc == "1")]
    for _, pr in p.iterrows():  # digits is a stand-in: the paper column is CIFAR-10's
        assert cells.loc[pr.method, "paper"] == pytest.approx(pr.value)
    md = (sweep / "bilp_tab4.md").read_text()
    assert "profile**: smoke" in md and "digits → paper cifar10" in md
    mtimes = {r["output_dir"]: (Path(r["output_dir"]) / "results.jsonl").stat().st_mtime for r in recs}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "launched 0 job(s)" in again.stdout and "launch:" not in again.stdout
    assert mtimes == {d: (Path(d) / "results.jsonl").stat().st_mtime for d in mtimes}


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
