#!/usr/bin/env python
"""What DSA's augmentation adds to one distillation iteration: DSA minus DC, ours and the original's.

    python scripts/bench_dsa_cost.py --original /tmp/DatasetCondensation [--repeats 15] [--out FILE]

Why a separate harness: the per-iteration cost of the augmentation is the difference of two
iterations that differ only in it (`method.dsa=true` vs `false`, everything else equal), and the
comparison with the original implementation is only fair on the same machine, the same data and
the same load. So one process times four modes interleaved, repeat by repeat (the order reversed
on every other repeat so neither mode always runs right after the other):

- `ours DC` / `ours DSA`: our DSA distiller's `step()` with `dsa=false` / `true` (dfdistill).
- `original DC` / `original DSA`: one iteration of the original DC/DSA main loop at IPC 1 (new
  ConvNet, per class: real batch, DiffAugment of the real and synthetic batch under one seed,
  gradients, `match_loss`, one SGD step on the images; outer_loop 1 so no inner training), written
  here around the original's own functions (`utils.DiffAugment`, `utils.match_loss`,
  `networks.ConvNet`) imported from `--original` (a checkout of VICO-UoE/DatasetCondensation kept
  outside this repository; nothing of it is copied here). Without `--original` only ours is timed.
- `ours aug` / `original aug` (with `--original`): only what DSA adds, on the same tensors (all
  classes' real and synthetic batches augmented under one draw per class, and the backward through
  the synthetic side): DSA minus DC without the noise of two whole iterations. `--aug-only` times
  just these two.

Settings (the issue's): IPC 1, ConvNet-3 width 32 with instance norm, CIFAR-10 (32x32, from
../shared/data/cifar10-jpeg or --data; the images' content does not change the cost), batch_real 64
(profile=cpu's; the original's default is 256: --batch-real 256), dis_metric 'ours', one thread by default (the CPU is shared). DSA minus DC
is the median over repeats of each repeat's (DSA - DC), so slow phases of the machine cancel.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGY = "color_crop_cutout_flip_scale_rotate"  # DSA's CIFAR strategy (both implementations)


def load_original(folder: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """(utils, networks) of the original checkout. One compatibility edit, in memory only: its siamese
    `t[:] = t[0]` raises on current PyTorch (overlapping write), so it reads `t[:] = t[0].clone()`;
    the values and the cost are the same."""
    sys.path.insert(0, str(folder))
    import networks  # noqa: F401  (utils imports it by name)

    src = (folder / "utils.py").read_text()
    src = re.sub(r"^(\s*\w+)\[:\] = (\w+)\[0\]\s*$", r"\1[:] = \2[0].clone()", src, flags=re.M)
    utils = types.ModuleType("dsa_original_utils")
    utils.__file__ = str(folder / "utils.py")
    exec(compile(src, utils.__file__, "exec"), utils.__dict__)  # noqa: S102 - the user's own checkout
    return utils, sys.modules["networks"]


def ours_steps(overrides: list[str], out_dir: Path):
    """(setup, {'ours DC': step, 'ours DSA': step}) built the way the pipeline builds them."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import compose

    from dfdistill.bench.harness import build_setup, make_distiller

    setup = build_setup(compose(overrides, out_dir), out_dir)
    ds = {"ours DC": make_distiller(setup, False, dsa=False), "ours DSA": make_distiller(setup, False, dsa=True)}
    counter = {"it": 0}

    def stepper(d) -> Callable[[], None]:
        def run() -> None:
            float(d.step(counter["it"])["loss"])
            counter["it"] += 1
        return run

    return setup, {k: stepper(d) for k, d in ds.items()}


