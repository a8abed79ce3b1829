#!/usr/bin/env python
"""How long `--plan` takes for every `make` target, as a user runs it (a fresh process each).

    python scripts/bench_plan.py [--profile full] [--gpu a100-80gb] [--only bilp_tab4 ...] [--no-plan-memo]

Prints one markdown row per target: wall seconds and CPU seconds (user + system of the child:
what the machine's load does not inflate much; the wall figure depends on the load). A benchmark,
not a test: docs/sweeps.md records its figures before and after a change.

A plan keeps what it resolved for the next run of the same command (dfdistill/sweeps/plan_memo.py,
under $DFDISTILL_CACHE/plans): run this twice with an empty DFDISTILL_CACHE for cold then warm
figures, or pass --no-plan-memo for plans that neither read nor write the memo.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_once(exp: str, profile: str, gpu: str, extra: tuple[str, ...] = ()) -> tuple[float, float, int]:
    """(wall s, CPU s, exit code) of one `run_table.py <exp> --plan` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rc = subprocess.run([sys.executable, str(REPO / "scripts" / "run_table.py"), exp, "--profile", profile,
                         "--plan", "--gpu", gpu, *extra], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def main() -> int:
    from scripts.plan_table import TARGETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--gpu", default="a100-80gb")
    ap.add_argument("--only", nargs="*", default=None, help="exp names (default: every target)")
    ap.add_argument("--no-plan-memo", action="store_true", help="plans that neither read nor write the plan memo")
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| target | plan wall s | plan CPU s | rc |")
    print("|---|---:|---:|---:|")
    for target, exp in TARGETS:
        if a.only and exp not in a.only:
            continue
        wall, cpu, rc = run_once(exp, a.profile, a.gpu, ("--no-plan-memo",) if a.no_plan_memo else ())
        print(f"| `make {target}` | {wall:.1f} | {cpu:.1f} | {rc} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
