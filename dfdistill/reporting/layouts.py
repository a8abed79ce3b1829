"""Per-paper table layouts: which rows and columns each paper table has, in the paper's order.

Why: a reproduced table must read like the paper's -- the same row and column labels, every paper
number, one cell per row × column -- so the layout (the paper's side of the grid) is declared here,
once per table, and derived from results/paper/paper_tables.csv wherever the CSV holds it. Our runs
are then placed into that grid (reporting/grids.py); runs that fit no paper cell are listed apart.

Orientation, read from each paper's table:
- BiLP Tables 1, 2, 3 and 5: rows = dataset × IPC, columns = methods (settings for Table 5).
- BiLP Table 4, DF-CoLearn Tables 1-2, EDD's claim: rows = methods, columns = dataset × IPC; the
  "Full dataset" row spans its dataset's IPC columns (shown in each). DF-CoLearn Table 1 also has
  the paper's "Type" text column and its "Improvement" row (own method minus the best other row).
  Rows only the paper ran (other papers' methods, Kinetics-400) are `paper_only`: no target plans them.
- BiLP Table 6: rows = "ITE computation" and "total iteration" s/iter, columns = the four settings.
- BiLP Table 7: rows = dataset × IPC × algorithm, columns = full-data accuracy and training time,
  BiLP accuracy and training time, random real.
- BiLP Fig. 2: one arrow per dataset × IPC × method, from the max ratio under random selection
  (Table 1) to the one under empirical-loss selection (Table 2); drawn where both tables have it.
- BiLP Fig. 3: one curve per (classification trials, epochs) setting over strata S1..S10, on the
  grid trials {1, 5, 10, 50} × epochs {1, 5, 10, 100} (§5.4), for DC on CIFAR10 at IPC 1.
- BiLP Fig. 4: diversity per stratum, one curve per dataset. The text names MNIST and CIFAR; the
  figure's dataset list is not in our copy of the paper, so it is conf/exp/bilp_fig4.yaml's.
Labels of methods, pruning options and datasets come from their registries' metadata
(`@register_method(..., label=)`, `@register_pruner(..., label=)`, `@register_dataset(..., label=)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import pandas as pd

from dfdistill.core.errors import ConfigError
from dfdistill.core.registry import METHODS, dataset_label
from dfdistill.core.registry import method_label as registered_label
from dfdistill.core.registry import pruning_label as registered_pruning_label
from dfdistill.schema.options import method_schemas_by_option
from dfdistill.reporting.paper import UNPLACED, PaperValue, gain, ite_part, table_rows, train_hours, unplaced

KINDS = ("accuracy", "max_ratio", "best_ratio", "timing", "large_scale", "arrows", "strata", "diversity")

# Datasets only a paper ran (no loader registers them, so no registry label): their table names.
PAPER_ONLY_DATASETS = {"kinetics400": "Kinetics-400"}
DATASET_ALIASES = {"cifar10_jpeg": "cifar10"}  # the JPEG folder is CIFAR-10: not a stand-in
FULL_DATASET = "Full dataset"  # BiLP Table 4's row; our method=whole
IDC_DEFAULT_FACTOR = 2  # BiLP §5.2: "The multiformation factor is 2 by default"

# BiLP Table 6's two rows (the CSV keeps the total as value and the ITE part in the note).
ITE_ROW, TOTAL_ROW = "ITE computation (s/iter)", "Total iteration (s/iter)"
TAB6_IPC = "10"  # "We report the training seconds per iteration (s/iter) on CIFAR10 and IPC=10"
# BiLP Table 7's columns.
TAB7_COLS = ("Full data accuracy", "Full data training time", "BiLP accuracy", "BiLP training time", "Random real")
# BiLP Fig. 2's two endpoints.
RANDOM_COL, LOSS_COL = "random selection (max ratio %)", "loss selection (max ratio %)"
# BiLP Fig. 3 (§5.4): "1, 5, 10, and 50 trials [...] the first 1, 5, 10, and 100 epochs", 10 strata.
STRATA_TRIALS, STRATA_EPOCHS, N_STRATA = (1, 5, 10, 50), (1, 5, 10, 100), 10
FIG3_SETTING = {"dataset": "cifar10", "ipc": "1", "method": "dc"}
FIG4_DATASETS = ("mnist", "cifar10", "cifar100", "svhn")
# BiLP Table 4's rows of methods that only the paper ran (no implementation here).
OTHER_METHODS = ("KIP", "FRePo", "HaBa", "DREAM", "PDD", "Zhang et al.")


@dataclass(frozen=True)
class Layout:
    """How one paper table is laid out and which of our runs feed it."""

    exp: str
    paper: str  # bilp | dfcolearn | edd | none
    table: str  # the CSV's table id
    title: str
    kind: str = "accuracy"
    methods_as_columns: bool = False
    criterion: Optional[str] = None  # ratio kinds: the static selection (random | loss)
    renames: Mapping[str, str] = field(default_factory=dict)  # our label -> the paper's
    row_order: tuple[str, ...] = ()  # where the paper's row order differs from the CSV's
    caveat: str = ""  # what of the paper's table the layout cannot show, and why
    rule: str = "both_std"  # max-ratio kinds: the keep rule (search.rule; reporting.cells.KEEP_RULES)
    # a text column the paper prints before its numbers (DF-CoLearn's "Type"): (header, {paper row: text})
    row_info: tuple[str, Mapping[str, str]] = ()
    # the paper's "Improvement" row: (its label, the row it is computed for = the paper's own method)
    improvement: tuple[str, str] = ()
    paper_only: tuple[str, ...] = ()  # rows (or row-label prefixes) nothing here can run: the paper's numbers only

    def runs_row(self, row: str) -> bool:
        """Whether a target is expected to run something for this row (not paper-only, not derived)."""
        return not any(row.startswith(p) for p in self.paper_only) and row not in self.improvement[:1]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"table kind must be one of {'|'.join(KINDS)}, got {self.kind}")

    @property
    def unit(self) -> str:
        return {"max_ratio": "max pruning ratio (%)", "arrows": "max pruning ratio (%)", "timing": "s/iter",
                "large_scale": "top-1 accuracy (%) and training time (h)", "strata": "top-1 accuracy (%)",
                "diversity": "diversity (intra-class / inter-class variance)"}.get(self.kind, "top-1 accuracy (%)")


SPECS: dict[str, Layout] = {s.exp: s for s in [
    Layout("quickstart", "none", "none", "Quickstart: DM, IPC 10"),
    Layout("bilp_tab1", "bilp", "tab1", "BiLP Table 1: maximum pruning ratio, random selection", "max_ratio",
           methods_as_columns=True, criterion="random"),
    Layout("bilp_tab2", "bilp", "tab2", "BiLP Table 2: maximum pruning ratio, empirical-loss selection",
           "max_ratio", methods_as_columns=True, criterion="loss",
           caveat=f"The CIFAR10 IPC 50 and CIFAR100 rows are garbled in our copy of the paper: read as each "
                  f"method's three values in order CIFAR10 IPC 50, CIFAR100 IPC 1, IPC 10. IDC and IDM print only "
                  f"two values for those three cells; each of the three shows them as printed, marked {UNPLACED} "
                  f"(no Δ: which cell they belong to is unknown)."),
    Layout("bilp_tab3", "bilp", "tab3", "BiLP Table 3: best accuracy with loss-based data dropping (gain vs full "
           "real data)", "best_ratio", methods_as_columns=True, criterion="loss"),
    Layout("bilp_tab4", "bilp", "tab4", "BiLP Table 4: distillation accuracy (%)",
           renames={"RFAD": "RFAD-NN"}, row_order=(FULL_DATASET,), paper_only=OTHER_METHODS,
           caveat=f"{', '.join(OTHER_METHODS)} are other papers' methods, not implemented here: their rows show "
                  "the paper's numbers only."),
    Layout("bilp_tab5", "bilp", "tab5", "BiLP Table 5: pruning-criteria ablation on IDC", methods_as_columns=True,
           renames={"IDC": "IDC (no pruning)", "IDC + loss pruning": "+preemptive", "BiLP+IDC": "BiLP (full)",
                    "BiLP+IDC [tail small]": "+preemptive +prune small ITE",
                    "BiLP+IDC [tail large]": "+preemptive +prune large ITE"}),
    Layout("bilp_tab6", "bilp", "tab6", "BiLP Table 6: training time per iteration (IDC, CIFAR10, IPC 10)",
           "timing", renames={"IDC [exact, full stats, lazy 1]": "no optimisation",
                              "IDC [exact, running stats, lazy 1]": "+running stats",
                              "IDC [taylor, running stats, lazy 1]": "+Taylor approximation",
                              "IDC [taylor, running stats, lazy 10]": "+lazy selection"}),
    Layout("bilp_tab7", "bilp", "tab7", "BiLP Table 7: large-scale distillation", "large_scale",
           paper_only=("Kinetics-400",),
           caveat="Kinetics-400 (video) has no loader here; its rows show the paper's numbers only."),
    Layout("bilp_fig2", "bilp", "fig2", "BiLP Fig. 2: maximum pruning ratio, random -> empirical-loss selection",
           "arrows", caveat=f"Loss-selection numbers are Table 2's: where IDC / IDM print two values for three cells "
                            f"(CIFAR10 IPC 50, CIFAR100), they are shown as printed, marked {UNPLACED}."),
    Layout("bilp_fig3", "bilp", "fig3", "BiLP Fig. 3: stratified distillation (DC, CIFAR10, IPC 1)", "strata",
           caveat="A figure: the paper prints no numbers, so cells show ours only. 'epochs E' = the loss read "
                  "over the first E classification epochs (the last epoch in `pruning.epochs`)."),
    Layout("bilp_fig4", "bilp", "fig4", "BiLP Fig. 4: diversity of each loss stratum", "diversity",
           caveat="The figure's dataset list is not in our copy of the paper (the text names MNIST and CIFAR); the "
                  "rows are conf/exp/bilp_fig4.yaml's datasets."),
    Layout("dfcolearn_tab1", "dfcolearn", "tab1", "DF-CoLearn Table 1: top-1 accuracy (%), ConvNet",
           renames={"DSA": "DC+DSA", "DF-CoLearn [full]": "DF-CoLearn"},
           row_info=("Type", {"Random": "Subset", "Herding": "Coreset", "DC+DSA": "Distill", "MTT": "Distill",
                              "TESLA": "Distill", "DF-CoLearn": "Ours", "Improvement": "-"}),
           improvement=("Improvement", "DF-CoLearn")),
    Layout("dfcolearn_tab2", "dfcolearn", "tab2", "DF-CoLearn Table 2: component ablation (CIFAR-10, IPC 10)",
           renames={"DF-CoLearn [random]": "Baseline A: random selection",
                    "DF-CoLearn [filter_only]": "Baseline B: filtering only",
                    "DF-CoLearn [distill_only]": "Baseline C: distillation only",
                    "DF-CoLearn [filter_then_distill]": "Variant D: filter then distill",
                    "DF-CoLearn [full]": "DF-CoLearn: full loop", "DF-CoLearn": "DF-CoLearn: full loop"}),
    Layout("edd_tinyimagenet", "edd", "text", "EDD: Tiny-ImageNet, IPC 50"),
    # EDD Figs. 1-2 are drawn by scripts/make_figure.py edd from these runs; the table lists the runs
    Layout("edd_figs", "none", "none", "EDD Figs. 1-2: the EDD run and its base method's run"),
]}


def spec_for(name: Optional[str]) -> Layout:
    """The layout for an exp name; an unknown name gets a generic accuracy table (no paper column)."""
    if name and name in SPECS:
        return SPECS[name]
    return Layout(name or "runs", "none", "none", f"Runs: {name or 'all'}")


def method_label(name: str) -> str:
    """The registry's label: 'DF-CoLearn' for dfcolearn and its variant configs (method=dfcolearn_filter_only)."""
    base = name if name in METHODS else method_schemas_by_option().get(name, name)
    label = registered_label(base)
    return FULL_DATASET if label == "whole" else label  # `whole` registers itself with the sweeps track


