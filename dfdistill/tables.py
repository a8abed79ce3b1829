"""Paper-style tables from a folder of finished runs, with the paper's numbers side by side.

Why: every job writes one results.jsonl line (the source of truth); a table is a pure function of
those lines plus `results/paper/paper_tables.csv`, so it can be rebuilt any time, from any folder
(a Hydra sweep dir, a copy from a cluster), by `scripts/make_table.py` or the multirun callback.

Layout: rows = method (+ pruning), columns = dataset / IPC, as in the papers. Each cell holds our
mean ± std over every evaluated network of the cell's runs (n of them, in %), the paper's value and
the delta. Timing tables add seconds/iteration, wall time and the speed-up vs the unpruned run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from dfdistill.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_CSV = REPO_ROOT / "results" / "paper" / "paper_tables.csv"
RESULTS_FILE = "results.jsonl"

METHOD_LABELS = {"random": "Random", "herding": "Herding", "kcenter": "K-Center", "dc": "DC", "dsa": "DSA",
                 "dm": "DM", "mtt": "MTT", "tesla": "TESLA", "idc": "IDC", "dfcolearn": "DF-CoLearn", "edd": "EDD"}
PRUNING_LABELS = {"random": "random pruning", "loss": "loss pruning", "ite": "ITE pruning"}
# Our dataset name -> the paper's (the JPEG folder is CIFAR-10).
DATASET_ALIASES = {"cifar10_jpeg": "cifar10"}
SHORT = {"cifar10": "C10", "cifar100": "C100", "svhn": "SVHN", "tinyimagenet": "Tiny", "imagenet1k": "IN-1K",
         "cifar10_jpeg": "C10-JPEG", "digits": "digits", "mnist": "MNIST", "kinetics400": "K400"}


@dataclass(frozen=True)
class TableSpec:
    """How one paper table is laid out. kind: accuracy | max_ratio | best_ratio | timing."""

    exp: str
    paper: str
    table: str
    title: str
    kind: str = "accuracy"
    renames: dict[str, str] = field(default_factory=dict)  # our row label -> the paper's
    ratio_in_label: bool = False  # rows split by pruning ratio (curves)

    def __post_init__(self) -> None:
        if self.kind not in ("accuracy", "max_ratio", "best_ratio", "timing"):
            raise ConfigError(f"table kind must be accuracy|max_ratio|best_ratio|timing, got {self.kind}")


SPECS: dict[str, TableSpec] = {s.exp: s for s in [
    TableSpec("quickstart", "none", "none", "Quickstart: DM, IPC 10"),
    TableSpec("bilp_tab1", "bilp", "tab1", "BiLP Table 1: max pruning ratio (%), random selection", "max_ratio"),
    TableSpec("bilp_tab2", "bilp", "tab2", "BiLP Table 2: max pruning ratio (%), empirical-loss selection", "max_ratio"),
    TableSpec("bilp_tab3", "bilp", "tab3", "BiLP Table 3: best accuracy with loss-based pruning", "best_ratio"),
    TableSpec("bilp_tab4", "bilp", "tab4", "BiLP Table 4: distillation accuracy (%)"),
    TableSpec("bilp_tab5", "bilp", "tab5", "BiLP Table 5: pruning-criteria ablation on IDC",
              renames={"IDC": "IDC (no pruning)", "IDC + loss pruning": "+preemptive", "BiLP+IDC": "BiLP (full)",
                       "BiLP+IDC [tail small]": "+preemptive +prune small ITE",
                       "BiLP+IDC [tail large]": "+preemptive +prune large ITE"}),
    TableSpec("bilp_tab6", "bilp", "tab6", "BiLP Table 6: training time per iteration", "timing",
              renames={"IDC + ITE pruning [exact, lazy 1]": "+running stats",
                       "IDC + ITE pruning [taylor, lazy 1]": "+Taylor approximation",
                       "IDC + ITE pruning [taylor, lazy 10]": "+lazy selection"}),
    TableSpec("bilp_tab7", "bilp", "tab7", "BiLP Table 7: large-scale distillation"),
    TableSpec("bilp_fig2", "bilp", "fig2", "BiLP Fig. 2: accuracy vs pruning ratio, random vs loss", ratio_in_label=True),
    TableSpec("bilp_fig3", "bilp", "fig3", "BiLP Fig. 3: stratified distillation (DC, IPC 1)", ratio_in_label=True),
    TableSpec("bilp_fig4", "bilp", "fig4", "BiLP Fig. 4: diversity per loss stratum"),
    TableSpec("dfcolearn_tab1", "dfcolearn", "tab1", "DF-CoLearn Table 1: top-1 accuracy (%), ConvNet",
              renames={"DSA": "DC+DSA"}),
    TableSpec("dfcolearn_tab2", "dfcolearn", "tab2", "DF-CoLearn Table 2: component ablation (CIFAR-10, IPC 10)",
              renames={"DF-CoLearn [random]": "Baseline A: random selection",
                       "DF-CoLearn [filter_only]": "Baseline B: filtering only",
                       "DF-CoLearn [distill_only]": "Baseline C: distillation only",
                       "DF-CoLearn [filter_then_distill]": "Variant D: filter then distill",
                       "DF-CoLearn [full]": "DF-CoLearn: full loop"}),
    TableSpec("edd_tinyimagenet", "edd", "text", "EDD: Tiny-ImageNet, IPC 50"),
]}


def spec_for(name: Optional[str]) -> TableSpec:
    """The layout for an exp name; an unknown name gets a generic accuracy table (no paper column)."""
    if name and name in SPECS:
        return SPECS[name]
    return TableSpec(name or "runs", "none", "none", f"Runs: {name or 'all'}")


# ---------------------------------------------------------------------------------------------- #
# collecting
# ---------------------------------------------------------------------------------------------- #
def collect(folder: str | Path) -> list[dict[str, Any]]:
    """Every record of every results.jsonl under `folder` (the last line per file = the run)."""
    recs = []
    for path in sorted(Path(folder).rglob(RESULTS_FILE)):
        lines = [l for l in path.read_text().splitlines() if l.strip()]
        if lines:
            rec = json.loads(lines[-1])
            rec.setdefault("output_dir", str(path.parent))
            recs.append(rec)
    return recs


def infer_exp(folder: str | Path, records: list[dict]) -> Optional[str]:
    """The exp name from the job dirs (`+exp=NAME` in Hydra's override dirname) or the folder path."""
    for rec in records:
        for part in Path(rec.get("output_dir", "")).name.split(","):
            if part.startswith("+exp="):
                return part.split("=", 1)[1]
    for part in reversed(Path(folder).resolve().parts):
        if part in SPECS:
            return part
    return None


def row_label(rec: dict, spec: TableSpec) -> str:
    """Our label for a run: method (+ pruning), mapped to the paper's name through spec.renames."""
    method = rec["method"]
    base = METHOD_LABELS.get(method, method)
    variant = (rec.get("config") or {}).get("method", {}).get("variant")
    if variant is not None:
        base = f"{base} [{variant}]"
    pruning = rec.get("pruning", "none")
    if spec.kind in ("max_ratio", "best_ratio") or pruning == "none":
        label = base
    elif pruning == "bilp":
        label = f"BiLP+{base}"
    else:
        label = f"{base} + {PRUNING_LABELS.get(pruning, pruning)}"
    adaptive = ((rec.get("config") or {}).get("pruning") or {}).get("adaptive") or {}
    if spec.kind == "timing" and adaptive:
        label = f"{label} [{adaptive.get('mode')}, lazy {adaptive.get('lazy_every')}]"
    elif adaptive.get("tail", "both") != "both":
        label = f"{label} [tail {adaptive['tail']}]"
    if spec.ratio_in_label and pruning != "none":
        label = f"{label} {float(rec.get('pruning_ratio', 0.0)):g}"
    return spec.renames.get(label, label)


def records_frame(records: list[dict], spec: TableSpec) -> pd.DataFrame:
    rows = []
    for r in records:
        cfg = r.get("config") or {}
        rows.append({
            "row": row_label(r, spec), "dataset": r["dataset"], "ipc": str(r["ipc"]), "method": r["method"],
            "pruning": r.get("pruning", "none"), "ratio": float(r.get("pruning_ratio", 0.0)), "seed": r.get("seed"),
            "accs": [100.0 * a for a in r.get("accs", [])], "acc_mean": 100.0 * r.get("acc_mean", math.nan),
            "sec_per_iter": r.get("sec_per_iter"), "wall_seconds": r.get("wall_seconds"),
            "iterations": r.get("iterations"), "profile": r.get("profile"), "device": r.get("device_name") or r.get("device"),
            "code_version": r.get("code_version"), "root": (cfg.get("dataset") or {}).get("root"),
            "output_dir": r.get("output_dir"),
        })
    return pd.DataFrame(rows)


def load_paper(csv: str | Path = PAPER_CSV) -> pd.DataFrame:
    df = pd.read_csv(csv, dtype={"ipc": str})
    return df


def _pool(accs: list[list[float]]) -> tuple[float, float, int]:
    """Mean and population std over every evaluated network of the cell (same formula as the runs)."""
    flat = [a for lst in accs for a in lst]
    n = len(flat)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(flat) / n
    sd = math.sqrt(sum((a - m) ** 2 for a in flat) / n) if n > 1 else 0.0
    return m, sd, n


def paper_dataset_for(ds: str, spec: TableSpec, paper: pd.DataFrame, override: Optional[str] = None) -> str:
    """Which paper column a measured dataset is compared with (a stand-in maps to the table's first)."""
    if override:
        return override
    name = DATASET_ALIASES.get(ds, ds)
    mine = paper[(paper.paper == spec.paper) & (paper.table == spec.table)]
    if mine.empty or name in set(mine.dataset):
        return name
    return str(mine.dataset.iloc[0])


# ---------------------------------------------------------------------------------------------- #
# cells
# ---------------------------------------------------------------------------------------------- #
def build_cells(records: list[dict], spec: TableSpec, paper: Optional[pd.DataFrame] = None,
                paper_dataset: Optional[str] = None) -> pd.DataFrame:
    """One row per (row label, dataset, IPC) with ours, the paper's value and the delta."""
    paper = load_paper() if paper is None else paper
    df = records_frame(records, spec)
    cols = ["row", "dataset", "paper_dataset", "ipc", "ours_mean", "ours_std", "n", "runs", "paper", "paper_std",
            "delta", "sec_per_iter", "wall_seconds", "speedup", "extra", "output_dir"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (row, ds, ipc), g in df.groupby(["row", "dataset", "ipc"], sort=False):
        pds = paper_dataset_for(ds, spec, paper, paper_dataset)
        extra = ""
        if spec.kind in ("max_ratio", "best_ratio"):
            means, extra = _ratio_cell(g, spec.kind)
            m, sd, n = means
        elif spec.kind == "timing":  # ours = seconds per iteration over the cell's runs
            m, sd, n = _pool([[float(v)] for v in pd.to_numeric(g.sec_per_iter, errors="coerce").dropna()])
        else:
            m, sd, n = _pool(list(g.accs))
        base = df[(df.method == g.method.iloc[0]) & (df.dataset == ds) & (df.ipc == ipc) & (df.pruning == "none")]
        spi = _mean(g.sec_per_iter)
        wall = _mean(g.wall_seconds)
        base_wall = _mean(base.wall_seconds) if not base.empty else math.nan
        p = paper[(paper.paper == spec.paper) & (paper.table == spec.table) & (paper.dataset == pds)
                  & (paper.ipc == ipc) & (paper.method == row)]
        pv = float(p.value.iloc[0]) if len(p) else math.nan
        ps = float(p["std"].iloc[0]) if len(p) else math.nan
        out.append({"row": row, "dataset": ds, "paper_dataset": pds, "ipc": ipc, "ours_mean": m, "ours_std": sd,
                    "n": n, "runs": len(g), "paper": pv, "paper_std": ps, "delta": m - pv,
                    "sec_per_iter": spi, "wall_seconds": wall,
                    "speedup": base_wall / wall if wall and not math.isnan(base_wall) else math.nan,
                    "extra": extra, "output_dir": g.output_dir.iloc[0]})
    cells = _add_paper_rows(pd.DataFrame(out, columns=cols), spec, paper)
    return _paper_order(cells, spec, paper)


def _paper_order(cells: pd.DataFrame, spec: TableSpec, paper: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's order; our extra rows (pruned variants) right after their base method."""
    if cells.empty:
        return cells
    names = list(dict.fromkeys(paper[(paper.paper == spec.paper) & (paper.table == spec.table)].method))
    rank = {m: float(i) for i, m in enumerate(names)}

    def key(row: str) -> float:
        if row in rank:
            return rank[row]
        base = row.split(" + ")[0].split(" [")[0].removeprefix("BiLP+")
        return rank.get(base, len(rank)) + 0.5

    order = sorted(range(len(cells)), key=lambda i: (key(cells.row.iloc[i]), cells.row.iloc[i], i))
    return cells.iloc[order].reset_index(drop=True)


def _mean(s: pd.Series) -> float:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def _ratio_cell(g: pd.DataFrame, kind: str) -> tuple[tuple[float, float, int], str]:
    """max_ratio: largest pruning ratio (%) whose accuracy stays >= unpruned mean - its std.
    best_ratio: the best accuracy over ratios (and its gain over ratio 0)."""
    by = {r: _pool(list(gg.accs)) for r, gg in g.groupby("ratio")}
    if not by:
        return (math.nan, math.nan, 0), ""
    if kind == "best_ratio":
        r_best = max(by, key=lambda r: by[r][0])
        m, sd, n = by[r_best]
        gain = m - by[0.0][0] if 0.0 in by else math.nan
        return (m, sd, n), f"ratio {r_best:g}, gain vs unpruned {gain:+.1f}"
    if 0.0 not in by:
        return (math.nan, math.nan, 0), "no unpruned (ratio 0) run"
    m0, s0, _ = by[0.0]
    ok = [r for r, (m, _, _) in by.items() if m >= m0 - s0]
    best = max(ok)
    return (100.0 * best, 0.0, len(by)), f"unpruned {m0:.1f}±{s0:.1f}; ratios tried {sorted(by)}"


def _add_paper_rows(cells: pd.DataFrame, spec: TableSpec, paper: pd.DataFrame) -> pd.DataFrame:
    """Paper-only rows (methods we did not run) for the measured columns, so the table reads like the paper's."""
    if spec.paper == "none" or cells.empty:
        return cells
    extra = []
    cols = cells[["dataset", "paper_dataset", "ipc"]].drop_duplicates()
    for _, c in cols.iterrows():
        p = paper[(paper.paper == spec.paper) & (paper.table == spec.table) & (paper.dataset == c.paper_dataset)
                  & (paper.ipc == c.ipc)]
        have = set(cells[(cells.dataset == c.dataset) & (cells.ipc == c.ipc)].row)
        for _, pr in p.iterrows():
            if pr.method not in have:
                have.add(pr.method)
                extra.append({"row": pr.method, "dataset": c.dataset, "paper_dataset": c.paper_dataset, "ipc": c.ipc,
                              "ours_mean": math.nan, "ours_std": math.nan, "n": 0, "runs": 0,
                              "paper": pr.value, "paper_std": pr["std"], "delta": math.nan})
    if not extra:
        return cells
    return pd.concat([cells, pd.DataFrame(extra)], ignore_index=True)


# ---------------------------------------------------------------------------------------------- #
# rendering
# ---------------------------------------------------------------------------------------------- #
def _f(x: Any, fmt: str = ".1f") -> str:
    try:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "—"
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def ours_text(c: pd.Series, fmt: str = ".1f") -> str:
    if not c.n:
        return "—"
    return f"{c.ours_mean:{fmt}} ± {c.ours_std:{fmt}} (n={int(c.n)})"


def header_info(records: list[dict], folder: str | Path) -> dict[str, str]:
    def uniq(key, sub=None):
        vals = []
        for r in records:
            v = ((r.get("config") or {}).get(sub) or {}).get(key) if sub else r.get(key)
            if v is not None and str(v) not in vals:
                vals.append(str(v))
        return ", ".join(vals) or "—"

    parts = [set(Path(r.get("output_dir", "")).name.split(",")) for r in records]
    common = sorted(set.intersection(*parts)) if parts else []
    common = [c for c in common if "=" in c]
    return {"profile": uniq("profile"), "device": uniq("device_name"), "dataset": uniq("dataset"),
            "dataset path": uniq("root", "dataset"), "code version": uniq("code_version"),
            "overrides shared by all runs": " ".join(f"`{c}`" for c in common) or "—",
            "runs": str(len(records)), "folder": str(folder), "generated": time.strftime("%Y-%m-%d %H:%M:%S")}


def _col_name(ds: str, ipc: str) -> str:
    return f"{SHORT.get(ds, ds)} IPC {ipc}"


def wide_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """The paper layout: rows = method, columns = dataset/IPC, cell = 'ours / paper (Δ)'."""
    if cells.empty:
        return pd.DataFrame()
    c = cells.copy()
    c["col"] = [_col_name(d, i) for d, i in zip(c.dataset, c.ipc)]
    c["text"] = [f"{_f(o)} / {_f(p)} ({_f(d, '+.1f')})" for o, p, d in zip(c.ours_mean, c.paper, c.delta)]
    order_cols = list(dict.fromkeys(c.col))
    order_rows = list(dict.fromkeys(c.row))
    wide = c.pivot_table(index="row", columns="col", values="text", aggfunc="first").reindex(index=order_rows, columns=order_cols)
    return wide.fillna("")


def detail_frame(cells: pd.DataFrame, spec: TableSpec, grids: dict[int, str]) -> pd.DataFrame:
    rows = []
    for i, c in cells.iterrows():
        d = {"method": c.row, "dataset": c.dataset, "IPC": c.ipc,
             "paper": _f(c.paper, ".2f" if spec.kind == "timing" else ".1f") + ("" if _nan(c.paper_std) else f" ± {c.paper_std:.1f}"),
             "ours (mean ± std, n)": ours_text(c, ".3f" if spec.kind == "timing" else ".1f"), "Δ": _f(c.delta, "+.1f")}
        if spec.kind == "timing" or spec.kind == "accuracy":
            d["s/iter"] = _f(c.sec_per_iter, ".3f")
            d["wall s"] = _f(c.wall_seconds, ".0f")
        if spec.kind == "timing":
            d["speed-up vs unpruned"] = _f(c.speedup, ".2f")
        if spec.kind in ("max_ratio", "best_ratio"):
            d["note"] = c.extra if isinstance(c.extra, str) else ""
        d["grid"] = f"![]({grids[i]})" if i in grids else ""
        rows.append(d)
    return pd.DataFrame(rows)


def _nan(x: Any) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def to_markdown(df: pd.DataFrame, index: bool = False) -> str:
    if df.empty:
        return "_(no runs)_\n"
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for idx, row in df.iterrows():
        vals = ([str(idx)] if index else []) + [str(v).replace("|", "\\|") for v in row.tolist()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str, index: bool = False) -> str:
    def esc(s: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("—", "--")):
            s = s.replace(a, b)
        return s

    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    out = [r"\begin{table}[t]", r"\centering", f"\\caption{{{esc(caption)}}}",
           r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(esc(c) for c in cols) + r" \\", r"\midrule"]
    for idx, row in df.iterrows():
        vals = ([str(idx)] if index else []) + [str(v) for v in row.tolist()]
        out.append(" & ".join(esc(v) for v in vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def copy_grids(cells: pd.DataFrame, out_dir: Path, table: str) -> dict[int, str]:
    """Copy each measured cell's synthetic.png to grids/<table>/ next to the table; return {cell index:
    relative path}. Per-table folders: tables sharing an --out (results/measured) have cells of the same
    name (e.g. DC at IPC 1) that must not overwrite each other's picture."""
    grids = {}
    for i, c in cells.iterrows():
        src = Path(str(c.get("output_dir") or "")) / "synthetic.png"
        if isinstance(c.get("output_dir"), str) and src.exists():
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{c.row}_{c.dataset}_ipc{c.ipc}") + ".png"
            dst = out_dir / "grids" / table / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            grids[i] = f"grids/{table}/{name}"
    return grids


def render(cells: pd.DataFrame, spec: TableSpec, info: dict[str, str], grids: dict[int, str]) -> tuple[str, str]:
    wide, detail = wide_frame(cells), detail_frame(cells, spec, grids)
    stand_in = sorted({f"{d} → paper {p}" for d, p in zip(cells.dataset, cells.paper_dataset)
                       if isinstance(p, str) and DATASET_ALIASES.get(d, d) != p})
    md = [f"# {spec.title}", ""]
    md += [f"- **{k}**: {v}" for k, v in info.items()]
    if stand_in:
        md.append(f"- **stand-in dataset** (paper column from another dataset): {'; '.join(stand_in)}")
    if any(p != "full" for p in info["profile"].split(", ")):
        md.append("- Reduced profile: sizes/iterations are scaled down, so absolute numbers are NOT comparable to the "
                  "paper's; full-scale numbers need a GPU and `profile=full`.")
    unit = "max pruning ratio (%)" if spec.kind == "max_ratio" else ("s/iter" if spec.kind == "timing" else "top-1 accuracy (%)")
    md += ["", f"## Paper layout: ours / paper (Δ), {unit}", "", to_markdown(wide, index=True),
           "## Detail", "", to_markdown(detail)]
    tex = to_latex(wide, f"{spec.title} -- ours / paper (delta)", index=True) + "\n" + to_latex(
        detail.drop(columns=["grid"], errors="ignore"), f"{spec.title} -- detail")
    return "\n".join(md), tex


# ---------------------------------------------------------------------------------------------- #
# entry point
# ---------------------------------------------------------------------------------------------- #
def build_table(folder: str | Path, exp: Optional[str] = None, out_dir: Optional[str | Path] = None,
                paper_csv: str | Path = PAPER_CSV, paper_dataset: Optional[str] = None, name: Optional[str] = None,
                wandb_log: bool = False, plots: bool = True) -> dict[str, Any]:
    """Collect `folder`'s runs and write <name>.md / .tex / .csv (+ grids, plots) into `out_dir`."""
    folder = Path(folder)
    records = collect(folder)
    exp = exp or infer_exp(folder, records)
    spec = spec_for(exp)
    paper = load_paper(paper_csv)
    cells = build_cells(records, spec, paper, paper_dataset)
    out = Path(out_dir) if out_dir else folder
    out.mkdir(parents=True, exist_ok=True)
    name = name or spec.exp
    info = header_info(records, folder)
    paths: dict[str, Path] = {"markdown": out / f"{name}.md", "latex": out / f"{name}.tex", "csv": out / f"{name}.csv"}
    grids = copy_grids(cells, out, name)
    md, tex = render(cells, spec, info, grids)
    if grids and plots:
        from dfdistill.reporting import plots as P

        sheet = P.image_grid_sheet([(f"{cells.loc[i, 'row']} / {cells.loc[i, 'dataset']} IPC {cells.loc[i, 'ipc']}",
                                     out / g) for i, g in grids.items()], out / f"{name}_grids.png")
        if sheet is not None:
            paths["grids"] = sheet
            md += f"\n## Synthetic images per cell\n\n![synthetic image grids]({sheet.name})\n"
    if plots and records:
        from dfdistill.reporting import plots as P

        df = records_frame(records, spec)
        if df.ratio.nunique() > 1:
            paths["plot"] = P.accuracy_vs_ratio(df, out / f"{name}_acc_vs_ratio.png", title=spec.title)
            md += f"\n![accuracy vs pruning ratio]({paths['plot'].name})\n"
    paths["markdown"].write_text(md)
    paths["latex"].write_text(tex)
    cells.drop(columns=["extra"]).to_csv(paths["csv"], index=False)
    if wandb_log:
        log_wandb(cells, spec, out)
    return {"cells": cells, "spec": spec, "records": records, **paths}


def log_wandb(cells: pd.DataFrame, spec: TableSpec, out_dir: Path, project: str = "dfdistill", mode: str = "offline") -> None:
    """Log the cells as a wandb.Table (wandb imported only here, i.e. only when logger=wandb)."""
    import wandb

    run = wandb.init(project=project, mode=mode, dir=str(out_dir), name=f"table-{spec.exp}", job_type="table",
                     reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"))
    run.log({f"table/{spec.exp}": wandb.Table(dataframe=cells.drop(columns=["extra", "output_dir"]).astype(str))})
    run.finish()
