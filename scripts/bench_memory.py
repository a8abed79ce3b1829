"""Peak memory of one DM and one DC step as the number of classes grows (issue 14's benchmark).

Each (method, C) runs in a fresh subprocess on generated data (C classes x batch_real uint8 images,
ConvNet width `--width`, IPC `--ipc`): the data, network factory and synthetic set are built, one
warm-up step runs, then the measured step. The step's own memory is its peak minus what was
resident right before it: on a CPU the process's resident set (VmHWM after resetting it through
/proc/self/clear_refs, minus VmRSS before; glibc's free lists trimmed first), on CUDA
`max_memory_allocated` minus `memory_allocated`. The table goes to results/measured/memory_<dev>.md.

    python scripts/bench_memory.py                                  # CPU, C = 10 100 200 1000
    python scripts/bench_memory.py --device cuda --classes 10,200   # what scripts/gpu_check.sh runs
    python scripts/bench_memory.py --classes 4,8 --batch-real 8 --width 8 --out /tmp/m.md   # quick
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(a: argparse.Namespace) -> dict:
    import torch

    from dfdistill.core.artifacts import ArtifactCache
    from dfdistill.data.real import RealData
    from dfdistill.engine.memory import configure_memory, MemoryConfig
    from dfdistill.methods.base import build_context
    from dfdistill.methods.dc import DCConfig, GradientMatching
    from dfdistill.methods.dm import DM, DMConfig
    from dfdistill.models import build_model

    torch.set_num_threads(1)
    device = torch.device(a.device)
    configure_memory(MemoryConfig(class_chunk=a.class_chunk, cpu_budget_mb=a.cpu_budget_mb))
    C, n, s = a.classes, a.batch_real, a.size
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (C * n, 3, s, s), generator=g, dtype=torch.uint8)
    labels = torch.arange(C).repeat_interleave(n)
    real = RealData(pixels, labels, C, [str(c) for c in range(C)], (0.5,) * 3, (0.25,) * 3, pixels=True,
                    device=device)

    def factory(seed: int):
        torch.manual_seed(seed)
        return build_model("convnet", 3, C, s, width=a.width, depth=3).to(device)

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "dfdistill_bench_memory"
    ctx = build_context(real, factory, ipc=a.ipc, seed=0, device=device, cache=ArtifactCache(tmp / "cache"),
                        out_dir=tmp, augment=True)
    if a.method == "dm":
        d = DM(DMConfig(name="dm", _target_="x", batch_real=n), ctx)
    else:  # DC: one matching step (outer_loop 1), no augmentation, real init
        d = GradientMatching(DCConfig(name="dc", _target_="x", dsa=False, init="real", batch_real=n,
                                      outer_loop=1, inner_loop=1), ctx)
    d.init_state()
    net = factory(0)
    chunk = (d.class_chunk(net, n + a.ipc, kind="backward") if a.method == "dm" else d.class_chunk_for(net, n))
    del net
    d.step(0)  # warm-up: first-call allocations (oneDNN primitives, autograd) are not the step's
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = rss_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    t0 = time.process_time()
    d.step(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = rss_kib("VmHWM") * 1024
    return {"method": a.method, "classes": C, "chunk": chunk, "before_mb": before / 2**20, "peak_mb": peak / 2**20,
            "step_mb": (peak - before) / 2**20, "cpu_s": time.process_time() - t0}


def markdown(rows: list[dict], a: argparse.Namespace, header: str) -> str:
    out = [header, "",
           f"Settings: batch_real {a.batch_real}, ConvNet width {a.width} depth 3, {a.size} px, IPC {a.ipc}, "
           f"device {a.device}, memory.class_chunk={a.class_chunk}, memory.cpu_budget_mb={a.cpu_budget_mb:g}. "
           "step MB = peak during the measured step minus resident before it (second step; the first is a warm-up).",
           "", "| method | classes | classes/pass | resident before MB | peak MB | step MB | step / step at smallest C | CPU s |",
           "|---|---|---|---|---|---|---|---|"]
    for m in ("dm", "dc"):
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        base = mine[0]["step_mb"]
        for r in mine:
            out.append(f"| {m.upper()} | {r['classes']} | {r['chunk']} | {r['before_mb']:.0f} | {r['peak_mb']:.0f} | "
                       f"{r['step_mb']:.0f} | {r['step_mb'] / base:.2f}x | {r['cpu_s']:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--classes", default="10,100,200,1000")
    p.add_argument("--methods", default="dm,dc")
    p.add_argument("--batch-real", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--class-chunk", type=int, default=None, help="memory.class_chunk (default: from the budget)")
    p.add_argument("--cpu-budget-mb", type=float, default=512.0, help="memory.cpu_budget_mb (the default)")
    p.add_argument("--out", default=None, help="markdown file (default results/measured/memory_<device>.md)")
    p.add_argument("--header", default=None, help="a line above the table (e.g. the machine and its load)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", default="dm", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        a.classes = int(a.classes)
        print("RESULT " + json.dumps(child(a)))
        return
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for m in a.methods.split(","):
        for c in [int(v) for v in a.classes.split(",")]:
            cmd = [sys.executable, __file__, "--child", "--method", m, "--classes", str(c), "--device", a.device,
                   "--batch-real", str(a.batch_real), "--width", str(a.width), "--size", str(a.size),
                   "--ipc", str(a.ipc), "--cpu-budget-mb", str(a.cpu_budget_mb)]
            if a.class_chunk is not None:
                cmd += ["--class-chunk", str(a.class_chunk)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [s for s in res.stdout.splitlines() if s.startswith("RESULT ")]
            if res.returncode or not line:
                sys.exit(f"error: {m} at C={c} failed:\n{res.stderr[-2000:]}")
            rows.append(json.loads(line[-1][7:]))
            r = rows[-1]
            print(f"{m} C={c}: {r['chunk']} classes/pass, step {r['step_mb']:.0f} MB "
                  f"(peak {r['peak_mb']:.0f}, before {r['before_mb']:.0f}), {r['cpu_s']:.1f} CPU s", flush=True)
    out = Path(a.out) if a.out else ROOT / "results" / "measured" / f"memory_{a.device.split(':')[0]}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = a.header or f"# Peak memory of one step vs number of classes ({a.device})"
    out.write_text(markdown(rows, a, header))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
