"""Estimated cost of planned jobs from what was measured (results/measured and finished runs).

Why: a table at `profile=full` is GPU-days; `--plan` must say what a sweep will cost before it
starts, from numbers measured on this code, and say "unmeasured" where there are none (never a
guess). Sources, best first:
1. finished runs (results.jsonl under results/ and the sweep dir; the committed tables' CSVs whose
   job directory names the method) of the same method, dataset, IPC, pruning and profile: their
   median wall time (the whole job, evaluation included);
2. seconds per distillation iteration of the same method, dataset, IPC and network width, from
   those runs or the bench tables (results/measured/bench_*.md): s/iter x the job's iterations,
   distillation only.
Every estimate names the device it was measured on (a CPU measurement says nothing about a GPU).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from dfdistill.sweeps.plan import REPO

ALIASES = {"cifar10_jpeg": "cifar10"}  # the JPEG folder is CIFAR-10: same sizes, same cost


@dataclass(frozen=True)
class Measurement:
    method: str
    dataset: str
    ipc: int
    pruning: str
    profile: Optional[str]
    width: Optional[int]
    device: str
    sec_per_iter: Optional[float]
    wall_seconds: Optional[float]
    source: str
    iterations: Optional[int] = None


@dataclass(frozen=True)
class Estimate:
    seconds: Optional[float]
    basis: str  # what the number rests on, or "unmeasured"
    device: str = ""
    whole_job: bool = False  # True: wall time incl. evaluation; False: distillation only


def _ds(name: Any) -> str:
    return ALIASES.get(str(name), str(name))


def _num(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and v > 0 else None  # NaN / zero / negative: not a measurement


def from_record(rec: dict[str, Any], source: str) -> Optional[Measurement]:
    cfg = rec.get("config") or {}
    if "method" not in rec or "ipc" not in rec:
        return None
    pruning = str(rec.get("pruning", "none"))
    if (cfg.get("pruning") or {}).get("stratum") is not None:  # one loss stratum (Fig. 3): another workload
        pruning += "-stratum"
    return Measurement(str(rec["method"]), _ds(rec.get("dataset")), int(rec["ipc"]), pruning,
                       rec.get("profile"), (cfg.get("backbone") or {}).get("width"),
                       str(rec.get("device_name") or rec.get("device") or "?"), _num(rec.get("sec_per_iter")),
                       _num(rec.get("wall_seconds")), source, rec.get("iterations"))


def _dirname_overrides(path: str) -> dict[str, str]:
    out = {}
    for part in Path(path).name.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.lstrip("+")] = v
    return out


def from_csv_row(row: dict[str, str], source: str) -> Optional[Measurement]:
    o = _dirname_overrides(row.get("output_dir") or "")
    if "method" not in o or not row.get("ipc", "").isdigit() or any(k.startswith("method.") for k in o):
        return None  # a run with its own method.* settings says nothing about the defaults' cost
    return Measurement(o["method"], _ds(row.get("dataset")), int(row["ipc"]), o.get("pruning", "none"),
                       o.get("profile"), None, "cpu (committed table)", _num(row.get("sec_per_iter")),
                       _num(row.get("wall_seconds")), source)


_BENCH_COLS = ("device", "dataset", "backbone (width)", "method", "pruning", "ipc", "settings", "mode", "s/iter median")


def from_bench_table(path: Path) -> list[Measurement]:
    """Rows of a bench_*.md table (our own formulation, `fast`, no method.* overrides)."""
    out, header = [], None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells if all(c in cells for c in _BENCH_COLS) else None
            continue
        if set(line) <= set("|-: "):
            continue
        r = dict(zip(header, cells))
        settings = r.get("settings", "").strip("`")
        if r.get("mode") != "fast" or "method." in settings:
            continue
        m = re.match(r"(\S+) \((\d+)\)", r.get("backbone (width)", ""))
        prof = re.search(r"profile=(\w+)", settings)
        out.append(Measurement(r["method"], _ds(r["dataset"]), int(r["ipc"]), r.get("pruning", "none"),
                               prof.group(1) if prof else "full", int(m.group(2)) if m else None, r["device"],
                               _num(r["s/iter median"]), None, f"{path.name}"))
    return out


def collect(roots: Iterable[Path]) -> list[Measurement]:
    found: list[Measurement] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for p in root.rglob("results.jsonl"):
            for line in p.read_text().splitlines()[-1:]:
                try:
                    m = from_record(json.loads(line), str(p.parent))
                except (json.JSONDecodeError, TypeError, ValueError):
                    m = None
                if m:
                    found.append(m)
        for p in root.rglob("*.csv"):
            with p.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    if m := from_csv_row(row, p.name):
                        found.append(m)
        for p in root.glob("bench_*.md"):
            found += from_bench_table(p)
    return found


def default_roots(sweep_dir: Optional[Path] = None) -> list[Path]:
    roots = [REPO / "results"]
    if sweep_dir is not None and not str(Path(sweep_dir).resolve()).startswith(str((REPO / "results").resolve())):
        roots.append(Path(sweep_dir))
    return roots


def estimate(cfg: Any, measured: list[Measurement]) -> Estimate:
    """Cost of one job from its resolved config."""
    method, ds, ipc = str(cfg.method.name), _ds(cfg.dataset.name), int(cfg.ipc)
    pruning, profile = str(cfg.pruning.get("name", "none")), str(cfg.profile.name)
    pruning += "-stratum" if cfg.pruning.get("stratum") is not None else ""
    width = cfg.backbone.get("width")
    iters = int(cfg.method.get("iterations", 0) or 0)
    same = [m for m in measured if (m.method, m.dataset, m.ipc) == (method, ds, ipc)]
    whole = [m for m in same if m.pruning == pruning and m.profile == profile and m.wall_seconds
             and m.iterations in (None, iters)]
    if whole:
        sec = statistics.median(m.wall_seconds for m in whole)
        return Estimate(sec, f"median wall time of {len(whole)} finished run(s)", whole[0].device, True)
    spi = [m for m in same if m.sec_per_iter and (m.width is None or width is None or m.width == width)
           and (m.profile in (None, profile))]
    if spi and iters > 0:
        s = statistics.median(m.sec_per_iter for m in spi)
        return Estimate(s * iters, f"{s:.3g} s/iter x {iters} iterations (distillation only; {len(spi)} measurement(s))",
                        spi[0].device, False)
    return Estimate(None, "unmeasured")


def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "unmeasured"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
