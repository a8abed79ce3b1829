"""DC (gradient matching) and DSA (DC + differentiable siamese augmentation).

Per outer iteration: a fresh random network; `outer_loop` times: match every class's real and
synthetic CE gradients (layer-wise distance), one image step on the class-summed loss, then train
the network `inner_loop` epochs on the synthetic set. The loops per IPC are recipe data
(dfdistill/recipes/loops.yaml, DC's get_loops). The per-class gradients run as one vmapped call
(`fast=true`); `fast=false` is the reference loop formulation (one autograd.grad per class) with
identical maths.

Subclasses hook in without copying the loop: `sample_weights` (per-sample factors on the real side,
DF-CoLearn's mask), `after_iteration` (gets the last matching step's inputs explicitly, as a
`MatchStep`), and `matching_loss` is the one vmapped-or-loop gradient distance they all call.

Memory: the per-class gradients are independent given the network (BN nets match in eval mode after
DC's statistics pass), and the loss is their sum, so `matching_backward` forms and backpropagates it
a chunk of classes at a time (`memory:` settings; one chunk when all fits): only one chunk's real
batch, graphs and per-class gradients are alive, and the image gradient is the one-pass gradient.
The real batch itself is gathered and augmented per chunk (`real_classes`), unless a subclass needs
it whole (`materialize_real`, DF-CoLearn's mask step). The statistics pass is chunked too, with the
one-pass statistics (methods/batchnorm.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from dfdistill.data.augment.class_draw import ClassDraw
from dfdistill.core.errors import ConfigError
from dfdistill.engine.training import train_epochs
from dfdistill.methods.base import ImageDistiller, MethodConfig, draw_seed
from dfdistill.methods.chunks import Batch, ClassBatch, backward_in_chunks, materialize
from dfdistill.methods.matching import (
    METRICS, GradDict, batched_gradient_distance, class_gradients, class_gradients_loop, detached_params,
    freeze_batchnorm_rows, gm_objective, has_batchnorm, loop_distance,
)
from dfdistill.methods.sampling import per_class_rows, valid_rows
from dfdistill.core.registry import register_method

@dataclass
class DCConfig(MethodConfig):
    lr_net: float = 0.01
    batch_train: int = 256
    # DC's get_loops(ipc): image steps per iteration and network epochs between them. The per-IPC
    # values are recipe data (dfdistill/recipes/loops.yaml); with recipe=none set them yourself.
    outer_loop: Optional[int] = None
    inner_loop: Optional[int] = None
    dis_metric: str = "ours"
    bn_images_per_class: int = 16
    fast: bool = True  # vmapped per-class gradients; false = reference per-class loop
    # Measured on a 2-core CPU the vmapped path is 0.73x the loop (docs/performance.md), so by
    # default it is used on CUDA only; the maths is identical either way (tests/unit/bench/test_bench.py).
    vmap_on_cpu: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.uses_dc_loops() and (self.outer_loop is None or self.inner_loop is None):
            raise ConfigError("method.outer_loop and method.inner_loop are unset (they come from the paper recipe for "
                              "IPC 1/10/20/30/40/50): set both, e.g. method.outer_loop=10 method.inner_loop=50")
        if self.outer_loop is not None and self.inner_loop is not None and (self.outer_loop < 1 or self.inner_loop < 0):
            raise ConfigError(f"method.outer_loop must be >= 1 and inner_loop >= 0, got {self.outer_loop}, {self.inner_loop}")
        if self.dis_metric not in METRICS:
            raise ConfigError(f"method.dis_metric must be one of {METRICS}, got {self.dis_metric!r}")

    def uses_dc_loops(self) -> bool:
        """Whether DC's outer/inner loops drive this method (EDD on IDC runs IDC's loop instead)."""
        return True


@dataclass
class MatchStep:
    """The inputs of one matching step, handed on explicitly (DF-CoLearn's mask step reuses them)."""

    net: nn.Module
    params: GradDict  # detached parameters the gradients were taken at
    xr: Batch  # (C, B, ...) real batch as it entered the loss (augmented when dsa); a Tensor if materialize_real
    yr: Tensor  # (C, B)
    idx: Tensor  # (C, B) rows into ctx.real
    w: Optional[Tensor]  # (C, B) padding x in-loop selector weights, before the method's sample_weights
    seeds: Optional[ClassDraw]  # the step's per-class siamese draw shared by xr and the synthetic batch (None: no dsa)


@register_method("dsa", config=DCConfig, label="DSA", in_loop_pruning=True, target="dfdistill.methods.dc.DSA")
@register_method("dc", config=DCConfig, label="DC", in_loop_pruning=True, target="dfdistill.methods.dc.DC")
class GradientMatching(ImageDistiller):
    """DC/DSA; subclasses (DF-CoLearn, EDD's DSA base) change how real samples are weighted/drawn."""

    # True where a subclass reads the whole real batch as one tensor (sample_weights / after_iteration)
    materialize_real: bool = False

    def loops(self) -> tuple[int, int]:
        return self.cfg.outer_loop, self.cfg.inner_loop

    def use_vmap(self, net) -> bool:
        on_cpu = self.ctx.device.type == "cpu"
        return self.cfg.fast and not has_batchnorm(net) and (not on_cpu or self.cfg.vmap_on_cpu)

    def real_weights(self, net, params, xr: Batch, yr: Tensor, idx: Tensor, w: Optional[Tensor],
                     xs: Batch, ys: Tensor) -> Optional[Tensor]:
        """Padding weights times the in-loop selector's (BiLP ITE) for the real batch (C, B).
        `idx` are row indices into ctx.real (what the selector's per-row state indexes)."""
        if self.ctx.adaptive is not None:
            return self.ctx.adaptive.weights(xr, yr, idx, w, gm_objective(net, params, xs, ys, self.cfg.dis_metric))
        return w

    def sample_weights(self, net, params, xr: Batch, yr: Tensor, idx: Tensor, w: Optional[Tensor]) -> Optional[Tensor]:
        """The method's own per-sample factors on top of `w` (DF-CoLearn: m * Phi). Default: none."""
        return w

    def matching_loss(self, net, params: GradDict, xr: Tensor, yr: Tensor, w: Optional[Tensor],
                      xs: Tensor, ys: Tensor) -> Tensor:
        """Class-summed distance of the (w-weighted) real and the synthetic CE gradients of the classes
        in the batch: one vmapped call (`use_vmap`) or the per-class loop (BatchNorm nets,
        `fast=false`); the same maths."""
        metric = self.cfg.dis_metric
        if self.use_vmap(net):
            g_real = {k: v.detach() for k, v in class_gradients(net, params, xr, yr, w).items()}
            g_syn = class_gradients(net, params, xs, ys)
            return batched_gradient_distance(g_real, g_syn, metric)
        names = [n for n, _ in net.named_parameters()]
        C = xr.shape[0]
        ws = None if w is None else [w[c] for c in range(C)]
        g_real = class_gradients_loop(net, [xr[c] for c in range(C)], [yr[c] for c in range(C)], ws)
        g_syn = class_gradients_loop(net, [xs[c] for c in range(C)], [ys[c] for c in range(C)], create_graph=True)
        return loop_distance(g_real, g_syn, names, metric)

    def matching_backward(self, net, params: GradDict, xr: Batch, yr: Tensor, w: Optional[Tensor],
                          xs: Batch, ys: Tensor, chunk: int, scale: float = 1.0) -> Tensor:
        """`scale * matching_loss` over all classes, formed and backpropagated `chunk` classes at a
        time (gradients accumulate in the images); returns the detached loss."""
        graph = [t for t in (xs, w) if isinstance(t, Tensor)]  # whole tensors with history: cut per chunk

        def loss_of(lo: int, hi: int, *cut: Tensor) -> Tensor:
            cut_it = iter(cut)
            xs_c = next(cut_it) if isinstance(xs, Tensor) else xs[lo:hi]
            w_c = None if w is None else next(cut_it)
            return scale * self.matching_loss(net, params, xr[lo:hi], yr[lo:hi], w_c, xs_c, ys[lo:hi])

        return backward_in_chunks(loss_of, yr.shape[0], chunk, graph)

    def class_chunk_for(self, net, rows_per_class: int) -> int:
        """Classes per matching pass: each holds B real rows (forward + backward), ipc synthetic rows
        (double backward, ~2x) and a real and a synthetic per-class gradient (+ its graph)."""
        return self.class_chunk(net, rows_per_class + 2 * self.ctx.ipc, kind="backward", grads_per_class=3)

    def freeze_bn(self, net) -> None:
        """DC's BN handling before each matching step (no-op for nets without BatchNorm): statistics of
        bn_images_per_class real images of every class, in chunks when they do not fit one pass."""
        if has_batchnorm(net):
            rows = valid_rows(*per_class_rows(self.ctx.real, self.cfg.bn_images_per_class, self.sample_gen))
            freeze_batchnorm_rows(net, self.ctx.real, rows)

    def match_step(self, net, ys: Tensor, it: int) -> tuple[Tensor, MatchStep]:
        """One image update on the class-summed matching loss of a real batch (iteration `it`): a fresh draw,
        or under lazy ITE selection the batch selected at the last refresh (`real_rows`)."""
        self.freeze_bn(net)
        idx, w = self.real_rows(lambda: per_class_rows(self.ctx.real, self.cfg.batch_real, self.sample_gen))
        seeds = self.pair_seeds(idx.shape[0])
        chunk = self.class_chunk_for(net, idx.shape[1])
        xr: Batch = self.real_classes(idx, seeds, chunk)
        xs = self.syn_classes(seeds, chunk)
        if self.materialize_real:
            xr = materialize(xr)
        yr = self.ctx.real.labels[idx]
        params = detached_params(net)
        w = self.real_weights(net, params, xr, yr, idx, w, xs, ys)
        ws = self.sample_weights(net, params, xr, yr, idx, w)
        self.opt_img.zero_grad(set_to_none=True)
        loss = self.matching_backward(net, params, xr, yr, ws, xs, ys, chunk)
        self.opt_img.step()
        return loss, MatchStep(net, params, xr, yr, idx, w, seeds)

    def train_net_on_synthetic(self, net, opt, epochs: int, images: Tensor, labels: Tensor) -> None:
        """Inner loop: `epochs` epochs on the given (detached) synthetic images (non-siamese DSA when on)."""
        train_epochs(net, images.detach(), labels, epochs, batch_size=self.cfg.batch_train,
                     augment=self.ctx.augment if self.cfg.dsa else None, gen=self.gen, optimizer=opt)

    def inner_train_set(self, it: int) -> tuple[Tensor, Tensor]:
        """What the network trains on between matching steps (EDD: the segments built so far)."""
        return self.images, self.labels

    def after_iteration(self, it: int, last: MatchStep) -> dict[str, Tensor]:
        """Hook after the outer loops, given the last matching step's inputs; returns extra metrics."""
        return {}

    def step(self, it: int) -> dict[str, Tensor]:
        C, ipc = self.num_classes, self.ctx.ipc
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        net_opt = torch.optim.SGD(net.parameters(), lr=self.cfg.lr_net)
        outer, inner = self.loops()
        ys = self.labels.view(C, ipc)
        total = torch.zeros((), device=self.ctx.device)
        for ol in range(outer):
            loss, last = self.match_step(net, ys, it)
            total = total + loss
            if ol == outer - 1:
                break
            net.train()
            self.train_net_on_synthetic(net, net_opt, inner, *self.inner_train_set(it))
        return {"loss": total / outer, **self.after_iteration(it, last)}


DC = GradientMatching
DSA = GradientMatching
