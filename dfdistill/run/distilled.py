"""Finished distillations by their identity (distill_key), so a changed evaluation never distils again.

Why: the run dir's name holds every typed override, `eval.*` ones included, so `eval.num_eval=2` lands
in a new run dir -- but the distillation identity (dfdistill.config.resolve.identity) leaves the
evaluation out, and the set it names already exists. A small content-keyed index beside the
experts/scores caches (`<cache>/distilled/<distill_key>.json` -> the run dir that finished it) lets any
run dir find it; its final checkpoint is copied in, so the loop resumes at its last iteration (nothing
is distilled) and the set is evaluated under the new protocol, the same bytes as in its own run dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from dfdistill.core.artifacts import ArtifactCache, atomic_write_bytes, atomic_write_text, load_tensor_file
from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.core.log import log

INDEX_KIND = "distilled"


def index_path(cache: ArtifactCache, key: str) -> Path:
    return cache.root / INDEX_KIND / f"{key}.json"


def register(cache: ArtifactCache, key: str, out_dir: Path, iteration: int) -> None:
    """Record that `out_dir` holds the finished distillation `key` (its checkpoint at `iteration`); a cache
    that cannot be written costs only the reuse, never the finished run."""
    try:
        atomic_write_text(index_path(cache, key), json.dumps({"run_dir": str(out_dir), "iteration": int(iteration)}))
    except OSError as exc:
        log.info(f"could not index this distillation in {cache.root} ({exc.strerror or exc}); other run dirs "
                 "will not find it")


def register_existing(cache: ArtifactCache, key: str, out_dir: Path) -> None:
    """Index a distillation finished before the index existed (or in another cache), when its run dir's
    stored result is reused, so that other run dirs find it from then on."""
    if index_path(cache, key).exists():
        return
    try:
        ck = load_tensor_file(out_dir / CHECKPOINT_FILE)
    except Exception:  # noqa: BLE001 - no readable checkpoint: nothing to offer
        return
    if ck.get("config_key") == key:
        register(cache, key, out_dir, ck["iteration"])


def find(cache: ArtifactCache, key: str, out_dir: Path) -> Optional[Path]:
    """Another run dir whose checkpoint is the finished distillation `key`, else None (an entry whose dir
    was moved, deleted, or since holds another state is ignored)."""
    try:
        entry = json.loads(index_path(cache, key).read_text())
        where = Path(entry["run_dir"])
        if where == out_dir:
            return None
        ck = load_tensor_file(where / CHECKPOINT_FILE)
    except Exception:  # noqa: BLE001 - no entry, or a stale one: distil as if none were recorded
        return None
    return where if ck.get("config_key") == key and ck.get("iteration") == entry.get("iteration") else None


def adopt(source: Path, out_dir: Path) -> None:
    """Copy the finished checkpoint of `source` into `out_dir` (atomically), to be resumed there."""
    atomic_write_bytes(out_dir / CHECKPOINT_FILE, (source / CHECKPOINT_FILE).read_bytes())
