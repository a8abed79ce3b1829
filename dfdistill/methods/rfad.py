"""RFAD — random-feature approximation for dataset distillation (Loo, Hasani, Amini, Rus, NeurIPS'22).

KIP-style kernel-inducing points: kernel ridge regression (KRR) from the synthetic set S to a real
batch T, with the ConvNet NNGP kernel replaced by random features (facts §2, distillation.py):

* **Random features.** Each iteration draws `n_models` (8) fresh, untrained ConvNets: depth 3,
  width `feature_width` (256, RFAD's ConvNet_wide with k=2), no normalisation, ReLU, avg-pool,
  Gaussian init N(0, 2/fan_in) / N(0, 0.1^2) (`convnet_gaussian` from the model registry), no head.
  phi(x) = concat_m embed_m(x) / sqrt(n_models * dim).
* **Kernel and KRR.** K(a, b) = 2 phi(a) phi(b)^T + 0.01 (the NNGP readout with W_std^2 = 2,
  b_std = 0.1). K_SS gets a ridge of `jit` * tr(K_SS) / |S|. The prediction
  y_hat = K_TS K_SS^-1 y_S is solved in float64.
* **Real data.** `n_batches` (4) x `batch_real` (1280) images drawn uniformly from the whole
  training split (not class-balanced), featurised without gradients.
* **Loss.** With `platt`: CE(exp(k) * y_hat, class); otherwise 0.5 * mean((y - y_hat)^2) with
  y = one-hot - 1/K.
* **Learnables.** Images (init: random real images per class); labels y_S (one-hot - 1/K,
  learned with `learn_labels`); the Platt scalar k (init 0); a pixel-space linear map
  (`learn_transform`, identity init) applied to the images before featurisation. The saved and
  evaluated images are the transformed ones. Optimiser: AdaBelief (eps 1e-16) at lr `lr_img`
  (1e-3) for images and labels, `lr_transform` (5e-5) for the map and `lr_platt` (1e-2) for k.
* **Early stopping.** Every `valid_every` (40) iterations, KRR onto a validation subset
  (`valid_per_class` per class, drawn with replacement from the training split) runs with
  `valid_models` (16) fixed-seed random nets. The best set by validation loss is kept, and
  distillation stops `patience` (1000) iterations after the best. The best set is returned.

Evaluation: `method.eval_mode=rfad_nn` (default) trains finite networks by RFAD-NN
(dfdistill/evaluation/finite_nn.py) on the learned targets. The random baseline uses the same
rule. Paper protocol: `backbone=convnet_gaussian eval=rfad_nn`. `eval_mode=standard` evaluates
the images with their class labels under the shared protocol instead.

Choices and deviations (docs/methods.md):
* in-loop BiLP (ITE) is not supported (`supports_adaptive=False`, `pruning=ite` is refused). The
  real batch is class-agnostic, and the KRR loss is not a function of a class mean of per-sample
  features, which is what the ITE selector estimates. Static pruning (random/loss/bilp's static
  half) shrinks the split that both the batches and the validation subset are drawn from;
* after the last iteration the set is validated once more, so at an iteration cap (profiles)
  the final state competes with the earlier ones;
* RFAD's data preparation lives in the data layer: the recipe sets `dataset.zca=true` with
  `dataset.zca_mode=rfad` (dfdistill/data/zca.py): standardise per channel with the train split's own
  mean/std, then whiten with X^T X / N regularised by 0.1 x its mean eigenvalue, as RFAD's
  get_zca_matrix. SVHN's per-image layer-norm between the two is not implemented;
* the KRR evaluation with neural-tangents NNGP/NTK kernels is not implemented (only RFAD-NN);
* `feature_width` is capped by `profile.width` like every network width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfdistill.core.errors import ConfigError
from dfdistill.evaluation.finite_nn import centred_one_hot, evaluate_finite_nn, validation_rows
from dfdistill.methods.base import (
    Distiller, MethodConfig, ProfileCap, check_positive, class_major_labels, draw_seed, init_synthetic,
)
from dfdistill.models import build_model
from dfdistill.core.registry import register_method


@dataclass
class RFADConfig(MethodConfig):
    iterations: int = 100000  # cap; early stopping (patience) normally ends the run first
    lr_img: float = 1e-3  # images and labels
    lr_transform: float = 5e-5
    lr_platt: float = 1e-2
    eps: float = 1e-16  # AdaBelief epsilon
    platt: bool = True
    learn_labels: bool = True
    learn_transform: bool = True
    n_models: int = 8
    feature_width: int = 256
    profile_caps: ClassVar[tuple[ProfileCap, ...]] = MethodConfig.profile_caps + (ProfileCap("feature_width", "width"),)  # its own networks
    feature_depth: int = 3
    batch_real: int = 1280
    n_batches: int = 4
    jit: float = 5e-3
    valid_every: int = 40
    valid_models: int = 16
    valid_per_class: int = 500  # CIFAR-100: 100
    patience: int = 1000
    eval_mode: str = "rfad_nn"  # rfad_nn | standard
    nn_label_scale: float = 8.0
    nn_centering: bool = True
    nn_valid_every: int = 100
    nn_patience: int = 500
    dsa: bool = False
    eval_aug: str = "none"
    eval_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_mode not in ("rfad_nn", "standard"):
            raise ConfigError(f"method.eval_mode must be rfad_nn|standard, got {self.eval_mode!r}")
        check_positive(self, ("n_models", "feature_width", "feature_depth", "n_batches", "valid_every", "valid_models",
                              "valid_per_class", "nn_valid_every"))
        if self.jit < 0 or self.patience < 0 or self.nn_patience < 0 or self.nn_label_scale <= 0:
            raise ConfigError("method.jit, patience and nn_patience must be >= 0 and nn_label_scale > 0")
        if self.dsa:
            raise ConfigError("method.dsa=true is not part of RFAD (no augmentation in its objective); drop it")


class AdaBelief(torch.optim.Optimizer):
    """AdaBelief (Zhuang et al., NeurIPS'20) in the torch_optimizer form RFAD uses (no weight decay,
    no rectification): m <- b1 m + (1-b1) g;  s <- b2 s + (1-b2) (g-m)^2 + eps;
    p <- p - lr/(1-b1^t) * m / (sqrt(s)/sqrt(1-b2^t) + eps)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer API
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_var"] = torch.zeros_like(p)
                st["step"] += 1
                t, m, s = st["step"], st["exp_avg"], st["exp_avg_var"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                r = p.grad - m
                s.mul_(b2).addcmul_(r, r, value=1 - b2).add_(group["eps"])
                denom = (s.sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))
        return None


