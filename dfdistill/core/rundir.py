"""Run directories: deterministic names (Hydra resolvers) and one process per directory (a lock).

Why: a rerun of the same command must land in the same directory to resume or skip, a relaunched
`-m` sweep in the same sweep directory, and two processes must never write one run's files at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import OmegaConf

from dfdistill.core.errors import ConfigError

LOCK_FILE = ".lock"
# command-line keys that never change what a sweep computes (kept out of its directory name)
_NOT_IN_NAME = re.compile(r"^[+~]*(hydra\.|resume=|force=|progress=|logger[.=]|device=|log_every=|checkpoint_every=)")


def _safe(text: str, limit: int = 80) -> str:
    """A path component: no slashes or odd characters; long names end in a hash so they stay unique."""
    s = re.sub(r"[^A-Za-z0-9=,._+-]", "_", text)
    if len(s) > limit:
        s = s[: limit - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return s or "default"


def sweep_name(task_overrides: Any) -> str:
    """multirun/<this>: the sorted command-line overrides of the sweep (`ipc=1,10,method=dc,dsa`).

    Hydra caches the value it resolved for the whole sweep and hands that cache to every job, so
    all jobs of one launch share it, and a relaunch of the same command gets the same directory."""
    items = sorted(sorted_choices(str(o)) for o in (task_overrides or []) if not _NOT_IN_NAME.match(str(o)))
    return _safe(",".join(items))


def _natural(value: str) -> tuple:
    """Sort key: numbers by value (`ipc=1,10,50`), then words."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def sorted_choices(override: str) -> str:
    """`method=dm,dc` -> `method=dc,dm`: a sweep's value list is a set, so its order must not name a
    different directory. Values with brackets, quotes or sweep functions (`range(...)`) stay as typed."""
    key, eq, value = override.partition("=")
    if not eq or "," not in value or any(c in value for c in "[]{}()'\"\\"):
        return override
    return f"{key}={','.join(sorted(value.split(','), key=_natural))}"


def run_dir(stage: str, synthetic: Optional[str], base: str, override_dirname: str) -> str:
    """hydra.run.dir: `<base>/<overrides>`; a `stage=eval` run: `outputs/eval/<the set>/<overrides>`."""
    if stage != "eval" or not synthetic:
        return f"{base}/{override_dirname}"
    src = Path(os.path.abspath(os.path.expanduser(str(synthetic))))
    tag = _safe(f"{src.parent.name}_{src.name}", 60) + "-" + hashlib.sha1(str(src).encode()).hexdigest()[:8]
    return f"outputs/eval/{tag}/{override_dirname}"


def register_resolvers() -> None:
    """`${dfdistill.run_dir:...}` and `${dfdistill.sweep_name:...}` for conf/config.yaml's hydra dirs."""
    if not OmegaConf.has_resolver("dfdistill.run_dir"):
        OmegaConf.register_new_resolver("dfdistill.run_dir", run_dir)
    if not OmegaConf.has_resolver("dfdistill.sweep_name"):
        OmegaConf.register_new_resolver("dfdistill.sweep_name", sweep_name, use_cache=True)


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold `<out_dir>/.lock` for the run; a second process gets a one-line ConfigError at once.

    An flock dies with its process (even on SIGKILL), so a killed run never leaves a stale lock."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fh = open(out_dir / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            raise ConfigError(f"another dfdistill process (pid {pid}) is running in {out_dir}; wait for it to finish "
                              "(rerunning then resumes or skips), or give this run another hydra.run.dir=") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()
