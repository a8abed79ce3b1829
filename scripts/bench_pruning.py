"""BiLP Table 6 analogue: seconds per distillation iteration for none / running stats (exact ITE) /
+ Taylor / + lazy, via the real pipeline (stage=distill, so no evaluation), one process per setting.

Usage: flock /tmp/dfdistill-cpu.lock python scripts/bench_pruning.py --iterations 1 --out results/measured/bilp_tab6_cpu.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "none (DC, no ITE)": ["pruning=none"],
    "running stats + exact LOO ITE": ["pruning=ite", "pruning.adaptive.mode=exact", "pruning.adaptive.lazy_every=1"],
    "+ Taylor": ["pruning=ite", "pruning.adaptive.mode=taylor", "pruning.adaptive.lazy_every=1"],
    "+ lazy (every 10 calls)": ["pruning=ite", "pruning.adaptive.mode=taylor", "pruning.adaptive.lazy_every=10"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--out", default="results/measured/bilp_tab6_cpu.md")
    ap.add_argument("--extra", nargs="*", default=[])
    a = ap.parse_args()
    base = ["logger=none", "dataset=cifar10_jpeg", "method=dc", "ipc=10", "profile=cpu", "stage=distill",
            "progress=false", f"method.iterations={a.iterations}", *a.extra]
    rows = []
    for name, over in SETTINGS.items():
        run_dir = f"/tmp/bench_tab6/{abs(hash(name))}"
        cmd = [sys.executable, "run.py", *base, *over, f"hydra.run.dir={run_dir}", "force=true"]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
            ok = p.returncode == 0
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:] if not ok else []
        except subprocess.TimeoutExpired:
            ok, tail = False, [f"timed out after {a.timeout}s"]
        wall = time.perf_counter() - t0
        rows.append((name, wall / a.iterations if ok else None, wall, tail))
        print(name, rows[-1], flush=True)
    lines = ["# BiLP Table 6 analogue (CPU)", "",
             f"Command: `flock /tmp/dfdistill-cpu.lock python scripts/bench_pruning.py --iterations {a.iterations}`",
             f"Setting: {' '.join(base)}. Seconds/iteration = process wall time (incl. data load + setup) / iterations,",
             "measured on a shared 2-core CPU with other jobs running (noisy). One outer iteration of DC at IPC 10 =",
             "10 matching steps (each calls the ITE selector once) + 9 x 50 inner epochs.", "",
             "| setting | s/iter (wall/iterations) | wall s | note |", "|---|---|---|---|"]
    for name, spi, wall, tail in rows:
        lines.append(f"| {name} | {'-' if spi is None else f'{spi:.1f}'} | {wall:.1f} | {' '.join(tail)[:120]} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
