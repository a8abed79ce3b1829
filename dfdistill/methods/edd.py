"""EDD — exclusive dataset distillation: the synthetic set is built in K exclusive segments.

What the paper states (../shared/papers/edd-exclusive-distillation.md): segments are distilled one
after another, "each segment is trained by matching different subsets of the real dataset"; before
segment k a model trained on the earlier segments "classif[ies] the real dataset, discarding a
portion of correctly classified images and retaining mainly the misclassified ones"; a
"regularization loss derived from previously generated segments" counters forgetting; and "we build
upon IDC" (eq. 4: gradient matching of upsampled (multi-formation) synthetic images and real images
under differentiable siamese augmentation).

Here: segment k = stored slots [a_k, b_k) of every class (segment_bounds), distilled during
iterations [k*I/K, (k+1)*I/K). The base (`base`) supplies the synthetic parameterisation and the
matching step: `idc` (default; the paper's) = IDC's stored [0,1] images decoded into f^2 tiles,
per-class image steps, conv-weight distance, network trained on real data between matching steps;
`dsa` = DC/DSA learnable images, class-summed step, networks trained on the segments so far.
Per matching step and class, with ONE siamese augmentation draw shared by all its batches:
    loss = D(g(pool batch), g(segment k)) + reg * D(g(unfiltered real batch), g(segments <= k)),
the pool being the rows still active after the filter passes. The regulariser's form is not
published; ours asks the union of segments to keep matching the UNFILTERED data, so adding segment k
cannot un-learn what earlier segments covered (reg = 0: the naive variant the paper says degrades).
Open choices, each a config value (docs/pruning.md): `segments` K, `discard`, `min_keep`,
`filter_epochs`/`filter_lr` (the filter model trains on the segments so far, no augmentation),
`reg`, `net_data` (idc base: the network between matching steps trains on the `full` split, as IDC,
or on the `pool`). The in-loop selector (BiLP ITE) sees the pool batch with its rows in ctx.real.
Segment bookkeeping (active-row mask, filter passes done) is in extra_state, so resume is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dfdistill.core.errors import ConfigError
from dfdistill.engine.memory import rows_per_pass
from dfdistill.methods.base import Distiller, class_rows, draw_seed
from dfdistill.methods.dc import DCConfig, GradientMatching, MatchStep
from dfdistill.methods.idc import IDC, IDCConfig
from dfdistill.methods.chunks import backward_in_chunks
from dfdistill.methods.matching import detached_params
from dfdistill.methods.sampling import per_class_rows
from dfdistill.engine.training import train_epochs
from dfdistill.core.registry import register_method

BASES = ("idc", "dsa")
NET_DATA = ("full", "pool")


@dataclass
class EDDConfig(IDCConfig, DCConfig):
    """IDC's and DC's keys (each base reads its own), plus the segment/filter/regulariser choices."""

    base: str = "idc"  # idc (the paper's base) | dsa
    segments: int = 2
    discard: float = 0.5
    reg: float = 1.0
    filter_epochs: int = 50
    filter_lr: float = 0.01
    min_keep: int = 1
    net_data: str = "full"  # idc base: real rows the network trains on between matching steps: full | pool

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ConfigError(f"method.base must be one of {BASES}, got {self.base!r}")
        (IDCConfig if self.base == "idc" else DCConfig).__post_init__(self)
        if self.segments < 1 or not 0.0 <= self.discard <= 1.0 or self.reg < 0 or self.filter_epochs < 1:
            raise ConfigError("method.segments >= 1, discard in [0,1], reg >= 0, filter_epochs >= 1 required")
        if self.net_data not in NET_DATA:
            raise ConfigError(f"method.net_data must be one of {NET_DATA}, got {self.net_data!r}")

    def uses_dc_loops(self) -> bool:
        return self.base == "dsa"


def segment_bounds(ipc: int, k_segments: int) -> list[tuple[int, int]]:
    """Split ipc slots into min(K, ipc) contiguous, near-equal parts."""
    K = max(1, min(k_segments, ipc))
    edges = [round(i * ipc / K) for i in range(K + 1)]
    return [(edges[i], edges[i + 1]) for i in range(K)]


class ExclusiveSegments:
    """EDD's schedule, filtered real pool and resumable bookkeeping, mixed into either base."""

    cfg: EDDConfig

    def init_state(self) -> None:
        super().init_state()
        self.bounds = segment_bounds(self.ctx.ipc, self.cfg.segments)
        self.active = torch.ones(len(self.ctx.real), dtype=torch.bool, device=self.ctx.device)
        self.filtered = 0  # segments whose filtering pass has run

    def segment_of(self, it: int) -> int:
        K = len(self.bounds)
        return min(K - 1, it * K // max(self.iterations, 1))

    def step(self, it: int) -> dict[str, Tensor]:
        while self.filtered < self.segment_of(it):  # also catches up after a resume
            self.filtered += 1
            self.filter_real(self.filtered)
        out = super().step(it)
        out["active_fraction"] = self.active.float().mean()
        return out

    def pool_rows(self, c: int, n: int) -> Tensor:
        """Up to n random active rows of class c (indices into ctx.real)."""
        rows = class_rows(self.ctx.real, c, self.active)
        return rows[torch.randperm(rows.numel(), generator=self.gen)[:n].to(rows.device)]

    def segment_train_set(self, hi: int) -> tuple[Tensor, Tensor]:
        """The training images/labels of every class's slots [0, hi) (decoded for IDC)."""
        raise NotImplementedError

    @torch.no_grad()
    def _predict(self, net, x: Tensor) -> Tensor:
        net.eval()
        per = min(1024, rows_per_pass(net, x.shape[1:], "forward"))  # the memory budget's rows per pass
        return torch.cat([net(x[s : s + per]).argmax(1) for s in range(0, x.shape[0], per)])

    def filter_real(self, k: int) -> None:
        """Train on segments < k, drop `discard` of the correctly classified active rows per class."""
        real = self.ctx.real
        xs, ys = self.segment_train_set(self.bounds[k][0])
        net = self.ctx.model_factory(draw_seed(self.gen))
        with torch.enable_grad():
            train_epochs(net, xs.detach(), ys, self.cfg.filter_epochs, lr=self.cfg.filter_lr, momentum=0.9,
                         batch_size=self.cfg.batch_train, gen=self.gen)
        correct = self._predict(net, real.images) == real.labels
        for c in range(self.num_classes):
            act = class_rows(real, c, self.active)
            cand = act[correct[act]]
            n_drop = min(int(self.cfg.discard * cand.numel()), max(act.numel() - self.cfg.min_keep, 0))
            drop = cand[torch.randperm(cand.numel(), generator=self.gen)[:n_drop].to(cand.device)]
            self.active[drop] = False
        if self.ctx.adaptive is not None:  # batches held by lazy selection came from the old pool
            self.ctx.adaptive.forget()

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "edd_active": self.active.cpu(), "edd_filtered": self.filtered}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.active = state["edd_active"].to(self.ctx.device)
        self.filtered = int(state["edd_filtered"])


