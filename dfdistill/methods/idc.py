"""IDC — efficient synthetic-data parameterisation with multi-formation (Kim et al., ICML'22).

Stored images live in [0,1] pixel space; each decodes (factor f) into f^2 training images: split
into f x f tiles of side ceil(H/f) (padded with 0.5), each upsampled back to H x W (bilinear), the
label repeated. Normalisation (mean/std, ZCA) is applied after decoding (RealData.normalize_pixels).

One outer iteration (`iterations`, 2000 in the paper) = a fresh network (SGD lr .01, momentum .9,
wd 5e-4); synthetic pixels clamped to [0,1]; then `match_steps` times (IDC's --inner_loop): for every class, match the
CE gradients (conv weights only: metric idc_mse / idc_l1) of a real batch (batch_real 64) and the
class's decoded synthetic images (<= batch_syn_max), both under ONE shared IDC-DiffAug parameter
('color_crop_cutout'), and take an image step for that class; then train the network on `n_data`
real samples (batches of 64 until n_data are seen; per-sample IDC DiffAug 'color_crop' + CutMix p=.5). lr_img is rescaled by
(ipc/10)*(size/base_size)^2 as IDC's tune_lr_img. Evaluate with `eval=idc` (its protocol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.data.augment import build_augment
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError
from dfdistill.engine.losses import cutmix_or_plain_loss
from dfdistill.methods.base import Distiller, MethodConfig, ProfileCap, class_major_labels, draw_seed
from dfdistill.methods.matching import (
    batched_gradient_distance, class_gradients, detached_params, freeze_batchnorm_rows, gm_objective, has_batchnorm,
)
from dfdistill.core.registry import register_method


@dataclass
class IDCConfig(MethodConfig):
    factor: int = 2
    match_steps: int = 100  # IDC's --inner_loop: matching steps per outer iteration
    n_data: int = 2000  # real samples the network trains on between inner steps (500 non-CIFAR)
    batch_syn_max: int = 128
    dis_metric: str = "idc_mse"  # idc_mse (CIFAR/SVHN) | idc_l1 (MNIST/Fashion); DC's key name
    base_size: int = 32
    lr_net: float = 0.01
    mix_p: float = 0.5
    net_aug: str = "color_crop"
    profile_caps: ClassVar[tuple[ProfileCap, ...]] = MethodConfig.profile_caps + (ProfileCap("match_steps", "match_steps"),)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factor < 1:
            raise ConfigError(f"method.factor must be >= 1, got {self.factor}")
        if self.match_steps <= 0 or self.n_data < 0 or self.batch_syn_max <= 0:
            raise ConfigError("method.match_steps and batch_syn_max must be > 0 and n_data >= 0")
        if self.dis_metric not in ("idc_mse", "idc_l1"):
            raise ConfigError(f"method.dis_metric must be idc_mse|idc_l1, got {self.dis_metric!r}")


def decode(images: Tensor, factor: int) -> Tensor:
    """(N, C, H, W) -> (N*f^2, C, H, W): f x f tiles (row-major per image), each upsampled to H x W."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    s = math.ceil(h / factor)
    pad_h, pad_w = s * factor - h, s * factor - w
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=0.5)
    tiles = images.unfold(2, s, s).unfold(3, s, s)  # (n, c, f, f, s, s)
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(n * factor * factor, c, s, s)
    return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)


def mix_init(real: RealData, ipc: int, factor: int, gen: torch.Generator) -> Tensor:
    """Per stored image, an f x f mosaic of f^2 real images of its class (nearest-shrunk), in [0,1]."""
    C, h = real.num_classes, real.image_size
    s = math.ceil(h / factor)
    out = []
    for c in range(C):
        x = real.denormalize(real.sample_class(c, ipc * factor * factor, gen))
        if x.shape[0] < ipc * factor * factor:
            x = x[torch.arange(ipc * factor * factor) % x.shape[0]]
        small = F.interpolate(x, size=(s, s))  # nearest, as F.interpolate's default
        small = small.view(ipc, factor, factor, real.channels, s, s).permute(0, 3, 1, 4, 2, 5)
        out.append(small.reshape(ipc, real.channels, s * factor, s * factor)[..., :h, :h])
    return torch.cat(out).contiguous()


