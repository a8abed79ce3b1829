#!/usr/bin/env python
"""Validate the cost model (dfdistill/sweeps/model.py) on this CPU: predicted vs measured seconds.

    OMP_NUM_THREADS=1 python scripts/cost_model_cpu.py --calibrate      # the `cpu` entry's numbers
    OMP_NUM_THREADS=1 python scripts/cost_model_cpu.py --out results/measured/cost_model_cpu.md

--calibrate measures this CPU's FLOP/s on a ConvNet training pass and the time of one dispatched
op, to be written into the `cpu` entry of dfdistill/sweeps/devices.yaml. The validation runs each
config of CONFIGS (methods x IPC on the embedded digits data, profile=smoke, a few iterations) with
run.py, reads the stages' seconds from its results.jsonl, and compares them with the model's
prediction for the same resolved config on the `cpu` device. Measured = the modelled stages
(scoring, experts, distillation, evaluation); data loading is not modelled and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ["dataset=digits", "profile=smoke", "logger=none", "progress=false", "compile=off", "device=cpu",
        "eval.epochs=20", "eval.num_eval=2"]
CONFIGS = [
    ["method=dc", "ipc=1", "method.iterations=10"],
    ["method=dc", "ipc=10", "method.iterations=3"],
    ["method=dsa", "ipc=1", "method.iterations=10"],
    ["method=dm", "ipc=1", "method.iterations=50"],
    ["method=dm", "ipc=10", "method.iterations=50"],
    ["method=mtt", "ipc=1", "method.iterations=20", "method.lr_img=1"],  # the CIFAR lr diverges on digits
    ["method=mtt", "ipc=10", "method.iterations=20", "method.lr_img=1"],
    ["method=tesla", "ipc=1", "method.iterations=20", "method.lr_img=1"],
    ["method=idc", "ipc=1", "method.iterations=3"],
    ["method=idc", "ipc=10", "method.iterations=2"],
    ["method=dc", "ipc=1", "method.iterations=10", "pruning=loss", "pruning.ratio=0.5"],
    ["method=whole", "ipc=1", "eval.compare_random=false"],
]
STAGES = ("pruning", "prepare", "distill", "eval", "eval_random")


def calibrate() -> dict[str, float]:
    """FLOP/s of a ConvNet-3 (width 32, 32 px) training pass at batch 64, and seconds per op of a
    tiny network's forward (where dispatch, not arithmetic, is the time)."""
    import torch

    from dfdistill.models import build_model
    from dfdistill.sweeps.passes import pass_cost

    torch.manual_seed(0)
    net = build_model("convnet", 3, 10, 32, width=32, depth=3)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    cost = pass_cost("convnet", (("depth", 3), ("width", 32)), 3, 10, 32)

    def step() -> None:
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()

    for _ in range(3):
        step()
    t0, n = time.process_time(), 20
    for _ in range(n):
        step()
    flops_s = n * 64 * cost.flops["backward"] / (time.process_time() - t0)
    tiny = build_model("convnet", 1, 10, 8, width=2, depth=1)
    tc = pass_cost("convnet", (("depth", 1), ("width", 2)), 1, 10, 8)
    xt, yt = torch.randn(2, 1, 8, 8), torch.randint(0, 10, (2,))
    opt = torch.optim.SGD(tiny.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)

    def tiny_step() -> None:  # a training step: most calls of a job are (autograd costs more per op)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tiny(xt), yt).backward()
        opt.step()

    for _ in range(50):
        tiny_step()
    t0, n = time.process_time(), 500
    for _ in range(n):
        tiny_step()
    op_s = (time.process_time() - t0) / (n * tc.ops["backward"])
    return {"peak_tflops": flops_s / 1e12, "op_us": op_s * 1e6}


def predict(overrides: list[str]) -> dict[str, float]:
    from dfdistill.sweeps.model import device, estimate
    from dfdistill.sweeps.plan import Job, mark_done

    job = Job(overrides, Path(tempfile.gettempdir()) / "cost_model_probe")
    mark_done(job)
    if job.error:
        raise SystemExit(f"error: {' '.join(overrides)} does not compose: {job.error}")
    return estimate(job.resolved, device("cpu")).stages


def measure(overrides: list[str], work: Path) -> float:
    """CPU seconds of the run's modelled stages, in this process (the machine is shared: wall time
    would measure the other jobs too). The data stage is run first and not counted."""
    from dfdistill.pipeline import run
    from dfdistill.sweeps.plan import Job, job_config

    out = work / "_".join(o.replace("=", "-").replace("/", "-") for o in overrides)
    cfg = job_config(Job(overrides, out))
    t0 = time.process_time()
    rec = run(cfg)
    cpu = time.process_time() - t0
    st = rec.get("stage_seconds") or {}
    wall = sum(float(v) for v in st.values())
    modelled = sum(float(st.get(k, 0.0)) for k in STAGES)
    return cpu * (modelled / wall if wall else 1.0)  # the modelled stages' share of the run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="markdown table (default: print)")
    ap.add_argument("--limit", type=int, default=None, help="first N configs only")
    ap.add_argument("--start", type=int, default=0, help="skip the first N configs")
    a = ap.parse_args()
    if a.calibrate:
        print(json.dumps(calibrate(), indent=1))
        return 0
    import platform

    from dfdistill.sweeps.model import device

    dev = device("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for extra in CONFIGS[a.start: a.limit]:
            ov = BASE + extra
            pred = predict(ov)
            try:
                m = measure(ov, Path(tmp))
            except Exception as exc:  # a diverged or failed run: recorded, the others still run
                print(f"{' '.join(extra)}: failed ({type(exc).__name__})", flush=True)
                continue
            p = sum(pred.get(k, 0.0) for k in STAGES)
            rows.append((" ".join(extra), p, m, p / m if m else float("nan")))
            print(f"{rows[-1][0]}: predicted {p:.1f} s, measured {m:.1f} s, ratio {rows[-1][3]:.2f}", flush=True)
    within = sum(1 for r in rows if 0.5 <= r[3] <= 2.0)
    from dfdistill.reporting.provenance import header_lines, this_command

    lines = header_lines(
        "Cost model vs measured seconds on this CPU",
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} {this_command()}",
        profile=f"smoke on the embedded digits data; common overrides: `{' '.join(BASE)}`",
        device=f"{platform.machine()} CPU, one thread; model entry `cpu` of dfdistill/sweeps/devices.yaml "
               f"({dev.peak_tflops * 1e3:.1f} GFLOP/s x {dev.efficiency:g}, {dev.op_us:g} us/op; {dev.calibrated})")
    lines += [
        "- measured = CPU seconds (`time.process_time`, the run in-process: the machine is shared, so wall time would "
        "count other jobs) times the share of the modelled stages (scoring, experts, distillation, evaluation) in the "
        "run's `stage_seconds` (data loading excluded); predicted = dfdistill/sweeps/model.py for the same resolved config",
        "",
        "| config | predicted s | measured s | predicted / measured |",
        "|---|---:|---:|---:|",
        *[f"| `{c}` | {p:.1f} | {m:.1f} | {r:.2f} |" for c, p, m, r in rows],
        "",
        f"{within} of {len(rows)} within 2x (ratio in [0.5, 2]).",
    ]
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0 if within == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
