#!/usr/bin/env python
"""The table of every `make` target's size and cost at PROFILE=full (docs/sweeps.md carries it).

    python scripts/plan_table.py [--gpu a100-80gb] [--profile full] [--write-pass-costs]

Runs each target's `run_table.py <exp> --plan` in this process and prints one markdown row per
target: jobs (new / reused; for a max-ratio search the upper bound), modelled device-hours on the
GPU, the largest job's peak memory and how many jobs do not fit (dfdistill/sweeps/model.py).
`--write-pass-costs` then keeps every network and augmentation count the plans made in
dfdistill/sweeps/pass_costs.json (with the code's fingerprint), so later plans count nothing; rerun it
when dfdistill/models/, dfdistill/data/augment/ or passes.py change (tests/unit/sweeps/test_plan_memo.py
says when). Cold timings per target:
scripts/bench_plan.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = [("table-bilp-1", "bilp_tab1"), ("table-bilp-2", "bilp_tab2"), ("table-bilp-3", "bilp_tab3"),
           ("table-bilp-4", "bilp_tab4"), ("table-bilp-5", "bilp_tab5"), ("table-bilp-6", "bilp_tab6"),
           ("table-bilp-7", "bilp_tab7"), ("fig-bilp-2", "bilp_fig2"), ("fig-bilp-3", "bilp_fig3"),
           ("fig-bilp-4", "bilp_fig4"), ("table-dfcolearn-1", "dfcolearn_tab1"),
           ("table-dfcolearn-2", "dfcolearn_tab2"), ("table-edd-tinyimagenet", "edd_tinyimagenet")]


def target_row(target: str, exp: str, gpu: str, profile: str = "full") -> str:
    """The docs/sweeps.md row of one target, from its `run_table.py --plan` (tests compare the two)."""
    from dfdistill.sweeps.cli import main as run_table
    from dfdistill.sweeps.jobsets import SEARCH_EXPS
    from dfdistill.sweeps.model import device, fmt_gb, fmt_hours

    dev = device(gpu)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out = run_table([exp, "--profile", profile, "--plan", "--gpu", dev.name])
    t = out["totals"]
    bound = "≤ " if exp in SEARCH_EXPS else ""  # a search: its upper bound
    fit = "yes" if not t["no_fit"] else f"{t['no_fit']} do not"
    likely = out.get("totals_if_paper")
    agree = f"{likely['jobs']} jobs, {fmt_hours(likely['seconds'])}" if likely else ""
    return (f"| `make {target}` | {bound}{t['pending']} / {t['done']} | {bound}{fmt_hours(t['seconds'])} | "
            f"{fmt_gb(t['peak'])} | {fit} | {agree} |")


def main() -> int:
    from dfdistill.sweeps.model import device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", default="a100-80gb")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--only", nargs="*", default=None, help="exp names (default: every target)")
    ap.add_argument("--write-pass-costs", action="store_true", help="keep the network counts (pass_costs.json)")
    a = ap.parse_args()
    dev = device(a.gpu)
    print(f"| target | jobs (new / reused) | {dev.name} hours | largest job memory | fits {dev.memory_gb:g} GB | "
          f"search: if every verdict is the paper's | plan s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for target, exp in TARGETS:
        if a.only and exp not in a.only:
            continue
        t0 = time.perf_counter()
        row = target_row(target, exp, a.gpu, a.profile)
        print(f"{row} {time.perf_counter() - t0:.0f} |", flush=True)
    if a.write_pass_costs:
        from dfdistill.sweeps.passes import write_counted

        print(f"kept the network counts in {write_counted()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
