"""`run_table --plan`: every job, the settings it runs with that differ from its method's defaults,
the number of jobs and their estimated cost, before anything is launched.

"Defaults" = the YAML of the job's own group options (method, eval, backbone, pruning) as composed
with nothing else: no exp, no recipe, no profile, no command line. So the diff shows exactly what
the table changes (the exp's pins, the per-cell paper recipe once resolved, the profile's scaling
and the command line) and nothing the method does anyway.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from omegaconf import OmegaConf

from dfdistill.sweeps.compose_cache import group_defaults
from dfdistill.sweeps.cost import Estimate, Measurement, estimate, fmt_seconds
from dfdistill.sweeps.plan import Job

GROUPS = ("method", "eval", "backbone", "pruning")


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
        from dfdistill.sweeps.plan import job_config

        job_config(job)
    return {g: str(job.choices[g]) for g in GROUPS if job.choices.get(g)}


def defaults_for(choices: dict[str, str]) -> dict[str, Any]:
    cfg = group_defaults(choices)
    return {g: OmegaConf.to_container(cfg[g], resolve=False) for g in GROUPS if g in cfg}


def differing(job: Job, cache: Optional[dict] = None) -> dict[str, Any]:
    """Resolved values of the job that differ from its groups' YAML defaults (dotted keys)."""
    cache = {} if cache is None else cache
    choices = group_choices(job)
    key = tuple(sorted(choices.items()))
    if key not in cache:
        cache[key] = _flat(defaults_for(choices))
    ref = cache[key]
    got = _flat({g: OmegaConf.to_container(job.resolved[g], resolve=True) for g in GROUPS if g in job.resolved})
    return {k: v for k, v in got.items() if k not in ref or ref[k] != v}


def fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def job_lines(jobs: Iterable[Job], measured: list[Measurement], multiplier: int = 1) -> tuple[list[str], dict]:
    """One block per job; totals over the pending ones. `multiplier`: jobs each line stands for."""
    lines: list[str] = []
    totals = {"jobs": 0, "done": 0, "error": 0, "pending": 0, "seconds": 0.0, "unmeasured": 0, "devices": set()}
    cache: dict = {}
    for job in jobs:
        totals["jobs"] += multiplier
        state = "done" if job.done else ("error" if job.error else "pending")
        totals[state] += multiplier
        lines.append(f"{state:8s} {' '.join(job.overrides)}")
        if job.error:
            lines.append(f"           {job.error}")
            continue
        diff = differing(job, cache)
        if diff:
            lines.append("           differs from defaults: " + " ".join(f"{k}={fmt_value(v)}" for k, v in sorted(diff.items())))
        est: Estimate = estimate(job.resolved, measured)
        if not job.done:
            if est.seconds is None:
                totals["unmeasured"] += multiplier
            else:
                totals["seconds"] += est.seconds * multiplier
                totals["devices"].add(est.device)
        where = f" on {est.device}" if est.device else ""
        lines.append(f"           cost: {fmt_seconds(est.seconds)}{where}" + (f" ({est.basis})" if est.seconds else "")
                     + (f" x {multiplier} jobs" if multiplier > 1 else ""))
    return lines, totals


def totals_line(t: dict) -> str:
    dev = ", ".join(sorted(t["devices"])) or "-"
    return (f"{t['jobs']} jobs: {t['done']} finished, {t['pending']} to run, {t['error']} not composable; "
            f"estimated {fmt_seconds(t['seconds']) if t['seconds'] else '0 s'} for the measured pending jobs "
            f"(measured on: {dev}); {t['unmeasured']} pending job(s) unmeasured")