# ---------------------------------------------------------------------------------------------- #
# random features, kernel, KRR
# ---------------------------------------------------------------------------------------------- #
def random_feature_nets(seeds: list[int], channels: int, image_size: int, width: int, depth: int,
                        device: torch.device) -> list[nn.Module]:
    """Untrained Gaussian-init ConvNets (RFAD's ConvNet_wide, chopped head), one per seed."""
    nets = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            net = build_model("convnet_gaussian", channels, 1, image_size, width=width, depth=depth)
        nets.append(net.to(device).eval().requires_grad_(False))
    return nets


def random_features(nets: list[nn.Module], x: Tensor) -> Tensor:
    """(N, M*D): the nets' flattened last-block features, concatenated, / sqrt(M*D)."""
    phi = torch.cat([net.embed(x) for net in nets], 1)
    return phi / math.sqrt(phi.shape[1])


def nngp_gram(a: Tensor, b: Tensor) -> Tensor:
    """ConvNet NNGP readout kernel from random features: 2 * a b^T + 0.01."""
    return 2 * a @ b.T + 0.01


def krr_predict(phi_s: Tensor, y_s: Tensor, phi_t: Tensor, jit: float) -> Tensor:
    """float64 K_TS (K_SS + jit * tr(K_SS)/|S| * I)^-1 y_S."""
    k_ss = nngp_gram(phi_s, phi_s)
    n = k_ss.shape[0]
    k_ss = k_ss + jit * torch.trace(k_ss) / n * torch.eye(n, device=k_ss.device, dtype=k_ss.dtype)
    alpha = torch.linalg.solve(k_ss.double(), y_s.double())
    return nngp_gram(phi_t, phi_s).double() @ alpha


