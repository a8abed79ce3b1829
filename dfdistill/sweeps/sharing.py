"""Work that several jobs share, counted once: per-sample scores, expert banks, identical runs.

Why: a table's plan charges every job for every stage, but the run does not pay that: scores
(`dfdistill/scoring/empirical.py: cached_scores`) and expert trajectories
(`dfdistill/methods/experts.py: expert_keys`) are artifacts in one content-addressed cache
(`cache_dir`, default ~/.cache/dfdistill), keyed by the config that produced them and by nothing
else (no table, exp, ratio or IPC where those do not change them), and a run whose resolved config
already finished in another table's sweep is copied, not rerun (`jobsets.REUSE`). This module
names, from a resolved config alone, the artifact each stage produces, so a set of jobs (one table,
or several tables together) can be costed with each artifact paid once.

The keys mirror the runtime keys' material (what the run hashes, as config values: the run hashes
the kept rows themselves, here the settings that choose them), so two jobs share a key here only
where the run would find the other's artifact; tests/unit/sweeps/test_sharing.py checks that a
table's context does not enter them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from omegaconf import OmegaConf

from dfdistill.sweeps.model import TRAJECTORY, Device, JobCost

SCORED = ("loss", "bilp", "ite")  # pruning options whose static half scores every row (model.job_work)
SCORING_KEYS = ("criterion", "trials", "epochs", "train_epochs", "lr", "momentum", "batch_size", "alpha")
EXPERT_KEYS = ("expert_train_epochs", "expert_lr", "batch_train", "dsa")  # ExpertSettings but num_experts


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(cfg: Any) -> dict:
    return cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)


def scores_key(cfg: Any) -> Optional[str]:
    """The scores artifact of the job's static pruning (None: it scores nothing). As cached_scores:
    the dataset's rows, the backbone, the scoring settings and seed + seed_offset; not the ratio,
    the method, the IPC or the table."""
    d = _plain(cfg)
    p = d.get("pruning") or {}
    if not (p.get("_target_") and str(p.get("name")) in SCORED):
        return None
    return _hash({"dataset": d["dataset"], "backbone": d["backbone"],
                  "scoring": {k: p.get(k) for k in SCORING_KEYS}, "seed": int(d["seed"]) + int(p.get("seed_offset") or 0)})


def experts_key(cfg: Any) -> Optional[str]:
    """The expert bank of a trajectory-matching job (None: the method has none). As expert_keys:
    the dataset (max_test aside), the kept rows (here: the pruning settings that choose them), the
    backbone, the expert recipe and the seed; not the IPC, the distillation recipe or the table.
    A bank with fewer experts is the head of a larger one, so the count is not in the key."""
    d = _plain(cfg)
    m = d["method"]
    if str(m.get("name")) not in TRAJECTORY:
        return None
    dataset = {k: v for k, v in d["dataset"].items() if k != "max_test"}
    return _hash({"dataset": dataset, "pruning": d.get("pruning"), "scores": scores_key(d),
                  "backbone": d["backbone"], "experts": {k: m.get(k) for k in EXPERT_KEYS}, "seed": d["seed"]})


STAGE_KEYS = {"pruning": scores_key, "prepare": experts_key}  # model.py stage -> the artifact it makes


@dataclass
class Shared:
    """Jobs and device-seconds of a set of jobs: `naive_seconds` charges every job every stage,
    `shared_seconds` pays each artifact once (its costliest request: a larger bank includes a
    smaller one). A job two tables plan (same id: its config_key) counts once in both."""

    job_seconds: dict[str, float] = field(default_factory=dict)  # job id -> its full cost
    artifacts: dict[tuple[str, str], float] = field(default_factory=dict)  # (stage, key) -> seconds
    rest: dict[str, float] = field(default_factory=dict)  # job id -> seconds outside shared artifacts
    by_stage: dict[str, float] = field(default_factory=dict)  # stage -> seconds, every job charged
    by_method: dict[str, float] = field(default_factory=dict)  # method -> seconds, every job charged

    def add(self, job_id: str, cfg: Any, cost: JobCost, salt: str = "") -> None:
        """One planned job. `salt` goes into its expert bank's key: a search round's stand-in job
        (its ratio is not known before the run) must not share a bank with another round's."""
        if job_id in self.job_seconds:
            return
        self.job_seconds[job_id] = cost.seconds
        method = str(_plain(cfg)["method"].get("name"))
        self.by_method[method] = self.by_method.get(method, 0.0) + cost.seconds
        rest = 0.0
        for stage, seconds in cost.stages.items():
            self.by_stage[stage] = self.by_stage.get(stage, 0.0) + seconds
            key_of = STAGE_KEYS.get(stage)
            key = key_of(cfg) if key_of else None
            if key is None:
                rest += seconds
                continue
            k = (stage, key + (salt if stage == "prepare" else ""))
            self.artifacts[k] = max(self.artifacts.get(k, 0.0), seconds)
        self.rest[job_id] = rest

    @property
    def jobs(self) -> int:
        return len(self.job_seconds)

    @property
    def naive_seconds(self) -> float:
        return sum(self.job_seconds.values())

    @property
    def shared_seconds(self) -> float:
        return sum(self.rest.values()) + sum(self.artifacts.values())

    def artifact_count(self, stage: str) -> int:
        return sum(1 for s, _ in self.artifacts if s == stage)
