"""The distillation checkpoint: synthetic-set state + every RNG + loss history, written atomically.

Why: a killed run (SIGKILL, preemption) must resume bit-identically, so the checkpoint holds the
distiller's state *and* the torch/numpy/python RNG streams, tagged with the run's identity key so a
checkpoint is never continued under a config that did not produce it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dfdistill.artifacts import CorruptArtifact, load_tensor_file, save_tensor_file
from dfdistill.errors import ConfigError
from dfdistill.log import log
from dfdistill.methods.base import Distiller

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(out_dir: Path, key: str, it: int, distiller: Distiller, history: list[dict]) -> None:
    sel = distiller.ctx.adaptive  # the in-loop selector's running statistics / lazy decisions, beside the distiller
    save_tensor_file(out_dir / CHECKPOINT_FILE, {"config_key": key, "iteration": it, "distiller": distiller.state_dict(),
                                                 "adaptive": sel.state_dict() if sel is not None else None,
                                                 "rng": rng_state(), "history": history})


def read_checkpoint(path: Path) -> Optional[dict]:
    """The checkpoint at `path`, None when absent; an unreadable one is moved aside (never deleted)."""
    if not path.exists():
        return None
    try:
        return load_tensor_file(path)
    except (CorruptArtifact, EOFError, RuntimeError) as exc:
        bad = path.with_suffix(".corrupt")
        path.replace(bad)
        log.info(f"checkpoint {path} unreadable ({exc}); moved to {bad.name}, starting fresh")
        return None


def load_checkpoint(out_dir: Path, key: str) -> Optional[dict]:
    """This run's own checkpoint; one written by another config is refused (not overwritten)."""
    path = out_dir / CHECKPOINT_FILE
    ck = read_checkpoint(path)
    if ck is not None and ck.get("config_key") != key:
        raise ConfigError(f"{path} belongs to a different config; use another output dir "
                          f"(hydra.run.dir=...) or delete the checkpoint to start over")
    return ck
