"""DM — distribution matching: match mean embeddings of real and synthetic images per class
under a freshly initialised, frozen network each iteration (one image step per iteration).

The loss is a sum over classes, so it is formed and backpropagated a chunk of classes at a time
(`memory:` settings; one chunk when everything fits), which gives the one-pass image gradient.
BatchNorm networks: as in the reference, the real images of ALL classes are normalised with the
statistics of their one concatenated batch, and the synthetic images with those of theirs. When the
real side needs several chunks, those statistics are computed exactly layer by layer
(methods/batchnorm.py) and the real chunks then run with BN in eval mode holding them; the
synthetic side (C x ipc images) stays one train-mode pass, since its statistics carry gradient
across classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from dfdistill.engine import compiled
from dfdistill.methods.base import ImageDistiller, MethodConfig, draw_seed
from dfdistill.methods.batchnorm import batch_statistics, set_statistics
from dfdistill.methods.chunks import ClassBatch, backward_in_chunks
from dfdistill.methods.matching import dm_objective, has_batchnorm
from dfdistill.methods.sampling import per_class_rows
from dfdistill.core.registry import register_method
from dfdistill.engine.runtime import autocast


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


def embed_classes(net: nn.Module, x: Tensor) -> Tensor:
    """(k, B, ...) -> (k*B, D) embeddings in x's dtype (computed under bf16 autocast when gpu.bf16 is on)."""
    with autocast(x.device):  # compiled when `compile` says so (first-order: no double backward here)
        return compiled.embed(net, x.reshape(-1, *x.shape[2:])).to(x.dtype)


@register_method("dm", config=DMConfig, label="DM", in_loop_pruning=True)
class DM(ImageDistiller):

    def step(self, it: int) -> dict[str, Tensor]:
        real, C = self.ctx.real, self.num_classes
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        rows, w = self.real_rows(lambda: per_class_rows(real, self.cfg.batch_real, self.sample_gen))
        seeds = self.pair_seeds(C)
        chunk = self.class_chunk(net, rows.shape[1] + self.ctx.ipc, kind="backward")
        xr, xs = self.real_classes(rows, seeds, chunk), self.syn_classes(seeds, chunk)
        if self.ctx.adaptive is not None:
            w = self.ctx.adaptive.weights(xr, real.labels[rows], rows, w, dm_objective(net, xs))
        self.opt_img.zero_grad(set_to_none=True)
        if chunk < C and has_batchnorm(net):
            loss = self.batchnorm_backward(net, xr, w, xs)
        else:
            loss = backward_in_chunks(lambda lo, hi: self.class_loss(net, xr[lo:hi], w, xs[lo:hi], lo), C, chunk)
        self.opt_img.step()
        return {"loss": loss}

    def class_loss(self, net: nn.Module, xr: Tensor, w: Optional[Tensor], xs: Tensor, lo: int) -> Tensor:
        """sum over the k classes lo..lo+k-1 of ||weighted mean real embedding - mean syn embedding||^2."""
        k = xr.shape[0]
        with torch.no_grad():
            mr = weighted_class_means(embed_classes(net, xr), k, None if w is None else w[lo : lo + k])
        return ((mr - weighted_class_means(embed_classes(net, xs), k, None)) ** 2).sum()

    def batchnorm_backward(self, net: nn.Module, xr: ClassBatch, w: Optional[Tensor], xs: ClassBatch) -> Tensor:
        """The BN branch with a chunked real side: one-batch statistics found layer by layer, real chunks
        in eval mode with them, then the synthetic side in one train-mode pass."""
        C = len(xr)
        ranges = xr.ranges()
        stats = batch_statistics(net, lambda: (xr[lo:hi].reshape(-1, *xr.shape[2:]) for lo, hi in ranges))
        if stats is None:  # BN layers chunking cannot reproduce: the one-pass formulation
            return backward_in_chunks(lambda lo, hi: self.class_loss(net, xr[lo:hi], w, xs[lo:hi], lo), C, C)
        saved = {bn: (bn.training, bn.running_mean.clone(), bn.running_var.clone()) for bn in stats}
        set_statistics(stats, momentum_update=False)
        for bn in stats:
            bn.eval()
        with torch.no_grad():
            mr = torch.cat([weighted_class_means(embed_classes(net, xr[lo:hi]), hi - lo,
                                                 None if w is None else w[lo:hi]) for lo, hi in ranges])
        for bn, (t, rm, rv) in saved.items():
            bn.train(t)
            bn.running_mean.copy_(rm)
            bn.running_var.copy_(rv)
        loss = ((mr - weighted_class_means(embed_classes(net, xs[0:C]), C, None)) ** 2).sum()
        loss.backward()
        return loss.detach()
