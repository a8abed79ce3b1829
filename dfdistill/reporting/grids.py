"""Our runs placed into a paper's grid: one cell per paper row × column, never pooled across cells.

Why: the layout (reporting/layouts.py) fixes the paper's rows and columns; this module labels every
run the way the paper labels it, groups the runs of each (row, column), and asks reporting/cells.py
for the cell's number. A measured cell that has no place in the paper's grid (a variant the paper
does not report, a second stand-in dataset competing for the same cell) is kept in `Grid.extra`
and rendered apart, so the paper-shaped table keeps exactly the paper's labels.

Stand-ins: a dataset the paper table does not have (e.g. `digits` at profile=smoke) is compared with
the table's first dataset, and the table header says so; `cifar10_jpeg` is CIFAR10 itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pandas as pd

from dfdistill.reporting import cells as C
from dfdistill.reporting.collect import adaptive_cfg, group_cfg, ipc_of, readout_epochs
from dfdistill.reporting.layouts import (
    DATASET_ALIASES, FIG3_SETTING, FULL_DATASET, IDC_DEFAULT_FACTOR, ITE_ROW, LOSS_COL, RANDOM_COL,
    TAB6_IPC, TAB7_COLS, TOTAL_ROW, Layout, PaperGrid, dataset_name, ds_ipc, ds_ipc_method, method_label, paper_grid,
    pruning_label, strata_setting, stratum_col)
from dfdistill.reporting.paper import PaperValue, decimals


@dataclass
class Cell:
    """One table cell: ours (a Stat) next to the paper's printed number, plus what it came from."""

    row: str
    col: str
    ours: C.Stat = C.EMPTY
    paper: Optional[PaperValue] = None
    ours_extra: str = ""  # printed after ours, e.g. Table 3's gain "(+2.2)"
    prefix: str = ""  # printed before ours: "≥ " where the number is only a lower bound
    fmt: str = ""  # format of ours; "" = the paper's decimals (or the kind's default)
    suffix: str = ""  # unit printed after each number of ours ("h")
    dataset: str = ""  # our dataset
    paper_dataset: str = ""
    ipc: str = ""
    exact: bool = True  # our dataset is the paper's (not a stand-in)
    runs: list[str] = field(default_factory=list)  # output dirs of the runs in the cell
    note: str = ""
    measures: dict[str, Any] = field(default_factory=dict)  # detail-only numbers (s/iter, speed-up, ...)

    @property
    def delta(self) -> Optional[float]:
        if self.ours.empty or self.paper is None or self.paper.value is None:
            return None
        return self.ours.mean - self.paper.value


@dataclass
class Grid:
    layout: Layout
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], Cell]
    extra: list[Cell]

    def cell(self, row: str, col: str) -> Cell:
        return self.cells[(row, col)]

    def all_cells(self) -> list[Cell]:
        return [self.cells[(r, c)] for r in self.rows for c in self.cols if (r, c) in self.cells] + self.extra


DEFAULT_FMT = {"max_ratio": "g", "arrows": "g", "timing": ".3g", "diversity": ".2f"}


# ---------------------------------------------------------------------------------------------- #
# labels: how the paper names a run
# ---------------------------------------------------------------------------------------------- #
def method_part(rec: dict[str, Any]) -> str:
    """'IDC', 'IDC(x3)', 'DF-CoLearn [filter_only]': the method and its paper-visible variant."""
    mcfg = group_cfg(rec, "method")
    base = method_label(rec["method"])
    factor = mcfg.get("factor")
    if rec["method"] == "idc" and factor is not None and int(factor) != IDC_DEFAULT_FACTOR:
        base = f"{base}(x{int(factor)})"
    if mcfg.get("variant") is not None:
        base = f"{base} [{mcfg['variant']}]"
    return base