def krr_loss(pred: Tensor, y: Tensor, num_classes: int, platt: bool, log_temp: Tensor) -> Tensor:
    """Platt: CE(exp(k) * pred, y); else 0.5 * mean((one-hot - 1/K - pred)^2)."""
    if platt:
        return F.cross_entropy(torch.exp(log_temp) * pred, y)
    return 0.5 * ((centred_one_hot(y, num_classes).to(pred.dtype) - pred) ** 2).mean()


# ---------------------------------------------------------------------------------------------- #
# the distiller
# ---------------------------------------------------------------------------------------------- #
@register_method("rfad", config=RFADConfig, label="RFAD")
class RFAD(Distiller):
    def init_state(self) -> None:
        real, ipc, cfg = self.ctx.real, self.ctx.ipc, self.cfg
        C, dev = real.num_classes, self.ctx.device
        self.images = init_synthetic(real, ipc, cfg.init, self.gen).requires_grad_(True)
        self.labels = class_major_labels(C, ipc, dev)
        self.targets = centred_one_hot(self.labels, C).requires_grad_(cfg.learn_labels)
        d = self.images[0].numel()  # the map is d x d (3072^2 at CIFAR size); absent when not learned
        self.transform = torch.eye(d, device=dev).requires_grad_(True) if cfg.learn_transform else None
        self.log_temp = torch.zeros((), dtype=torch.float64, device=dev).requires_grad_(cfg.platt)
        groups = [{"params": [self.images] + ([self.targets] if cfg.learn_labels else [])}]
        if cfg.learn_transform:
            groups.append({"params": [self.transform], "lr": cfg.lr_transform})
        if cfg.platt:
            groups.append({"params": [self.log_temp], "lr": cfg.lr_platt})
        self.opt = AdaBelief(groups, lr=cfg.lr_img, eps=cfg.eps)
        self.best: Optional[dict[str, Any]] = None  # {"images", "targets", "log_temp", "it", "loss"}
        self.stopped = False
        self._valid: Optional[tuple[list[nn.Module], Tensor, Tensor]] = None  # rebuilt on demand, not saved

    def transformed(self, images: Tensor, transform: Optional[Tensor]) -> Tensor:
        """RFAD's pixel-space linear map (identity at init) applied before featurisation."""
        return images if transform is None else (images.flatten(1) @ transform).view_as(images)

    def feature_nets(self, seeds: list[int]) -> list[nn.Module]:
        real = self.ctx.real
        return random_feature_nets(seeds, real.channels, real.image_size, self.cfg.feature_width,
                                   self.cfg.feature_depth, self.ctx.device)

    @torch.no_grad()
    def real_features(self, nets: list[nn.Module]) -> tuple[Tensor, Tensor]:
        """n_batches uniform batches (without replacement within a batch) over the whole split."""
        real = self.ctx.real
        bs = min(self.cfg.batch_real, len(real))
        phis, ys = [], []
        for _ in range(self.cfg.n_batches):
            ix = torch.randperm(len(real), generator=self.gen)[:bs].to(real.device)
            phis.append(random_features(nets, real.batch(ix)))
            ys.append(real.labels.index_select(0, ix))
        return torch.cat(phis), torch.cat(ys)

    def loss_on(self, nets: list[nn.Module], phi_t: Tensor, y_t: Tensor) -> Tensor:
        phi_s = random_features(nets, self.transformed(self.images, self.transform))
        pred = krr_predict(phi_s, self.targets, phi_t, self.cfg.jit)
        return krr_loss(pred, y_t, self.num_classes, self.cfg.platt, self.log_temp)

    def step(self, it: int) -> dict[str, Tensor]:
        cfg = self.cfg
        if it % cfg.valid_every == 0:
            self.validate(it)
            if it > self.best["it"] + cfg.patience:
                self.stopped = True
                return {"loss": torch.tensor(self.best["loss"])}
        nets = self.feature_nets([draw_seed(self.gen) for _ in range(cfg.n_models)])
        phi_t, y_t = self.real_features(nets)
        loss = self.loss_on(nets, phi_t, y_t)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if it == self.iterations - 1:
            self.validate(it + 1)
        return {"loss": loss.detach()}

    def done(self) -> bool:
        return self.stopped

    # -- validation / early stopping -----------------------------------------------------------
    def validation(self) -> tuple[list[nn.Module], Tensor, Tensor]:
        """Fixed-seed nets ((|seed|+1) * j, RFAD) and the validation subset's features (cached)."""
        if self._valid is None:
            real, cfg = self.ctx.real, self.cfg
            nets = self.feature_nets([(abs(self.ctx.seed) + 1) * j for j in range(cfg.valid_models)])
            rows = validation_rows(real, cfg.valid_per_class, self.ctx.seed)
            with torch.no_grad():
                phi = torch.cat([random_features(nets, real.batch(rows[a : a + 1024]))
                                 for a in range(0, rows.numel(), 1024)])
            self._valid = (nets, phi, real.labels[rows])
        return self._valid

    @torch.no_grad()
    def validation_loss(self) -> float:
        """The KRR loss of the current set on the validation subset, under the fixed validation nets."""
        nets, phi_v, y_v = self.validation()
        pred = krr_predict(random_features(nets, self.transformed(self.images, self.transform)), self.targets,
                           phi_v, self.cfg.jit)
        return float(krr_loss(pred, y_v, self.num_classes, self.cfg.platt, self.log_temp))

    @torch.no_grad()
    def validate(self, it: int) -> None:
        """Keep the set if its validation loss is the best so far (RFAD's best.npz)."""
        loss = self.validation_loss()
        if self.best is None or loss < self.best["loss"]:
            self.best = {"images": self.transformed(self.images, self.transform).detach().clone(),
                         "targets": self.targets.detach().clone(), "log_temp": self.log_temp.detach().clone(),
                         "it": it, "loss": loss}

    # -- outputs ---------------------------------------------------------------------------------
    def train_set(self) -> tuple[Tensor, Tensor]:
        if self.best is None:
            self.validate(0)
        labels = self.best["targets"] if self.cfg.eval_mode == "rfad_nn" else self.labels
        return self.best["images"], labels

    def evaluate(self, images, labels, test, model_factory, ev, augment, seed, progress=True, desc="eval"):
        if self.cfg.eval_mode != "rfad_nn":
            return super().evaluate(images, labels, test, model_factory, ev, augment, seed, progress, desc)
        rows = validation_rows(self.ctx.real, self.cfg.valid_per_class, 0)  # RFAD eval: --valid_seed 0
        valid = (self.ctx.real.batch(rows), self.ctx.real.labels[rows])
        return evaluate_finite_nn(images, labels, test, model_factory, valid, ev, label_scale=self.cfg.nn_label_scale,
                                  centering=self.cfg.nn_centering, valid_every=self.cfg.nn_valid_every,
                                  patience=self.cfg.nn_patience, seed=seed, augment=augment, progress=progress,
                                  desc=desc)

    # -- checkpoint ------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        best = None if self.best is None else {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in self.best.items()}
        return {"targets": self.targets.detach().cpu(),
                "transform": None if self.transform is None else self.transform.detach().cpu(),
                "log_temp": self.log_temp.detach().cpu(), "opt": self.opt.state_dict(), "best": best,
                "stopped": self.stopped}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name in ("targets", "transform", "log_temp"):
                if getattr(self, name) is not None:
                    getattr(self, name).copy_(state[name])
        self.opt.load_state_dict(state["opt"])
        dev = self.ctx.device
        self.best = None if state["best"] is None else {
            k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in state["best"].items()}
        self.stopped = bool(state["stopped"])
