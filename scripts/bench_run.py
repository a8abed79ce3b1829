#!/usr/bin/env python
"""Whole-run wall time, stage by stage, of one or more code checkouts (issue 16's "before vs after").

Why a separate script: `bench.py` times distillation iterations inside one process, but a run is also
data loading, experts, DC's inner loop and the evaluation networks, and the speed work targets those.
Only a whole `run.py` process measures them, and only its own results record says where the time went.
Both the old and the new code write `stage_seconds` (data, pruning, prepare, distill, eval, ...) and
`acc_mean` into `results.jsonl`, so the script needs nothing from either checkout but `run.py`.

    python scripts/bench_run.py --code before=/work/speed-before --code after=. \\
        --config dm1="method=dm ipc=1" --config dc1="method=dc ipc=1" --seeds 0 --seeds-of after=0,1,2

Runs are interleaved (config by config, seed by seed, checkout by checkout: B, A, B, A, ...) so load
from other jobs hits every checkout alike. Each run gets a fresh artifact cache (experts, scores) and a
fresh inductor cache, so nothing computed by an earlier run is reused (cold start, the conservative
case); decoded datasets are shared (linked) because loading them is the same for every checkout.
`--warm-inductor` keeps one inductor cache per checkout instead. Rows are appended to `<out>.jsonl`
(finished rows are skipped on a rerun: resumable) and `<out>.md` is rewritten from all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = (ROOT / ".." / "shared" / "data" / "cifar10-jpeg").resolve()  # as scripts/bench_methods.py
COMMON = (f"dataset=cifar10_jpeg dataset.root={CIFAR10_JPEG} profile=cpu logger=none "
          "eval.compare_random=false progress=false")
DATASETS = Path(os.environ.get("DFDISTILL_CACHE") or Path.home() / ".cache" / "dfdistill") / "datasets"
STAGES = ("data", "prepare", "distill", "eval")  # shown as columns; the rest go into "other"


@dataclass
class Code:
    label: str
    path: Path
    extra: list[str] = field(default_factory=list)  # overrides this label adds (e.g. compile=off)
    seeds: Optional[list[int]] = None  # None: the common --seeds


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what} wants NAME=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def commit_of(path: Path) -> str:
    try:
        sha = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "?"


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_one(code: Code, name: str, overrides: list[str], seed: int, args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    """One `run.py` process in `code.path`; the row from its results record plus the process wall."""
    tag = f"{name}-{code.label}-s{seed}"
    if (work / tag).exists():  # a killed earlier attempt: no checkpoint, expert or graph of it is reused
        shutil.rmtree(work / tag)
    cache = work / tag / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if DATASETS.is_dir() and not (cache / "datasets").exists():
        (cache / "datasets").symlink_to(DATASETS)
    inductor = work / (f"inductor-{code.label}" if args.warm_inductor else f"{tag}/inductor")
    out_dir = work / tag / "out"
    cmd = [args.python, "run.py", *shlex.split(args.common), *overrides, *code.extra, f"seed={seed}",
           f"hydra.run.dir={out_dir}"]
    env = {**os.environ, "PYTHONPATH": str(code.path), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "DFDISTILL_CACHE": str(cache),
           "TORCHINDUCTOR_CACHE_DIR": str(inductor)}
    env.pop("DFDISTILL_COMPILE", None)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code.path, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"config": name, "code": code.label, "seed": seed, "commit": commit_of(code.path),
                           "command": f"cd {code.path} && " + " ".join(shlex.quote(c) for c in cmd),
                           "process_seconds": round(wall, 2), "load_start": round(load0, 2),
                           "load_end": round(os.getloadavg()[0], 2), "rc": proc.returncode,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    recs = load_rows(out_dir / "results.jsonl")
    if proc.returncode != 0 or not recs:
        row["error"] = (proc.stderr or proc.stdout)[-2000:]
        return row
    rec = recs[-1]
    row.update({"stage_seconds": rec.get("stage_seconds"), "wall_seconds": rec.get("wall_seconds"),
                "acc_mean": rec.get("acc_mean"), "accs": rec.get("accs"), "sec_per_iter": rec.get("sec_per_iter"),
                "iterations": rec.get("iterations"), "resumed_from": rec.get("resumed_from")})
    return row


def fmt_ms(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not xs:
        return "–"
    m = statistics.mean(xs) * scale
    if len(xs) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(xs) * scale:.{digits}f}"


def stage_cells(runs: list[dict[str, Any]]) -> tuple[list[str], str]:
    """The STAGES columns and the 'other' column (every remaining stage) over some runs."""
    st = [r["stage_seconds"] for r in runs]
    cols = [fmt_ms([s.get(k, 0.0) for s in st], digits=0) for k in STAGES]
    return cols, fmt_ms([sum(v for k, v in s.items() if k not in STAGES) for s in st], digits=0)


def render(rows: list[dict[str, Any]], labels: list[str], header: str) -> str:
    """Markdown: per config and checkout, stage seconds and walls of the seeds both ran (the paired,
    interleaved runs), the factor against the first label, and accuracy over all of its seeds."""
    ok = [r for r in rows if r.get("rc") == 0 and r.get("wall_seconds") is not None]
    configs = list(dict.fromkeys(r["config"] for r in ok))
    labels = [lb for lb in labels if any(r["code"] == lb for r in ok)] or list(dict.fromkeys(r["code"] for r in ok))
    ref = labels[0] if labels else None
    lines = [header, "",
             "| config | code | paired seeds | " + " | ".join(f"{s} s" for s in STAGES) + " " +
             "| other s | run wall s | process s | factor (process) | median s/it | acc % (seeds) |",
             "|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|---|---|"]
    for c in configs:
        by = {lb: [r for r in ok if r["config"] == c and r["code"] == lb] for lb in labels}
        seeds_ref = {r["seed"] for r in by.get(ref, [])}
        for lb in labels:
            rs = by[lb]
            if not rs:
                continue
            paired = [r for r in rs if r["seed"] in seeds_ref] if lb != ref else rs
            if not paired:  # the reference has no run of this config (yet): this code's own runs
                paired = rs
            if lb == ref:
                common = set.intersection(*[{r["seed"] for r in by[x]} for x in labels if by[x]])
                paired = [r for r in rs if r["seed"] in common] or rs
            cols, other = stage_cells(paired)
            proc = [r["process_seconds"] for r in paired]
            factor = "–"
            if lb != ref:
                pairs = [(r["process_seconds"], q["process_seconds"]) for r in paired for q in by[ref]
                         if q["seed"] == r["seed"]]
                if pairs:
                    factor = f"{statistics.mean(a for a, _ in pairs) / statistics.mean(b for _, b in pairs):.2f}×"
                elif by[ref]:  # no common seed: all runs of both (the seed barely moves the wall time)
                    paired = rs
                    proc = [r["process_seconds"] for r in rs]
                    cols, other = stage_cells(rs)
                    ref_proc = statistics.mean(q["process_seconds"] for q in by[ref])
                    factor = f"{statistics.mean(proc) / ref_proc:.2f}× (unpaired)"
            accs = [r["acc_mean"] for r in rs]
            lines.append(f"| {c} | {lb} | {','.join(str(r['seed']) for r in paired)} | " + " | ".join(cols) +
                         f" | {other} | {fmt_ms([r['wall_seconds'] for r in paired], digits=0)} | "
                         f"{fmt_ms(proc, digits=0)} | {factor} | "
                         f"{fmt_ms([r['sec_per_iter'] for r in paired if r.get('sec_per_iter')], digits=3)} | "
                         f"{fmt_ms(accs, 100, 2)} (n={len(accs)}) |")
    lines += ["", f"Stage columns: mean (± std) over the paired seeds; the {ref} row shows the seeds every code ran. "
              f"factor = mean process wall of this code / that of {ref} over the seeds both ran (< 1 is faster). "
              "median s/it: the run's median distillation iteration. acc = mean ± std over all seeds of that "
              "code (each seed: mean of its evaluation networks)."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", action="append", default=[], help="LABEL=PATH (order: first is the reference)")
    ap.add_argument("--set", action="append", default=[], help="LABEL=\"overrides\" this checkout adds")
    ap.add_argument("--config", action="append", default=[], help="NAME=\"overrides\"")
    ap.add_argument("--seeds", default="0", help="seeds every checkout runs")
    ap.add_argument("--seeds-of", action="append", default=[], help="LABEL=0,1,2: seeds of one checkout")
    ap.add_argument("--common", default=COMMON, help="overrides of every run")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "measured" / "bench_run_cpu")
    ap.add_argument("--work", type=Path, default=None, help="run folders (default: a temp dir)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm-inductor", action="store_true", help="one inductor cache per checkout")
    ap.add_argument("--title", default="## Whole runs")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args(argv)

    sets = parse_pairs(args.set, "--set")
    seeds_of = {k: [int(s) for s in v.split(",")] for k, v in parse_pairs(args.seeds_of, "--seeds-of").items()}
    codes = [Code(k, Path(v).resolve(), shlex.split(sets.get(k, "")), seeds_of.get(k))
             for k, v in parse_pairs(args.code, "--code").items()]
    configs = parse_pairs(args.config, "--config")
    jsonl, md = args.out.with_suffix(".jsonl"), args.out.with_suffix(".md")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    labels = [c.label for c in codes]
    if not args.render_only:
        if not codes or not configs:
            ap.error("need --code and --config")
        done = {(r["config"], r["code"], r["seed"]) for r in load_rows(jsonl) if r.get("rc") == 0}
        work = args.work or Path(tempfile.mkdtemp(prefix="bench_run_"))
        common_seeds = [int(s) for s in args.seeds.split(",")]
        all_seeds = list(dict.fromkeys(common_seeds + [s for c in codes for s in (c.seeds or [])]))
        for name, ov in configs.items():
            for seed in all_seeds:
                for code in codes:
                    if seed not in (code.seeds or common_seeds) or (name, code.label, seed) in done:
                        continue
                    print(f"[{time.strftime('%H:%M:%S')}] {name} {code.label} seed {seed} ...", flush=True)
                    row = run_one(code, name, shlex.split(ov), seed, args, work)
                    with open(jsonl, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(f"  process {row['process_seconds']:.0f}s rc={row['rc']} acc={row.get('acc_mean')} "
                          f"stages={row.get('stage_seconds')}", flush=True)
                    md.write_text(render(load_rows(jsonl), labels, args.title))
    md.write_text(render(load_rows(jsonl), labels, args.title))
    print(f"{jsonl}\n{md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
