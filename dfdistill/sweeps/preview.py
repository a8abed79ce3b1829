"""`run_table --plan`: every job, the settings it runs with that differ from its method's defaults,
the number of jobs, their modelled cost and memory on a named device (model.py), before anything
is launched.

"Defaults" = the YAML of the job's own group options (dataset, method, eval, backbone, pruning) and
conf/config.yaml's top-level keys, as composed with nothing else: no exp, no recipe, no profile, no
command line. So the diff shows exactly what the table changes (the exp's pins, the per-cell paper
recipe once resolved -- `dataset.zca=true` for MTT included --, the profile's scaling and the command
line) and nothing the method does anyway. Keys that change nothing computed (output paths, logging,
progress; config.resolve.NON_SEMANTIC_KEYS) are left out.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Optional

from omegaconf import OmegaConf

from dfdistill.sweeps.model import Device, JobCost, estimate, fmt_gb, fmt_hours
from dfdistill.sweeps.plan import Job
from dfdistill.config.resolve import GROUPS as ALL_GROUPS, NON_SEMANTIC_KEYS, option_defaults
from dfdistill.sweeps.plan import job_config
from dfdistill.sweeps.compose_cache import primary
from dfdistill.sweeps import plan_memo

GROUPS = ("dataset", "method", "eval", "backbone", "pruning")


def _top_level(d: dict) -> dict[str, Any]:
    """The semantic top-level keys of a config dict (ipc, seed, gpu.*, ...): no groups, no bookkeeping."""

    skip = set(ALL_GROUPS) | set(NON_SEMANTIC_KEYS) | {"hydra", "provenance", "synthetic", "stage"}
    return {k: v for k, v in d.items() if k not in skip}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def group_choices(job: Job) -> dict[str, str]:
    if not job.choices:

        job_config(job)
    return {g: str(job.choices[g]) for g in GROUPS if job.choices.get(g)}


@lru_cache(maxsize=1)
def _primary_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    """conf/config.yaml composed with nothing else: its top-level keys and its group options."""
    cfg, choices = primary()
    return _top_level(OmegaConf.to_container(cfg, resolve=False)), {g: str(o) for g, o in choices.items() if o}


def defaults_for(choices: dict[str, str]) -> dict[str, Any]:
    """The groups' options composed with nothing else, without composing them: a group option
    writes only its own group, so each is its YAML on its schema (config.resolve.option_defaults),
    and conf/config.yaml's top-level keys are the same whatever the options (one composition)."""
    top, primary = _primary_defaults()
    picked = {g: choices.get(g) or primary.get(g) for g in GROUPS}
    return {**top, **{g: option_defaults(g, o) for g, o in picked.items() if o}}


_DEFAULTS: dict[tuple, dict[str, Any]] = {}  # sorted group choices -> their flat defaults (read-only)


def flat_defaults(choices: dict[str, str]) -> dict[str, Any]:
    """`defaults_for` flattened, once per process for each selection of group options."""
    key = tuple(sorted(choices.items()))
    if key not in _DEFAULTS:
        _DEFAULTS[key] = plan_memo.recall(("defaults", key), lambda: _flat(defaults_for(choices)))
    return _DEFAULTS[key]


def prefetch_defaults(jobs: Iterable[Job]) -> None:
    """The group defaults every job will be compared with, once per selection of options."""
    for job in jobs:
        if job.error is None:
            flat_defaults(group_choices(job))


def differing(job: Job) -> dict[str, Any]:
    """Resolved values of the job that differ from its groups' YAML defaults (dotted keys)."""
    ref = flat_defaults(group_choices(job))
    resolved = job.resolved_dict if job.resolved_dict is not None else OmegaConf.to_container(job.resolved, resolve=True)
    got = _flat({**_top_level(resolved), **{g: resolved[g] for g in GROUPS if g in resolved}})
    return {k: v for k, v in got.items() if k not in ref or ref[k] != v}


def job_estimate(job: Job, dev: Device) -> JobCost:
    """The job's modelled cost on `dev` (model.estimate; kept by the plan memo with its resolution)."""
    return plan_memo.recall(("estimate", tuple(job.overrides), str(job.out_dir), repr(dev)),
                            lambda: estimate(job.view(), dev))


def fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def cost_line(est: JobCost, dev: Device, multiplier: int = 1) -> str:
    stages = ", ".join(f"{STAGE_NAMES.get(k, k)} {fmt_hours(v)}" for k, v in est.stages.items() if v > 0)
    fit = "fits" if est.fits else f"DOES NOT FIT ({est.why})"
    return (f"           cost: {fmt_hours(est.seconds)} on {dev.name} ({stages}); {est.flops:.3g} FLOPs; "
            f"peak {fmt_gb(est.peak_bytes)}, {fit}" + (f"; x {multiplier} jobs" if multiplier > 1 else ""))


STAGE_NAMES = {"pruning": "scoring", "prepare": "experts", "distill": "distillation", "eval": "evaluation",
               "eval_random": "random-real evaluation"}


def new_totals() -> dict:
    return {"jobs": 0, "done": 0, "error": 0, "pending": 0, "seconds": 0.0, "peak": 0.0, "peak_job": "",
            "no_fit": 0}


def add_totals(a: dict, b: dict) -> dict:
    out = {k: a[k] + b[k] for k in ("jobs", "done", "error", "pending", "seconds", "no_fit")}
    big = a if a["peak"] >= b["peak"] else b
    return {**out, "peak": big["peak"], "peak_job": big["peak_job"]}


def job_lines(jobs: Iterable[Job], dev: Device, multiplier: int = 1) -> tuple[list[str], dict]:
    """One block per job; totals over the pending ones. `multiplier`: jobs each line stands for."""
    jobs = list(jobs)
    lines: list[str] = []
    totals = new_totals()
    prefetch_defaults(jobs)
    for job in jobs:
        totals["jobs"] += multiplier
        state = "done" if job.done else ("error" if job.error else "pending")
        totals[state] += multiplier
        lines.append(f"{state:8s} {' '.join(job.overrides)}")
        if job.error:
            lines.append(f"           {job.error}")
            continue
        diff = differing(job)
        if diff:
            lines.append("           differs from defaults: " + " ".join(f"{k}={fmt_value(v)}" for k, v in sorted(diff.items())))
        est = job_estimate(job, dev)
        lines.append(cost_line(est, dev, multiplier))
        if not job.done:
            totals["seconds"] += est.seconds * multiplier
            totals["no_fit"] += 0 if est.fits else multiplier
            if est.peak_bytes > totals["peak"]:
                totals["peak"], totals["peak_job"] = est.peak_bytes, " ".join(job.overrides)
    return lines, totals


def totals_line(t: dict, dev: Device) -> str:
    """THE summary line of a plan."""
    fit = ("all fit" if not t["no_fit"] else f"{t['no_fit']} DO NOT FIT") + f" its {dev.memory_gb:g} GB"
    return (f"{t['jobs']} jobs ({t['pending']} new, {t['done']} reused/finished, {t['error']} not composable); "
            f"{fmt_hours(t['seconds'])} on {dev.name} (modelled: FLOPs / ({dev.peak_tflops:g} TFLOP/s x "
            f"{dev.efficiency:g}) + ops x {dev.op_us:g} us); largest job {fmt_gb(t['peak'])}, {fit}")
