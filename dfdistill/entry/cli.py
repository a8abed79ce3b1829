"""The command line around run.py's one `@hydra.main`: checks before Hydra, one line for every error.

Why: Hydra answers a typo with a stack trace or a wrong hint (`methd=dc` -> "use +methd=dc"), a
disk or Ctrl-C problem surfaces as a traceback, and `--help` offers the `base_*` schema entries as
options. `main()` checks the overrides first (renamed keys, unknown keys with the closest real one,
group options), runs Hydra with its errors propagated, and turns every user-facing failure into
`error: <what to do>` on stderr with exit code 2 (the message also lands in run.log when a run dir
exists). Real bugs keep their traceback; DFDISTILL_DEBUG=1 or HYDRA_FULL_ERROR=1 shows it for all.
"""

from __future__ import annotations

import difflib
import errno
import functools
import logging
import os
import re
import sys
from typing import Any, Callable, Optional

from omegaconf import OmegaConf

from dfdistill.config.resolve import CONF_DIR
from dfdistill.core.errors import ConfigError, DfdistillError
from dfdistill.core.log import preserved_logging

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it, so scripts tell Ctrl-C from a bad input
# Hydra flags that take a value (the next word is not an override)
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}
_COMPLETION_FLAGS = ("-sc", "--shell-completion")
_GROUP_PREFIX_HIDDEN = "base_"  # structured-config schemas stored beside the YAML options


class Reported(Exception):
    """A user error of one sweep job, already logged (console + its run.log); the other jobs still run,
    Hydra names the failed job at the end and the process exits 2."""


class ReportedInterrupt(KeyboardInterrupt):
    """An interrupt already reported inside the job; stops a sweep, exits 130."""


def debug() -> bool:
    return bool(os.environ.get("DFDISTILL_DEBUG") or os.environ.get("_DFDISTILL_USER_FULL_ERROR"))


# ---------------------------------------------------------------------------------------------- #
# before Hydra
# ---------------------------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=1)
def groups() -> dict[str, list[str]]:
    """conf/<group>/ -> its selectable options (YAML files; `base_*` schemas and example dirs excluded)."""
    out = {}
    for d in sorted(CONF_DIR.iterdir()):
        if d.is_dir() and "." not in d.name:
            out[d.name] = sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith(_GROUP_PREFIX_HIDDEN))
    return out


@functools.lru_cache(maxsize=1)
def top_level_keys() -> list[str]:
    cfg = OmegaConf.load(CONF_DIR / "config.yaml")
    return sorted(k for k in cfg if k != "defaults")


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


def check_argv(argv: list[str]) -> list[str]:
    """Raise a one-line ConfigError for what Hydra would answer badly; return argv (`~` paths expanded)."""
    for k, a in enumerate(argv):
        if a in _COMPLETION_FLAGS and (k + 1 == len(argv) or not re.match(r"(install|uninstall|query)=", argv[k + 1])):
            raise ConfigError(f"{a} needs an action: install=bash, uninstall=bash or query=bash "
                              f"(e.g. eval \"$(python run.py {a} install=bash)\")")
    flags, overrides = split_args(argv)
    if any(f in _COMPLETION_FLAGS for f in flags):
        return argv
    from dfdistill.config.compose import method_schemas_by_option
    from dfdistill.schema.renames import check_overrides

    check_overrides(overrides, method_schemas_by_option())
    for o in overrides:
        check_override(o)
        check_folder_override(o)
    return [quote_path(expand_home(a)) if a in overrides else a for a in argv]


_PATH_KEYS = ("synthetic", "resume")  # values that are run dirs, whose names hold `=` and `,`


def quote_path(o: str) -> str:
    """`synthetic=outputs/digits/dm-ipc1/ipc=1,method=dm` -> the value quoted for Hydra's override grammar,
    which would read the `,` as a sweep and the `=` as a syntax error; only when the whole value is an
    existing path (so `-m synthetic=a.pt,b.pt` still sweeps)."""
    key, eq, value = o.partition("=")
    if not eq or key.lstrip("+~") not in _PATH_KEYS or value[:1] in ("'", '"') or not os.path.exists(value):
        return o
    if "'" in value or "\\" in value or not any(c in value for c in "=,[]{}()\" :$*?"):
        return o  # nothing to quote, or what single quotes cannot hold as typed
    return f"{key}='{value}'"


