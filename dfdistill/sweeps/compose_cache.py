"""Compose many jobs of one sweep fast: one Hydra composition per distinct group selection.

Why: a Hydra composition costs ~0.4 s of CPU (it reloads and merges every YAML and schema), and a
table's plan composed each of its 80-2,500 jobs twice (44 s for bilp_tab4). Jobs of a sweep differ
mostly in plain values (`ipc=10`, `pruning.ratio=0.9`), which Hydra applies *after* composing the
defaults list, to the composed config, with `ConfigLoaderImpl._apply_overrides_to_config`. So the
config of a job = (the composition of its group overrides, cached) + its value overrides applied by
that same Hydra function: the same result as `compose_run_config(job)` (tests/unit/sweeps/test_plan_speed.py
checks it), at the price of one composition per (exp, profile, method, dataset, pruning, ...).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from omegaconf import DictConfig, open_dict

from dfdistill.config.compose import apply_values, compose_run_config, split_overrides
from dfdistill.schema.options import CONF_DIR, method_schemas_by_option
from dfdistill.schema.renames import check_overrides


def is_group_override(line: str) -> bool:
    """`method=dm`, `+exp=bilp_tab4`, `hydra/launcher=...`: selects a config group option (Hydra
    treats it while building the defaults list), as opposed to a value (`ipc=10`, `method.factor=3`);
    the one rule is dfdistill.config.compose.split_overrides."""
    split = split_overrides([line])
    return split is None or split[0] == [line]


def is_group_choice(line: str) -> bool:
    """`method=dm`: a plain choice of one top-level group (its subtree depends on nothing else);
    `+exp=...` (may write into every group) and nested groups are composed as context instead."""
    key = line.partition("=")[0]
    return "/" not in key and "@" not in key and not key.startswith(("+", "~")) and (CONF_DIR / key).is_dir()


class Composer:
    """`compose(overrides)` -> (composed config, Hydra's group choices), as compose_run_config.

    Group options write only into their own package (no option under conf/<group>/ declares another
    package or overrides another group; tests/unit/sweeps/test_plan_speed.py checks both), so the subtree of
    `method=X` is the same whatever dataset or pruning is chosen: compositions are cached per
    context (+exp, profile, ...) and per (context, one group choice), and a job is assembled from
    them: (number of distinct options) compositions per sweep instead of (their product).
    `prefetch` goes further for a known job list: one composition selects one option of *each*
    group at once (the groups do not touch each other), so a sweep costs (the most options of any
    one group) compositions per context, e.g. 8 for bilp_tab4's methods instead of 15."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any]]] = {}
        self._parts: dict[tuple[tuple[str, ...], str], tuple[Any, Any]] = {}  # (context, pick) -> (subtree, choice)
        self._bases: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any]]] = {}  # assembled, per group list
        self._batches: dict[tuple[str, ...], list[tuple[str, ...]]] = {}  # context -> kept compositions of it + picks
        self._wanted: list[list[str]] = []  # override lists noted by prefetch, not composed yet
        self._blobs: dict[int, tuple[DictConfig, Any]] = {}  # id(skeleton) -> (it, its pickle): _copy_of

    def composed(self, groups: tuple[str, ...]) -> tuple[DictConfig, dict[str, Any]]:
        if groups not in self._cache:
            hcfg = compose_run_config(list(groups), return_hydra_config=True)
            choices = {str(k): (None if v is None else str(v)) for k, v in hcfg.hydra.runtime.choices.items()}
            with open_dict(hcfg):
                del hcfg["hydra"]
                del hcfg["cli_overrides"]
            self._cache[groups] = (hcfg, choices)
        return self._cache[groups]

    def _keep_parts(self, context: tuple[str, ...], picks: list[str]) -> None:
        """Compose `context` + `picks` (at most one per group) once and keep each pick's subtree."""
        cfg, choices = self.composed(context + tuple(picks))
        for line in picks:
            group = line.partition("=")[0]
            self._parts[(context, line)] = (cfg[group], choices.get(group))
        self._batches.setdefault(context, []).append(context + tuple(picks))  # also a skeleton (_skeleton)

    def _skeleton(self, context: tuple[str, ...], picks: list[str]) -> tuple[DictConfig, dict[str, Any]]:
        """What a job's picks are put into: the composition of `context` alone, or a kept one of
        `context` + options of groups the job picks too (their subtrees and choices are replaced, and
        an option writes nothing else): one Hydra composition fewer per sweep."""
        picked = {p.partition("=")[0] for p in picks}
        for key in self._batches.get(context, []):
            if {p.partition("=")[0] for p in key[len(context):]} <= picked:
                return self._cache[key]
        return self.composed(context)

    def _copy_of(self, skeleton: DictConfig) -> DictConfig:
        """A copy of a kept composition, from its pickle (made once per skeleton: ~5x cheaper than a
        deepcopy each time, the same config)."""
        if id(skeleton) not in self._blobs:
            self._blobs[id(skeleton)] = (skeleton, _kept(skeleton))  # the config too: its id stays its own
        return _copy(self._blobs[id(skeleton)][1])

    def part(self, context: tuple[str, ...], line: str) -> tuple[Any, Any]:
        if (context, line) not in self._parts:
            self._keep_parts(context, [line])
        return self._parts[(context, line)]

    def prefetch(self, override_lists: list[list[str]]) -> None:
        """Note the parts `override_lists` will need; the next `compose` composes them, one option of
        each group per composition (a plan whose jobs all come from sweeps/plan_memo.py composes
        nothing). A batch that fails is left to `compose`, which composes its picks one by one (the
        error is then the one that pick's own composition gives)."""
        self._wanted += [list(o) for o in override_lists]

    def _compose_wanted(self) -> None:
        """Compose the parts `prefetch` noted, in batches (one option of each group per composition)."""
        override_lists, self._wanted = self._wanted, []
        todo: dict[tuple[str, ...], dict[str, list[str]]] = {}
        for overrides in override_lists:
            split = split_overrides(overrides)
            if split is None:
                continue
            context = tuple(g for g in split[0] if not is_group_choice(g))
            for line in split[0]:
                if is_group_choice(line) and (context, line) not in self._parts:
                    lines = todo.setdefault(context, {}).setdefault(line.partition("=")[0], [])
                    if line not in lines:
                        lines.append(line)
        for context, by_group in todo.items():
            for i in range(max(len(v) for v in by_group.values())):
                batch = [v[i] for v in by_group.values() if i < len(v)]
                try:
                    self._keep_parts(context, batch)
                except Exception:  # noqa: BLE001 - composed one by one later, with that pick's own error
                    continue

    def base(self, groups: list[str]) -> tuple[DictConfig, dict[str, Any]]:
        """The composition of `groups` (group overrides only), assembled from cached parts; the
        caller gets its own copy (the assembled config is kept per group list)."""
        key = tuple(groups)
        if key not in self._bases:
            context = tuple(g for g in groups if not is_group_choice(g))
            picks = [g for g in groups if is_group_choice(g)]
            skeleton, choices = self._skeleton(context, picks)
            cfg, choices = self._copy_of(skeleton), dict(choices)
            for line in picks:
                group = line.partition("=")[0]
                subtree, choice = self.part(context, line)
                with open_dict(cfg):
                    cfg[group] = subtree  # setting a node sets a deep copy of it (OmegaConf's own rule)
                choices[group] = choice
            self._bases[key] = (_kept(cfg), choices)
        kept, choices = self._bases[key]
        return _copy(kept), dict(choices)

    def compose(self, overrides: list[str]) -> tuple[DictConfig, dict[str, Any]]:
        check_overrides(overrides, method_schemas_by_option())
        if self._wanted:
            self._compose_wanted()
        split = split_overrides(overrides)
        if split is None:  # does not parse: Hydra's full composition raises its own message
            cfg, choices = self.composed(tuple(overrides))
            return copy.deepcopy(cfg), dict(choices)
        groups, values = split
        cfg, choices = self.base(groups)
        apply_values(values, cfg)
        with open_dict(cfg):  # as compose_run_config: what was typed wins
            cfg.cli_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
        return cfg, choices


def _kept(cfg: DictConfig) -> Any:
    """A config kept to be copied many times, in the form cheapest to copy: pickled (loading it is ~6x
    cheaper than a deepcopy, the same config), or the config itself if something in it does not pickle."""
    try:
        return pickle.dumps(cfg)
    except Exception:  # noqa: BLE001 - e.g. a schema class pickle cannot find: deep-copied instead
        return cfg


def _copy(kept: Any) -> DictConfig:
    return pickle.loads(kept) if isinstance(kept, bytes) else copy.deepcopy(kept)


_default = Composer()


def compose_job(overrides: list[str]) -> tuple[DictConfig, dict[str, Any]]:
    """The process-wide composer (compositions are pure functions of the conf/ files)."""
    return _default.compose(overrides)


def prefetch(override_lists: list[list[str]]) -> None:
    """Compose, in few batches, what the process-wide composer will need for these jobs."""
    _default.prefetch(override_lists)


def primary() -> tuple[DictConfig, dict[str, Any]]:
    """conf/config.yaml composed with no override, and its group choices (kept: read, do not modify)."""
    return _default.composed(())
