"""Finished runs as records: every results.jsonl under a folder, and the facts tables group them by.

Why: results.jsonl is the source of truth; a table is a pure function of these records, so it can
be rebuilt from any folder (a Hydra sweep dir, a copy from a cluster) at any time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd

from dfdistill.reporting.results import RESULTS_FILE, read_results
from dfdistill.scoring.empirical import epoch_range
from dfdistill.reporting.cells import ratio_of

DIVERSITY_FILE = "diversity.json"  # BiLP Fig. 4 producer's output (scripts/make_figure.py diversity)
ARCHIVE_FILE = "runs.jsonl"  # a committed table's evidence: the records of its runs, without the run dirs


def read_archive(path: str | Path) -> list[dict[str, Any]]:
    """The records of a runs.jsonl archive (one results.jsonl record per line)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def collect(folder: str | Path) -> list[dict[str, Any]]:
    """Every evaluation under `folder`: one record per distinct `config_key` of each results.jsonl (a run
    dir holds one line per evaluation of its set, e.g. other backbones; a recomputed one is its last line),
    and every record of each runs.jsonl archive (a committed table's runs, kept without their run dirs)."""
    recs = []
    for path in sorted(Path(folder).rglob(ARCHIVE_FILE)):
        recs += read_archive(path)
    for path in sorted(Path(folder).rglob(RESULTS_FILE)):
        latest: dict[Any, dict[str, Any]] = {}
        for i, rec in enumerate(read_results(path)):
            latest[rec.get("config_key", i)] = rec
        for rec in latest.values():
            rec.setdefault("output_dir", str(path.parent))
            recs.append(rec)
    return recs


def collect_diversity(folder: str | Path) -> list[dict[str, Any]]:
    """Every per-stratum diversity row under `folder` (files written by the Fig. 4 producer)."""
    rows = []
    for path in sorted(Path(folder).rglob(DIVERSITY_FILE)):
        for r in json.loads(path.read_text()):
            r.setdefault("output_dir", str(path.parent))
            rows.append(r)
    return rows


def infer_exp(folder: str | Path, records: Iterable[dict], known: Iterable[str]) -> Optional[str]:
    """The exp name from the job dirs (`+exp=NAME` in Hydra's override dirname) or the folder path."""
    known = set(known)
    for rec in records:
        for part in Path(rec.get("output_dir", "")).name.split(","):
            if part.startswith("+exp="):
                return part.split("=", 1)[1]
    for part in reversed(Path(folder).resolve().parts):
        if part in known:
            return part
    return None


def group_cfg(rec: dict[str, Any], group: str) -> dict[str, Any]:
    """The run's resolved config group (`method`, `pruning`, ...) as a dict ({} if absent)."""
    node = (rec.get("config") or {}).get(group)
    return node if isinstance(node, dict) else {}


def adaptive_cfg(rec: dict[str, Any]) -> dict[str, Any]:
    node = group_cfg(rec, "pruning").get("adaptive")
    return node if isinstance(node, dict) else {}


def ipc_of(rec: dict[str, Any]) -> str:
    return str(rec.get("ipc"))


def readout_epochs(rec: dict[str, Any]) -> int:
    """BiLP Fig. 3's 'epochs' of a run's loss scores: the last epoch read (the first E epochs)."""

    p = group_cfg(rec, "pruning")
    train = int(p.get("train_epochs") or 1)

    def last(e: Any) -> int:
        if e in (-1, "converged"):
            return train
        span = epoch_range(e)
        return span[1] if span else int(e)

    return max(last(e) for e in (p.get("epochs") or [train]))


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run (what the accuracy-vs-ratio plot reads); accuracies in percent."""

    return pd.DataFrame([{
        "method": r["method"], "pruning": r.get("pruning", "none"), "ratio": ratio_of(r),
        "dataset": r["dataset"], "ipc": ipc_of(r), "accs": [100.0 * a for a in r.get("accs", [])],
        "acc_mean": 100.0 * r.get("acc_mean", math.nan)} for r in records])
