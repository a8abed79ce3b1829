#!/usr/bin/env python
"""Validate the cost model (dfdistill/sweeps/model.py) on this CPU: predicted vs measured seconds.

    OMP_NUM_THREADS=1 python scripts/cost_model_cpu.py --calibrate      # the `cpu` entry's numbers
    OMP_NUM_THREADS=1 python scripts/cost_model_cpu.py --out results/measured/cost_model_cpu.md

--calibrate fits this CPU's FLOP/s, memory bandwidth and time per dispatched op to ConvNet training
steps from wide (arithmetic-bound) to tiny (dispatch-bound), to be written into the `cpu` entry of
dfdistill/sweeps/devices.yaml. The validation runs each
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
    ["method=dc", "ipc=1", "method.iterations=40"],  # >= a few CPU seconds: sub-second runs are noise
    ["method=dc", "ipc=10", "method.iterations=3"],
    ["method=dsa", "ipc=1", "method.iterations=40"],
    ["method=dm", "ipc=1", "method.iterations=50"],
    ["method=dm", "ipc=10", "method.iterations=50"],
    # MTT's learnable student lr at its IPC-10 step (lr_lr 1e-5) diverges on digits: CIFAR-10 IPC 1's 1e-7
    ["method=mtt", "ipc=1", "method.iterations=20", "method.lr_img=1", "method.lr_lr=1e-7"],
    ["method=mtt", "ipc=10", "method.iterations=20", "method.lr_img=1", "method.lr_lr=1e-7"],
    ["method=tesla", "ipc=1", "method.iterations=20", "method.lr_img=1"],
    ["method=idc", "ipc=1", "method.iterations=10"],
    ["method=idc", "ipc=10", "method.iterations=2"],
    ["method=dc", "ipc=1", "method.iterations=40", "pruning=loss", "pruning.ratio=0.5"],
    ["method=whole", "ipc=1", "eval.compare_random=false"],
    ["method=rfad", "ipc=1", "method.iterations=80"],
    ["method=rfad", "ipc=10", "method.iterations=40"],
    ["method=idm", "ipc=10", "method.iterations=20"],
]
STAGES = ("pruning", "prepare", "distill", "eval", "eval_random")


# (channels, size, width, depth, batch): a compute-bound pass (wide), a memory-bound one (narrow, many
# rows: normalisation/activation/pooling bytes dominate) and a dispatch-bound one (tiny), plus two between
PROBES = [(3, 32, 128, 3, 64), (3, 32, 32, 3, 64), (1, 16, 8, 3, 256), (1, 16, 8, 3, 8), (1, 8, 2, 1, 2)]


def _probe_seconds(dev: str = "cpu") -> tuple[list[list[float]], list[float]]:
    """(per probe: FLOPs, bytes written, ops of one training step as passes.pass_cost counts them;
    its seconds on `dev`: CPU time on the CPU, synchronised wall time on a GPU)."""
    import torch

    from dfdistill.models import build_model
    from dfdistill.sweeps.passes import pass_cost

    rows, secs = [], []
    cuda = dev != "cpu"
    clock = time.perf_counter if cuda else time.process_time
    for ch, size, width, depth, batch in PROBES + ([(3, 32, 128, 3, 512)] if cuda else []):
        torch.manual_seed(0)
        net = build_model("convnet", ch, 10, size, width=width, depth=depth).to(dev)
        cost = pass_cost("convnet", (("depth", depth), ("width", width)), ch, 10, size)
        x, y = torch.randn(batch, ch, size, size, device=dev), torch.randint(0, 10, (batch,), device=dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        for _ in range(3):
            step()
        n = 50 if cuda else max(5, min(500, int(1e9 / (batch * cost.flops["backward"]))))
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        for _ in range(n):
            step()
        if cuda:
            torch.cuda.synchronize()
        secs.append((clock() - t0) / n)
        rows.append([batch * cost.flops["backward"], batch * cost.bytes["backward"], cost.ops["backward"]])
    return rows, secs


def calibrate_gpu(entry: str) -> dict[str, float]:
    """The ONE efficiency factor (and op time) of devices.yaml entry `entry` on the visible GPU: the
    probes' synchronised seconds fitted as (FLOPs / peak + bytes / bandwidth) / efficiency + ops x op_us,
    peak and bandwidth being the entry's datasheet figures (scripts/gpu_check.sh runs this)."""
    import numpy as np
    from scipy.optimize import nnls

    from dfdistill.sweeps.model import device

    d = device(entry)
    rows, secs = _probe_seconds("cuda")
    a = np.array([[f / (d.peak_tflops * 1e12) + b / (d.mem_gbps * 1e9), o] for f, b, o in rows])
    t = np.array(secs)
    coef, _ = nnls(a / t[:, None], np.ones_like(t))
    fit = a @ coef / t
    print("probe fit (predicted / measured): " + ", ".join(f"{r:.2f}" for r in fit), file=sys.stderr)
    return {"entry": entry, "efficiency": round(1 / coef[0], 3) if coef[0] else float("inf"),
            "op_us": round(coef[1] * 1e6, 2), "was": {"efficiency": d.efficiency, "op_us": d.op_us}}


