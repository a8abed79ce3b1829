"""Local, machine-readable results (the source of truth for tables) and image grids.

results.jsonl holds one JSON line per finished evaluation of a run dir: the distillation plus
evaluation identity (`config_key`) decides which line a rerun finds or replaces, so evaluating the
same synthetic set under another protocol adds a line instead of overwriting the first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dfdistill.core.artifacts import atomic_write_text, atomic_writer
from dfdistill.core.errors import DataError

RESULTS_FILE = "results.jsonl"


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every record of a results.jsonl; a damaged line is a one-line DataError (nothing is dropped silently)."""
    path = Path(path)
    recs = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            raise DataError(f"{path} line {n} is not a complete JSON record (truncated or edited?); move the file "
                            f"aside (mv {path} {path}.bad) or delete that line, then rerun")
        recs.append(rec)
    return recs


def write_results(out_dir: Path, record: dict[str, Any]) -> Path:
    """Add `record` to results.jsonl (atomically), replacing an earlier line with the same config_key."""
    path = Path(out_dir) / RESULTS_FILE
    keep = [r for r in read_results(path) if r.get("config_key") != record.get("config_key")] if path.exists() else []
    lines = [json.dumps(r, default=_jsonable) for r in [*keep, record]]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _jsonable(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / n) if n > 1 else 0.0
    return m, sd


def save_grid(images01: Tensor, labels: Tensor, path: Path, max_per_class: int = 10) -> Path:
    """PNG grid, one row per class (first `max_per_class` images of each), written atomically."""
    from torchvision.utils import make_grid, save_image

    labels = labels if labels.dim() == 1 else labels.argmax(-1)
    rows = []
    classes = sorted(set(labels.tolist()))
    per = min(max_per_class, max(int((labels == c).sum()) for c in classes))
    for c in classes:
        x = images01[labels == c][:per]
        if x.shape[0] < per:
            x = torch.cat([x, x.new_ones(per - x.shape[0], *x.shape[1:])])
        rows.append(x)
    grid = make_grid(torch.cat(rows).cpu().float(), nrow=per, padding=1, pad_value=1.0)
    with atomic_writer(path) as fh:
        save_image(grid, fh, format="png")
    return path
