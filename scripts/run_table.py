#!/usr/bin/env python
"""Run one table's sweep: plan it, launch only the jobs that have no result yet, build the table.

The planning, launching and max-ratio search live in `dfdistill.sweeps` (this is its CLI; see
dfdistill/sweeps/cli.py and docs/sweeps.md). `python scripts/run_table.py --help` lists the options.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The imports below (torch, Hydra, the package) leave ~400,000 long-lived objects, and the cyclic
# collector walked them again and again while they were made (~0.5 s of a plan's CPU): it waits
# until they are made, then they are set aside for good (gc.freeze: never walked again).
gc.disable()
from dfdistill.sweeps.cli import cli, exit_code, main  # noqa: E402,F401
from dfdistill.sweeps.plan import Job, plan  # noqa: E402,F401  (run_table.plan / run_table.Job for callers)

gc.freeze()
gc.enable()

if __name__ == "__main__":
    sys.exit(cli())
