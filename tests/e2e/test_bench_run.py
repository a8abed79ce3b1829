"""scripts/bench_run.py against fake checkouts: interleaved order, resume, table (no real runs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import ROOT

FAKE_RUN = """
import json, sys, pathlib
args = dict(a.split("=", 1) for a in sys.argv[1:])
out = pathlib.Path(args["hydra.run.dir"]); out.mkdir(parents=True, exist_ok=True)
slow = 2.0 if "{label}" == "before" else 1.0
rec = {{"stage_seconds": {{"data": 0.5, "distill": 3.0 * slow, "eval": 1.0, "eval_random": 0.25}},
       "wall_seconds": 4.75, "acc_mean": 0.2 + 0.01 * int(args["seed"]), "accs": [0.2],
       "sec_per_iter": 0.1 * slow, "iterations": 10, "resumed_from": None}}
with open(pathlib.Path(args["hydra.run.dir"]) / "results.jsonl", "a") as fh:
    fh.write(json.dumps(rec) + "\\n")
with open("{log}", "a") as fh:
    fh.write("{label} " + args["method"] + " " + args["seed"] + "\\n")
"""


def load_script():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "scripts" / "bench_run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def fake_checkout(root: Path, label: str, log: Path) -> Path:
    d = root / label
    d.mkdir()
    (d / "run.py").write_text(FAKE_RUN.format(label=label, log=log))
    return d


def test_interleaved_resumable_table(tmp_path):
    mod = load_script()
    log = tmp_path / "order.txt"
    before, after = fake_checkout(tmp_path, "before", log), fake_checkout(tmp_path, "after", log)
    out = tmp_path / "rows" / "bench"
    argv = ["--code", f"before={before}", "--code", f"after={after}", "--config", "a=method=dm",
            "--config", "b=method=dc", "--seeds", "0", "--seeds-of", "after=0,1", "--common", "",
            "--out", str(out), "--work", str(tmp_path / "work"), "--python", sys.executable]
    assert mod.main(argv) == 0
    assert log.read_text().split("\n")[:-1] == ["before dm 0", "after dm 0", "after dm 1",
                                                "before dc 0", "after dc 0", "after dc 1"]
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["rc"] == 0 for r in rows)
    assert mod.main(argv) == 0  # resumed: nothing runs again
    assert len(log.read_text().splitlines()) == 6
    md = out.with_suffix(".md").read_text()
    a_after = next(line for line in md.splitlines() if line.startswith("| a | after"))
    cells = [c.strip() for c in a_after.split("|")[1:-1]]
    assert cells[2] == "0"  # the wall factor pairs seed 0 only
    assert cells[7] == "0"  # eval_random lands in "other" (0.25 s, rounded)
    assert cells[10].endswith("×")
    assert cells[12] == "20.50 ± 0.71 (n=2)"  # accuracy over both seeds of `after`