def run_label(rec: dict[str, Any]) -> str:
    """Our label for a run in an accuracy table: method (+ pruning), e.g. 'BiLP+IDC(x3)'."""
    base = method_part(rec)
    pruning = rec.get("pruning", "none")
    if pruning == "none" or rec["method"] == "whole":
        label = base
    elif pruning == "bilp":
        label = f"BiLP+{base}"
    else:
        label = f"{base} + {pruning_label(pruning)}"
    tail = adaptive_cfg(rec).get("tail", "both")
    return label if tail == "both" else f"{label} [tail {tail}]"


def timing_label(rec: dict[str, Any]) -> str:
    """BiLP Table 6's setting: which ITE optimisations the run used ('IDC [taylor, running stats, lazy 10]')."""
    a = adaptive_cfg(rec)
    if not a:
        return method_part(rec)
    return f"{method_part(rec)} [{a.get('mode')}, {a.get('stats', 'running')} stats, lazy {a.get('lazy_every')}]"


def map_dataset(ds: str, paper_datasets: list[str], override: Optional[str] = None,
                stand_in: bool = True) -> tuple[str, bool]:
    """(the paper dataset a measured dataset is compared with, whether it is the same data)."""
    if override:
        return override, DATASET_ALIASES.get(ds, ds) == override
    name = DATASET_ALIASES.get(ds, ds)
    if name in paper_datasets or not paper_datasets or not stand_in:
        return name, True
    return paper_datasets[0], False


