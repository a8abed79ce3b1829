"""Hydra override lists as Hydra's basic sweeper and job-dir naming treat them (public API only).

Why a re-implementation: `run_table` must know every job of a sweep, and its directory, before
launching anything, so it can skip finished jobs and hand the rest to any launcher. Hydra exposes
the parser (`hydra.core.override_parser`), but the expansion (`BasicSweeper.split_arguments`) and
the dir name (`config_loader_impl.get_overrides_dirname`) live in `hydra._internal`. Both are a few
lines; they are rewritten here against the public parser and pinned to Hydra's behaviour by
tests/unit/sweeps/test_sweeps.py (same job order, same `<sweep dir>/<override_dirname>` as `run.py -m`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Iterable

from hydra.core.override_parser.types import Override

from dfdistill.config.compose import parse_line, parse_line_shared
from dfdistill.core.errors import ConfigError


def parse(lines: Iterable[str], shared: bool = False) -> list[Override]:
    """Hydra's parse of each line (config.compose.parse_line: once per process, a copy per caller;
    `shared`: the process's own parse, for a caller that only reads it)."""
    lines = list(lines)
    one = parse_line_shared if shared else parse_line
    try:
        return [one(line) for line in lines]
    except Exception as exc:  # hydra's OverrideParseException: a user typo on the command line
        raise ConfigError(f"cannot parse overrides {lines}: {str(exc).splitlines()[0]}") from None


def group_of(line: str) -> str:
    """`method` for `method=dc`, `pruning.ratio` for `pruning.ratio=0.5`, `exp` for `+exp=x`."""
    return parse([line], shared=True)[0].key_or_group


def is_sweep(line: str) -> bool:
    return parse([line], shared=True)[0].is_sweep_override()


def under(key: str, groups: Iterable[str]) -> bool:
    """True when `key` is one of `groups` or a key inside one (pruning.ratio under pruning)."""
    return any(key == g or key.startswith(g + ".") for g in groups)


def expand(lines: list[str]) -> list[list[str]]:
    """Cartesian product of the sweep values, in Hydra's BasicSweeper order.

    A later override of the same key replaces an earlier one but keeps its position (so the exp's
    `hydra.sweeper.params` followed by the command line gives the command line's values)."""
    final: OrderedDict[str, list[str]] = OrderedDict()
    for o in parse(lines, shared=True):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ConfigError(f"only comma lists or range() sweep here, not {o.input_line!r}")
            final[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            final[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(x) for x in itertools.product(*final.values())]


def dirname(job: list[str], exclude_keys: Iterable[str], item_sep: str = ",", kv_sep: str = "=") -> str:
    """Hydra's `hydra.job.override_dirname` of one job: its overrides sorted, excluded keys dropped."""
    exclude = set(exclude_keys)
    lines = sorted(o.input_line for o in parse(job, shared=True) if o.key_or_group not in exclude)
    return item_sep.join(lines).replace("=", kv_sep)