def calibrate() -> dict[str, float]:
    """This CPU's three device numbers (peak FLOP/s, memory bandwidth, seconds per op), fitted to the
    CPU seconds of ConvNet training steps (SGD, momentum, weight decay) that differ in which term
    dominates: non-negative least squares on the relative error, the model's own counts
    (passes.pass_cost) as the regressors."""
    import numpy as np
    from scipy.optimize import nnls

    rows, secs = _probe_seconds("cpu")
    a, t = np.array(rows), np.array(secs)
    coef, _ = nnls(a / t[:, None], np.ones_like(t))
    fit = a @ coef / t
    print("probe fit (predicted / measured): " + ", ".join(f"{r:.2f}" for r in fit), file=sys.stderr)
    return {"peak_tflops": 1 / coef[0] / 1e12, "mem_gbps": 1 / coef[1] / 1e9, "op_us": coef[2] * 1e6}


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
    from dfdistill.run.pipeline import run
    from dfdistill.sweeps.plan import Job, job_config

    from omegaconf import open_dict

    out = work / "_".join(o.replace("=", "-").replace("/", "-") for o in overrides)
    cfg = job_config(Job(overrides, out))
    with open_dict(cfg):  # a fresh cache: experts, scores and finished distillations are computed, not reused
        cfg.cache_dir = str(out / "cache")
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
    ap.add_argument("--calibrate-gpu", metavar="ENTRY", default=None,
                    help="fit the efficiency factor of devices.yaml entry ENTRY on the visible GPU (gpu_check.sh)")
    ap.add_argument("--out", type=Path, default=None, help="markdown table (default: print)")
    ap.add_argument("--limit", type=int, default=None, help="first N configs only")
    ap.add_argument("--start", type=int, default=0, help="skip the first N configs")
    a = ap.parse_args()
    if a.calibrate:
        print(json.dumps(calibrate(), indent=1))
        return 0
    if a.calibrate_gpu:
        print(json.dumps(calibrate_gpu(a.calibrate_gpu), indent=1))
        return 0
    import platform

    from dfdistill.sweeps.model import device

    dev = device("cpu")
    rows, failed = [], []
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for extra in CONFIGS[a.start: a.limit]:
            ov = BASE + extra
            pred = predict(ov)
            try:
                m = measure(ov, Path(tmp))
            except Exception as exc:  # a diverged or failed run: recorded in the table, the others still run
                failed.append((" ".join(extra), f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
                print(f"{failed[-1][0]}: failed ({failed[-1][1]})", flush=True)
                continue
            p = sum(pred.get(k, 0.0) for k in STAGES)
            rows.append((" ".join(extra), p, m, p / m if m else float("nan")))
            print(f"{rows[-1][0]}: predicted {p:.1f} s, measured {m:.1f} s, ratio {rows[-1][3]:.2f}", flush=True)
    load_end = os.getloadavg()[0]
    within = sum(1 for r in rows if 0.5 <= r[3] <= 2.0)
    from dfdistill.reporting.provenance import header_lines, this_command

    lines = header_lines(
        "Cost model vs measured seconds on this CPU",
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} {this_command()}",
        profile=f"smoke on the embedded digits data; common overrides: `{' '.join(BASE)}`",
        device=f"{platform.machine()} CPU, one thread; model entry `cpu` of dfdistill/sweeps/devices.yaml "
               f"({dev.peak_tflops * 1e3:.1f} GFLOP/s, {dev.mem_gbps:g} GB/s, x {dev.efficiency:g}, {dev.op_us:g} us/op; "
               f"{dev.calibrated})",
        extra=[("machine load", f"load average {load_start:.2f} at start, {load_end:.2f} at end on "
                                f"{os.cpu_count()} cores (shared; CPU seconds, not wall seconds, are compared)")])
    lines += [
        "- measured = CPU seconds (`time.process_time`, the run in-process: the machine is shared, so wall time would "
        "count other jobs) times the share of the modelled stages (scoring, experts, distillation, evaluation) in the "
        "run's `stage_seconds` (data loading excluded); every run has a fresh cache (no expert bank, scores or "
        "distillation of an earlier run is reused); predicted = dfdistill/sweeps/model.py for the same resolved config",
        "",
        "| config | predicted s | measured s | predicted / measured |",
        "|---|---:|---:|---:|",
        *[f"| `{c}` | {p:.1f} | {m:.1f} | {r:.2f} |" for c, p, m, r in rows],
        "",
        f"{within} of {len(rows)} within 2x (ratio in [0.5, 2]).",
    ]
    if failed:
        lines += ["", "Configs whose run failed (no measurement):", "",
                  *[f"- `{c}`: {why}" for c, why in failed]]
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0 if within == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
