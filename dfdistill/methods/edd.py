"""EDD — exclusive dataset distillation: the synthetic set is built in K exclusive segments.

Segment k (columns [a_k, b_k) of every class's ipc slots) is distilled during iterations
[k*I/K, (k+1)*I/K) by gradient matching (the DC/DSA/IDC base) against the *remaining* real pool.
At the start of segment k >= 1 a model is trained on segments < k (`filter_epochs`, `filter_lr`),
classifies the remaining pool, and a fraction `discard` of the correctly classified rows of each
class is dropped ("discarding a portion of correctly classified images and retaining mainly the
misclassified ones"); at least `min_keep` rows per class stay.
Forgetting regulariser (EDD §1 "a regularization loss derived from previously generated segments";
the exact form is unpublished): `reg` * D(g(full real batch), g(all segments <= k)) — the union of
segments must still match the UNFILTERED data, so adding segment k cannot un-learn what earlier
segments covered. reg = 0 gives the naive variant the paper says degrades.
Segment bookkeeping (active-row mask, filtered segments) is in extra_state, so resume is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dfdistill.errors import ConfigError
from dfdistill.methods.base import per_class_batch
from dfdistill.methods.dc import DCConfig, GradientMatching
from dfdistill.methods.matching import batched_gradient_distance, class_gradients, detached_params, has_batchnorm
from dfdistill.training import train_epochs


@dataclass
class EDDConfig(DCConfig):
    segments: int = 2
    discard: float = 0.5
    reg: float = 1.0
    filter_epochs: int = 50
    filter_lr: float = 0.01
    min_keep: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.segments < 1 or not 0.0 <= self.discard <= 1.0 or self.reg < 0 or self.filter_epochs < 1:
            raise ConfigError("method.segments >= 1, discard in [0,1], reg >= 0, filter_epochs >= 1 required")


def segment_bounds(ipc: int, k_segments: int) -> list[tuple[int, int]]:
    """Split ipc slots into min(K, ipc) contiguous, near-equal parts."""
    K = max(1, min(k_segments, ipc))
    edges = [round(i * ipc / K) for i in range(K + 1)]
    return [(edges[i], edges[i + 1]) for i in range(K)]


class EDD(GradientMatching):
    config_cls = EDDConfig

    def init_state(self) -> None:
        super().init_state()
        self.bounds = segment_bounds(self.ctx.ipc, self.cfg.segments)
        self.active = torch.ones(len(self.ctx.real), dtype=torch.bool, device=self.ctx.device)
        self.filtered = 0  # segments whose filtering pass has run
        self._pool = None

    def segment_of(self, it: int) -> int:
        K = len(self.bounds)
        return min(K - 1, it * K // max(self.iterations, 1))

    def pool(self):
        if self._pool is None:
            self._pool = self.ctx.real.subset(torch.nonzero(self.active).squeeze(1))
        return self._pool

    @torch.no_grad()
    def _predict(self, net, x: Tensor) -> Tensor:
        net.eval()
        return torch.cat([net(x[s : s + 1024]).argmax(1) for s in range(0, x.shape[0], 1024)])

    def filter_real(self, k: int) -> None:
        """Train on segments < k, drop `discard` of the correctly classified active rows per class."""
        real, C = self.ctx.real, self.num_classes
        b = self.bounds[k][0]
        xs = self.syn_by_class()[:, :b].detach().reshape(-1, *self.images.shape[1:])
        ys = self.labels.view(C, self.ctx.ipc)[:, :b].reshape(-1)
        net = self.ctx.model_factory(int(torch.randint(0, 2**31 - 1, (1,), generator=self.gen)))
        train_epochs(net, xs, ys, self.cfg.filter_epochs, lr=self.cfg.filter_lr, momentum=0.9,
                     batch_size=self.cfg.batch_train, gen=self.gen)
        correct = self._predict(net, real.images) == real.labels
        for ix in real.class_indices:
            act = ix[self.active[ix]]
            cand = act[correct[act]]
            n_drop = min(int(self.cfg.discard * cand.numel()), max(act.numel() - self.cfg.min_keep, 0))
            drop = cand[torch.randperm(cand.numel(), generator=self.gen)[:n_drop].to(cand.device)]
            self.active[drop] = False
        self._pool = None

    def step(self, it: int) -> dict[str, Tensor]:
        k = self.segment_of(it)
        while self.filtered < k:  # also catches up after a resume
            self.filtered += 1
            self.filter_real(self.filtered)
        self._seg = k
        out = super().step(it)
        out["active_fraction"] = self.active.float().mean()
        return out

    def matching_loss(self, net, xr, yr, w, idx, xs, ys) -> Tensor:
        """Match segment k against the pool; + reg * (segments <= k vs the full real batch)."""
        a, b = self.bounds[self._seg]
        if not self.cfg.fast or has_batchnorm(net):
            return super().matching_loss(net, xr, yr, w, idx, xs[:, a:b], ys[:, a:b])
        params = detached_params(net)
        metric = self.cfg.dis_metric
        pool = self.pool()
        xp, yp, wp, ip = per_class_batch(pool, self.cfg.batch_real, self.gen)
        if self.cfg.dsa:
            xp, _ = self.siamese_pair(xp, xs[:, a:b].detach())
        wp = self.real_weights(net, params, xp, yp, ip, wp, xs[:, a:b], ys[:, a:b])
        g_pool = {k_: v.detach() for k_, v in class_gradients(net, params, xp, yp, wp).items()}
        loss = batched_gradient_distance(g_pool, class_gradients(net, params, xs[:, a:b], ys[:, a:b]), metric)
        if self.cfg.reg > 0 and self._seg > 0:
            g_full = {k_: v.detach() for k_, v in class_gradients(net, params, xr, yr, w).items()}
            g_union = class_gradients(net, params, xs[:, :b], ys[:, :b])
            loss = loss + self.cfg.reg * batched_gradient_distance(g_full, g_union, metric)
        return loss

    def train_net_on_synthetic(self, net, opt, epochs: int) -> None:
        """The inner network trains on the segments built so far (later ones are still real inits)."""
        b = self.bounds[self._seg][1]
        full_x, full_y = self.images, self.labels
        C = self.num_classes
        self.images = self.syn_by_class()[:, :b].reshape(-1, *full_x.shape[1:])
        self.labels = full_y.view(C, self.ctx.ipc)[:, :b].reshape(-1)
        try:
            super().train_net_on_synthetic(net, opt, epochs)
        finally:
            self.images, self.labels = full_x, full_y

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "edd_active": self.active.cpu(), "edd_filtered": self.filtered}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.active = state["edd_active"].to(self.ctx.device)
        self.filtered = int(state["edd_filtered"])
        self._pool = None