def original_steps(utils, networks, images: "torch.Tensor", labels: "torch.Tensor", num_classes: int,
                   width: int, batch_real: int, ipc: int = 1):
    """{'original DC': step, 'original DSA': step}: one iteration of the original main loop at IPC 1
    (outer_loop 1: the loop breaks before the inner network training)."""
    import torch
    import torch.nn as nn

    channel, size = images.shape[1], tuple(images.shape[2:])
    indices_class = [torch.nonzero(labels == c).squeeze(1) for c in range(num_classes)]
    param = utils.ParamDiffAug()
    args = types.SimpleNamespace(device="cpu", dis_metric="ours")
    gen = torch.Generator().manual_seed(0)
    image_syn = torch.cat([images[indices_class[c][:ipc]] for c in range(num_classes)]).clone().requires_grad_(True)
    opt_img = torch.optim.SGD([image_syn], lr=0.1, momentum=0.5)
    criterion = nn.CrossEntropyLoss()
    seed_of = iter(range(10**9))

    def get_images(c: int, n: int) -> torch.Tensor:
        idx = indices_class[c][torch.randperm(len(indices_class[c]), generator=gen)[:n]]
        return images[idx]

    def iteration(dsa: bool) -> None:
        net = networks.ConvNet(channel, num_classes, width, 3, "relu", "instancenorm", "avgpooling", size)
        net.train()
        params = list(net.parameters())
        loss = torch.tensor(0.0)
        for c in range(num_classes):
            img_real = get_images(c, batch_real)
            lab_real = torch.full((img_real.shape[0],), c, dtype=torch.long)
            img_syn = image_syn[c * ipc:(c + 1) * ipc]
            lab_syn = torch.full((ipc,), c, dtype=torch.long)
            if dsa:
                seed = next(seed_of) % 100000
                img_real = utils.DiffAugment(img_real, STRATEGY, seed=seed, param=param)
                img_syn = utils.DiffAugment(img_syn, STRATEGY, seed=seed, param=param)
            g_real = [g.detach() for g in torch.autograd.grad(criterion(net(img_real), lab_real), params)]
            g_syn = torch.autograd.grad(criterion(net(img_syn), lab_syn), params, create_graph=True)
            loss = loss + utils.match_loss(g_syn, g_real, args)
        opt_img.zero_grad()
        loss.backward()
        opt_img.step()
        float(loss)

    return {"original DC": lambda: iteration(False), "original DSA": lambda: iteration(True)}


def augmentation_only(aug, utils, images: "torch.Tensor", labels: "torch.Tensor", num_classes: int,
                      batch_real: int, ipc: int = 1):
    """{'ours aug', 'original aug'}: only what DSA adds to an iteration, on the same tensors: every
    class's real batch augmented (no autograd) and its synthetic images augmented under the same draw,
    then the backward through the synthetic side. The rest of the iteration is the same in DC and
    DSA, so this is DSA minus DC without the noise of timing two whole iterations."""
    import torch

    gen = torch.Generator().manual_seed(1)
    xr = torch.stack([images[torch.nonzero(labels == c).squeeze(1)[:batch_real]] for c in range(num_classes)])
    xs = torch.randn(num_classes, ipc, *images.shape[1:], generator=gen, requires_grad=True)
    w = torch.randn(xs.shape, generator=gen)
    seeds = iter(range(10**9))

    def ours() -> None:
        draw = aug.class_draw(next(seeds), num_classes)
        with torch.no_grad():
            draw.apply(xr)
        (draw.apply(xs) * w).sum().backward()

    def original() -> None:
        param, total = utils.ParamDiffAug(), 0.0
        for c in range(num_classes):
            seed = next(seeds) % 100000
            with torch.no_grad():
                utils.DiffAugment(xr[c], STRATEGY, seed=seed, param=param)
            total = total + (utils.DiffAugment(xs[c], STRATEGY, seed=seed, param=param) * w[c]).sum()
        total.backward()

    return {"ours aug": ours, "original aug": original}


def time_interleaved(modes: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, list[float]]:
    names = list(modes)
    out: dict[str, list[float]] = {m: [] for m in names}
    for r in range(warmup + repeats):
        for m in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            modes[m]()
            if r >= warmup:
                out[m].append(time.perf_counter() - t0)
    return out


def paired_delta(t: dict[str, list[float]], impl: str) -> list[float]:
    return [b - a for a, b in zip(t[f"{impl} DC"], t[f"{impl} DSA"])]


