"""DF-CoLearn (Lei): collaborative dataset distillation + filtering with a learnable soft mask.

Concrete choices (the paper leaves them open; each is a config value):
* mask m in [0,1]^N over ctx.real rows, m^(0) = 1 (§2: "initialize the mask m^(0) = 1").
* Phi, "an adaptive truncation function ... to generate the soft mask" from kappa (eq. 4):
  Phi(kappa)_i = sigmoid((tau_c - kappa_i) / (temp * sd_c)), tau_c = the `trunc_quantile` quantile of
  kappa over the class's batch rows and sd_c their std — it adapts to each class/iteration and
  softly removes the hardest tail, which we read as noise ("susceptible to noise interference").
  kappa is computed on the current network theta_t (eq. 4 "at iteration t") for the batch rows.
* eq. 5: mask-weighted GM loss = class_gradients with weights m_i*Phi_i (sum(w l)/sum(w) per class =
  (1/sum m) sum m_j grad l_j). eq. 5 is a squared L2 (dis_metric: mse); DC's 'ours' stays available.
* eq. 6: image step with m fixed (the inherited GradientMatching step).
* eq. 7, mask step every `mask_every` outer iterations, one-step unrolled meta-gradient, on the
  last matching step's inputs (handed over as a `MatchStep`: network, augmented real batch, rows,
  selector weights, siamese seeds) and the just-updated S:
  S'(m) = S - lr_img * dL_gM(A(S), m)/dS;  theta'(m) = theta - unroll_lr * dCE(theta; S')/dtheta
  (the partial derivative: S' is an image step taken at theta, held fixed in theta);
  A = the siamese DSA draw (one seed per class) the real batch was augmented with, so the real batch
  and the synthetic set are matched under the SAME transform, as in the image step; the temporary
  model's step on S' is unaugmented (a deterministic meta-gradient);
  L_val(m) = CE(theta'(m); an unweighted real batch) + gamma * sum(m_batch) - lambda * I(S; T_m);
  m <- clip(m - mask_lr * step(dL_val/dm), 0, 1) on the batch rows. ("temporary model trained on S",
  "loss feedback of the original data under theta'_S"). `mask_rule: sgd` is eq. 7 literally
  (step = the gradient); the default `normalized` divides it by its RMS over the batch rows, so
  mask_lr is the RMS change per update (gamma stays a constant pull in those units; see update_mask).
  Why: one row's meta-gradient is O(1/B) x unroll_lr x lr_img (~1e-5 here). With the paper's
  unspecified eps_m, a literal step left the mask at 0.9999 after a CPU run, so the loop did nothing.
  The normalised step keeps eq. 7's direction and makes the step size a scale-free knob.
* I(S;T): InfoNCE lower bound between class-mean synthetic embeddings (of A(S)) and mask-weighted
  class-mean real embeddings (positives = same class): I >= log C + mean_c log softmax_c'(cos(s_c, r_c')/tau)[c].
* Table 2 variants (`variant`): full | distill_only (m = 1, Phi off) | filter_then_distill (Phi of
  a static kappa from the scoring module, m fixed) | filter_only (the filter alone, no distillation)
  | random (ipc random real rows, no distillation).
* filter_only ("Baseline B: Filtering Only (Limited by discrete nature)"): the filter is the soft mask
  m * Phi(kappa) that defines "the filtered subset distribution P_S(m)"; without the synergy loop
  m = 1, so the filter keeps what Phi keeps: Phi truncates the high-kappa tail ("susceptible to noise
  interference") and is decreasing in kappa. `filter_pick: top` (default) keeps each class's ipc rows
  with the highest mask value, i.e. the lowest static kappa (ties of a saturated Phi broken by kappa);
  `filter_pick: sample` draws them from P_S(m), with probability proportional to Phi. (The previous
  rule, highest Phi * kappa, kept the hardest rows just under the threshold, which the paper's filter
  removes rather than favours.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from dfdistill.core.errors import ConfigError
from dfdistill.methods.dc import DCConfig, GradientMatching, MatchStep
from dfdistill.methods.matching import batched_gradient_distance, class_gradients
from dfdistill.scoring.empirical import ScoringConfig, compute_scores
from dfdistill.scoring.gradnorm import hardness, per_sample_loss_and_grad_norm
from dfdistill.core.registry import register_method

VARIANTS = ("full", "distill_only", "filter_then_distill", "filter_only", "random")
MASK_RULES = ("normalized", "sgd")
FILTER_PICKS = ("top", "sample")


@dataclass
class DFCoLearnConfig(DCConfig):
    variant: str = "full"
    alpha: float = 0.5  # eq. 4 loss/grad-norm mix
    trunc_quantile: float = 0.9  # Phi threshold: class quantile of kappa
    trunc_temp: float = 0.25  # Phi softness in class-std units
    mask_lr: float = 0.05  # eps_m (eq. 7): RMS change per update (normalized) or the raw factor (sgd)
    mask_rule: str = "normalized"  # normalized | sgd (eq. 7 literally)
    mask_every: int = 1  # mask step every k outer iterations
    unroll_lr: float = 0.01  # temporary-model step on S (eq. 7)
    l1_weight: float = 1e-4  # gamma of eq. 3: L1 on m
    mi_weight: float = 0.1  # lambda of eq. 3: information synergy weight
    nce_temp: float = 0.1
    static_epochs: int = 2  # filter_then_distill / filter_only: scoring epochs for static kappa
    filter_pick: str = "top"  # filter_only: top (highest mask = lowest kappa) | sample (draw from P_S(m))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ConfigError(f"method.variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0 <= self.alpha <= 1 or not 0 < self.trunc_quantile <= 1:
            raise ConfigError("method.alpha must be in [0,1] and trunc_quantile in (0,1]")
        if self.trunc_temp <= 0 or self.mask_lr < 0 or self.mask_every < 1 or self.l1_weight < 0 or self.mi_weight < 0:
            raise ConfigError("method.trunc_temp > 0, mask_lr/l1_weight/mi_weight >= 0, mask_every >= 1 required")
        if self.mask_rule not in MASK_RULES:
            raise ConfigError(f"method.mask_rule must be one of {MASK_RULES}, got {self.mask_rule!r}")
        if self.filter_pick not in FILTER_PICKS:
            raise ConfigError(f"method.filter_pick must be one of {FILTER_PICKS}, got {self.filter_pick!r}")


def update_mask(mask: Tensor, grad: Tensor, rows: Tensor, lr: float, rule: str, gamma: float = 0.0) -> None:
    """In place: eq. 7's step on `rows` (the batch's real rows), clipped to [0, 1].

    `grad` is dL_val/dm including the L1 term's constant gamma on the batch rows. `normalized`
    rescales only the data part (the unrolled validation loss and the InfoNCE term) to unit RMS and
    keeps gamma as a constant pull. Why: that part sums to zero within a class, because eq. 5's
    weighted mean does not change when a class's weights are scaled together. So it spreads the rows
    and cannot shrink them all. Rescaling the total instead would let gamma (1e-4, against ~1e-5 of
    data gradient) push every row to 0 together."""
    g = grad[rows]
    if rule == "normalized":
        data = g - gamma
        g = data / data.pow(2).mean().sqrt().clamp_min(1e-30) + gamma
    mask[rows] = (mask[rows] - lr * g).clamp(0.0, 1.0)


def soft_truncation(kappa: Tensor, q: float, temp: float) -> Tensor:
    """Phi: (C, B) kappa -> (C, B) soft mask in (0, 1), per-class adaptive threshold."""
    tau = torch.quantile(kappa, q, dim=1, keepdim=True)
    sd = kappa.std(dim=1, keepdim=True).clamp_min(1e-8)
    return torch.sigmoid((tau - kappa) / (temp * sd))


def filter_rows(phi: Tensor, kappa: Tensor, class_indices: list[Tensor], ipc: int, pick: str,
                gen: torch.Generator) -> Tensor:
    """ipc rows per class that the filter (soft mask Phi, m = 1) keeps, class-major.
    top: highest Phi, ties (a saturated sigmoid) broken by lower kappa; sample: drawn without
    replacement with probability proportional to Phi."""
    out = []
    for ix in class_indices:
        if pick == "top":
            order = torch.argsort(kappa[ix], stable=True)  # kappa ascending ...
            order = order[torch.argsort(-phi[ix][order], stable=True)]  # ... then Phi descending
            out.append(ix[order[:ipc]])
        else:
            p = phi[ix].double().cpu().clamp_min(1e-12)
            out.append(ix[torch.multinomial(p, min(ipc, ix.numel()), replacement=False, generator=gen).to(ix.device)])
    return torch.cat(out)


def infonce_mi(emb_s: Tensor, emb_r: Tensor, temp: float) -> Tensor:
    """InfoNCE bound on I(S; T): class means emb_s (C, D) vs emb_r (C, D), positives on the diagonal."""
    C = emb_s.shape[0]
    logits = F.normalize(emb_s, dim=-1) @ F.normalize(emb_r, dim=-1).T / temp
    return math.log(C) - F.cross_entropy(logits, torch.arange(C, device=emb_s.device))


@register_method("dfcolearn", config=DFCoLearnConfig, label="DF-CoLearn", in_loop_pruning=True)
class DFCoLearn(GradientMatching):
    materialize_real = True  # batch_phi and the eq. 7 mask step read the whole real batch as one tensor

    def prepare(self) -> None:
        real = self.ctx.real
        self.mask = torch.ones(len(real), device=real.device)
        self.static_phi: Optional[Tensor] = None
        if self.cfg.variant in ("filter_then_distill", "filter_only"):
            scfg = ScoringConfig(criterion="hardness", alpha=self.cfg.alpha, trials=1, epochs=[-1],
                                 train_epochs=self.cfg.static_epochs)
            self.static_kappa = compute_scores(real, self.ctx.model_factory, scfg, self.ctx.seed)
            phi = torch.ones(len(real), device=real.device)
            for ix in real.class_indices:
                phi[ix] = soft_truncation(self.static_kappa[ix].unsqueeze(0), self.cfg.trunc_quantile,
                                          self.cfg.trunc_temp)[0]
            self.static_phi = phi

    @property
    def iterations(self) -> int:
        return 0 if self.cfg.variant in ("filter_only", "random") else self.cfg.iterations

    def init_state(self) -> None:
        super().init_state()
        if self.cfg.variant == "filter_only":  # the filter alone picks ipc real rows per class
            real = self.ctx.real
            rows = filter_rows(self.static_phi, self.static_kappa, real.class_indices, self.ctx.ipc,
                               self.cfg.filter_pick, self.gen)
            with torch.no_grad():
                self.images.copy_(real.images[rows])
        elif self.cfg.variant == "random":
            with torch.no_grad():
                self.images.copy_(torch.cat([self.ctx.real.sample_class(c, self.ctx.ipc, self.gen)
                                             for c in range(self.num_classes)]))

    # -- eq. 5 weights ---------------------------------------------------------------------------
    def batch_phi(self, net, params, xr: Tensor, yr: Tensor, idx: Tensor) -> Tensor:
        if self.static_phi is not None:
            return self.static_phi[idx]
        C, B = idx.shape
        loss, gn = per_sample_loss_and_grad_norm(net, xr.reshape(C * B, *xr.shape[2:]), yr.reshape(-1), params)
        kappa = hardness(loss, gn, self.cfg.alpha).view(C, B)
        return soft_truncation(kappa, self.cfg.trunc_quantile, self.cfg.trunc_temp)

    def mask_weights(self, mask: Tensor, phi: Optional[Tensor], idx: Tensor, w: Optional[Tensor]) -> Tensor:
        out = mask[idx]
        if phi is not None:
            out = out * phi
        return out if w is None else out * w

    def sample_weights(self, net, params, xr, yr, idx, w):
        """eq. 5's m * Phi on top of the padding / BiLP ITE weights."""
        if self.cfg.variant == "distill_only":
            return w
        return self.mask_weights(self.mask, self.batch_phi(net, params, xr, yr, idx), idx, w)

    # -- eq. 7 mask step ---------------------------------------------------------------------------
    def mask_objective(self, mask: Tensor, net, params: dict, xr: Tensor, yr: Tensor, idx: Tensor,
                       w: Optional[Tensor], phi: Optional[Tensor], xs: Tensor, ys: Tensor,
                       x_val: Tensor, y_val: Tensor, syn_aug: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        """L_val(m) of eq. 7 (+ gamma L1 - lambda InfoNCE), differentiable in `mask` (and xs).
        `syn_aug` is the transform the real batch xr went through (per class), applied to xs."""
        C, ipc = xs.shape[:2]
        xa = xs if syn_aug is None else syn_aug(xs)
        wm = self.mask_weights(mask, phi, idx, w)
        fixed = {k: v.detach() for k, v in params.items()}  # S'(m) is taken at theta, not differentiated in it:
        g_real = class_gradients(net, fixed, xr, yr, wm)  # theta' uses the partial dCE(theta; S')/dtheta
        g_syn = class_gradients(net, fixed, xa, ys)
        l_gm = batched_gradient_distance(g_real, g_syn, self.cfg.dis_metric)
        (g_s,) = torch.autograd.grad(l_gm, xs, create_graph=True)
        xs1 = (xs - self.cfg.lr_img * g_s).reshape(C * ipc, *xs.shape[2:])
        l_tr = F.cross_entropy(functional_call(net, params, (xs1,)), ys.reshape(-1))
        g_th = torch.autograd.grad(l_tr, list(params.values()), create_graph=True)
        p1 = {k: v - self.cfg.unroll_lr * g for (k, v), g in zip(params.items(), g_th)}
        l_val = F.cross_entropy(functional_call(net, p1, (x_val,)), y_val)
        obj = l_val + self.cfg.l1_weight * mask[idx].sum()
        if self.cfg.mi_weight > 0:
            B = xr.shape[1]
            er = net.embed(xr.reshape(C * B, *xr.shape[2:])).view(C, B, -1)
            r = (er * wm.unsqueeze(-1)).sum(1) / wm.sum(1, keepdim=True).clamp_min(1e-12)
            s = net.embed(xa.reshape(C * ipc, *xa.shape[2:])).view(C, ipc, -1).mean(1)
            obj = obj - self.cfg.mi_weight * infonce_mi(s, r, self.cfg.nce_temp)
        return obj

    def mask_step(self, last: MatchStep, xs: Tensor, ys: Tensor) -> float:
        """One eq. 7 update of the mask rows of `last`'s real batch against the synthetic set xs."""
        params = {k: v.detach().requires_grad_(True) for k, v in last.params.items()}
        phi = self.batch_phi(last.net, params, last.xr, last.yr, last.idx)
        mask = self.mask.clone().requires_grad_(True)
        xv, yv, _ = self.ctx.real.sample_per_class(max(1, self.cfg.batch_real // 4), generator=self.gen)
        xs = xs.detach().requires_grad_(True)
        obj = self.mask_objective(mask, last.net, params, last.xr, last.yr, last.idx, last.w, phi.detach(), xs, ys,
                                  xv, yv, syn_aug=lambda x: self.siamese_augment(x, last.seeds))
        (gm,) = torch.autograd.grad(obj, mask)
        rows = (last.idx if last.w is None else last.idx[last.w > 0]).reshape(-1).unique()
        with torch.no_grad():
            update_mask(self.mask, gm, rows, self.cfg.mask_lr, self.cfg.mask_rule, self.cfg.l1_weight)
        return float(obj.detach())

    def after_iteration(self, it: int, last: MatchStep) -> dict[str, Tensor]:
        if self.cfg.variant == "full" and self.cfg.mask_lr > 0 and it % self.cfg.mask_every == 0:
            C, ipc = self.num_classes, self.ctx.ipc
            self.mask_step(last, self.syn_by_class().detach(), self.labels.view(C, ipc))
        return {"mask_mean": self.mask.mean().detach()}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "mask": self.mask.cpu()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.mask = state["mask"].to(self.ctx.device)
