"""What a paper table needs beyond its exp's cartesian grid: extra job sets (ragged tables, extra
rows), whether its cells are a max-ratio search, and which other tables' runs it can reuse.

Why here and not in the exp YAML: Hydra's basic sweeper only knows one product per exp, while the
papers' tables are ragged (CIFAR-10 has IPC 50, CIFAR-100 not; BiLP+IDC (x3) is one extra row).
`run_table` (and so every `make table-*` target) applies these; a plain `run.py -m +exp=...` runs
the exp's grid alone.

The command line narrows every extra set the way it narrows the grid: for a key both set, the set
keeps the values in both (`method=dc,dm` turns `method=dc,idc pruning=bilp` into BiLP+DC alone;
`ipc=1` drops an `ipc=50` set). A dataset on the command line replaces the set's dataset (a
CIFAR-10 JPEG run of Table 4 gets its IPC 50 cells on the JPEG copy).
"""

from __future__ import annotations

from typing import Optional

from dfdistill.sweeps import overrides as ov

EXTRA_JOB_SETS: dict[str, list[str]] = {
    "bilp_tab1": ["dataset=cifar10 ipc=50"],
    "bilp_tab2": ["dataset=cifar10 ipc=50"],
    "bilp_fig2": ["dataset=cifar10 ipc=50"],                          # Tables 1-2's CIFAR10 IPC 50 row
    "bilp_tab3": ["dataset=cifar10 ipc=50"],
    "bilp_tab4": ["method=dc,idc pruning=bilp",                      # BiLP+DC, BiLP+IDC
                  "method=idc pruning=bilp method.factor=3",          # BiLP+IDC (x3)
                  "method=whole ipc=1 eval.compare_random=false",     # Full dataset (IPC unused)
                  "dataset=cifar10,svhn ipc=50",                      # IPC 50 baselines
                  "dataset=cifar10,svhn ipc=50 method=dc,idc pruning=bilp",
                  "dataset=cifar10,svhn ipc=50 method=idc pruning=bilp method.factor=3"],
    "bilp_tab5": ["pruning=bilp pruning.adaptive.tail=small,large"],  # the one-tailed ITE rows
    "bilp_tab6": ["pruning.adaptive.mode=exact pruning.adaptive.stats=full method.iterations=3",  # no optimisation
                  "pruning.adaptive.mode=taylor pruning.adaptive.lazy_every=10",  # +lazy selection
                  "pruning=none"],                                    # the unpruned IDC (speed-up)
    "bilp_tab7": ["method=mtt pruning=bilp",                          # MTT: BiLP only (full data "-")
                  "method=dm ipc=10,50"],                             # DM alone at IPC 10 and 50
    "dfcolearn_tab1": ["dataset=cifar10 ipc=50"],
}
# Cells of an exp's grid the paper does not report: never planned (each a full run for a "-").
DROP: dict[str, list[str]] = {
    "bilp_tab2": ["dataset=tinyimagenet method=rfad"],  # Table 2 prints "-" (RFAD has no Tiny setting)
    "bilp_tab3": ["dataset=tinyimagenet method=rfad"],  # Table 3 likewise
    "bilp_tab5": ["dataset=cifar100 ipc=10"],           # Table 5: CIFAR-10 IPC 1/10, CIFAR-100 IPC 1 only
}
SEARCH_EXPS = {"bilp_tab1", "bilp_tab2", "bilp_fig2"}  # cells = max pruning ratio (search.py)
# Other tables' sweeps whose finished runs of the same config_key count (copied, not rerun): Tables 1
# and 2 share every cell's unpruned baseline, Fig. 2 is both searches, Table 3 repeats Table 2's loss pruning at fixed ratios.
REUSE: dict[str, list[str]] = {"bilp_fig2": ["bilp_tab1", "bilp_tab2"], "bilp_tab3": ["bilp_tab2"],
                               "bilp_tab1": ["bilp_tab2"], "bilp_tab2": ["bilp_tab1"]}


def _values(line: str) -> list[str]:
    o = ov.parse([line])[0]
    return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]


def narrow(add: list[str], overrides: list[str]) -> Optional[list[str]]:
    """The extra set `add` under the command line `overrides` (None: nothing of it is left)."""
    user = {}
    for o in overrides:
        user[ov.group_of(o)] = o
    out = []
    for line in add:
        key = ov.group_of(line)
        if key not in user:
            out.append(line)
        elif key == "dataset":
            out.append(user[key])
        else:
            mine = _values(user[key])
            keep = [v for v in _values(line) if v in mine]
            if not keep:
                return None
            out.append(f"{line.split('=', 1)[0]}={','.join(keep)}")
    return out


def extra_sets(exp: str, overrides: list[str]) -> list[list[str]]:
    sets = []
    for text in EXTRA_JOB_SETS.get(exp, []):
        s = narrow(text.split(), overrides)
        if s is not None and s not in sets:
            sets.append(s)
    return sets


def dropped(exp: Optional[str], job: list[str]) -> bool:
    """Whether the job (its override lines) is a cell `exp`'s paper does not report (DROP)."""
    have = set(job)
    return any(set(rule.split()) <= have for rule in DROP.get(exp or "", []))
