"""Build a paper table (or figure) from a folder of finished runs: collect -> grid -> render -> files.

Writes <name>.md, <name>.tex and <name>.csv (one line per cell) into `out_dir`, plus, where the
paper's table is a figure, <name>.png next to that CSV (Fig. 2 arrows, Fig. 3 strata curves, Fig. 4
diversity curves); ratio sweeps also get <name>_acc_vs_ratio.png and measured cells link their
synthetic-image grids. Called by scripts/make_table.py, scripts/run_table.py and the multirun
callback; a table is a pure function of the folder's results.jsonl and the paper CSV.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from dfdistill.reporting.cells import DEFAULT_RULE
from dfdistill.reporting.collect import collect, collect_diversity, infer_exp, records_frame
from dfdistill.reporting.grids import Grid, build_grid, grid_frame
from dfdistill.reporting.layouts import SPECS, Layout, spec_for
from dfdistill.reporting.paper import PAPER_CSV, load_paper
from dfdistill.reporting.render import header_info, render
from dfdistill.reporting.wandb_table import log_table


def build_table(folder: str | Path, exp: Optional[str] = None, out_dir: Optional[str | Path] = None,
                paper_csv: str | Path = PAPER_CSV, paper_dataset: Optional[str] = None, name: Optional[str] = None,
                wandb_log: bool = False, plots: bool = True, extra_plots: bool = True, rule: Optional[str] = None,
                command: Optional[str] = None, skipped: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Collect `folder`'s runs and write the table files; returns {'grid', 'spec', 'records', paths...}.

    plots: the paper's figure (figure layouts); extra_plots: accuracy-vs-ratio curves and the sheet of
    synthetic-image grids as well. rule: the max-ratio keep rule (default: the one the folder's search
    recorded in search.json, else cells.DEFAULT_RULE). command: what the header names (default: this
    process's command line)."""
    folder = Path(folder)
    records = collect(folder)
    exp = exp or infer_exp(folder, records, SPECS)
    layout = replace(spec_for(exp), rule=rule or recorded_rule(folder))
    source = collect_diversity(folder) if layout.kind == "diversity" else records
    grid = build_grid(layout, source, load_paper(paper_csv), paper_dataset)
    out = Path(out_dir) if out_dir else folder
    out.mkdir(parents=True, exist_ok=True)
    name = name or layout.exp
    paths: dict[str, Path] = {"markdown": out / f"{name}.md", "latex": out / f"{name}.tex", "csv": out / f"{name}.csv"}
    images = copy_grids(grid, out, name)
    md, tex = render(grid, header_info(source, folder, command), images)
    md += skipped_section(skipped or {})
    if plots:
        md += _figures(grid, layout, records if extra_plots else [], out, name, images if extra_plots else {}, paths)
    paths["markdown"].write_text(md)
    paths["latex"].write_text(tex)
    frame = grid_frame(grid)
    frame.to_csv(paths["csv"], index=False)
    if wandb_log:

        log_table(frame, layout.exp, out)
    return {"grid": grid, "cells": frame, "spec": layout, "records": records, **paths}


def recorded_rule(folder: Path) -> str:
    """The keep rule a max-ratio search in `folder` used (search.json), else the default."""
    path = folder / "search.json"
    if path.is_file():
        try:
            return str(json.loads(path.read_text()).get("rule") or DEFAULT_RULE)
        except (OSError, ValueError):
            pass
    return DEFAULT_RULE


def skipped_section(skipped: dict[str, str]) -> str:
    """The jobs a sweep skipped before launch (too few real images per class at this size): their cells
    read — above because they were not run, not because they failed."""
    if not skipped:
        return ""
    rows = "".join(f"| {job} | {why} |\n" for job, why in sorted(skipped.items()))
    return ("\n## Skipped before launch\n\nThese jobs cannot run at this data size, so their cells are empty:\n\n"
            "| job | why |\n|---|---|\n" + rows)


NO_IMAGES = ("max_ratio", "arrows", "timing", "diversity")  # cells that summarise many runs