def pruning_label(name: str) -> str:
    """'random pruning' for pruning=random: the pruner registry's label."""
    return registered_pruning_label(name)


def dataset_name(ds: str) -> str:
    """'CIFAR10' for cifar10: the dataset registry's label (a paper-only dataset: its paper name)."""
    return PAPER_ONLY_DATASETS.get(ds) or dataset_label(ds)


def ds_ipc(ds: str, ipc: str) -> str:
    """'CIFAR10 IPC 1': the label of a dataset × IPC row or column."""
    return f"{dataset_name(ds)} IPC {ipc}"


def ds_ipc_method(ds: str, ipc: str, method: str) -> str:
    return f"{ds_ipc(ds, ipc)}: {method}"


def strata_setting(trials: int, epochs: int) -> str:
    return f"trials {trials}, epochs {epochs}"


def stratum_col(k: int) -> str:
    return f"S{k}"


# ---------------------------------------------------------------------------------------------- #
# the paper's side of each grid: rows, columns and the printed numbers
# ---------------------------------------------------------------------------------------------- #
@dataclass
class PaperGrid:
    rows: list[str]
    cols: list[str]
    values: dict[tuple[str, str], PaperValue]
    datasets: list[str]  # the paper datasets the grid covers (stand-ins map to the first)


def _uniq(xs) -> list:
    return list(dict.fromkeys(xs))


