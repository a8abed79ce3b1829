"""stage=eval: what a saved set says about itself decides what the user left untyped.

Why: a set made by DC must be evaluated under DC's protocol and recorded as DC's, at the IPC it holds,
even when the command names neither (`stage=eval synthetic=<dir>`); a value the user typed still wins.
A set that cannot give a meaningful accuracy (no images, labels of one class) is refused before any work.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from dfdistill.config.resolve import swap_group, typed_overrides
from dfdistill.core.errors import DataError
from dfdistill.core.log import log
from dfdistill.run.synthetic import SyntheticSet
from dfdistill.schema.options import groups


def class_counts(syn: SyntheticSet) -> dict[int, int]:
    """Images per class the labels use (soft labels: their argmax)."""
    labels = syn.labels.argmax(1) if syn.labels.dim() == 2 else syn.labels
    values, counts = labels.unique(return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts)}


def check_set(syn: SyntheticSet) -> None:
    """Refuse a set with no images or whose labels cover one class; say when its IPC is not uniform."""
    where = f"synthetic={syn.source}" if syn.source else "the synthetic set"
    if syn.images.shape[0] == 0:
        raise DataError(f"{where} holds no images; point synthetic= at a set with images of at least two classes")
    counts = class_counts(syn)
    if len(counts) < 2:
        raise DataError(f"{where}: all {syn.images.shape[0]} labels are class {next(iter(counts))}; an accuracy "
                        "needs images of at least two classes (soft labels count by their argmax)")
    if len(set(counts.values())) > 1:
        log.info(f"stage=eval: the set's IPC is not uniform ({min(counts.values())} to {max(counts.values())} images "
                 f"per class over {len(counts)} classes); recording ipc={syn.per_class()}")


def apply_set_metadata(cfg: DictConfig, syn: SyntheticSet) -> DictConfig:
    """`cfg` with the set's method (its evaluation protocol) and IPC where the user typed none."""

    keys, typed_groups = typed_overrides(cfg)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    method = syn.meta.get("method")
    if method and "method" not in typed_groups and method in groups().get("method", []) and \
            swap_group(cfg, "method", str(method), keys):
        log.info(f"stage=eval: the set was made by {method}; evaluating under its protocol "
                 "(method=<name> picks another)")
    ipc = syn.per_class()
    if "ipc" not in keys:
        cfg.ipc = ipc
    elif int(cfg.ipc) != ipc:
        log.info(f"stage=eval: the set has {ipc} images per class; recording ipc={ipc}, not the typed ipc={cfg.ipc}")
        cfg.ipc = ipc
    return cfg
