"""Config keys that were renamed so that no key means two things (old name -> one-line error).

Why a table and not silent aliases: an alias would let `method.inner_loop` mean network epochs for
DC and matching steps for IDC again. Each entry says which methods the old name belonged to (None:
every method / group), so `method.inner_loop` stays valid for DC and is refused only for IDC.
"""

from __future__ import annotations

from typing import Iterable, Optional

from dfdistill.core.errors import ConfigError

# old dotted key -> (new dotted key, the method schemas it applies to or None for all)
RENAMED: dict[str, tuple[str, Optional[frozenset[str]]]] = {
    "method.metric": ("method.dis_metric", None),
    "method.inner_loop": ("method.match_steps", frozenset({"idc"})),
    "method.lr_teacher": ("method.syn_lr_init", frozenset({"mtt", "tesla"})),
    "method.train_epochs": ("method.expert_train_epochs", frozenset({"mtt", "tesla"})),
    "method.gamma": ("method.l1_weight", frozenset({"dfcolearn"})),
    "method.lam": ("method.mi_weight", frozenset({"dfcolearn"})),
    "eval.gamma": ("eval.lr_decay", None),
    "profile.inner_loop": ("profile.match_steps", None),
    "profile.expert_epochs": ("profile.expert_train_epochs", None),
}


def renamed_key(key: str, method: Optional[str] = None) -> Optional[str]:
    """The new name of `key` (e.g. 'method.metric') for `method` (its schema name), or None."""
    key = key.lstrip("+~")
    entry = RENAMED.get(key)
    if entry is None:
        return None
    new, methods = entry
    if methods is not None and method is not None and method not in methods:
        return None
    return new


def method_choice(overrides: Iterable[str], default: str = "dm") -> str:
    """The `method=` option among command-line overrides (the primary config's default otherwise)."""
    choice = default
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+~") == "method" and value:
            choice = value
    return choice


def check_overrides(overrides: Iterable[str], schema_of: Optional[dict[str, str]] = None) -> None:
    """Raise a one-line ConfigError if an override uses a renamed key.

    `schema_of` maps a method option (dsa, dfcolearn_random, ...) to its schema name (dc, dfcolearn);
    options missing from it are taken as their own schema."""
    overrides = list(overrides)
    option = method_choice(overrides)
    schema = (schema_of or {}).get(option, option)
    for o in overrides:
        key = o.partition("=")[0]
        new = renamed_key(key, schema)
        if new is not None:
            raise ConfigError(f"{key.lstrip('+~')} was renamed to {new} (one name, one meaning); "
                              f"use {new}={o.partition('=')[2]}")
