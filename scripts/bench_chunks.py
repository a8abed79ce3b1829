"""How wide a vmap should be: time the per-sample hot paths at several chunk sizes.

Why: `torch.func.vmap` over B samples stacks B copies of every activation. On a GPU that is one wide
kernel; on a CPU the stacked double-backward intermediates fall out of cache, so narrower chunks are
faster with the same values. The measured optimum sets the device defaults
(`pruning.ite.auto_chunk`, `scoring.gradnorm.default_chunk`).

  python scripts/bench_chunks.py [--width 32] [--rows 64] [--ipc 10] [--repeats 2]

Prints one markdown table per hot path (best of --repeats seconds per chunk size) and checks that all
chunk sizes return the same values.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from dfdistill.methods.matching import dm_meta_loss, gm_meta_loss, per_sample_param_grads
from dfdistill.models import build_model
from dfdistill.pruning.ite import ite_vectors
from dfdistill.scoring.gradnorm import per_sample_loss_and_grad_norm


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def table(title: str, chunks: list[int], run: Callable[[int], torch.Tensor], repeats: int) -> str:
    times, ref = [], None
    for c in chunks:
        sec, out = best_of(lambda: run(c), repeats)
        ref = out if ref is None else ref
        if not torch.allclose(out, ref, rtol=1e-4, atol=1e-6):
            raise SystemExit(f"{title}: chunk {c} changed the values")
        times.append(sec)
    head = "| " + title + " | " + " | ".join(f"chunk {c}" for c in chunks) + " |"
    sep = "|---" * (len(chunks) + 1) + "|"
    row = "| seconds | " + " | ".join(f"{t:.2f}" for t in times) + " |"
    return "\n".join([head, sep, row])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--rows", type=int, default=64, help="real rows of the class (the ITE batch B)")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    net = build_model("convnet", 3, 10, 32, width=a.width, norm="instancenorm", act="relu", pool="avgpooling")
    params = {k: v.detach() for k, v in net.named_parameters()}
    xr, yr = torch.randn(a.rows, 3, 32, 32), torch.full((a.rows,), 3)
    xs, ys = torch.randn(a.ipc, 3, 32, 32), torch.full((a.ipc,), 3)
    w = torch.ones(a.rows)
    g = per_sample_param_grads(net, params, xr, yr)
    ml = gm_meta_loss(net, params, ys, "ours")
    with torch.no_grad():
        emb = {"e": net.embed(xr)}
    chunks = [64, 16, 8, 4, 1]
    print(f"ConvNet width {a.width}, one class: {a.rows} real rows, {a.ipc} synthetic, "
          f"{torch.get_num_threads()} thread(s), best of {a.repeats}\n")
    print(table("Taylor ITE", chunks, lambda c: ite_vectors(g, w, ml, xs, "taylor", c), a.repeats), "\n")
    print(table("exact leave-one-out ITE", chunks, lambda c: ite_vectors(g, w, ml, xs, "exact", c), a.repeats), "\n")
    print(table("DM ITE", chunks, lambda c: ite_vectors(emb, w, dm_meta_loss(net), xs, "taylor", c), a.repeats), "\n")
    x10, y10 = torch.randn(10 * a.rows, 3, 32, 32), torch.randint(0, 10, (10 * a.rows,))
    print(table(f"per-sample loss + grad norm, {10 * a.rows} rows", [256, 64, 32, 8],
                lambda c: torch.stack(per_sample_loss_and_grad_norm(net, x10, y10, chunk=c)), a.repeats))


if __name__ == "__main__":
    main()
