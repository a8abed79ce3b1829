"""A table's cells as a wandb.Table (wandb is imported only here, i.e. only when asked for)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def log_table(frame: pd.DataFrame, exp: str, out_dir: Path, project: str = "dfdistill", mode: str = "offline") -> None:
    """Log one line per cell under `table/<exp>` in an offline run written below `out_dir`."""
    import wandb  # local: the optional W&B client loads only when a table is logged

    run = wandb.init(project=project, mode=mode, dir=str(out_dir), name=f"table-{exp}", job_type="table",
                     reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"))
    run.log({f"table/{exp}": wandb.Table(dataframe=frame.drop(columns=["output_dir"], errors="ignore").astype(str))})
    run.finish()
