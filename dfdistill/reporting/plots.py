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


def max_ratio_arrows(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """BiLP Fig. 2: per (method, IPC) an arrow from the max ratio under random selection to the one
    under empirical-loss selection; green when loss selection is at least as good, red otherwise.

    df columns: dataset, ipc, method, random, loss (ours, %) and optionally paper_random, paper_loss
    (drawn faded, right of ours). One panel per dataset.
    """
    panels = list(dict.fromkeys(df.dataset)) or [""]
    width = max(5.0, 0.55 * (df.groupby("dataset").size().max() if len(df) else 1) + 1.5)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 2.8 * len(panels)), squeeze=False)
    for ax, ds in zip(axes[:, 0], panels):
        sub = df[df.dataset == ds].reset_index(drop=True)
        for i, r in sub.iterrows():
            for dx, a, b, paper in ((-0.12, r.get("random"), r.get("loss"), False),
                                    (0.12, r.get("paper_random"), r.get("paper_loss"), True)):
                if a is None or b is None or pd.isna(a) or pd.isna(b):
                    continue
                colour = "tab:green" if b >= a else "tab:red"
                alpha = 0.35 if paper else 1.0
                ax.annotate("", xy=(i + dx, b), xytext=(i + dx, a),
                            arrowprops=dict(arrowstyle="-|>", color=colour, alpha=alpha, lw=1.2 if paper else 2.0))
                ax.plot([i + dx], [a], "o", color=colour, alpha=alpha, ms=3)
        ax.set_xticks(range(len(sub)))
        ax.set_xticklabels([f"{m}\nIPC {k}" for m, k in zip(sub.method, sub.ipc)], fontsize=7)
        ax.set_xlim(-0.6, max(len(sub), 1) - 0.4)
        ax.set_ylim(0, 102)
        ax.set_ylabel("max pruning ratio (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].plot([], [], color="tab:green", lw=2, label="ours (left): loss >= random")
    axes[0][0].plot([], [], color="tab:red", lw=2, label="ours (left): loss < random")
    axes[0][0].plot([], [], color="tab:green", alpha=0.35, lw=1.2, label="paper (right)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def stratified_curves(df: pd.DataFrame, path: str | Path, value: str = "acc", group: str = "setting",
                      ylabel: str = "distillation accuracy (%)", title: str = "") -> Path:
    """BiLP Fig. 3 / Fig. 4: a value per loss stratum (S1 = largest loss ... S10), one curve per `group`.

    df columns: stratum (int, 1-based), `value`, `group` and optionally `<value>_std`.
    """
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for name, g in df.groupby(group, sort=False):
        g = g.sort_values("stratum")
        err = g[f"{value}_std"].fillna(0.0) if f"{value}_std" in g else None
        ax.errorbar(g.stratum, g[value], yerr=err, marker="o", ms=3, capsize=2, label=str(name))
    ax.set_xlabel("stratum (S1 = largest loss)")
    ks = sorted(df.stratum.unique()) if len(df) else []
    ax.set_xticks(ks)
    ax.set_xticklabels([f"S{k}" for k in ks])
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def diversity_curves(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """BiLP Fig. 4: diversity (intra-class / inter-class variance) per loss stratum, one curve per dataset.

    df columns: dataset, stratum, diversity.
    """
    return stratified_curves(df, path, value="diversity", group="dataset",
                             ylabel="diversity (intra / inter-class var.)", title=title or "Diversity per loss stratum")


def segment_similarity(summary: pd.DataFrame, matrix: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """EDD Fig. 1: mean cosine similarity of the synthetic images' update signals (final - init) within
    a class, per method (bars), and for EDD between its segments (heatmap).

    summary columns: method, cosine; matrix: square DataFrame (segment x segment).
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4))
    axes[0].bar(summary.method, summary.cosine, color=["tab:blue", "tab:orange", "tab:green"][: len(summary)])
    axes[0].set_ylabel("mean cosine similarity")
    axes[0].set_title("update signals within a class", fontsize=9)
    axes[0].grid(alpha=0.3, axis="y")
    im = axes[1].imshow(matrix.values, cmap="viridis", vmin=-1, vmax=1)
    axes[1].set_xticks(range(len(matrix.columns)))
    axes[1].set_xticklabels(matrix.columns)
    axes[1].set_yticks(range(len(matrix.index)))
    axes[1].set_yticklabels(matrix.index)
    for (i, j), v in np.ndenumerate(matrix.values):
        axes[1].text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=7)
    axes[1].set_title("EDD: between segments", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def tsne_scatter(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """EDD Fig. 2: t-SNE of real images and synthetic sets (EDD by segment, the base method).

    df columns: x, y, source ('real', 'EDD S1', ..., base name).
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for src, g in df.groupby("source", sort=False):
        real = src == "real"
        ax.scatter(g.x, g.y, s=10 if real else 26, alpha=0.5 if real else 0.9, marker="o",
                   color="0.6" if real else None, label=src, edgecolors="none")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=1.5)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


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
