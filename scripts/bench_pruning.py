#!/usr/bin/env python
"""BiLP Table 6 analogue: seconds per distillation iteration, and the ITE part of it, for
no optimisation / + running stats / + Taylor / + lazy selection, next to the unpruned base method.

Usage: python scripts/bench_pruning.py [-W 1 -M 2] [--out results/measured/bilp_tab6_cpu.md] [key=value ...]
(defaults: profile=cpu dataset=cifar10_jpeg method=dc ipc=10; any run.py override may be added).

Each setting builds the pipeline's own setup (scripts/bench.py's harness) and times W warm-up + M
measured iterations in-process; the ITE part is the selector's own `seconds` (time inside it).
"no optimisation" (exact leave-one-out ITE of every real row each call, `stats: full`) is far too
slow to run for whole iterations on a CPU, so it is timed on ONE matching step with the real set cut
to --noopt-rows per class, and its ITE part is extrapolated linearly (the work is one block per
`batch_real` rows): ite/iter = t_call x (rows_per_class / noopt_rows) x calls_per_iteration. The
table marks that row as extrapolated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench import compose  # noqa: E402

ITE = ["pruning=ite", "pruning.adaptive.lazy_every=1"]
SETTINGS = {
    "none (base method, no ITE)": ["pruning=none"],
    "no optimisation (exact ITE of every row, every call)": [*ITE, "pruning.adaptive.mode=exact",
                                                             "pruning.adaptive.stats=full"],
    "+ running stats (exact ITE of the batch)": [*ITE, "pruning.adaptive.mode=exact"],
    "+ Taylor approximation": [*ITE, "pruning.adaptive.mode=taylor"],
    "+ lazy selection (refresh every 10 lazy-clock steps)": ["pruning=ite", "pruning.adaptive.mode=taylor",
                                               "pruning.adaptive.lazy_every=10"],
}
NOOPT = "no optimisation (exact ITE of every row, every call)"
# overrides that shrink one iteration to one matching step (the no-opt row is timed on one step)
ONE_STEP = {"idc": ["method.match_steps=1"], "dm": []}


def time_setting(overrides: list[str], warmup: int, measure: int, tmp: Path, clock: str, lazy: bool = False) -> dict:
    import torch

    from dfdistill.bench.harness import build_setup, make_distiller, real_images_per_iteration

    setup = build_setup(compose(overrides, tmp), tmp)
    d = make_distiller(setup, baseline=False)
    sel = setup.ctx.adaptive
    if lazy:  # measure one whole lazy cycle: exactly one refresh among the measured steps (IDC counts
        # its inner matching steps on the lazy clock, so one IDC iteration of match_steps >= k is a cycle)
        steps = d.cfg.match_steps if hasattr(d.cfg, "match_steps") and type(d).__name__ == "IDC" else 1
        measure = max(measure, -(-sel.cfg.lazy_every // steps))
    totals, ites, ncalls = [], [], []
    wall = clock == "wall"
    for it in range(warmup + measure):
        sec0, calls0 = ((sel.seconds if wall else sel.cpu_seconds), sel.calls) if sel is not None else (0.0, 0)
        t0 = time.perf_counter() if wall else time.process_time()
        if sel is not None:
            sel.begin_iteration(it)
        float(d.step(it)["loss"])
        if it >= warmup:
            totals.append((time.perf_counter() if wall else time.process_time()) - t0)
            ites.append((sel.seconds if wall else sel.cpu_seconds) - sec0 if sel is not None else 0.0)
            ncalls.append(sel.calls - calls0 if sel is not None else 0)
    kept = statistics.mean(sel.kept_fraction) if sel is not None and sel.kept_fraction else 1.0
    # means, not medians: under lazy selection one iteration in k carries the whole ITE call
    return {"total": statistics.fmean(totals), "spread": (min(totals), max(totals)), "ite": statistics.fmean(ites),
            "calls": max(ncalls), "kept": kept, "rows_per_class": max(setup.ctx.real.class_counts()),
            "batch_real": d.cfg.batch_real, "real_per_iter": real_images_per_iteration(d),
            "threads": torch.get_num_threads(), "outer_loop": d.loops()[0] if hasattr(d, "loops") else 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-W", "--warmup", type=int, default=1)
    ap.add_argument("-M", "--measure", type=int, default=2)
    ap.add_argument("--noopt-rows", type=int, default=256, help="rows per class for the extrapolated no-opt row")
    ap.add_argument("--skip-noopt", action="store_true")
    ap.add_argument("--out", default="results/measured/bilp_tab6_cpu.md")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: process CPU seconds with ONE thread (what a shared machine cannot inflate much); "
                         "wall: elapsed seconds with the default threads (only on a quiet machine)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.clock == "cpu":  # CPU time of one thread is the work; more threads would add their spin-waits to it
        import torch

        torch.set_num_threads(1)
    given = {o.split("=", 1)[0] for o in a.overrides}
    defaults = {"profile": "cpu", "dataset": "cifar10_jpeg", "method": "dc", "ipc": "10"}
    base = [f"{k}={v}" for k, v in defaults.items() if k not in given] + a.overrides
    method, dataset, profile = ([o.split("=", 1)[1] for o in base if o.startswith(f"{k}=")][-1]
                                for k in ("method", "dataset", "profile"))
    res = {}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        for name, over in SETTINGS.items():
            if name == NOOPT:
                if a.skip_noopt:
                    continue
                r = time_setting([*base, *over, *ONE_STEP.get(method, ["method.outer_loop=1"]),
                                  f"dataset.max_train_per_class={a.noopt_rows}"], 0, 1, Path(tmp), a.clock)
            else:
                r = time_setting([*base, *over], a.warmup, a.measure, Path(tmp), a.clock, lazy="lazy" in name)
            res[name] = r
            print(name, r, flush=True)
    none = res["none (base method, no ITE)"]
    # ITE calls per iteration as measured by an every-call setting (DC: outer_loop calls covering all
    # classes; IDC: match_steps x C calls of one class each; DM: 1)
    every_call = [r["calls"] for n, r in res.items() if n not in (NOOPT, "none (base method, no ITE)")
                  and "lazy" not in n]
    full_rows = none["rows_per_class"]
    calls_per_iter = max(every_call) if every_call else none["outer_loop"]
    if NOOPT in res:  # extrapolate: one call on noopt_rows/class -> calls_per_iter calls on full_rows/class
        r = res[NOOPT]
        r["measured_ite"] = r["ite"]
        ite_iter = r["ite"] * (full_rows / r["rows_per_class"]) * (calls_per_iter / max(1, r["calls"]))
        r.update(total=none["total"] + ite_iter, ite=ite_iter, spread=None, extrapolated=True)
    import platform

    import torch

    from dfdistill.reporting.provenance import header_lines, this_command

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = header_lines(
        f"BiLP Table 6 analogue: s/iter of {method.upper()} with each ITE optimisation ({dataset}, {profile} profile)",
        this_command(), profile,
        f"cpu ({platform.machine()}, {os.cpu_count()} cores, {none['threads']} threads), torch {torch.__version__}",
        extra=[("settings", f"`{' '.join(base)}` (base {method.upper()}, {calls_per_iter} ITE calls per iteration, "
                            f"real batch {none['batch_real']}/class, {full_rows} rows/class)"),
               ("machine load", f"load average {load_start:.2f} at start, {load:.2f} at end")])
    lines += ["", "## Seconds per iteration", "",
             ("s/iter = process CPU seconds of one thread (`time.process_time`, torch.set_num_threads(1)): the work, "
              "which other jobs on a shared machine barely change; " if a.clock == "cpu" else
              "s/iter = elapsed seconds (wall clock; take it only on a quiet machine); ") +
             "mean over M measured iterations after W warm-up (evaluation excluded); ITE part = the same clock "
             "inside the selector's `weights`; overhead = s/iter vs the unpruned base.", "",
             "| setting | s/iter | min–max | ITE part s/iter | overhead vs none | kept fraction | paper s/iter (RTX 4090) |",
             "|---|---|---|---|---|---|---|"]
    paper = {"none (base method, no ITE)": "—", NOOPT: "1799.53", "+ running stats (exact ITE of the batch)": "23.38",
             "+ Taylor approximation": "0.65", "+ lazy selection (refresh every 10 lazy-clock steps)": "0.47"}
    for name, r in res.items():
        ext = " (extrapolated)" if r.get("extrapolated") else ""
        spread = "—" if r["spread"] is None else f"{r['spread'][0]:.2f}–{r['spread'][1]:.2f}"
        over = "—" if r is none else f"{100 * (r['total'] / none['total'] - 1):+.1f}%"
        lines.append(f"| {name} | {r['total']:.2f}{ext} | {spread} | {r['ite']:.2f}{ext} | {over} | {r['kept']:.3f} "
                     f"| {paper[name]} |")
    if NOOPT in res:
        r = res[NOOPT]
        lines += ["", f"No-optimisation row: one matching step on {r['rows_per_class']} rows/class measured "
                      f"{r['measured_ite']:.2f} s of ITE in {r['calls']} call(s); scaled x{full_rows / r['rows_per_class']:.1f} "
                      f"(rows) x{calls_per_iter / max(1, r['calls']):g} (calls per iteration)."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
