"""The straightforward formulation of DC, DSA and DM, as the public reference code writes it.

Why: speed claims need an honest yardstick. These classes compute the *same maths* as
`GradientMatching`/`DM` with the reference code's structure — a Python loop over classes, data
gathered per class with an index list, one real forward/backward and one `autograd.grad` per
class, per-class DSA transforms, a fresh network each outer iteration, no vectorisation, no options.
They draw from the distiller's generator in exactly the fast path's order (network seed; per outer
step all class index lists, then the step's one siamese draw, applied here class by class; per inner
batch a permutation slice and a seed), so from the same state both produce the same synthetic-image
gradient up to float rounding.
Adaptive selectors (ctx.adaptive) are not supported here: the baseline is the unpruned/statically
pruned method.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.methods.base import draw_seed
from dfdistill.methods.dc import GradientMatching
from dfdistill.methods.dm import DM
from dfdistill.methods.matching import gradient_distance
from dfdistill.methods.sampling import per_class_rows


def _class_index_lists(distiller, n: int) -> list[Tensor]:
    """Per class min(n, n_c) row positions: the fast path's one draw for all classes (the sampling is
    shared, the per-class gathers are the reference's), without its zero-weighted padding rows."""
    rows, w = per_class_rows(distiller.ctx.real, n, distiller.sample_gen)
    return [rows[c] if w is None else rows[c][w[c] > 0] for c in range(rows.shape[0])]


class BaselineGradientMatching(GradientMatching):
    """DC/DSA, reference structure: per class real grad, per class synthetic grad, summed distance."""

    def step(self, it: int) -> dict[str, Tensor]:
        if self.ctx.adaptive is not None:
            raise NotImplementedError("the baseline formulation does not support adaptive pruning")
        real, C, ipc = self.ctx.real, self.num_classes, self.ctx.ipc
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        net_params = list(net.parameters())
        net_opt = torch.optim.SGD(net.parameters(), lr=self.cfg.lr_net)
        outer, inner = self.loops()
        names = [n for n, _ in net.named_parameters()]
        total = 0.0
        for ol in range(outer):
            self.freeze_bn(net)  # DC's statistics pass (shared: same rows as the fast path)
            index_lists = _class_index_lists(self, self.cfg.batch_real)
            loss = torch.zeros((), device=self.ctx.device)
            draw = self.pair_seeds(C)  # the fast path's one draw per step, applied class by class
            for c in range(C):
                img_real = real.images[index_lists[c]]
                lab_real = torch.full((img_real.shape[0],), c, dtype=torch.long, device=self.ctx.device)
                img_syn = self.images[c * ipc:(c + 1) * ipc]
                lab_syn = self.labels[c * ipc:(c + 1) * ipc]
                if draw is not None:
                    img_real = draw[c:c + 1].apply(img_real[None])[0]
                    img_syn = draw[c:c + 1].apply(img_syn[None])[0]
                loss_real = F.cross_entropy(net(img_real), lab_real)
                gw_real = [g.detach().clone() for g in torch.autograd.grad(loss_real, net_params)]
                loss_syn = F.cross_entropy(net(img_syn), lab_syn)
                gw_syn = torch.autograd.grad(loss_syn, net_params, create_graph=True)
                loss = loss + gradient_distance(dict(zip(names, gw_real)), dict(zip(names, gw_syn)),
                                                self.cfg.dis_metric)
            self.opt_img.zero_grad()
            loss.backward()
            self.opt_img.step()
            total += loss.item()
            if ol == outer - 1:
                break
            self._train_epochs(net, net_opt, inner)
        return {"loss": torch.tensor(total / outer)}

    def _train_epochs(self, net, opt, epochs: int) -> None:
        """The reference `epoch('train', ...)` on a copy of the synthetic set."""
        image_syn_train = self.images.detach().clone()
        label_syn_train = self.labels.detach().clone()
        n = image_syn_train.shape[0]
        net.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=self.gen).tolist()
            for s in range(0, n, self.cfg.batch_train):
                ix = order[s:s + self.cfg.batch_train]
                img = image_syn_train[ix]
                lab = label_syn_train[ix]
                if self.cfg.dsa:
                    img = self.ctx.augment(img, seed=draw_seed(self.gen))
                out = net(img)
                loss = F.cross_entropy(out, lab)
                opt.zero_grad()
                loss.backward()
                opt.step()


class BaselineDM(DM):
    """DM, reference structure: per class embed real (detached) and synthetic, squared mean gap."""

    def step(self, it: int) -> dict[str, Tensor]:
        if self.ctx.adaptive is not None:
            raise NotImplementedError("the baseline formulation does not support adaptive pruning")
        real, C, ipc = self.ctx.real, self.num_classes, self.ctx.ipc
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        for p in list(net.parameters()):
            p.requires_grad = False
        index_lists = _class_index_lists(self, self.cfg.batch_real)
        loss = torch.zeros((), device=self.ctx.device)
        draw = self.pair_seeds(C)
        for c in range(C):
            img_real = real.images[index_lists[c]]
            img_syn = self.images[c * ipc:(c + 1) * ipc]
            if draw is not None:
                img_real = draw[c:c + 1].apply(img_real[None])[0]
                img_syn = draw[c:c + 1].apply(img_syn[None])[0]
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss = loss + torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
        self.opt_img.zero_grad()
        loss.backward()
        self.opt_img.step()
        return {"loss": loss.detach()}


def baseline_class(fast_cls: type) -> Optional[type]:
    """The baseline counterpart of a fast method class (None when there is none)."""
    if issubclass(fast_cls, DM):
        return BaselineDM
    if issubclass(fast_cls, GradientMatching):
        return BaselineGradientMatching
    return None
