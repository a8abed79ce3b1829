"""Backbone factories: `seed -> freshly initialised network` from a backbone config and a data shape.

Why a factory and not a model: distillation, scoring, experts and evaluation each need many fresh
networks with reproducible initialisation. The factory keeps only the shape numbers (channels,
classes, image size), never the RealData it was built from, so the unpruned split can be freed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from omegaconf import DictConfig, OmegaConf

from dfdistill.core.errors import ConfigError, DataError
from dfdistill.engine.runtime import prepare_model
from dfdistill.models import build_model
from dfdistill.schema.options import load_option

ModelFactory = Callable[[int], torch.nn.Module]
BACKBONE_DIR = Path(__file__).resolve().parents[2] / "conf" / "backbone"


class DataShape(Protocol):
    """Anything with the three numbers a backbone is built from (RealData qualifies)."""

    channels: int
    num_classes: int
    image_size: int


def backbone_options(bcfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in OmegaConf.to_container(bcfg, resolve=True).items() if k not in ("name", "_target_")}


def make_model_factory(bcfg: DictConfig, shape: DataShape, device: torch.device) -> ModelFactory:
    """seed -> freshly initialised backbone on `device` (initialisation independent of global RNG)."""

    name, opts = bcfg.name, backbone_options(bcfg)
    channels, num_classes, image_size = int(shape.channels), int(shape.num_classes), int(shape.image_size)

    def factory(seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, channels, num_classes, image_size, **opts)
        return prepare_model(model.to(device))  # gpu.channels_last

    return factory


def check_backbone_fits(factory: ModelFactory, images: torch.Tensor, num_classes: int, bname: str, dname: str,
                        role: str = "backbone") -> None:
    """Build the backbone and run one small batch, so a shape mismatch fails in one line before any work."""
    c, s = int(images.shape[1]), int(images.shape[-1])
    fix = (f"remove {bname} from eval.cross_arch or set dataset.image_size" if role != "backbone" else
           f"pick a backbone for {c}-channel {s}px input or set dataset.image_size/channels")
    try:
        model = factory(0)
        with torch.no_grad():
            out = model(images[:2])
    except (DataError, ConfigError, RuntimeError, ValueError) as exc:
        raise DataError(f"{role} {bname} cannot take dataset={dname} images of shape {tuple(images.shape[1:])} "
                        f"({str(exc).splitlines()[0][:120]}); {fix}") from None
    if out.shape[-1] != num_classes:
        raise DataError(f"{role} {bname} outputs {out.shape[-1]} classes but dataset={dname} has {num_classes}")


def backbone_config(name: str, role: str = "eval.cross_arch entry") -> DictConfig:
    """conf/backbone/<name>.yaml as a config node (for backbones named in a list, e.g. cross-arch)."""

    path = BACKBONE_DIR / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in BACKBONE_DIR.glob("*.yaml"))
        raise ConfigError(f"{role} {name!r} is not a backbone; choose from {', '.join(valid)}")
    return load_option("backbone", name)