def _groups(records, key: Callable[[dict], Optional[tuple]]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in records:
        k = key(r)
        if k is not None:
            out.setdefault(k, []).append(r)
    return out


def _runs(recs: list[dict]) -> list[str]:
    return [str(r.get("output_dir", "")) for r in recs]


def _pm(s: C.Stat, fmt: str = ".1f") -> Optional[str]:
    if s.empty:
        return None
    return f"{s.mean:{fmt}}" + ("" if s.std is None else f" ± {s.std:{fmt}}")


# ---------------------------------------------------------------------------------------------- #
# our side, per kind: measured cells labelled in the paper's terms
# ---------------------------------------------------------------------------------------------- #
Mapper = Callable[[str], tuple[str, bool]]


def _accuracy(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    groups = _groups(records, lambda r: (layout.renames.get(run_label(r), run_label(r)), r["dataset"],
                                         "full" if r["method"] == "whole" else ipc_of(r)))
    for (label, ds, ipc), recs in groups.items():
        pds, exact = to_pds(ds)
        col = ds_ipc(pds, ipc)
        row, col = (col, label) if layout.methods_as_columns else (label, col)
        out.append(Cell(row, col, C.pooled_accuracy(recs), dataset=ds, paper_dataset=pds, ipc=ipc, exact=exact,
                        runs=_runs(recs), note=f"{len(recs)} run(s)", measures={
                            "s/iter": C.field_stat(recs, "sec_per_iter").mean,
                            "training s": C.stat([C.training_seconds(r) for r in recs]).mean,
                            "random real": _pm(C.random_real(recs))}))
    return out


def _ratio_records(records: list[dict], criterion: str) -> list[dict]:
    """The runs of one selection criterion plus the unpruned runs they are compared with."""
    return [r for r in records if r.get("pruning", "none") in (criterion, "none")]


def _ratio_groups(records: list[dict], criterion: str) -> dict[tuple, list[dict]]:
    return _groups(_ratio_records(records, criterion), lambda r: (method_part(r), r["dataset"], ipc_of(r)))


def _max_ratio_cell(row: str, col: str, mr: C.MaxRatio, recs: list[dict], ds: str, pds: str, ipc: str,
                    exact: bool) -> Cell:
    ours = C.EMPTY if mr.ratio is None else C.Stat(100.0 * mr.ratio, None, mr.trials(mr.ratio))
    trials = sorted({n for r, n in mr.runs.items() if r > 0})
    note = mr.note() + ("" if not trials or min(trials) >= 5 else f"; fewer than the paper's 5 removal trials")
    if mr.lower_bound:
        note += "; no larger ratio was tried: a lower bound"
    return Cell(row, col, ours, fmt="g", dataset=ds, paper_dataset=pds, ipc=ipc, exact=exact, runs=_runs(recs),
                note=note, measures={"ratios tried": len([r for r in mr.per_ratio if r > 0])},
                prefix="≥ " if mr.lower_bound else "")


def _max_ratio(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    for (label, ds, ipc), recs in _ratio_groups(records, layout.criterion).items():
        pds, exact = to_pds(ds)
        out.append(_max_ratio_cell(ds_ipc(pds, ipc), layout.renames.get(label, label), C.max_ratio(recs, layout.rule), recs,
                                   ds, pds, ipc, exact))
    return out


def _best_ratio(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    for (label, ds, ipc), recs in _ratio_groups(records, layout.criterion).items():
        pds, exact = to_pds(ds)
        b = C.best_ratio(recs)
        extra = "" if b.gain is None else f"({b.gain:+.1f})"
        note = ("no run" if b.ratio is None else f"best at ratio {100 * b.ratio:g}%" +
                ("" if b.gain is not None else "; no unpruned run for the gain"))
        out.append(Cell(ds_ipc(pds, ipc), layout.renames.get(label, label), b.acc, ours_extra=extra, dataset=ds,
                        paper_dataset=pds, ipc=ipc, exact=exact, runs=_runs(recs), note=note))
    return out


def _timing(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    groups = _groups(records, lambda r: (timing_label(r), r["method"], r["dataset"], ipc_of(r)))
    for (label, method, ds, ipc), recs in groups.items():
        if not adaptive_cfg(recs[0]):
            continue  # the unpruned base: only the speed-up's reference
        base = [r for r in groups.get((method_part(recs[0]), method, ds, ipc), []) if r.get("pruning", "none") == "none"]
        pds, exact = to_pds(ds)
        col = layout.renames.get(label, label)
        total, base_total = C.field_stat(recs, "sec_per_iter"), C.field_stat(base, "sec_per_iter")
        t, t0 = C.training_hours(recs), C.training_hours(base)
        common = dict(dataset=ds, paper_dataset=pds, ipc=ipc, exact=exact and ipc == TAB6_IPC,
                      runs=_runs(recs), note=f"{len(recs)} run(s); unpruned base: {len(base)} run(s)")
        out.append(Cell(ITE_ROW, col, C.field_stat(recs, "ite_seconds_per_iter"), **common))
        out.append(Cell(TOTAL_ROW, col, total, **common, measures={
            "unpruned s/iter": base_total.mean,
            "overhead vs unpruned": None if base_total.empty or total.empty else total.mean / base_total.mean - 1,
            "speed-up vs unpruned (training time)": C.speedup(t0, t)}))
    return out


def _large_scale(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    groups = _groups(records, lambda r: (method_part(r), r["dataset"], ipc_of(r)))
    for (label, ds, ipc), recs in groups.items():
        full = [r for r in recs if r.get("pruning", "none") == "none"]
        bilp = [r for r in recs if r.get("pruning") == "bilp"]
        pds, exact = to_pds(ds)
        row = ds_ipc_method(pds, ipc, label)
        common = dict(dataset=ds, paper_dataset=pds, ipc=ipc, exact=exact)
        t_full, t_bilp = C.training_hours(full, C.LARGE_SCALE_STAGES), C.training_hours(bilp, C.LARGE_SCALE_STAGES)
        out += [Cell(row, TAB7_COLS[0], C.pooled_accuracy(full), runs=_runs(full), **common),
                Cell(row, TAB7_COLS[1], t_full, fmt=".3g", suffix="h", runs=_runs(full), **common,
                     note="prepare (experts) + distill stages; scoring excluded as in BiLP"),
                Cell(row, TAB7_COLS[2], C.pooled_accuracy(bilp), runs=_runs(bilp), **common),
                Cell(row, TAB7_COLS[3], t_bilp, fmt=".3g", suffix="h", runs=_runs(bilp), **common,
                     note="prepare (experts) + distill stages; scoring excluded as in BiLP",
                     measures={"speed-up vs full data": C.speedup(t_full, t_bilp)}),
                Cell(row, TAB7_COLS[4], C.random_real(full or bilp), runs=_runs(full or bilp), **common,
                     note="random real subset of the " + ("full-data" if full else "BiLP") + " run, same protocol")]
    return [c for c in out if c.runs]


def _arrows(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    for crit, col in (("random", RANDOM_COL), ("loss", LOSS_COL)):
        for (label, ds, ipc), recs in _ratio_groups(records, crit).items():
            if not any(r.get("pruning") == crit for r in recs):
                continue
            pds, exact = to_pds(ds)
            out.append(_max_ratio_cell(ds_ipc_method(pds, ipc, label), col, C.max_ratio(recs, layout.rule), recs, ds, pds, ipc,
                                       exact))
    return out


def _strata(layout: Layout, records: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    strat = [r for r in records if group_cfg(r, "pruning").get("stratum") is not None]
    key = lambda r: (int(group_cfg(r, "pruning").get("trials") or 1), readout_epochs(r),  # noqa: E731
                     int(group_cfg(r, "pruning")["stratum"]), r["dataset"], ipc_of(r), r["method"])
    for (trials, epochs, k, ds, ipc, method), recs in sorted(_groups(strat, key).items(), key=lambda kv: kv[0][:3]):
        pds, exact = to_pds(ds)
        same = exact and (pds, ipc, method) == (FIG3_SETTING["dataset"], FIG3_SETTING["ipc"], FIG3_SETTING["method"])
        out.append(Cell(strata_setting(trials, epochs), stratum_col(k), C.pooled_accuracy(recs), fmt=".1f",
                        dataset=ds, paper_dataset=pds, ipc=ipc, exact=same, runs=_runs(recs),
                        note=f"{method_label(method)}, {len(recs)} run(s)"))
    return out


def _diversity(layout: Layout, rows: list[dict], to_pds: Mapper) -> list[Cell]:
    out = []
    for (ds, k), rs in sorted(_groups(rows, lambda r: (r["dataset"], int(r["stratum"]))).items()):
        pds, exact = to_pds(ds)
        s = C.stat([r["ratio"] for r in rs])
        s = s if len(rs) > 1 else C.Stat(s.mean, None, s.n)  # one seed: no spread to show
        out.append(Cell(dataset_name(pds), stratum_col(k), s, fmt=".2f", dataset=ds,
                        paper_dataset=pds, exact=exact, runs=_runs(rs), note=f"{len(rs)} seed(s)", measures={
                            "intra": C.stat([r["intra"] for r in rs]).mean,
                            "inter": C.stat([r["inter"] for r in rs]).mean}))
    return out


MEASURE = {"accuracy": _accuracy, "max_ratio": _max_ratio, "best_ratio": _best_ratio, "timing": _timing,
           "large_scale": _large_scale, "arrows": _arrows, "strata": _strata, "diversity": _diversity}


# ---------------------------------------------------------------------------------------------- #
# assembly
# ---------------------------------------------------------------------------------------------- #
def build_grid(layout: Layout, records: list[dict], paper: pd.DataFrame, paper_dataset: Optional[str] = None) -> Grid:
    """The paper's grid for `layout` with our runs placed in it (records: results or diversity rows)."""
    pg = paper_grid(layout, paper)
    if layout.kind not in ("strata", "diversity"):  # a stratum run (Fig. 3) is no pruning ratio of any table
        records = [r for r in records if group_cfg(r, "pruning").get("stratum") is None]
    stand_in = layout.kind != "diversity"
    measured = MEASURE[layout.kind](layout, records,
                                    lambda ds: map_dataset(ds, pg.datasets, paper_dataset, stand_in))
    grid = assemble(layout, pg, measured)
    if layout.improvement:
        fill_improvement(grid)
    return grid


def fill_improvement(grid: Grid) -> None:
    """The paper's "Improvement" row, ours: per column, the paper's own method minus the best other
    row we measured there (the paper subtracts its second best, TESLA, from its own)."""
    label, own = grid.layout.improvement
    for col in grid.cols:
        if (label, col) not in grid.cells or (own, col) not in grid.cells:
            continue
        mine = grid.cells[(own, col)]
        others = [(grid.cells[(r, col)].ours.mean, r) for r in grid.rows
                  if r not in (label, own) and (r, col) in grid.cells and not grid.cells[(r, col)].ours.empty]
        cell = grid.cells[(label, col)]
        if mine.ours.empty or not others:
            cell.note = f"needs {own} and at least one other row measured in this column"
            continue
        best, row = max(others)
        cell.ours = C.Stat(mine.ours.mean - best, None, 1)
        cell.fmt = "+" + cell.fmt
        cell.dataset, cell.paper_dataset, cell.ipc, cell.exact = (mine.dataset, mine.paper_dataset, mine.ipc,
                                                                   mine.exact)
        cell.note = f"{own} minus the best other row measured here ({row})"


def assemble(layout: Layout, pg: PaperGrid, measured: list[Cell]) -> Grid:
    """Put each measured cell in its paper cell (same-data runs before stand-ins); the rest is `extra`."""
    if not pg.rows:  # no paper table: the grid is what was measured
        pg = PaperGrid(list(dict.fromkeys(c.row for c in measured)), list(dict.fromkeys(c.col for c in measured)),
                       {}, [])
    cells = {(r, c): Cell(r, c, paper=pg.values.get((r, c))) for r in pg.rows for c in pg.cols}
    taken: set[tuple[str, str]] = set()
    extra = []
    for m in sorted(measured, key=lambda m: not m.exact):
        targets = [(m.row, m.col)]
        if m.ipc == "full":  # BiLP Table 4's "Full dataset" spans its dataset's IPC columns
            prefix = dataset_name(m.paper_dataset) + " IPC "
            targets = [(m.row, c) for c in pg.cols if c.startswith(prefix)] or targets
        free = [t for t in targets if t in cells and t not in taken]
        if not free:
            extra.append(m)
            continue
        for r, c in free:
            placed = Cell(**{**m.__dict__, "row": r, "col": c, "paper": cells[(r, c)].paper})
            cells[(r, c)] = placed
            taken.add((r, c))
    for c in [*cells.values(), *extra]:
        if not c.fmt:
            c.fmt = (f".{max(1, decimals(c.paper.text.split(' ')[0]))}f" if c.paper and c.paper.value is not None
                     else DEFAULT_FMT.get(layout.kind, ".1f"))
    return Grid(layout, pg.rows, pg.cols, cells, extra)


def grid_frame(grid: Grid) -> pd.DataFrame:
    """One line per cell (paper cells first, then the extra ones): the CSV next to every table/figure."""
    rows = []
    for c in grid.all_cells():
        in_layout = (c.row, c.col) in grid.cells and grid.cells[(c.row, c.col)] is c
        rows.append({"row": c.row, "col": c.col, "in_paper_layout": in_layout, "dataset": c.dataset,
                     "paper_dataset": c.paper_dataset, "ipc": c.ipc, "ours_mean": c.ours.mean,
                     "ours_std": math.nan if c.ours.std is None else c.ours.std, "n": c.ours.n,
                     "lower_bound": bool(c.prefix),
                     "paper": None if c.paper is None else c.paper.value,
                     "paper_std": None if c.paper is None else c.paper.std,
                     "paper_text": None if c.paper is None else c.paper.text, "delta": c.delta,
                     "runs": len(c.runs), "note": c.note, **{k: v for k, v in c.measures.items()},
                     "output_dir": c.runs[0] if c.runs else None})
    return pd.DataFrame(rows)
