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
import functools
import logging
import os
import re
import sys
from typing import Any, Callable, Optional

from omegaconf import OmegaConf

from dfdistill.core.errors import ConfigError
from dfdistill.core.log import preserved_logging
from dfdistill.schema.options import CONF_DIR, SCHEMA_PREFIX, groups
from dfdistill.config.compose import method_schemas_by_option
from dfdistill.schema.renames import check_overrides
from dfdistill.run.preflight import check_folder_setting
from dfdistill.config.compose import compose_run_config
from dfdistill.entry.messages import split_args, user_error
from dfdistill.entry.precheck import check_multirun
from dfdistill.config.resolve import resolve_config
from dfdistill.core.log import log
from dfdistill.run.pipeline import format_summary, run

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it, so scripts tell Ctrl-C from a bad input
_COMPLETION_FLAGS = ("-sc", "--shell-completion")


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
def top_level_keys() -> list[str]:
    cfg = OmegaConf.load(CONF_DIR / "config.yaml")
    return sorted(k for k in cfg if k != "defaults")


def check_argv(argv: list[str]) -> list[str]:
    """Raise a one-line ConfigError for what Hydra would answer badly; return argv (`~` paths expanded)."""
    for k, a in enumerate(argv):
        if a in _COMPLETION_FLAGS and (k + 1 == len(argv) or not re.match(r"(install|uninstall|query)=", argv[k + 1])):
            raise ConfigError(f"{a} needs an action: install=bash, uninstall=bash or query=bash "
                              f"(e.g. eval \"$(python run.py {a} install=bash)\")")
    flags, overrides = split_args(argv)
    if any(f in _COMPLETION_FLAGS for f in flags):
        return argv

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
            what = " (base_* entries are schemas, not options)" if value.startswith(SCHEMA_PREFIX) else ""
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
        return [n for n in names if not n.startswith(SCHEMA_PREFIX) and not n.endswith(".example")]

    get_group_options._dfdistill = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.get_group_options = get_group_options


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
