"""What changes a run's numbers, measured: one config run under variants of the things that may.

Each variant is a separate `run.py` process (fresh caches, its own run dir) of the same command; the
table compares each variant's synthetic set and evaluation accuracies with the first (the reference).
Variants: the same command again (must be identical), `compile=on` vs the default, the thread count,
and a busy machine (two CPU-bound processes beside the run). A device or torch version is a variant
too where this machine has one (`--python` runs the command under another interpreter).

    python scripts/repro_check.py --out results/measured/reproducibility_cpu.md -- method=dm ipc=1 profile=cpu seed=3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]


def _busy(stop_after: float) -> None:
    import time

    end = time.time() + stop_after
    x = 0
    while time.time() < end:
        x += 1


def run_variant(name: str, overrides: list[str], env: dict[str, str], work: Path, busy: int = 0,
                python: Optional[str] = None, cache_name: Optional[str] = None) -> dict:
    """One run.py process; returns its synthetic set, accuracies, torch version and seconds. Each
    variant gets fresh caches unless `cache_name` names a cache an earlier variant filled."""
    out = work / name
    cache = work / f"cache-{cache_name or name}"
    cmd = [python or sys.executable, "run.py", *overrides, "logger=none", "progress=false", f"hydra.run.dir={out}"]
    full_env = {**os.environ, "DFDISTILL_CACHE": str(cache), "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
                **env}
    full_env.pop("DFDISTILL_COMPILE", None)
    procs = [mp.Process(target=_busy, args=(3600,), daemon=True) for _ in range(busy)]
    for p in procs:
        p.start()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True)
    finally:
        for p in procs:
            p.terminate()
    if done.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{done.stderr[-2000:]}")
    rec = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()][-1]
    if rec.get("distilled_in"):
        raise SystemExit(f"variant {name} reused the distillation in {rec['distilled_in']} instead of distilling")
    syn = torch.load(out / "synthetic.pt", map_location="cpu")
    return {"name": name, "images": syn["images"], "accs": rec["accs"], "torch": rec.get("torch"),
            "threads": rec.get("threads"), "compiled": rec.get("compiled"), "seconds": rec.get("wall_seconds")}


def compare(ref: dict, other: dict) -> dict:
    d_img = (ref["images"] - other["images"]).abs().max().item()
    ra, oa = [100 * a for a in ref["accs"]], [100 * a for a in other["accs"]]
    d_acc = max(abs(a - b) for a, b in zip(ra, oa))
    d_mean = sum(oa) / len(oa) - sum(ra) / len(ra)
    return {"identical": d_img == 0.0 and ra == oa, "max_img": d_img, "max_acc": d_acc, "d_mean": d_mean}


ONE = {"OMP_NUM_THREADS": "1"}
COLD_ON = "compile=on, cold compile cache"
# name -> (extra overrides, env, busy processes, cache shared with variant, compared with variant (None: reference)).
# A rerun over a warm cache passes force=true: it must distil again, not reuse the set the first run
# indexed (dfdistill/run/distilled.py), or it would compare a set with itself.
VARIANTS = {
    "reference": ([], ONE, 0, None, None),
    "same command again, 2 busy processes beside it, warm caches": (["force=true"], ONE, 2, "reference", None),
    COLD_ON: (["compile=on"], ONE, 0, None, None),
    "compile=on again, warm compile cache (vs. compile=on cold)": (["compile=on", "force=true"], ONE, 0, COLD_ON, COLD_ON),
    "2 threads (OMP_NUM_THREADS=2)": ([], {"OMP_NUM_THREADS": "2"}, 0, None, None),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="markdown table to write")
    ap.add_argument("--python", action="append", default=[],
                    help="NAME=INTERPRETER: also run the command under another Python (e.g. another torch)")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the variants' run dirs here (a rerun reuses the finished ones); default: a temp dir")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        rows = []
        names = {}
        for name, (extra, env, busy, shared, versus) in VARIANTS.items():
            print(f"[repro] {name}", flush=True)
            names[name] = f"v{len(rows)}"
            rows.append(run_variant(names[name], [*a.overrides, *extra], env, work, busy,
                                    cache_name=names.get(shared) if shared else None)
                        | {"label": name, "versus": versus})
        for spec in a.python:
            label, exe = spec.split("=", 1)
            print(f"[repro] {label}", flush=True)
            rows.append(run_variant(f"v{len(rows)}", a.overrides, {"OMP_NUM_THREADS": "1"}, work, 0, exe)
                        | {"label": label})
    ref = rows[0]
    from dfdistill.reporting.provenance import header_lines, this_command

    cmd = this_command()
    lines = header_lines("What changes a run's numbers (measured)", cmd, profile=None, device="cpu")
    ref_acc = " / ".join(f"{100 * x:.2f}" for x in ref["accs"])
    lines += [f"- **reference**: `{' '.join(a.overrides)}`, 1 thread, compile default (auto: eager on CPU); "
              f"accuracies {ref_acc} %, torch {ref['torch']}, {ref['seconds']:.0f} s",
              "- each variant is its own `run.py` process with fresh experts/scores/inductor caches unless it says "
              "warm; the machine was shared with other jobs, so the seconds are indicative only", "",
              "| variant | identical bytes | max abs diff, synthetic images | max diff, one network's accuracy (pp) "
              "| diff of mean accuracy (pp) | torch | threads | compiled | run seconds |",
              "|---|---|---|---|---|---|---|---|---|"]
    by_label = {r["label"]: r for r in rows}
    for r in rows[1:]:
        c = compare(by_label[r["versus"]] if r.get("versus") else ref, r)
        lines.append(f"| {r['label']} | {'yes' if c['identical'] else 'no'} | {c['max_img']:.3g} | {c['max_acc']:.2f} "
                     f"| {c['d_mean']:+.2f} | {r['torch']} | {r['threads']} | {r['compiled']} | {r['seconds']:.0f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
