"""A repeated `run_table.py --plan` (or `--dry-run`) of the same command takes what the last one
computed from a file: the memo of what planning derives from a job's overrides and dir (its Hydra
composition, its resolution, the plan's figures for it) and of the sweep's own compositions.

Why: planning is a pure function of the code (dfdistill/), conf/, hydra_plugins/, the papers'
numbers (results/paper/paper_tables.csv), the versions of python, torch, omegaconf and hydra-core,
the environment variables the configs name (`oc.env:`, `$VAR`; every DFDISTILL_* and HOME), the
working directory, the checkout's path and the command -- except whether each job is done (its
results.jsonl, or another table's runs), which is read fresh every time and never kept here. A cold
plan of a big table spends most of its CPU on Hydra compositions and OmegaConf resolutions; the next
one loads them instead. The output is byte for byte the same (a kept resolution says its recipe
notes again through config.resolve.say_notes).

Where: <cache_dir>/plans/<fingerprint of the code, conf and versions>/<exp>-<hash of the command,
cwd, checkout and environment>.pkl (cache_dir: $DFDISTILL_CACHE or ~/.cache/dfdistill), written
atomically when the command ends without error. A file that does not load is ignored (recomputed and
written again), never an error; so is one that cannot be written. The KEEP most recently written
fingerprint folders stay (several checkouts may share a cache); older ones are removed.

Off: `run_table.py --no-plan-memo`, or DFDISTILL_PLAN_MEMO=off (debugging); always off while
DFDISTILL_PLUGINS is set (plugin code lies outside the fingerprint) and for callers that do not ask
for it (tests, scripts that patch code in-process: only `run_table.py`'s command line does).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Optional

import hydra
import omegaconf
import torch

from dfdistill.core.artifacts import atomic_write_bytes, default_cache_dir

REPO = Path(__file__).resolve().parents[2]
INPUTS = ("dfdistill", "conf", "hydra_plugins", "results/paper/paper_tables.csv")  # every file planning reads
SWITCH = "DFDISTILL_PLAN_MEMO"  # off | 0 | false | no: no memo
KEEP = 8  # fingerprint folders kept
FORMAT = 2  # of the file: a change of layout starts afresh (2: derived jobs kept as recipes)
_ENV_NAMED = (re.compile(r"oc\.env:([A-Za-z_]\w*)"), re.compile(r"\$\{?([A-Za-z_]\w*)"))  # env vars text names
_MISSING = object()


def _files() -> Iterator[Path]:
    for name in INPUTS:
        top = REPO / name
        if top.is_file():
            yield top
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            yield from (Path(root) / f for f in sorted(files) if not f.endswith(".pyc"))


def fingerprint() -> tuple[str, set[str]]:
    """(digest of every input file's path and bytes and the versions, the env vars conf/ names)."""
    h = hashlib.sha256(f"{FORMAT} {sys.version} {torch.__version__} {omegaconf.__version__} "
                       f"{hydra.__version__}".encode())
    names: set[str] = set()
    for path in _files():
        data = path.read_bytes()
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        if path.suffix in (".yaml", ".yml"):
            names |= _env_named(data.decode(errors="replace"))
    return h.hexdigest()[:24], names


def _env_named(text: str) -> set[str]:
    return {name for pattern in _ENV_NAMED for name in pattern.findall(text)}


def memo_path(name: str, command: list[str]) -> Path:
    """The memo file of `command` (run_table's arguments) in this checkout, code and environment."""
    digest, names = fingerprint()
    names |= {k for k in os.environ if k.startswith("DFDISTILL_")} | {"HOME"} | _env_named(" ".join(command))
    names.discard(SWITCH)
    what = json.dumps({"command": list(command), "cwd": os.getcwd(), "repo": str(REPO),
                       "env": {k: os.environ.get(k) for k in sorted(names)}}, sort_keys=True)
    stem = re.sub(r"[^\w.-]", "_", name)[:60] or "plan"
    return default_cache_dir() / "plans" / digest / f"{stem}-{hashlib.sha256(what.encode()).hexdigest()[:16]}.pkl"


def enabled() -> bool:
    return (os.environ.get(SWITCH, "").strip().lower() not in ("off", "0", "false", "no")
            and not os.environ.get("DFDISTILL_PLUGINS"))


class Memo:
    """The entries of one memo file: key -> value, each a pure function of the fingerprinted inputs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = _read(path)
        self.changed = False

    def get(self, key: Hashable) -> Any:
        return self.entries.get(key, _MISSING)

    def put(self, key: Hashable, value: Any) -> None:
        self.entries[key] = value
        self.changed = True

    def save(self) -> None:
        """Write the file if anything was added (atomically); remove fingerprint folders past KEEP."""
        if not self.changed:
            return
        try:
            atomic_write_bytes(self.path, zlib.compress(_dumps({"format": FORMAT, "entries": self.entries}), 1))
            _prune(self.path.parent)
        except Exception:  # noqa: BLE001 - a memo that cannot be written costs speed, never the plan
            pass


def _read(path: Path) -> dict:
    try:
        kept = pickle.loads(zlib.decompress(path.read_bytes()))
        return kept["entries"] if kept.get("format") == FORMAT and isinstance(kept["entries"], dict) else {}
    except Exception:  # noqa: BLE001 - missing, truncated, corrupt or from other code: computed afresh
        return {}


def _dumps(obj: dict) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an entry that does not pickle is left out, the rest kept
        entries = {}
        for k, v in obj["entries"].items():
            try:
                pickle.dumps((k, v))
            except Exception:  # noqa: BLE001
                continue
            entries[k] = v
        return pickle.dumps({**obj, "entries": entries}, protocol=pickle.HIGHEST_PROTOCOL)


def _prune(current: Path) -> None:
    """Keep the KEEP most recently written fingerprint folders (this one included)."""
    os.utime(current)
    folders = sorted((d for d in current.parent.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime_ns,
                     reverse=True)
    for old in [d for d in folders if d != current][KEEP - 1:]:
        shutil.rmtree(old, ignore_errors=True)


_active: Optional[Memo] = None


@contextmanager
def session(name: str, command: list[str], on: bool = True) -> Iterator[Optional[Memo]]:
    """While the block runs, `get` / `put` / `recall` use the memo of `command`; it is written when
    the block ends without an error. `on=False` (or `enabled()` false): no memo, everything computed."""
    global _active
    memo = Memo(memo_path(name, command)) if on and enabled() else None
    previous, _active = _active, memo
    try:
        yield memo
        if memo is not None:
            memo.save()
    finally:
        _active = previous


def active() -> bool:
    return _active is not None


def get(key: Hashable) -> Any:
    """The kept value of `key`, or None (no memo, or not kept)."""
    value = _MISSING if _active is None else _active.get(key)
    return None if value is _MISSING else value


def put(key: Hashable, make: Callable[[], Any]) -> None:
    """Keep `make()` under `key` (called only while a memo is open; a value it cannot make is not kept)."""
    if _active is None:
        return
    try:
        value = make()
    except Exception:  # noqa: BLE001 - e.g. a config that does not pickle: computed again next time
        return
    _active.put(key, value)


def recall(key: Hashable, make: Callable[[], Any]) -> Any:
    """The kept value of `key`, else `make()` (kept for next time while a memo is open)."""
    if _active is not None:
        value = _active.get(key)
        if value is not _MISSING:
            return value
    value = make()
    if _active is not None:
        _active.put(key, value)
    return value