def _ordered(names: list[str], first: tuple[str, ...]) -> list[str]:
    return [n for n in first if n in names] + [n for n in names if n not in first]


def paper_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    """The paper's rows, columns and numbers for `layout` (empty for paper 'none')."""
    if layout.kind in _GRIDS:
        return _GRIDS[layout.kind](layout, paper)
    return _accuracy_grid(layout, paper)


def _accuracy_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    p = table_rows(paper, layout.paper, layout.table)
    keys = _uniq((r.dataset, r.ipc) for r in p.itertuples() if r.ipc != "full")
    methods = _ordered(_uniq(p.method), layout.row_order)
    values: dict[tuple[str, str], PaperValue] = {}
    for r in p.itertuples():
        pv = _value(layout, r)
        spans = [k for k in keys if k[0] == r.dataset] if r.ipc == "full" else [(r.dataset, r.ipc)]
        for ds, ipc in spans:
            key = (ds_ipc(ds, ipc), r.method) if layout.methods_as_columns else (r.method, ds_ipc(ds, ipc))
            values[key] = pv
    labels = [ds_ipc(d, i) for d, i in keys]
    rows, cols = (labels, methods) if layout.methods_as_columns else (methods, labels)
    return PaperGrid(rows, cols, values, _uniq(d for d, _ in keys))


