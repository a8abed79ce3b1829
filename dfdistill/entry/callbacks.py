"""Hydra callback: build the table of a multirun when the sweep ends.

Registered by every conf/exp/<table>.yaml under `hydra.callbacks.table`, so
`python run.py -m +exp=bilp_tab4 ...` leaves `<sweep dir>/bilp_tab4.md` (+ .tex/.csv, grids, plots)
behind. A table failure is reported, never raised: the runs themselves are already safe on disk.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from dfdistill.reporting.build import build_table


class TableCallback(Callback):
    def __init__(self, spec: Optional[str] = None, out_dir: Optional[str] = None) -> None:
        self.spec = spec
        self.out_dir = out_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        use_wandb = config.get("logger", {}).get("name") == "wandb"
        try:
            t = build_table(sweep_dir, exp=self.spec, out_dir=self.out_dir or sweep_dir, wandb_log=use_wandb)
            print(f"[dfdistill] table: {t['markdown']}")
        except Exception as exc:  # never lose a finished sweep to a reporting bug
            print(f"[dfdistill] building the table for {sweep_dir} failed: {exc}; "
                  f"rerun scripts/make_table.py {sweep_dir}", file=sys.stderr)
