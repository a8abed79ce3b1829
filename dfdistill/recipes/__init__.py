"""Per-cell paper settings as data: one YAML per method family (and one for BiLP's scoring).

Why data, not exp files: the papers and reference code set hyperparameters per (method, dataset,
IPC); a sweep such as `-m dataset=cifar10,cifar100 ipc=1,10,50 method=mtt` must give every cell its
own row without one config file per cell, and every value must say where it comes from.

A recipe file looks like::

    group: method             # the config group whose `recipe` key switches it (method | pruning)
    applies_to: [mtt]         # method options or schema names (method), options (pruning); "*" = all
    nearest_ipc: false        # true: an IPC without a row takes the row of the nearest IPC
    cell_fallback: mtt        # optional: a (dataset, IPC) without a cell row here takes that file's cell rows
    rows:
      - {dataset: cifar10, ipc: 1, source: "...", set: {method.syn_steps: 50, dataset.zca: true}}

`dataset` and `ipc` may be "*" (any); an `ipc` may be a list. Rows apply from the least to the
most specific, so a cell row overrides a dataset-wide one. A key without a dot names a config group
(`backbone: convnet_d4`, `eval: idc`): that group's option is swapped in. Values the user typed on
the command line are never touched (dfdistill.config.resolve applies recipes before the profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from dfdistill.core.errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent
GROUPS = ("dataset", "backbone", "method", "pruning", "eval", "profile", "logger")


@dataclass(frozen=True)
class RecipeRow:
    file: str
    index: int
    dataset: str
    ipc: Any  # int | list[int] | "*"
    values: dict[str, Any]
    source: str

    def matches_ipc(self, ipc: int) -> bool:
        return self.ipc == "*" or ipc == self.ipc or (isinstance(self.ipc, list) and ipc in self.ipc)

    def specificity(self) -> int:
        return (self.dataset != "*") + 2 * (self.ipc != "*")


@dataclass(frozen=True)
class RecipeFile:
    name: str
    group: str
    applies_to: tuple[str, ...]
    nearest_ipc: bool
    rows: tuple[RecipeRow, ...] = field(default_factory=tuple)
    cell_fallback: Optional[str] = None  # a recipe file whose cell rows serve the cells this one lacks


def _check_key(key: str, where: str) -> None:
    head = key.split(".", 1)[0]
    if head not in GROUPS and "." in key:
        raise ConfigError(f"{where}: key {key!r} does not start with a config group {GROUPS}")
    if "." not in key and key not in GROUPS and key not in ("ipc", "seed"):
        raise ConfigError(f"{where}: key {key!r} is neither a dotted config key nor a group")


def parse_file(path: Path) -> RecipeFile:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    name = path.stem
    if raw.get("group") not in ("method", "pruning") or not raw.get("applies_to"):
        raise ConfigError(f"recipe {path}: needs `group: method|pruning` and `applies_to: [...]`")
    rows = []
    for i, r in enumerate(raw.get("rows") or []):
        where = f"recipe {name} row {i}"
        if not isinstance(r, dict) or not r.get("source") or "set" not in r:
            raise ConfigError(f"{where}: every row needs `set:` and a `source:` citing where the values come from")
        for k in r["set"]:
            _check_key(k, where)
        rows.append(RecipeRow(name, i, str(r.get("dataset", "*")), r.get("ipc", "*"), dict(r["set"]), str(r["source"])))
    fallback = raw.get("cell_fallback")
    return RecipeFile(name, raw["group"], tuple(raw["applies_to"]), bool(raw.get("nearest_ipc", False)), tuple(rows),
                      None if fallback is None else str(fallback))


@lru_cache(maxsize=1)
def load_recipes() -> tuple[RecipeFile, ...]:
    return tuple(parse_file(p) for p in sorted(RECIPE_DIR.glob("*.yaml")))


def serves(f: RecipeFile, group: str, applies: tuple[str, ...]) -> bool:
    """Whether file `f` serves a run whose `group` option/schema names are `applies`."""
    return f.group == group and ("*" in f.applies_to or any(a in f.applies_to for a in applies))


def rows_for(group: str, applies: tuple[str, ...], dataset: str, ipc: int) -> tuple[list[RecipeRow], Optional[str]]:
    """The rows that set (group, option/schema) for (dataset, ipc), least specific first, and a note
    when an IPC without its own row borrowed the nearest one."""
    picked: list[RecipeRow] = []
    note = None
    for f in load_recipes():
        if not serves(f, group, applies):
            continue
        same_ds = [r for r in f.rows if r.dataset in ("*", dataset)]
        hit = [r for r in same_ds if r.matches_ipc(ipc)]
        if f.nearest_ipc and not any(r.ipc != "*" for r in hit):
            exact = [r for r in same_ds if isinstance(r.ipc, int)]
            if exact:
                near = min(exact, key=lambda r: (abs(r.ipc - ipc), r.ipc))
                hit.append(near)
                note = (f"{f.name}: no row for ipc={ipc}; took the nearest (ipc={near.ipc}) "
                        "(the reference code exits for this IPC)")
        if f.cell_fallback and not any(r.specificity() == 3 for r in hit):
            borrowed = fallback_rows(f, dataset, ipc)
            if borrowed:
                hit += borrowed
                note = (f"{f.name}: no row for dataset={dataset} ipc={ipc}; took {f.cell_fallback}'s row for that "
                        f"cell ({f.name} uses {f.cell_fallback}'s experts and objective)")
        picked += hit
    return sorted(picked, key=lambda r: (r.specificity(), not is_generic(r.file), r.file, r.index)), note


def fallback_rows(f: RecipeFile, dataset: str, ipc: int) -> list[RecipeRow]:
    """The dataset- and IPC-specific rows of `f.cell_fallback` for (dataset, ipc): a method that shares
    another's objective and hyperparameter meaning (TESLA: MTT's experts and loss) borrows its cells."""
    other = [g for g in load_recipes() if g.name == f.cell_fallback]
    if not other:
        raise ConfigError(f"recipe {f.name}: cell_fallback {f.cell_fallback!r} is not a recipe file")
    return [r for r in other[0].rows if r.dataset == dataset and r.ipc != "*" and r.matches_ipc(ipc)]


def is_generic(file: str) -> bool:
    """A file of rules for every method (datasets.yaml): its rows go first and make no cell row."""
    return any(f.name == file and "*" in f.applies_to for f in load_recipes())


def has_cell_rows(group: str, applies: tuple[str, ...]) -> bool:
    """Whether any method-specific file serving (group, applies) has rows specific to a dataset or an IPC."""
    return any(r.specificity() > 0 for f in load_recipes() if serves(f, group, applies) and "*" not in f.applies_to
               for r in f.rows)
