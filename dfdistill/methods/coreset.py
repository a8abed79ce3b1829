"""Real-subset baselines evaluated under the same protocol: Random, Herding, K-Center.

Herding and K-Center work in the embedding space of the chosen backbone trained briefly on the
real data (`pretrain_epochs`; 0 = a random network). The trained extractor is a cached artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dfdistill.core.artifacts import config_key
from dfdistill.methods.base import Distiller, MethodConfig
from dfdistill.engine.training import embed_all, train_epochs
from dfdistill.core.registry import register_method


@dataclass
class CoresetConfig(MethodConfig):
    iterations: int = 0
    pretrain_epochs: int = 10
    pretrain_lr: float = 0.01


def herding_select(features: Tensor, k: int) -> Tensor:
    """Greedy herding: pick i minimising ||(t+1)·mu - (sum_selected + f_i)|| at each step t."""
    mu = features.mean(0)
    selected: list[int] = []
    acc = torch.zeros_like(mu)
    available = torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
    for t in range(min(k, features.shape[0])):
        dist = ((mu * (t + 1)) - (acc.unsqueeze(0) + features)).norm(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        selected.append(i)
        available[i] = False
        acc = acc + features[i]
    return torch.tensor(selected, device=features.device, dtype=torch.long)


def kcenter_select(features: Tensor, k: int) -> Tensor:
    """Greedy k-center: start at the point nearest the mean, then repeatedly the farthest point."""
    first = int((features - features.mean(0)).norm(dim=1).argmin())
    selected = [first]
    mind = (features - features[first]).norm(dim=1)
    for _ in range(1, min(k, features.shape[0])):
        i = int(mind.argmax())
        selected.append(i)
        mind = torch.minimum(mind, (features - features[i]).norm(dim=1))
    return torch.tensor(selected, device=features.device, dtype=torch.long)


class Coreset(Distiller):
    """Base: selection happens in `init_state`; there is nothing to iterate."""

    rule = "random"

    def features(self) -> Tensor:
        real, ctx = self.ctx.real, self.ctx
        key = config_key({"kind": "coreset-features", "data": real.name, "n": len(real),
                          "src": real.source_index, "epochs": self.cfg.pretrain_epochs,
                          "lr": self.cfg.pretrain_lr, "seed": ctx.seed,
                          "model": repr(ctx.model_factory(0))})

        def make() -> Tensor:
            net = ctx.model_factory(ctx.seed)
            if self.cfg.pretrain_epochs > 0:
                train_epochs(net, real.images, real.labels, self.cfg.pretrain_epochs, lr=self.cfg.pretrain_lr,
                             momentum=0.9, weight_decay=5e-4, gen=torch.Generator().manual_seed(ctx.seed),
                             progress=ctx.progress, desc="coreset-features")
            return embed_all(net, real.images).cpu()

        return ctx.cache.get_or_create("features", key, make).to(real.device)

    def select_class(self, c: int, feats: Tensor | None) -> Tensor:
        ix = self.ctx.real.class_indices[c]
        if self.rule == "random":
            return ix[torch.randperm(ix.numel(), generator=self.gen)[: self.ctx.ipc].to(ix.device)]
        f = feats[ix]
        pick = herding_select(f, self.ctx.ipc) if self.rule == "herding" else kcenter_select(f, self.ctx.ipc)
        return ix[pick]

    def init_state(self) -> None:
        real = self.ctx.real
        feats = None if self.rule == "random" else self.features()
        self.selected = torch.cat([self.select_class(c, feats) for c in range(real.num_classes)])
        self.images = real.images[self.selected].detach().clone()
        self.labels = real.labels[self.selected].clone()


@register_method("random", config=CoresetConfig, label="Random")
class RandomSubset(Coreset):
    rule = "random"


@register_method("herding", config=CoresetConfig, label="Herding")
class Herding(Coreset):
    rule = "herding"


@register_method("kcenter", config=CoresetConfig, label="K-Center")
class KCenter(Coreset):
    rule = "kcenter"
