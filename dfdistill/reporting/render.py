"""A Grid as markdown and LaTeX: the paper-shaped table, the runs outside it, and the detail.

Cell text: "ours / paper (Δ d)", each side "mean ± std" where it has one (the paper's numbers are
printed exactly as the paper prints them; ours with the paper's number of decimals). Figures with no
paper numbers (Fig. 3, Fig. 4) show ours only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from dfdistill.reporting.cells import LARGE_SCALE_STAGES, TRAINING_STAGES, rule_text
from dfdistill.reporting.grids import Cell, Grid
from dfdistill.reporting.layouts import DATASET_ALIASES, dataset_name
from dfdistill.reporting.provenance import commit, relative, relative_text, this_command

CORNER = {"max_ratio": "dataset, IPC", "best_ratio": "dataset, IPC", "timing": "", "large_scale": "dataset, IPC: algorithm",
          "arrows": "dataset, IPC: method", "strata": "loss scores", "diversity": "dataset"}


def with_paper(grid: Grid) -> bool:
    return grid.layout.paper != "none" and grid.layout.kind not in ("strata", "diversity")


def ours_text(c: Cell) -> str:
    if c.ours.empty:
        return "—"
    t = c.prefix + f"{c.ours.mean:{c.fmt}}" + ("" if c.ours.std is None else f" ± {c.ours.std:{c.fmt}}") + c.suffix
    return f"{t} {c.ours_extra}" if c.ours_extra else t


def cell_text(c: Cell, paper: bool = True) -> str:
    """'25.2 ± 1.0 / 28.3 ± 0.5 (Δ -3.1)'; '— / 49.9 ± 0.2' where we have no run; '—' where neither."""
    ours = ours_text(c)
    if not paper:
        return ours
    ptxt = c.paper.text if c.paper is not None else "—"
    if ours == "—" and ptxt == "—":
        return "—"
    d = c.delta
    return f"{ours} / {ptxt}" + ("" if d is None else f" (Δ {d:{signed(c.fmt)}})")


def signed(fmt: str) -> str:
    """`fmt` with a sign always shown (a difference; some cells already print theirs signed)."""
    return "+" + fmt.lstrip("+")


def wide_frame(grid: Grid) -> pd.DataFrame:
    """The paper layout: the paper's rows and columns, one cell each."""
    paper = with_paper(grid)
    data = [[cell_text(grid.cells[(r, c)], paper) if (r, c) in grid.cells else "—" for c in grid.cols]
            for r in grid.rows]
    df = pd.DataFrame(data, index=pd.Index(grid.rows, name=CORNER.get(grid.layout.kind, "method")), columns=grid.cols)
    if grid.layout.row_info:  # the paper's text column before its numbers (DF-CoLearn's "Type")
        header, texts = grid.layout.row_info
        df.insert(0, header, [texts.get(r, "") for r in grid.rows])
    return df


def extra_frame(grid: Grid) -> pd.DataFrame:
    return pd.DataFrame([{"row": c.row, "column": c.col, "dataset": c.dataset, "IPC": c.ipc,
                          "ours": ours_text(c), "why apart": _why(grid, c)} for c in grid.extra])


def _why(grid: Grid, c: Cell) -> str:
    if (c.row, c.col) in grid.cells:
        return "its paper cell holds a run on the paper's own dataset/IPC"
    return "no such row/column in the paper"


def _num(x: Any, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int, float)):
        return format(x, fmt)
    return str(x)


def detail_frame(grid: Grid, images: dict[int, str]) -> pd.DataFrame:
    """Every measured cell: where it came from and the numbers behind it."""
    rows, spans = [], set()
    for i, c in enumerate(grid.all_cells()):
        if not c.runs or (c.ipc == "full" and (c.row, c.dataset) in spans):
            continue  # a spanning cell (Table 4's full-data row) is detailed once
        if c.ipc == "full":
            spans.add((c.row, c.dataset))
        d = {"row": c.row, "column": c.col, "dataset": c.dataset, "IPC": c.ipc,
             "ours (mean ± std, n)": f"{ours_text(c)} (n={c.ours.n})" if not c.ours.empty else "—",
             "paper": c.paper.text if c.paper else "—", "Δ": _num(c.delta, signed(c.fmt)) if c.delta is not None else "—"}
        d.update({k: _num(v) for k, v in c.measures.items()})
        d["note"] = c.note
        d["grid"] = f"![]({images[i]})" if i in images else ""
        rows.append(d)
    return pd.DataFrame(rows).fillna("—") if rows else pd.DataFrame()