def quartiles(v: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(v, n=4)
    return q[0], q[2]


def render(t: dict[str, list[float]], header: list[str]) -> str:
    rows = []
    if "ours aug" in t:
        rows += ["Augmentation only (what DSA adds: real + synthetic batches of all classes, forward, and the "
                 "backward through the synthetic side), s/iter:", "",
                 "| implementation | median | quartiles | repeats |", "|---|---|---|---|"]
        for m in ("ours aug", "original aug"):
            q1, q3 = quartiles(t[m])
            rows.append(f"| {m.split()[0]} | {statistics.median(t[m]):.4f} | {q1:.4f} – {q3:.4f} | {len(t[m])} |")
        ratio = [a / b for a, b in zip(t["ours aug"], t["original aug"])]
        rows += ["", f"Ours / original, median of the per-repeat ratios: {statistics.median(ratio):.2f}", ""]
    if "ours DC" not in t:
        return "\n".join(header + [""] + rows) + "\n"
    rows += ["Whole iterations:", "","| implementation | DC s/iter (median) | DSA s/iter (median) | DSA − DC s/iter (median of paired) | "
            "DSA − DC quartiles | repeats |", "|---|---|---|---|---|---|"]
    for impl in ("ours", "original"):
        if f"{impl} DC" not in t or f"{impl} DSA" not in t:
            continue
        d = paired_delta(t, impl)
        q1, q3 = quartiles(d)
        rows.append(f"| {impl} | {statistics.median(t[f'{impl} DC']):.4f} | {statistics.median(t[f'{impl} DSA']):.4f} | "
                    f"{statistics.median(d):.4f} | {q1:.4f} – {q3:.4f} | {len(d)} |")
    return "\n".join(header + [""] + rows) + "\n"


def _shown(arg: str, a: argparse.Namespace) -> str:
    """An argument as the committed header shows it: no machine paths (the checkout, data or output
    folder outside the repository become a placeholder)."""
    if a.original is not None and arg == str(a.original):
        return "<checkout of VICO-UoE/DatasetCondensation>"
    if arg in (str(a.out), a.data):
        p = Path(arg).resolve()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else ("<file>" if arg == str(a.out) else "<dir>")
    return arg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", type=Path, default=None, help="checkout of VICO-UoE/DatasetCondensation")
    ap.add_argument("--data", default=str((ROOT / ".." / "shared" / "data" / "cifar10-jpeg").resolve()))
    ap.add_argument("--batch-real", type=int, default=64, help="real images per class per step (profile=cpu: 64)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--aug-only", action="store_true", help="time only the augmentation modes (needs --original)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown here (else print only)")
    ap.add_argument("overrides", nargs="*", help="more run.py overrides for ours")
    a = ap.parse_args(argv)
    if a.repeats < 2:
        ap.error("need --repeats >= 2 (quartiles)")

    import torch

    torch.set_num_threads(a.threads)
    dataset = (["dataset=cifar10_jpeg", f"dataset.root={a.data}"] if Path(a.data, "train").is_dir()
               else ["dataset=digits"])
    overrides = ["profile=cpu", "device=cpu", "method=dsa", "ipc=1", f"backbone.width={a.width}",
                 f"method.batch_real={a.batch_real}", "compile=off", *dataset, *a.overrides]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        setup, modes = ours_steps(overrides, Path(tmp))
        real = setup.ctx.real
        if a.original is not None:
            utils, networks = load_original(a.original)
            images = real.images.materialize().float()
            if not a.aug_only:
                modes.update(original_steps(utils, networks, images, real.labels.cpu(), real.num_classes, a.width,
                                            a.batch_real))
            modes.update(augmentation_only(setup.ctx.augment, utils, images, real.labels.cpu(), real.num_classes,
                                           a.batch_real))
        if a.aug_only:
            modes = {k: v for k, v in modes.items() if k.endswith(" aug")}
        t = time_interleaved(modes, a.warmup, a.repeats)
    load1 = os.getloadavg()
    cmd = "python scripts/bench_dsa_cost.py " + " ".join(
        _shown(x, a) for x in (argv if argv is not None else sys.argv[1:]))
    from dfdistill.reporting.provenance import header_lines

    header = header_lines(
        "DSA's per-iteration cost: DSA minus DC, ours vs the original (CPU)", cmd, profile="cpu",
        device=f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch.set_num_threads({a.threads})), torch {torch.__version__}, python {platform.python_version()}")
    header += [
        f"- settings: IPC 1, ConvNet-3 width {a.width} (instance norm), {real.num_classes} classes, "
        f"{real.image_size}x{real.image_size}x{real.channels}, batch_real {a.batch_real}, strategy {STRATEGY}, "
        f"data `{dataset[0].split('=')[1]}`; ours: `{' '.join(overrides[:-len(dataset) - len(a.overrides) or None])}`",
        f"- timing: {a.warmup} warm-up + {a.repeats} interleaved repeats per mode (order reversed every other "
        "repeat); medians. The machine was NOT quiet: a 2-core CPU shared with other jobs "
        f"(load average {load0[0]:.1f} at start, {load1[0]:.1f} at end), so single repeats are noisy; "
        "the paired difference cancels slow phases that hit both modes of a repeat.",
    ]
    text = render(t, header)
    sys.stdout.write(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
