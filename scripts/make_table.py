#!/usr/bin/env python
"""Build a paper-style table from every results.jsonl under a folder.

  python scripts/make_table.py results/sweeps/bilp_tab4/cpu --exp bilp_tab4 --out results/measured --name bilp_tab4_cpu
Writes <name>.md, <name>.tex, <name>.csv (+ <name>.png for the papers' figures, grids/, plots).
--wandb also logs a wandb.Table (offline). Layouts: dfdistill/reporting/layouts.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfdistill.reporting.build import build_table  # noqa: E402
from dfdistill.reporting.layouts import SPECS  # noqa: E402
from dfdistill.reporting.paper import PAPER_CSV  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--exp", default=None, help=f"table layout (default: inferred); one of {sorted(SPECS)}")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the input folder)")
    ap.add_argument("--name", default=None, help="file stem (default: the exp name)")
    ap.add_argument("--paper-csv", type=Path, default=PAPER_CSV)
    ap.add_argument("--paper-dataset", default=None, help="compare with this paper dataset column")
    ap.add_argument("--wandb", action="store_true", help="also log a wandb.Table")
    a = ap.parse_args(argv)
    if not a.folder.exists():
        print(f"error: {a.folder} does not exist", file=sys.stderr)
        return 2
    t = build_table(a.folder, exp=a.exp, out_dir=a.out, paper_csv=a.paper_csv, paper_dataset=a.paper_dataset,
                    name=a.name, wandb_log=a.wandb)
    print(f"{len(t['records'])} runs, {len(t['cells'])} cells -> {t['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