def copy_grids(grid: Grid, out_dir: Path, table: str) -> dict[int, str]:
    """Copy each measured cell's synthetic.png to grids/<table>/ next to the table; {cell index: link}.

    Per-table folders: tables sharing an output folder have cells of the same name (DC at IPC 1)
    that must not overwrite each other's picture.
    """
    images: dict[int, str] = {}
    if grid.layout.kind in NO_IMAGES:
        return images
    done: dict[Path, str] = {}  # a run feeding several cells (Table 7's row, the full-data span) is copied once
    for i, c in enumerate(grid.all_cells()):
        src = Path(c.runs[0]) / "synthetic.png" if c.runs else None
        if src is not None and src in done:
            images[i] = done[src]
        elif src is not None and src.exists():
            stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{c.row}_{c.col}_{c.dataset}")
            dst = out_dir / "grids" / table / f"{stem}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            images[i] = done[src] = f"grids/{table}/{stem}.png"
    return images


def _figures(grid: Grid, layout: Layout, records: list[dict], out: Path, name: str, images: dict[int, str],
             paths: dict[str, Path]) -> str:
    """The paper's figure (PNG next to the CSV), the accuracy-vs-ratio curves and the image sheet."""
    # matplotlib (~0.6 s to import) only where a figure is drawn: `run_table --plan` imports this module
    from dfdistill.reporting import plots as P

    md = ""
    data = figure_data(grid)
    if data is not None and not data.empty:
        png = out / f"{name}.png"
        if layout.kind == "arrows":
            P.max_ratio_arrows(data, png, title=layout.title)
        elif layout.kind == "strata":
            P.stratified_curves(data, png, title=layout.title)
        else:
            P.diversity_curves(data, png, title=layout.title)
        paths["figure"] = png
        md += f"\n## Figure (data: [{name}.csv]({name}.csv))\n\n![{layout.title}]({png.name})\n"
    if records and layout.kind in ("max_ratio", "best_ratio", "arrows", "accuracy"):
        df = records_frame(records)
        if df.ratio.nunique() > 1:
            paths["plot"] = P.accuracy_vs_ratio(df, out / f"{name}_acc_vs_ratio.png", title=layout.title)
            md += f"\n![accuracy vs pruning ratio]({paths['plot'].name})\n"
    cells = grid.all_cells()
    if images:
        first: dict[str, int] = {}
        for i, g in images.items():  # one panel per picture, in table order
            first.setdefault(g, i)
        sheet = P.image_grid_sheet([(f"{cells[i].row} / {cells[i].col}", out / g) for g, i in first.items()],
                                   out / f"{name}_grids.png")
        if sheet is not None:
            paths["grids"] = sheet
            md += f"\n## Synthetic images per cell\n\n![synthetic image grids]({sheet.name})\n"
    return md


def figure_data(grid: Grid) -> Optional[pd.DataFrame]:
    """The figure's data from the grid (ours; the paper's where it has numbers), None for tables."""
    kind = grid.layout.kind
    cells = [c for c in grid.all_cells() if c.runs or (c.paper is not None and c.paper.value is not None)]
    if kind == "arrows":
        rows: dict[str, dict[str, Any]] = {}
        for c in cells:
            head, method = c.row.rsplit(": ", 1)
            ds, ipc = head.rsplit(" IPC ", 1)
            key = "random" if c.col.startswith("random") else "loss"
            r = rows.setdefault(c.row, {"dataset": ds, "ipc": ipc, "method": method})
            r[key] = None if c.ours.empty else c.ours.mean
            r[f"paper_{key}"] = None if c.paper is None else c.paper.value
        return pd.DataFrame(list(rows.values()))
    if kind in ("strata", "diversity"):
        value, group = ("acc", "setting") if kind == "strata" else ("diversity", "dataset")
        return pd.DataFrame([{group: c.row, "stratum": int(c.col[1:]), value: c.ours.mean,
                              f"{value}_std": math.nan if c.ours.std is None else c.ours.std}
                             for c in cells if not c.ours.empty])
    return None
