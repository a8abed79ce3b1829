"""Peak memory of ONE distillation step, MTT (unrolled graph) vs TESLA (recompute), by syn_steps.

Each (method, syn_steps) runs in a fresh subprocess so peaks do not mix: on CPU the measure is
the increase of peak RSS (ru_maxrss) over the RSS right before the step; on CUDA it is
torch.cuda.max_memory_allocated after reset. Synthetic tensors stand in for data/experts (memory
depends only on shapes): CIFAR-sized images, ConvNet-3 (width configurable), batch_syn = ipc*10.

  python scripts/bench_tesla_memory.py --width 128 --ipc 10 --steps 10 20 40 --out results/measured/tesla_memory.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def one(method: str, steps: int, width: int, ipc: int, device: str) -> dict:
    import torch

    from dfdistill.data.augment import build_augment
    from dfdistill.methods.experts import functional_net
    from dfdistill.methods.mtt import make_plan, unrolled_loss
    from dfdistill.methods.tesla import tesla_gradients
    from dfdistill.models import build_model

    torch.manual_seed(0)
    dev = torch.device(device)
    net = build_model("convnet", 3, 10, 32, width=width, depth=3, norm="instancenorm", act="relu",
                      pool="avgpooling").to(dev)
    f = functional_net(net)
    p = sum(q.numel() for q in net.parameters())
    theta0 = torch.randn(p, device=dev) * 0.01
    theta_star = theta0 + torch.randn(p, device=dev) * 0.01
    images = torch.randn(10 * ipc, 3, 32, 32, device=dev, requires_grad=True)
    labels = torch.arange(10, device=dev).repeat_interleave(ipc)
    aug = build_augment("dsa", None)
    plan = make_plan(images.shape[0], None, steps, torch.Generator().manual_seed(0), True)
    lr = torch.tensor(0.01, device=dev, requires_grad=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_now_kb()
    t = time.perf_counter()
    if method == "mtt":
        loss = unrolled_loss(f, images, labels, plan, theta0, theta_star, lr, aug)
        loss.backward()
    else:
        tesla_gradients(f, images, labels, plan, theta0, theta_star, 0.01, aug, exact=method == "tesla")
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"method": method, "steps": steps, "peak_mb": peak_mb, "seconds": time.perf_counter() - t,
            "params": p, "device": device}


def _rss_now_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--methods", nargs="+", default=["mtt", "tesla", "tesla_approx"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        m, s = a.child.split(":")
        import torch

        torch.set_num_threads(2)
        print(json.dumps(one(m, int(s), a.width, a.ipc, a.device)))
        return
    rows = []
    for s in a.steps:
        for m in a.methods:
            out = subprocess.run([sys.executable, __file__, "--child", f"{m}:{s}", "--width", str(a.width),
                                  "--ipc", str(a.ipc), "--device", a.device], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    cmd = "python " + " ".join(["scripts/bench_tesla_memory.py", *sys.argv[1:]])
    lines = [
        "# Peak memory of one distillation step: MTT vs TESLA", "",
        f"Command: `{cmd}` (run under `flock /tmp/dfdistill-cpu.lock`), {platform.processor() or platform.machine()}, "
        f"device {a.device}, torch threads 2.",
        f"Setting: ConvNet-3 width {a.width} ({rows[0]['params']} params), CIFAR-sized 32x32x3, IPC {a.ipc} "
        f"(batch_syn = all {10 * a.ipc} images), DSA per step. One fresh subprocess per row; "
        "CPU: peak RSS increase during the step (ru_maxrss - RSS before); CUDA: max_memory_allocated increase.",
        "tesla = exact gradient (adjoint + HVP), tesla_approx = reference approximation (exact=false).", "",
        "| syn_steps | method | peak MB | seconds |", "|---|---|---|---|",
    ]
    lines += [f"| {r['steps']} | {r['method']} | {r['peak_mb']:.0f} | {r['seconds']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        from dfdistill.core.artifacts import atomic_write_text

        atomic_write_text(a.out, text)


if __name__ == "__main__":
    main()