def to_markdown(df: pd.DataFrame, index: bool = False) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for idx, row in df.iterrows():
        vals = ([str(idx)] if index else []) + [str(v).replace("|", "\\|") for v in row.tolist()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str, index: bool = False) -> str:
    def esc(s: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("—", "--"), ("→", r"$\to$")):
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


def header_info(records: list[dict], folder: str | Path, command: Optional[str] = None) -> dict[str, str]:
    """Where the numbers come from: the command, the code that built the table and ran the runs, profile,
    device, dataset, shared overrides -- relative paths only, and nothing that changes between two
    builds of the same runs (no clock), so rebuilding a table gives the same bytes."""
    def uniq(key, sub=None):
        vals = []
        for r in records:
            v = ((r.get("config") or {}).get(sub) or {}).get(key) if sub else r.get(key)
            if v is not None and str(v) not in vals:
                vals.append(str(v))
        return ", ".join(sorted(vals)) or "—"

    parts = [set(Path(r.get("output_dir", "")).name.split(",")) for r in records]
    common = sorted(c for c in (set.intersection(*parts) if parts else set()) if "=" in c)
    return {"command": f"`{relative_text(command or this_command())}`", "commit": commit(),
            "runs' code": uniq("code_version"), "profile": uniq("profile"), "device": uniq("device_name"),
            "dataset": uniq("dataset"), "torch": uniq("torch"), "threads": uniq("threads"),
            "overrides shared by all runs": relative_text(" ".join(f"`{c}`" for c in common)) or "—",
            "runs": str(len(records)), "folder": relative(folder)}


def notes(grid: Grid, info: dict[str, str]) -> list[str]:
    kind = grid.layout.kind
    out = [f"**layout**: {grid.layout.caveat}"] if grid.layout.caveat else []
    stand = sorted({f"{c.dataset} IPC {c.ipc} → paper {dataset_name(c.paper_dataset)}" for c in grid.all_cells()
                    if c.runs and not c.exact and DATASET_ALIASES.get(c.dataset, c.dataset) != c.paper_dataset})
    if stand:
        out.append(f"**stand-in** (compared with another dataset's paper numbers): {'; '.join(stand)}")
    if kind in ("max_ratio", "arrows"):
        out.append(f"**max-ratio rule**: {rule_text(grid.layout.rule)}")
    if kind == "best_ratio":
        out.append("**cell**: the best mean accuracy over the loss-pruning ratios tried (ratio 0 included), "
                   "mean ± std over its removal trials, and in brackets its gain over the unpruned run.")
    if kind == "large_scale":
        out.append(f"**training time** = the {', '.join(LARGE_SCALE_STAGES)} stages (experts, distillation loop); "
                   "BiLP's preemptive scoring, data loading and evaluation excluded. Speed-up = unpruned / pruned.")
    if kind == "timing":
        out.append(f"**training time** = the {', '.join(TRAINING_STAGES)} stages (scores, experts, distillation "
                   "loop incl. in-loop ITE); data loading and evaluation excluded. Speed-up = unpruned / pruned.")
    if kind == "timing":
        out.append("**s/iter**: median seconds per distillation iteration; ITE computation = the selector's share "
                   "(`ite_seconds_per_iter`). The paper's numbers are an RTX 4090's.")
    if info.get("profile") and any(p != "full" for p in info["profile"].split(", ") if p != "—"):
        out.append("Reduced profile: sizes/iterations are scaled down, so absolute numbers are NOT comparable to the "
                   "paper's; full-scale numbers need a GPU and `profile=full`.")
    return out


def render(grid: Grid, info: dict[str, str], images: dict[int, str]) -> tuple[str, str]:
    """(markdown, LaTeX) of the grid: paper layout, runs outside it, detail."""
    wide, detail = wide_frame(grid), detail_frame(grid, images)
    paper = with_paper(grid)
    head = f"ours / paper (Δ), {grid.layout.unit}" if paper else f"ours, {grid.layout.unit}"
    md = [f"# {grid.layout.title}", ""] + [f"- **{k}**: {v}" for k, v in info.items()] + \
         [f"- {n}" for n in notes(grid, info)]
    md += ["", f"## Paper layout: {head}", "", to_markdown(wide, index=True)]
    if grid.extra:
        md += ["## Runs outside the paper's layout", "", to_markdown(extra_frame(grid))]
    md += ["## Detail", "", to_markdown(detail)]
    tex = to_latex(wide, f"{grid.layout.title} -- {head}", index=True)
    if not detail.empty:
        tex += "\n" + to_latex(detail.drop(columns=["grid"], errors="ignore"), f"{grid.layout.title} -- detail")
    return "\n".join(md), tex