class EDDOnIDC(ExclusiveSegments, IDC):
    """EDD on IDC (multi-formation, per-class steps, network trained on real data)."""

    config_cls = EDDConfig

    def segment_train_set(self, hi: int) -> tuple[Tensor, Tensor]:
        C, ipc, f2 = self.num_classes, self.ctx.ipc, self.cfg.factor**2
        stored = self.images.detach().clamp(0, 1).view(C, ipc, *self.images.shape[1:])[:, :hi]
        x = self.decoded(stored.reshape(-1, *self.images.shape[1:]))
        return x, self.labels.view(C, ipc)[:, :hi].reshape(-1).repeat_interleave(f2)

    def class_loss(self, net, c: int, it: int) -> Tensor:
        k = self.segment_of(it)
        a, b = self.bounds[k]
        real = self.ctx.real
        rows, _ = self.real_rows(lambda: (self.pool_rows(c, self.cfg.batch_real), None))
        rows = rows.reshape(-1)  # a held batch comes back as the selector saw it, (1, B)
        batches = [real.images.index_select(0, rows), self.syn_batch(c, a, b)]
        with_reg = self.cfg.reg > 0 and k > 0
        if with_reg:
            full = real.class_sample_indices(c, self.cfg.batch_real, self.gen)
            batches += [real.images.index_select(0, full), self.syn_batch(c, 0, b)]
        batches = self.augment_together(*batches)  # one draw for pool, segment, full batch and union
        params = detached_params(net)
        loss = self.pair_distance(net, params, c, batches[0], rows, batches[1])
        if with_reg:
            loss = loss + self.cfg.reg * self.pair_distance(net, params, c, batches[2], full, batches[3], select=False)
        return loss

    def net_rows(self, n: int) -> Tensor:
        if self.cfg.net_data == "full":
            return super().net_rows(n)
        pool = torch.nonzero(self.active).squeeze(1)
        return pool[torch.randint(0, pool.numel(), (n,), generator=self.gen).to(pool.device)]


