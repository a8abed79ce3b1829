"""Compose conf/config.yaml outside `@hydra.main` (tests, sweep planning), exactly as run.py would.

Composing costs Hydra a second or more (it re-reads and merges every YAML), and sweep planning and the
test suite compose the same override lists again and again; so each result is kept, keyed by everything
it depends on (the overrides, whether Hydra's own node is wanted, the working directory, the schemas
registered and the conf/ files' stamps), and every caller gets its own deep copy: one caller's edits
never reach another's config, and the bytes are those of a fresh composition.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from functools import lru_cache
from typing import Hashable, Optional

from omegaconf import DictConfig, open_dict
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from dfdistill.config import hydra_reuse
from dfdistill.schema.renames import check_overrides
from dfdistill.schema.options import CONF_DIR, method_schemas_by_option
from dfdistill.config.store import register_configs
from dfdistill.models import MODELS
from dfdistill.core.registry import METHODS

_CACHE_SIZE = 512  # composed configs kept (a few hundred KB each at most)
_cache: "OrderedDict[Hashable, tuple[DictConfig, bool]]" = OrderedDict()
_registered: list[Hashable] = []  # the registry state register_configs last stored
apply_values = ConfigLoaderImpl._apply_overrides_to_config  # Hydra's own step after the defaults list


def _registry_state() -> Hashable:
    """What register_configs stores: every method's schema and every backbone's constructor."""

    return (tuple((e.name, id(e.meta["config"])) for e in METHODS), tuple((e.name, id(e.obj)) for e in MODELS))


def _register_once() -> Hashable:
    """register_configs() again only when a method or backbone was (un)registered since the last time."""
    state = _registry_state()
    if not _registered or _registered[0] != state:
        register_configs()
        _registered[:] = [state]
    return state


def _conf_stamp() -> Hashable:
    """Every file under conf/ with its size and modification time: an edited YAML is composed afresh."""
    stamp = []
    for root, _, files in os.walk(CONF_DIR):
        for name in files:
            st = os.stat(os.path.join(root, name))
            stamp.append((root, name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(stamp))


def clear_compose_cache() -> None:
    """Forget every kept composition (the next call composes afresh)."""
    _cache.clear()


def compose_run_config(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The composed primary config for `overrides` (a private copy); leaves no global Hydra state behind.

    Value overrides (`ipc=1`, `method.iterations=5`) are applied to a kept composition of the group
    choices, as Hydra itself applies them after composing the defaults list; anything else (group
    options, `hydra.*`, sweeps, packages) and any error goes through a full Hydra composition."""
    overrides = list(overrides)
    check_overrides(overrides, method_schemas_by_option())
    state = (os.getcwd(), _register_once(), _conf_stamp())
    cfg = None if return_hydra_config else _split_compose(overrides, state)
    if cfg is None:
        full, _ = _kept((tuple(overrides), return_hydra_config, *state),
                        lambda: (_compose(overrides, return_hydra_config), True))
        cfg = copy.deepcopy(full)
    return _typed(cfg, overrides)


def _split_compose(overrides: list[str], state: tuple) -> Optional[DictConfig]:
    """Value overrides applied to a copy of the kept composition of the rest; None where that is not
    sure to equal Hydra's composition (an unusual override, an extra search path, any error)."""
    try:
        split = split_overrides(overrides)
        if split is None:
            return None
        groups, values = split
        base, trusted = _kept((tuple(groups), "groups", *state), lambda: _compose_groups(groups, state))
        if not trusted:
            return None
        cfg = copy.deepcopy(base)
        apply_values(values, cfg)
        return cfg
    except Exception:  # the full composition below raises Hydra's own message
        return None


def _kept(key: Hashable, make) -> tuple[DictConfig, bool]:
    if key not in _cache:
        _cache[key] = make()
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    return _cache[key]


def _typed(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    with open_dict(cfg):  # as run.py records Hydra's task overrides: what was typed wins
        cfg.cli_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    return cfg


def split_overrides(overrides: list[str]) -> Optional[tuple[list[str], list[Override]]]:
    """(group-level overrides, parsed value overrides), or None when the overrides do not parse.
    Group-level = what Hydra treats while building the defaults list (group options, packages, sweeps,
    hydra.*); values are applied after it, to the composed config (`apply_values`)."""
    try:
        parsed = [parse_line(line) for line in overrides]
    except Exception:
        return None
    groups, values = [], []
    for line, ov in zip(overrides, parsed):
        key = ov.key_or_group
        if (ov.is_sweep_override() or ov.package is not None or key.startswith("hydra") or "/" in key
                or (CONF_DIR / key).is_dir() or key in ConfigStore.instance().repo):
            groups.append(line)
        else:
            values.append(ov)
    return groups, values


def _compose_groups(groups: list[str], state: tuple) -> tuple[DictConfig, bool]:
    """Hydra's composition of `groups` without its own node, and whether the group test in _split holds
    for it (no extra search path could make a value key name a group). The composition with Hydra's
    node is the kept one when there is one (a sweep plan asks for both: sweep dir, then the jobs)."""
    full, _ = _kept((tuple(groups), True, *state), lambda: (_compose(groups, return_hydra_config=True), True))
    cfg = copy.deepcopy(full)
    trusted = not cfg.hydra.get("searchpath")
    with open_dict(cfg):
        del cfg["hydra"]  # as hydra.compose does when its node is not asked for
    return cfg, trusted


@lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()


@lru_cache(maxsize=None)
def _parsed_line(line: str) -> Override:
    return _parser().parse_overrides([line])[0]


def parse_line(line: str) -> Override:
    """Hydra's parse of one override line (its own copy), parsed once per process: the parser takes
    ~0.2 ms a line and sweep planning parses the same few dozen lines thousands of times. Lines parse
    independently, so a list parses as its lines do. Raises Hydra's OverrideParseException."""
    return copy.deepcopy(_parsed_line(line))


def parse_line_shared(line: str) -> Override:
    """`parse_line` without the copy, for callers that only read it (the copy is most of the cost
    once a line was parsed: sweep planning reads key and value of a few lines ~10,000 times)."""
    return _parsed_line(line)


def _compose(overrides: list[str], return_hydra_config: bool) -> DictConfig:
    GlobalHydra.instance().clear()
    try:  # hydra_reuse: what Hydra would redo in each composition, not redone (the same result)
        with hydra_reuse.reused(), initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
