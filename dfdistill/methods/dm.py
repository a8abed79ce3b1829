"""DM — distribution matching: match mean embeddings of real and synthetic images per class
under a freshly initialised, frozen network each iteration (one image step per iteration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from dfdistill.methods.base import ImageDistiller, MethodConfig, draw_seed, per_class_batch
from dfdistill.methods.matching import dm_objective
from dfdistill.registry import register_method


@dataclass
class DMConfig(MethodConfig):
    iterations: int = 20000
    lr_img: float = 1.0


def weighted_class_means(emb: Tensor, C: int, w: Optional[Tensor]) -> Tensor:
    """(C*B, D) class-major embeddings -> (C, D) means, weighted when w (C, B) is given."""
    e = emb.view(C, -1, emb.shape[-1])
    if w is None:
        return e.mean(1)
    return (e * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)


@register_method("dm", config=DMConfig, label="DM", in_loop_pruning=True)
class DM(ImageDistiller):

    def step(self, it: int) -> dict[str, Tensor]:
        real, C, ipc = self.ctx.real, self.num_classes, self.ctx.ipc
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        xr, yr, w, idx = per_class_batch(real, self.cfg.batch_real, self.gen)
        xr_a, xs_a = self.siamese_pair(xr, self.syn_by_class())
        if self.ctx.adaptive is not None:
            w = self.ctx.adaptive.weights(xr_a, yr, idx, w, dm_objective(net, xs_a))
        B = xr_a.shape[1]
        emb_r = net.embed(xr_a.reshape(C * B, *xr_a.shape[2:])).detach()
        emb_s = net.embed(xs_a.reshape(C * ipc, *xs_a.shape[2:]))
        loss = ((weighted_class_means(emb_r, C, w) - weighted_class_means(emb_s, C, None)) ** 2).sum()
        self.opt_img.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_img.step()
        return {"loss": loss.detach()}
