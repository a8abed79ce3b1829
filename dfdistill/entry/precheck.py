"""`run.py -m ...`: every job of the sweep composed and validated before the first one starts.

Why: Hydra's launcher composes each job only when it starts it, so `-m ipc=1,abc` ran job 0 to the
end and then failed on job 1, and a sweep over a missing dataset failed once per job. Checking the
whole expansion first (the same expansion `run_table` plans with) turns both into one line, exit 2,
with nothing run.
"""

from __future__ import annotations

import logging
from typing import Optional

from omegaconf import DictConfig, open_dict

from dfdistill.core.errors import ConfigError
from dfdistill.sweeps import overrides as ov
from dfdistill.sweeps.plan import job_set_lines, sweep_info
from dfdistill.entry.messages import user_error
from dfdistill.config.compose import compose_run_config
from dfdistill.config.resolve import resolve_config
from dfdistill.run.preflight import check_datasets


def sweep_jobs(overrides: list[str]) -> Optional[list[list[str]]]:
    """The override list of every job `run.py -m <overrides>` launches, or None when another
    sweeper (or a glob / interval sweep) decides them: those jobs still check themselves."""

    if any(o.lstrip("+~").startswith(("hydra/sweeper", "hydra.sweeper")) for o in overrides):
        return None
    info = sweep_info(overrides)
    lines, _ = job_set_lines(overrides, info.params, [])
    try:
        return ov.expand(lines)
    except ConfigError:
        return None


def check_multirun(overrides: list[str]) -> None:
    """Compose and resolve every job; the first user error names its job and stops the sweep unstarted.
    Then each distinct dataset of the sweep is checked once (preflight.check_datasets)."""

    jobs = sweep_jobs(overrides)
    if not jobs:
        return
    swept = {k for k in {ov.group_of(o) for o in jobs[0]} if len({o for j in jobs for o in j if ov.group_of(o) == k}) > 1}
    quiet = logging.getLogger("dfdistill")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the recipe notes of N jobs would bury the sweep's own output
    resolved: list[DictConfig] = []
    try:
        for i, job in enumerate(jobs):
            plain = [o for o in job if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
            try:
                cfg = compose_run_config(plain)
                with open_dict(cfg):
                    cfg.output_dir = "."  # resolved only; nothing is written
                resolved.append(resolve_config(cfg))
            except Exception as exc:  # noqa: BLE001 - a user error becomes one line, a bug keeps its traceback
                msg = user_error(exc)
                if msg is None:
                    raise
                which = " ".join(o for o in job if ov.group_of(o) in swept) or " ".join(plain)
                raise ConfigError(f"sweep job {i + 1}/{len(jobs)} ({which}): {msg}; no job of the sweep was started") from None
    finally:
        quiet.setLevel(level)
    check_datasets(c.dataset for c in resolved)
