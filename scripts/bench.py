#!/usr/bin/env python
"""Per-iteration distillation speed: `python scripts/bench.py [--baseline] [-W 1 -M 3] key=value ...`.

Overrides are the run.py ones (dataset=, backbone=, method=, pruning=, ipc=, method.outer_loop=, ...).
With --baseline the straightforward reference formulation runs too: first both must give the same
synthetic-image gradient (relative max diff <= 5e-3, float32), then the two are timed interleaved and one
markdown row per mode (with the speed-up) is appended to results/measured/bench_<device>.md.
Default profile is `full` (paper sizes); pass profile=cpu/smoke to shrink.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose(overrides: list[str], out_dir: Path):
    """The run config for `overrides` (default profile=full), through the one compose helper."""
    from omegaconf import open_dict

    from dfdistill.config.compose import compose_run_config

    cfg = compose_run_config(["logger=none", "profile=full", *overrides])
    with open_dict(cfg):
        cfg.output_dir = str(out_dir)
        cfg.progress = False
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-W", "--warmup", type=int, default=1, help="warm-up iterations (not timed)")
    ap.add_argument("-M", "--measure", type=int, default=3, help="measured iterations")
    ap.add_argument("--baseline", action="store_true", help="also time the reference formulation (+grad check)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results" / "measured")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("overrides", nargs="*", help="hydra overrides, e.g. dataset=cifar10_jpeg method=dc ipc=10")
    args = ap.parse_args(argv)
    if args.measure < 1 or args.warmup < 0:
        ap.error("need --measure >= 1 and --warmup >= 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dfdistill.bench.harness import run_bench

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(args.overrides, Path(tmp))
        path, rows, _ = run_bench(cfg, Path(tmp), args.results_dir, args.warmup, args.measure, args.baseline,
                                  " ".join(args.overrides))
    sys.stdout.write("".join(rows))
    print(f"appended {len(rows)} row(s) to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