def check_override(o: str) -> None:
    key, eq, value = o.partition("=")
    if not eq:
        return
    bare = key.lstrip("+~")
    head = bare.split(".")[0].split("/")[0].split("@")[0]
    known = set(groups()) | set(top_level_keys()) | {"hydra"}
    if bare in groups() and not any(c in value for c in ",()*[]") and value:
        options = groups()[bare]
        if value not in options:
            what = " (base_* entries are schemas, not options)" if value.startswith(_GROUP_PREFIX_HIDDEN) else ""
            close = difflib.get_close_matches(value, options, n=1)
            hint = f"did you mean {bare}={close[0]}? " if close and not what else ""
            raise ConfigError(f"{bare}={value} is not a {bare} option{what}; {hint}choose from {', '.join(options)}")
    elif head not in known and not key.startswith("+"):
        close = difflib.get_close_matches(head, sorted(known - {"hydra"}), n=1, cutoff=0.6)
        fix = f"did you mean {o.lstrip('+~').replace(head, close[0], 1)}?" if close else \
            f"top-level keys: {', '.join(top_level_keys())}; groups: {', '.join(groups())}"
        raise ConfigError(f"unknown key '{head}' in {o}; {fix}")


def check_folder_override(o: str) -> None:
    """`hydra.run.dir=<a file>/sub`: one line naming the setting (Hydra would fail making the folder)."""
    from dfdistill.run.preflight import check_folder_setting

    key, eq, value = o.partition("=")
    key = key.lstrip("+~")
    if eq and key in ("hydra.run.dir", "hydra.sweep.dir", "cache_dir") and value and "${" not in value:
        check_folder_setting(os.path.expanduser(value.strip("'\"")), key)


def expand_home(o: str) -> str:
    """`dataset.root=~/data` -> the home path (Hydra's override grammar cannot parse a bare `~`)."""
    key, eq, value = o.partition("=")
    if eq and value.startswith("~"):
        return f"{key}={os.path.expanduser(value)}"
    return o


def hide_schema_options() -> None:
    """Keep `base_*` schemas (and example folders) out of --help, shell completion and glob sweeps."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    if getattr(ConfigLoaderImpl.get_group_options, "_dfdistill", False):
        return
    original = ConfigLoaderImpl.get_group_options

    def get_group_options(self, group_name, *args, **kwargs):
        names = original(self, group_name, *args, **kwargs)
        return [n for n in names if not n.startswith(_GROUP_PREFIX_HIDDEN) and not n.endswith(".example")]

    get_group_options._dfdistill = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.get_group_options = get_group_options


# ---------------------------------------------------------------------------------------------- #
# errors -> one line
# ---------------------------------------------------------------------------------------------- #
def user_error(exc: BaseException) -> Optional[str]:
    """The one-line message for a user-facing failure, or None for a bug (which keeps its traceback)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

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
    from hydra.errors import OverrideParseException

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
        from dfdistill.schema.groups import type_hint

        return type_hint(merged.group(1), want.group(1), merged.group(2))
    cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ is not None and str(exc.__cause__) else ""
    return first + (f" ({cause})" if cause and cause not in first else "")


def unknown_nested_key(first: str, exc: BaseException) -> str:
    """`method.lr_imgg=1` -> "method has no key 'lr_imgg'; did you mean method.lr_img?"."""
    key = first.split("'")[1] if first.count("'") >= 2 else ""
    parent, _, leaf = key.rpartition(".")
    msg = f"{parent or 'the config'} has no key '{leaf or key}'"
    try:
        from dfdistill.config.compose import compose_run_config

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