def _value(layout: Layout, r) -> PaperValue:
    if layout.kind == "best_ratio":
        g = gain(r.note)
        return PaperValue.of(r.value, r.std, f"({g})" if g else "")
    return _printed(r)


def _printed(r) -> PaperValue:
    """The paper's number of a CSV row; where the paper prints text for several cells at once and none
    is this cell's own (BiLP Table 2's IDC / IDM), that text marked as such, with no value."""
    text = unplaced(r.note) if not r.value else None
    return PaperValue.of(r.value, r.std, f"{text}{UNPLACED}" if text else "")


def _timing_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    p = table_rows(paper, layout.paper, layout.table)
    cols = _uniq(p.method)
    values = {}
    for r in p.itertuples():
        values[(TOTAL_ROW, r.method)] = PaperValue.of(r.value)
        part = ite_part(r.note)
        if part is None:
            raise ConfigError(f"paper_tables.csv: {layout.exp} row {r.method!r} has no 'ITE part ... s/iter' note")
        values[(ITE_ROW, r.method)] = PaperValue.of(part)
    return PaperGrid([ITE_ROW, TOTAL_ROW], cols, values, _uniq(p.dataset))


def _large_scale_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    p = table_rows(paper, layout.paper, layout.table)
    rows, values = [], {}
    by_key = {(r.dataset, r.ipc, r.method): r for r in p.itertuples()}
    for r in p.itertuples():
        if r.method.startswith("BiLP+") or r.method == "Random real":
            continue
        row = ds_ipc_method(r.dataset, r.ipc, r.method)
        rows.append(row)
        values[(row, TAB7_COLS[0])] = PaperValue.of(r.value, r.std)
        values[(row, TAB7_COLS[1])] = _hours(r.note)
        b = by_key.get((r.dataset, r.ipc, f"BiLP+{r.method}"))
        if b is not None:
            values[(row, TAB7_COLS[2])] = PaperValue.of(b.value, b.std)
            values[(row, TAB7_COLS[3])] = _hours(b.note)
        rr = by_key.get((r.dataset, r.ipc, "Random real"))
        if rr is not None:
            values[(row, TAB7_COLS[4])] = PaperValue.of(rr.value, rr.std)
    return PaperGrid(_uniq(rows), list(TAB7_COLS), values, _uniq(p.dataset))


def _hours(note: str) -> PaperValue:
    h = train_hours(note)
    if h is None:
        return PaperValue(None, None, "—")
    return PaperValue(float(h[0]), None, f"{h[0]}h" + (" (est.)" if h[1] else ""))


def _arrows_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    rnd = {(r.dataset, r.ipc, r.method): _printed(r) for r in table_rows(paper, "bilp", "tab1").itertuples()}
    los = {(r.dataset, r.ipc, r.method): _printed(r) for r in table_rows(paper, "bilp", "tab2").itertuples()}
    rows, values = [], {}
    for key in rnd:
        if key in los:
            row = ds_ipc_method(*key)
            rows.append(row)
            values[(row, RANDOM_COL)] = rnd[key]
            values[(row, LOSS_COL)] = los[key]
    return PaperGrid(rows, [RANDOM_COL, LOSS_COL], values, _uniq(k[0] for k in rnd if k in los))


def _strata_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    rows = [strata_setting(t, e) for t in STRATA_TRIALS for e in STRATA_EPOCHS]
    return PaperGrid(rows, [stratum_col(k) for k in range(1, N_STRATA + 1)], {}, [FIG3_SETTING["dataset"]])


def _diversity_grid(layout: Layout, paper: pd.DataFrame) -> PaperGrid:
    return PaperGrid([dataset_name(d) for d in FIG4_DATASETS], [stratum_col(k) for k in range(1, N_STRATA + 1)],
                     {}, list(FIG4_DATASETS))


_GRIDS = {"timing": _timing_grid, "large_scale": _large_scale_grid, "arrows": _arrows_grid,
          "strata": _strata_grid, "diversity": _diversity_grid}