class EDDOnDSA(ExclusiveSegments, GradientMatching):
    """EDD on DC/DSA (class-summed steps; inner network trained on the segments built so far)."""

    config_cls = EDDConfig

    def segment_train_set(self, hi: int) -> tuple[Tensor, Tensor]:
        C = self.num_classes
        x = self.syn_by_class()[:, :hi].detach().reshape(-1, *self.images.shape[1:])
        return x, self.labels.view(C, self.ctx.ipc)[:, :hi].reshape(-1)

    def inner_train_set(self, it: int) -> tuple[Tensor, Tensor]:
        return self.segment_train_set(self.bounds[self.segment_of(it)][1])

    def match_step(self, net, ys: Tensor, it: int) -> tuple[Tensor, MatchStep]:
        """Pool vs segment k, plus reg x (unfiltered batch vs segments <= k), formed and backpropagated a
        class chunk at a time; per class one siamese draw for all four batches."""
        k = self.segment_of(it)
        a, b = self.bounds[k]
        real, C = self.ctx.real, self.num_classes
        self.freeze_bn(net)
        ip, wp = self.real_rows(lambda: per_class_rows(real, self.cfg.batch_real, self.sample_gen, active=self.active))
        seeds = self.pair_seeds(C)
        with_reg = self.cfg.reg > 0 and k > 0
        i_f, wf = per_class_rows(real, self.cfg.batch_real, self.sample_gen) if with_reg else (None, None)
        chunk = self.class_chunk_for(net, ip.shape[1] * (2 if with_reg else 1))
        xp, xs = self.real_classes(ip, seeds, chunk), self.syn_classes(seeds, chunk)
        xf = self.real_classes(i_f, seeds, chunk) if with_reg else None
        yp, yf = real.labels[ip], (real.labels[i_f] if with_reg else None)
        params = detached_params(net)
        wp = self.real_weights(net, params, xp, yp, ip, wp, self.syn_classes(seeds, chunk, slice(a, b)), ys[:, a:b])
        part = lambda t, lo, hi: None if t is None else t[lo:hi]

        def loss_of(lo: int, hi: int) -> Tensor:
            xp_c, xs_c = xp[lo:hi], xs[lo:hi]  # xs_c: every slot of these classes, augmented once
            loss = self.matching_loss(net, params, xp_c, yp[lo:hi], part(wp, lo, hi), xs_c[:, a:b], ys[lo:hi, a:b])
            if with_reg:
                loss = loss + self.cfg.reg * self.matching_loss(net, params, xf[lo:hi], yf[lo:hi], part(wf, lo, hi),
                                                                xs_c[:, :b], ys[lo:hi, :b])
            return loss

        self.opt_img.zero_grad(set_to_none=True)
        loss = backward_in_chunks(loss_of, C, chunk)
        self.opt_img.step()
        return loss, MatchStep(net, params, xp, yp, ip, wp, seeds)


@register_method("edd_dsa", config=EDDConfig, label="EDD (DSA base)", in_loop_pruning=True)
@register_method("edd", config=EDDConfig, label="EDD", in_loop_pruning=True)
class EDD(Distiller):
    """`EDD(cfg, ctx)` builds the variant for `cfg.base` (EDDOnIDC or EDDOnDSA)."""

    def __new__(cls, cfg: EDDConfig, ctx) -> Distiller:
        return (EDDOnIDC if cfg.base == "idc" else EDDOnDSA)(cfg, ctx)
