"""Expert trajectories for trajectory matching (MTT/TESLA), as a cached, resumable artifact.

An expert is a backbone trained on the (already pruned) real data with the reference settings
(SGD lr_teacher, no momentum / weight decay, batch 256, non-siamese DSA on every batch); its flat
parameter vector is snapshotted (CPU, float32) at init and after every epoch -> (E+1, P).

Why one artifact per expert: the key of expert i hashes everything that produced it (dataset
config, the kept rows `source_index`, ZCA, backbone, expert settings, seed, i) but not the number
of experts, so a killed run resumes at the expert it was on, a run asking for more experts reuses
the first ones, and an IPC sweep (IPC is not in the key) shares them. A different kept subset
(pruning) changes `source_index` and therefore every key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.func import functional_call

from dfdistill.core.artifacts import config_key
from dfdistill.core.errors import ConfigError
from dfdistill.methods.base import DistillContext
from dfdistill.engine.training import Schedule, ensemble_enabled, train_together

KIND = "experts"
EXPERT_GROUP = 10  # experts trained together when ensembles are on (bounds the stacked activations)


@dataclass(frozen=True)
class ExpertSettings:
    num_experts: int = 100
    train_epochs: int = 50
    lr_teacher: float = 0.01
    batch_train: int = 256
    dsa: bool = True

    def __post_init__(self) -> None:
        if self.num_experts <= 0 or self.train_epochs <= 0:
            raise ConfigError(f"num_experts and train_epochs must be > 0, got {self.num_experts}, {self.train_epochs}")


def flat_params(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def param_shapes(model: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(n, p.shape) for n, p in model.named_parameters()]


def unflatten(flat: Tensor, shapes: list[tuple[str, torch.Size]]) -> dict[str, Tensor]:
    """Views of a flat vector as the named parameter dict (differentiable w.r.t. `flat`)."""
    out, i = {}, 0
    for name, shape in shapes:
        n = shape.numel()
        out[name] = flat[i : i + n].view(shape)
        i += n
    return out


def functional_net(model: nn.Module):
    """f(theta_flat, x) -> logits: the module evaluated at an arbitrary flat parameter vector."""
    shapes = param_shapes(model)

    def f(theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(model, unflatten(theta, shapes), (x,), strict=False)

    return f


def _describe(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def base_key_material(ctx: DistillContext, settings: ExpertSettings) -> dict[str, Any]:
    """Everything that determines an expert except its index and the expert count."""
    dataset = {k: v for k, v in _describe(ctx.describe.get("dataset", {})).items() if k != "max_test"}
    backbone = _describe(ctx.describe.get("backbone", {}))
    s = asdict(settings)
    s.pop("num_experts")
    return {
        "dataset": dataset or ctx.real.name,
        "source_index": ctx.real.source_index.cpu(),
        "zca": ctx.real.zca is not None,
        "backbone": backbone,
        "augment": repr(ctx.augment),
        "settings": s,
        "seed": ctx.seed,
    }


def expert_keys(ctx: DistillContext, settings: ExpertSettings) -> list[str]:
    base = base_key_material(ctx, settings)
    return [config_key({**base, "expert": i}) for i in range(settings.num_experts)]


def train_experts(ctx: DistillContext, settings: ExpertSettings, indices: list[int]) -> list[Tensor]:
    """The trajectories (E+1, P) of experts `indices`: snapshot at init and after every epoch. Expert i
    is model_factory(seed * 100003 + i) trained with a generator of that seed; where ensembles are on
    (training.ensemble_enabled) they train together as one batched model, with the same result."""
    seeds = [ctx.seed * 100_003 + i for i in indices]
    models = [ctx.model_factory(s) for s in seeds]
    snaps = [[flat_params(m).cpu()] for m in models]
    train_together(models, ctx.real.images, ctx.real.labels, settings.train_epochs, Schedule(lr=settings.lr_teacher),
                   [torch.Generator().manual_seed(s) for s in seeds], settings.batch_train,
                   augment=ctx.augment if settings.dsa else None,
                   on_epoch_end=lambda k, ep, m: snaps[k].append(flat_params(m).cpu()),
                   progress=ctx.progress, desc=f"experts {indices[0]}..{indices[-1]}", amp=True)  # bf16 when gpu.bf16
    return [torch.stack(s) for s in snaps]


def train_expert(ctx: DistillContext, settings: ExpertSettings, index: int) -> Tensor:
    """One expert's trajectory (E+1, P)."""
    return train_experts(ctx, settings, [index])[0]


class ExpertBank:
    """The N trajectories of one setting; built on demand, loaded lazily (one file per expert)."""

    def __init__(self, ctx: DistillContext, settings: ExpertSettings, keep_in_memory_mb: float = 2048.0):
        self.ctx, self.settings = ctx, settings
        self.keys = expert_keys(ctx, settings)
        self.keep_in_memory_mb = keep_in_memory_mb
        self._mem: dict[int, Tensor] = {}

    def build(self) -> "ExpertBank":
        """Train every missing expert; finished ones are saved at once (resume point). With ensembles on,
        up to EXPERT_GROUP missing experts train together and are saved when their group ends."""
        cache = self.ctx.cache
        # existing files are verified lazily in get(); a corrupt one is rebuilt there
        missing = [i for i, key in enumerate(self.keys) if not cache.path(KIND, key).exists()]
        size = EXPERT_GROUP if ensemble_enabled(self.ctx.device) else 1
        for a in range(0, len(missing), size):
            group = missing[a : a + size]
            for i, traj in zip(group, train_experts(self.ctx, self.settings, group)):
                cache.save(KIND, self.keys[i], {"trajectory": traj, "index": i})
        return self

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, i: int) -> Tensor:
        if i in self._mem:
            return self._mem[i]
        obj = self.ctx.cache.load(KIND, self.keys[i])
        if obj is None:  # deleted/corrupt since build(): rebuild just this one
            obj = {"trajectory": train_expert(self.ctx, self.settings, i)}
            self.ctx.cache.save(KIND, self.keys[i], obj)
        traj = obj["trajectory"]
        budget = self.keep_in_memory_mb * 2**20 / max(traj.numel() * traj.element_size(), 1)
        if len(self._mem) >= max(int(budget), 1):
            self._mem.clear()
        self._mem[i] = traj
        return traj


def start_epoch_bound(num_snapshots: int, expert_epochs: int, max_start_epoch: int) -> int:
    """Exclusive upper bound of the start epoch so that start + expert_epochs is a snapshot."""
    last = num_snapshots - 1
    if last < expert_epochs:
        raise ConfigError(f"experts have {last} epochs but method.expert_epochs={expert_epochs}; "
                          f"raise method.expert_train_epochs or lower expert_epochs")
    return max(1, min(max_start_epoch, last - expert_epochs + 1))


def pick(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(0, n, (1,), generator=gen))