@register_method("idc", config=IDCConfig, label="IDC", in_loop_pruning=True)
class IDC(Distiller):

    def init_state(self) -> None:
        real, ipc, f = self.ctx.real, self.ctx.ipc, self.cfg.factor
        if self.cfg.init == "noise":
            x = (torch.randn((real.num_classes * ipc, real.channels, real.image_size, real.image_size),
                             generator=self.gen) / 4 + 0.5).clamp(0, 1).to(real.device)
        else:  # 'mix' (f > 1) and 'real' (f = 1 reduces to real images)
            x = mix_init(real, ipc, f, self.gen)
        self.images = x.requires_grad_(True)
        self.labels = class_major_labels(real.num_classes, ipc, self.ctx.device)
        size_ratio = real.image_size / self.cfg.base_size
        self.lr_img = self.cfg.lr_img * (ipc / 10) * size_ratio**2
        self.opt_img = torch.optim.SGD([self.images], lr=self.lr_img, momentum=0.5)
        self.match_aug = build_augment("idc", "color_crop_cutout")
        self.net_aug = build_augment("idc", self.cfg.net_aug)

    def extra_state(self) -> dict[str, Any]:
        return {"opt_img": self.opt_img.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.opt_img.load_state_dict(state["opt_img"])

    def decoded(self, images: Tensor) -> Tensor:
        return self.ctx.real.normalize_pixels(decode(images, self.cfg.factor))

    def train_set(self) -> tuple[Tensor, Tensor]:
        f2 = self.cfg.factor**2
        return self.decoded(self.images.detach().clamp(0, 1)).detach(), self.labels.repeat_interleave(f2)

    def syn_batch(self, c: int, lo: int, hi: int) -> Tensor:
        """Class c's stored slots [lo, hi) decoded (differentiable), randomly cut to batch_syn_max."""
        ipc = self.ctx.ipc
        xs = self.decoded(self.images[c * ipc + lo : c * ipc + hi])
        if xs.shape[0] > self.cfg.batch_syn_max:
            xs = xs[torch.randperm(xs.shape[0], generator=self.gen)[: self.cfg.batch_syn_max].to(xs.device)]
        return xs

    def augment_together(self, *batches: Tensor) -> list[Tensor]:
        """ONE IDC-DiffAug parameter for all the batches (IDC batch=True), so the real and synthetic
        batches of a class are matched under the same draw; unchanged without dsa."""
        if not self.cfg.dsa:
            return list(batches)
        out = self.match_aug(torch.cat(batches), seed=draw_seed(self.gen), siamese=True)
        return list(out.split([b.shape[0] for b in batches]))

    def pair_distance(self, net, params, c: int, xr: Tensor, rows: Tensor, xs: Tensor, select: bool = True) -> Tensor:
        """D(g(real batch of class c), g(synthetic batch)); the real side goes through the in-loop
        selector (BiLP ITE, S = the decoded augmented tiles) when `select`. rows: indices into ctx.real."""
        yr = torch.full((1, xr.shape[0]), c, device=xr.device, dtype=torch.long)
        ys = torch.full((1, xs.shape[0]), c, device=xs.device, dtype=torch.long)
        w = None
        if select and self.ctx.adaptive is not None:
            w = self.ctx.adaptive.weights(xr.detach()[None], yr, rows[None], None,
                                          gm_objective(net, params, xs[None], ys, self.cfg.dis_metric))
        g_real = {k: v.detach() for k, v in class_gradients(net, params, xr.detach()[None], yr, w).items()}
        g_syn = class_gradients(net, params, xs[None], ys)
        return batched_gradient_distance(g_real, g_syn, self.cfg.dis_metric)

    def class_loss(self, net, c: int, it: int) -> Tensor:
        """Class c's matching loss in iteration `it`: a real batch vs all its decoded images."""
        real = self.ctx.real
        rows, _ = self.real_rows(lambda: (real.class_sample_indices(c, self.cfg.batch_real, self.gen), None))
        rows = rows.reshape(-1)  # a held batch comes back as the selector saw it, (1, B)
        xr, xs = self.augment_together(real.images.index_select(0, rows), self.syn_batch(c, 0, self.ctx.ipc))
        return self.pair_distance(net, detached_params(net), c, xr, rows, xs)

    def net_rows(self, n: int) -> Tensor:
        """Rows of ctx.real the network trains on between matching steps (uniform over the split)."""
        return torch.randint(0, len(self.ctx.real), (n,), generator=self.gen).to(self.ctx.real.device)

    def net_batches(self, bs: int = 64) -> int:
        """Batches of `bs` in one network update: IDC's train_epoch stops once n_data samples are seen
        (`num_exp >= n_data` after the batch), so 2000 -> 32 batches and 500 -> 8 (not n_data // bs)."""
        return math.ceil(self.cfg.n_data / bs) if self.cfg.n_data > 0 else 0

    def train_net_on_real(self, net, opt) -> None:
        real, bs = self.ctx.real, 64
        for _ in range(self.net_batches(bs)):
            ix = self.net_rows(bs)
            x, y = real.images[ix], real.labels[ix]
            x = self.net_aug(x, seed=draw_seed(self.gen))
            loss = cutmix_or_plain_loss(net, x, y, self.cfg.mix_p, 1.0, self.gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def step(self, it: int) -> dict[str, Tensor]:
        net = self.ctx.model_factory(draw_seed(self.gen))
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=self.cfg.lr_net, momentum=0.9, weight_decay=5e-4)
        with torch.no_grad():
            self.images.clamp_(0, 1)
        total = torch.zeros((), device=self.ctx.device)
        for inner in range(self.cfg.match_steps):
            if self.ctx.adaptive is not None:  # the lazy clock counts matching steps, as DREAM's interval does
                self.ctx.adaptive.begin_step(it * self.cfg.match_steps + inner)
            if has_batchnorm(net):  # sample_per_class's draws; the statistics pass runs in budget-sized chunks
                real = self.ctx.real
                rows = torch.cat([real.class_sample_indices(c, 16, self.gen) for c in range(self.num_classes)])
                freeze_batchnorm_rows(net, real, rows)
            for c in range(self.num_classes):
                loss = self.class_loss(net, c, it)
                self.opt_img.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_img.step()
                total = total + loss.detach()
            if inner < self.cfg.match_steps - 1:
                net.train()
                self.train_net_on_real(net, opt)
        return {"loss": total / (self.cfg.match_steps * self.num_classes)}
