"""Local, machine-readable results (the source of truth for tables) and image grids."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dfdistill.artifacts import atomic_write_text

RESULTS_FILE = "results.jsonl"


def write_results(out_dir: Path, record: dict[str, Any]) -> Path:
    """Rewrite results.jsonl atomically with `record` as its line (one finished run per dir)."""
    path = Path(out_dir) / RESULTS_FILE
    atomic_write_text(path, json.dumps(record, default=_jsonable) + "\n")
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(l) for l in lines if l.strip()]


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
    """PNG grid, one row per class (first `max_per_class` images of each)."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    save_image(grid, tmp)
    tmp.replace(path)
    return path
