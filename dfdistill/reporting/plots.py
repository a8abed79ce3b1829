"""Figures next to the tables (matplotlib, Agg backend: works headless on clusters and in CI).

Every function takes a pandas DataFrame and a path, writes one PNG and returns the path, so the
data producers (table builder, dfdistill/pruning/analysis.py) stay free of plotting code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_vs_ratio(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Accuracy vs pruning ratio, one line per (method, pruning criterion), one panel per (dataset, IPC).

    df columns: method, pruning, ratio, dataset, ipc and either `accs` (lists, %) or `acc_mean` (%).
    Ratio-0 runs (pruning none or ratio 0) are drawn as every criterion's starting point.
    """
    d = df.copy()
    if "accs" in d:
        d["acc"] = [float(np.mean(a)) if len(a) else np.nan for a in d.accs]
    else:
        d["acc"] = d.acc_mean
    panels = list(dict.fromkeys(zip(d.dataset, d.ipc.astype(str))))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6), squeeze=False)
    criteria = sorted(c for c in d.pruning.unique() if c != "none") or ["none"]
    for ax, (ds, ipc) in zip(axes[0], panels):
        sub = d[(d.dataset == ds) & (d.ipc.astype(str) == ipc)]
        for method in sorted(sub.method.unique()):
            for crit in criteria:
                s = sub[(sub.method == method) & ((sub.pruning == crit) | (sub.ratio == 0.0))]
                g = s.groupby("ratio").acc.agg(["mean", "std"]).reset_index().sort_values("ratio")
                if g.empty:
                    continue
                ax.errorbar(g.ratio, g["mean"], yerr=g["std"].fillna(0), marker="o", capsize=3,
                            linestyle="-" if crit == "loss" else "--", label=f"{method} / {crit}")
        ax.set_xlabel("pruning ratio (fraction dropped per class)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}, IPC {ipc}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def stratified_curves(df: pd.DataFrame, path: str | Path, value: str = "acc", group: str = "setting",
                      ylabel: str = "distillation accuracy (%)", title: str = "") -> Path:
    """BiLP Fig. 3: a value per loss stratum (S1 = largest loss ... S10), one line per `group`.

    df columns: stratum (int, 1-based), `value`, and optionally `group` (e.g. 'trials=5, epochs=10')
    and `<value>_std`.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    groups = df.groupby(group) if group in df else [("", df)]
    for name, g in groups:
        g = g.sort_values("stratum")
        err = g[f"{value}_std"] if f"{value}_std" in g else None
        ax.errorbar(g.stratum, g[value], yerr=err, marker="o", capsize=2, label=str(name) if name != "" else None)
    ax.set_xlabel("stratum (S1 = largest loss)")
    ax.set_xticks(sorted(df.stratum.unique()))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if group in df:
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def diversity_curves(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """BiLP Fig. 4: diversity (intra-class / inter-class variance) per loss stratum, one line per dataset.

    df columns: dataset, stratum, diversity.
    """
    return stratified_curves(df, path, value="diversity", group="dataset",
                             ylabel="diversity (intra / inter-class var.)", title=title or "Diversity per loss stratum")


def image_grid_sheet(items: list[tuple[str, str | Path]], path: str | Path, cols: int = 4) -> Optional[Path]:
    """One sheet of synthetic-image grids, one panel per table cell: items = [(caption, png path)]."""
    items = [(c, Path(p)) for c, p in items if Path(p).exists()]
    if not items:
        return None
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, min(cols, len(items)), figsize=(3.2 * min(cols, len(items)), 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, p) in zip(axes.flat, items):
        ax.imshow(plt.imread(str(p)))
        ax.set_title(caption, fontsize=8)
    return _save(fig, path)
