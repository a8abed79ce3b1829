"""`ResolvedRun`: a run's effective config as one frozen object of typed parts, built once by
`dfdistill.config.resolve.resolve_run`.

Why: resolution validates every group against its schema; keeping those objects (instead of
re-reading the DictConfig in each stage) means each stage takes the typed part it needs (a
DatasetConfig, the method's config, a PruningConfig), and the run's keys are computed once. The
DictConfig stays beside them, read-only, for what needs the config as written: provenance
(resolved.yaml, results.jsonl), the logger, and the identity hashes (dfdistill.config.identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from dfdistill.schema.groups import DatasetConfig, EvalConfig, LoggerConfig, ProfileConfig, RunConfig
from dfdistill.pruning.config import PruningConfig


@dataclass(frozen=True)
class ResolvedRun:
    """One run, resolved: typed groups, the method class, and its identities (its own copies of the
    typed parts; nothing modifies them after resolution)."""

    cfg: DictConfig  # the effective config (read-only): provenance, logging and identity hashing only
    top: RunConfig  # the top-level keys (ipc, seed, stage, device, memory, gpu, ...); its group fields are empty
    dataset: DatasetConfig  # root made absolute (relative roots: from the launch directory)
    backbone: Any  # the backbone's schema object (dfdistill.config.store.backbone_schema)
    method_cls: type  # the Distiller class
    method: Any  # method_cls.config_cls
    pruning: PruningConfig
    eval: EvalConfig
    profile: ProfileConfig
    logger: LoggerConfig
    distill_key: str  # the distillation's identity (checkpoint tag)
    set_key: str  # the set this run evaluates: distill_key, or a saved set's key (stage=eval)
    result_key: str  # this evaluation of that set (results.jsonl `config_key`)
    identity: dict  # what distill_key hashes (checkpoints store it: resume decisions, changed keys)
    inputs: dict  # {'dataset', 'backbone'} as identities hash them: what produced the real data and factory

    @property
    def ipc(self) -> int:
        return self.top.ipc

    @property
    def seed(self) -> int:
        return self.top.seed

    @property
    def stage(self) -> str:
        return self.top.stage
