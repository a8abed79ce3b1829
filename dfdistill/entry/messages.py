"""A failure the user can cause -> its one `error:` line (None for a bug, which keeps its traceback).

Why its own module: the command line (entry.cli) and the check of a `-m` sweep before it starts
(entry.precheck) report failures the same way, and the command line runs that check.
"""

from __future__ import annotations

import difflib
import errno
import re
import sys
from typing import Optional

from hydra.errors import HydraException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dfdistill.config.compose import compose_run_config
from dfdistill.core.errors import DfdistillError
from dfdistill.schema.groups import type_hint

# Hydra flags that take a value (the next word is not an override)
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}

def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(flags with their values, overrides) as Hydra's argument parser will see them."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            flags.append(a)
            if a in _FLAGS_WITH_VALUE and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(a)
        i += 1
    return flags, overrides


def user_error(exc: BaseException) -> Optional[str]:
    """The one-line message for a user-facing failure, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, DfdistillError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return str(exc) or "interrupted; rerun the same command to continue (finished work is kept)"
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return hydra_error(exc)
    if isinstance(exc, OSError):
        return os_error(exc)
    if isinstance(exc, ValueError) and isinstance(exc.__cause__, OSError):  # logging's "Unable to configure handler"
        return os_error(exc.__cause__)
    return None


def os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full writing{where}; free space, or write elsewhere (hydra.run.dir=..., DFDISTILL_CACHE=...), "
                "then rerun the same command (finished work is kept)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write{where}: {exc.strerror}; give a writable hydra.run.dir=... (and cache_dir=...) "
                "or fix the permissions")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return (f"cannot make the folder{where}: a part of that path is a file; give a folder path in "
                "hydra.run.dir=... (or cache_dir= / DFDISTILL_CACHE)")
    return f"{exc.strerror or exc}{':' + where if where else ''}"


def hydra_error(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, OverrideParseException):
        bad = text.splitlines()[0].split(":", 1)[-1].strip()
        return f"cannot parse the override '{bad}'; quote values with special characters, e.g. key='a b'"
    if first.startswith("Could not override"):
        return unknown_nested_key(first, exc)
    merged = re.match(r"Error merging override (\S+?)=(.*)$", first)
    if merged and "is not a ListConfig" in f"{text} {exc.__cause__}":
        key, value = merged.groups()
        return f"{key} is a list: type {key}=[{value}] (several: {key}=[{value},...])"
    want = re.search(r"could not be converted to (\w+)", f"{text} {exc.__cause__}")
    if merged and want:  # a schema-typed key (eval.num_eval=two) fails while Hydra merges it

        return type_hint(merged.group(1), want.group(1), merged.group(2))
    cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ is not None and str(exc.__cause__) else ""
    return first + (f" ({cause})" if cause and cause not in first else "")


def unknown_nested_key(first: str, exc: BaseException) -> str:
    """`method.lr_imgg=1` -> "method has no key 'lr_imgg'; did you mean method.lr_img?"."""
    key = first.split("'")[1] if first.count("'") >= 2 else ""
    parent, _, leaf = key.rpartition(".")
    msg = f"{parent or 'the config'} has no key '{leaf or key}'"
    try:

        others = [a for a in split_args(sys.argv[1:])[1] if a.partition("=")[0].lstrip("+~") != key]
        node = OmegaConf.select(compose_run_config(others), parent) if parent else None
        close = difflib.get_close_matches(leaf, list(node.keys()), n=1) if node is not None else []
        if close:
            return f"{msg}; did you mean {parent}.{close[0]}?"
        if node is not None:
            return f"{msg}; its keys: {', '.join(map(str, node.keys()))}"
    except Exception:  # noqa: BLE001 - the hint is best effort; the message stands without it
        pass
    return msg