# ---------------------------------------------------------------------------------------------- #
# the entry point and the job
# ---------------------------------------------------------------------------------------------- #
def main(hydra_main: Callable[[], Any], argv: Optional[list[str]] = None) -> int:
    """Check `argv`, run `hydra_main` (run.py's decorated function) on it; the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    saved_argv = sys.argv
    try:
        sys.argv = [saved_argv[0] if saved_argv else "run.py", *check_argv(argv)]
        flags, overrides = split_args(sys.argv[1:])
        if {"-m", "--multirun"} & set(flags) and not {"--help", "-h", "--cfg", "-c", "--info", "-i"} & set(flags):
            from dfdistill.entry.precheck import check_multirun

            check_multirun(overrides)  # every job validated before the first starts
        hide_schema_options()
        if wants_print_config(sys.argv[1:]):
            print_config(split_args(sys.argv[1:])[1])
            return 0
        if user_full_error:
            os.environ["_DFDISTILL_USER_FULL_ERROR"] = "1"
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's partial traceback
        with preserved_logging():
            hydra_main()
        return 0
    except ReportedInterrupt:
        return EXIT_INTERRUPTED
    except Reported:
        return EXIT_USER_ERROR
    except SystemExit as exc:  # a reported error of a single run, argparse, --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - mapped to one line or re-raised
        msg = user_error(exc)
        if msg is None or debug():
            raise
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_USER_ERROR
    finally:
        forget_hydra_run()
        sys.argv = saved_argv
        os.environ.pop("_DFDISTILL_USER_FULL_ERROR", None)
        if user_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = user_full_error


def wants_print_config(argv: list[str]) -> bool:
    """A single run with `print_config=true` (a sweep or a Hydra flag such as --cfg goes through Hydra)."""
    flags, overrides = split_args(argv)
    return not flags and any(o.partition("=")[0] == "print_config" and
                             o.partition("=")[2].lower() in ("true", "yes", "1", "on") for o in overrides)


def print_config(overrides: list[str]) -> None:
    """The effective config on stdout, composed without Hydra's run: Hydra creates the run dir, its
    `.hydra/` and `run.log` before the job starts, and a look at the config must write nothing (it would
    also rewrite `.hydra/` of an existing run). `output_dir` is the dir the same command would run in."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from dfdistill.config.compose import compose_run_config
    from dfdistill.config.resolve import resolve_config
    from dfdistill.core.log import log

    cfg = compose_run_config(overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        run_dir = str(cfg.hydra.run.dir)
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.output_dir = os.path.abspath(run_dir)
    level = log.level
    log.setLevel(logging.WARNING)  # stdout is the config alone, so it can be piped or parsed
    try:
        print(OmegaConf.to_yaml(resolve_config(cfg)), end="")
    finally:
        log.setLevel(level)


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def forget_hydra_run() -> None:
    """Leave no Hydra singletons behind (an in-process caller would otherwise see a finished run's
    HydraConfig, e.g. its launch directory, as if still inside it)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None  # type: ignore[assignment]
    GlobalHydra.instance().clear()


def job(cfg) -> float:
    """The body of run.py's @hydra.main: run (or print_config), log the summary, report a user error
    once and re-raise."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from dfdistill.config.resolve import resolve_config
    from dfdistill.core.log import log
    from dfdistill.run.pipeline import format_summary, run

    with open_dict(cfg):  # what the user typed wins over recipes and profiles (config/resolve.py)
        cfg.cli_overrides = list(HydraConfig.get().overrides.task)
    try:
        if cfg.print_config:  # stdout is the config alone (no log lines), so it can be piped or parsed
            log.setLevel(logging.WARNING)
            print(OmegaConf.to_yaml(resolve_config(cfg)), end="")
            return float("nan")
        record = run(cfg)
    except BaseException as exc:  # noqa: BLE001 - mapped to one line or re-raised
        msg = None if isinstance(exc, SystemExit) else user_error(exc)
        if msg is None or debug():
            raise
        log.error(msg)
        if isinstance(exc, KeyboardInterrupt):
            raise ReportedInterrupt(msg) from None
        if in_sweep():
            raise Reported(msg) from None
        raise SystemExit(EXIT_USER_ERROR) from None
    log.info(format_summary(record))
    return float(record.get("acc_mean", float("nan")))
