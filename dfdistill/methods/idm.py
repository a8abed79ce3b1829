"""IDM — improved distribution matching (Zhao, Li, Qin, Yu, CVPR'23), as its official code runs it.

DM (methods/dm.py) matches class-mean embeddings under a fresh random network. IDM changes four
things (facts: /work/shared/reference/methods-idm-rfad-dream.md §1, IDM_cifar10.py):

* **Model queue.** Networks are trained online and kept at many partial-training stages. The queue
  starts with `init_nets` (3) networks. Every `net_generate_interval` iterations (also at iteration
  0) a new one with its own SGD is pushed; beyond `net_num` the oldest is dropped (FIFO). Each
  iteration `train_net_num` (1) queue networks, drawn at random and in eval mode, embed the data.
* **Partition and expand.** Every stored image is cut into f x f tiles (f = `factor` = 2) and each
  tile is upsampled back to full size (bilinear), giving f^2·IPC images per class. This is IDC's
  `decode`; the tile order differs from IDM's, which changes nothing (class means, training sets).
  The init fills each tile with a real class image downscaled bilinearly (2x2 average for f=2).
* **Per-class loss and step.** loss_c = ||mean f(real_c) - mean f(syn_c)||^2 + ce_weight · acc ·
  CE(net(syn_c), c). f is the flattened last conv block (`embed`). Real and synthetic share one DSA
  draw. acc is the network's running training accuracy in PERCENT (0-100, as torchnet's
  ClassErrorMeter gives it). It is 0 for a network that has not trained yet, and the meters reset
  every `acc_reset_every` iterations (IDM's eval_interval). zero_grad/backward/step run once per
  class on the one image tensor, so SGD momentum (0.5) also moves the other classes' images at
  every step, as in the reference.
* **Queue training.** After matching, `fetch_net_num` (2) random queue networks each take
  `model_train_steps` SGD steps (lr 0.01, momentum 0.9, wd 5e-4) of CE on `trained_bs` (256) real
  images drawn from all classes, without augmentation.

BiLP's in-loop ITE sees each class's (augmented) real batch. Its meta loss is the mean-feature term:
the CE term does not depend on the real data, so it drops out of ITE = dL/dS - dL_{-r}/dS. The
ITE's weights then weight the real class mean.

Evaluation is the default protocol (DC/DM: 1000 epochs, lr 0.01 with x0.1 at the middle, DSA, batch
256) on the decoded f^2·IPC set, which is what `train_set` returns.

Choices where the facts are silent or UNVERIFIED (also in docs/methods.md):
* iterations count from 0 to iterations-1 (the reference runs Iteration+1 = 20001, iteration 0 included);
* the image size must be divisible by `factor`; IDM's half-size slicing is the f=2 case;
* the reference seeds DSA from the clock. Here one generator drives DSA, the draws and the queue,
  so runs resume exactly;
* the reference refuses BatchNorm backbones. Here they run in eval mode (running statistics of
  the queue network) for matching;
* IDM's paper describes a "class-aware distribution regularization". The code's accuracy-weighted
  CE is implemented here; the paper's own weighting is UNVERIFIED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError, DataError
from dfdistill.engine.memory import rows_per_pass
from dfdistill.methods.base import (
    ImageDistiller, MethodConfig, check_positive, class_major_labels, draw_seed, init_synthetic,
)
from dfdistill.methods.dm import weighted_class_means
from dfdistill.methods.idc import decode
from dfdistill.methods.matching import dm_objective
from dfdistill.core.registry import register_method


@dataclass
class IDMConfig(MethodConfig):
    iterations: int = 20000
    lr_img: float = 0.2
    batch_real: int = 256  # real images per class per matching step (C10/C100 IPC1: 5000 = whole class)
    factor: int = 2  # partition-and-expand: f x f tiles per stored image
    init_nets: int = 3
    net_num: int = 100  # queue capacity (FIFO)
    net_generate_interval: int = 30
    train_net_num: int = 1  # queue nets that embed each iteration
    fetch_net_num: int = 2  # queue nets trained each iteration
    model_train_steps: int = 10
    trained_bs: int = 256
    lr_net: float = 0.01
    net_momentum: float = 0.9
    net_weight_decay: float = 5e-4
    ce_weight: float = 0.5
    acc_reset_every: int = 100  # IDM's eval_interval: the accuracy meters reset there

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factor < 1:
            raise ConfigError(f"method.factor must be >= 1, got {self.factor}")
        check_positive(self, ("init_nets", "net_num", "net_generate_interval", "train_net_num", "trained_bs",
                              "acc_reset_every"))
        if self.fetch_net_num < 0 or self.model_train_steps < 0 or self.ce_weight < 0:
            raise ConfigError("method.fetch_net_num, model_train_steps and ce_weight must be >= 0")
        if self.init not in ("real", "noise"):
            raise ConfigError(f"method.init must be real|noise for idm, got {self.init!r}")


@dataclass
class QueueNet:
    """A queue network with its own optimiser and accuracy meter (counts since the last reset)."""

    net: nn.Module
    opt: torch.optim.Optimizer
    correct: Any = 0  # int, or a device tensor while training (read once per iteration, not per step)
    seen: int = 0

    def accuracy_percent(self) -> float:
        return 100.0 * float(self.correct) / self.seen if self.seen else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "opt": self.opt.state_dict(), "correct": int(self.correct), "seen": self.seen}


def tile_init(real: RealData, ipc: int, factor: int, gen: torch.Generator) -> Tensor:
    """(C*ipc, ch, H, W) class-major: tile (i, j) of each image is an independent random real image
    of its class, bilinearly downscaled by `factor` (IDM `--init real --aug`)."""
    f, H = factor, real.image_size
    s = H // f
    draws = torch.stack([init_synthetic(real, ipc, "real", gen) for _ in range(f * f)])  # (f^2, N, ch, H, W)
    n, ch = draws.shape[1], draws.shape[2]
    small = F.interpolate(draws.flatten(0, 1), size=(s, s), mode="bilinear", align_corners=False)
    # small[i, j, n] is tile (row i, column j) of image n -> out[n, :, i*s + y, j*s + x]
    return small.view(f, f, n, ch, s, s).permute(2, 3, 0, 4, 1, 5).reshape(n, ch, H, H).contiguous()


@register_method("idm", config=IDMConfig, label="IDM", in_loop_pruning=True)
class IDM(ImageDistiller):
    def init_state(self) -> None:
        real, ipc, f = self.ctx.real, self.ctx.ipc, self.cfg.factor
        if real.image_size % f:
            raise DataError(f"IDM's partition-and-expand needs image_size divisible by method.factor={f}, "
                            f"got {real.image_size}; set dataset.image_size or method.factor")
        if self.cfg.init == "noise":
            x = torch.randn((real.num_classes * ipc, real.channels, real.image_size, real.image_size),
                            generator=self.gen).to(real.device)
        else:
            x = tile_init(real, ipc, f, self.gen)
        self.images = x.requires_grad_(True)
        self.labels = class_major_labels(real.num_classes, ipc, self.ctx.device)
        self.opt_img = torch.optim.SGD([self.images], lr=self.cfg.lr_img, momentum=0.5)
        self.queue: list[QueueNet] = []
        for _ in range(self.cfg.init_nets):
            self.push_net()

    # -- the model queue --------------------------------------------------------------------------
    def new_queue_net(self, seed: int) -> QueueNet:
        net = self.ctx.model_factory(seed)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=self.cfg.lr_net, momentum=self.cfg.net_momentum,
                              weight_decay=self.cfg.net_weight_decay)
        return QueueNet(net, opt)

    def push_net(self) -> None:
        if len(self.queue) >= self.cfg.net_num:
            self.queue.pop(0)
        self.queue.append(self.new_queue_net(draw_seed(self.gen)))

    def train_queue(self) -> None:
        """`fetch_net_num` random queue nets: `model_train_steps` CE steps on random real batches."""
        real = self.ctx.real
        bs = min(self.cfg.trained_bs, len(real))
        for qi in torch.randperm(len(self.queue), generator=self.gen)[: self.cfg.fetch_net_num].tolist():
            q = self.queue[qi]
            q.net.train()
            for _ in range(self.cfg.model_train_steps):
                ix = torch.randperm(len(real), generator=self.gen)[:bs].to(real.device)
                x, y = real.batch(ix), real.labels.index_select(0, ix)
                out = q.net(x)
                loss = F.cross_entropy(out, y)
                q.opt.zero_grad(set_to_none=True)
                loss.backward()
                q.opt.step()
                q.correct = q.correct + (out.detach().argmax(1) == y).sum()  # stays on the device
                q.seen += int(y.numel())

    # -- matching -----------------------------------------------------------------------------------
    def decoded(self, images: Tensor) -> Tensor:
        return decode(images, self.cfg.factor)

    def train_set(self) -> tuple[Tensor, Tensor]:
        return self.decoded(self.images.detach()).detach(), self.labels.repeat_interleave(self.cfg.factor ** 2)

    def class_loss(self, net: nn.Module, c: int, acc_percent: float) -> Tensor:
        """IDM's loss for class c under `net` (eval mode, frozen parameters)."""
        real, ipc = self.ctx.real, self.ctx.ipc
        rows, _ = self.real_rows(lambda: (real.class_sample_indices(c, self.cfg.batch_real, self.gen), None))
        rows = rows.reshape(-1)  # a held batch comes back as the selector saw it, (1, B)
        if rows.numel() == 0:
            raise DataError(f"class {c} has no real samples left; lower pruning.ratio")
        xr = real.batch(rows)
        xs = self.decoded(self.images[c * ipc : (c + 1) * ipc])
        xr_a, xs_a = (t[0] for t in self.siamese_pair(xr[None], xs[None]))
        ys = torch.full((xs_a.shape[0],), c, device=xs_a.device, dtype=torch.long)
        w: Optional[Tensor] = None
        if self.ctx.adaptive is not None:  # BiLP ITE on this class's batch; the meta loss is DM's term
            yr = torch.full((1, xr_a.shape[0]), c, device=xr_a.device, dtype=torch.long)
            w = self.ctx.adaptive.weights(xr_a.detach()[None], yr, rows[None], None, dm_objective(net, xs_a[None]))
        with torch.no_grad():  # eval mode: rows are independent, so budget-sized passes change nothing
            per = rows_per_pass(net, xr_a.shape[1:], "forward")
            emb_r = torch.cat([net.embed(xr_a[a : a + per]) for a in range(0, xr_a.shape[0], per)])
        emb_s = net.embed(xs_a)
        loss = ((weighted_class_means(emb_r, 1, w) - emb_s.mean(0, keepdim=True)) ** 2).sum()
        if self.cfg.ce_weight > 0 and acc_percent > 0:
            loss = loss + self.cfg.ce_weight * acc_percent * F.cross_entropy(net.classifier(emb_s), ys)
        return loss

    def step(self, it: int) -> dict[str, Tensor]:
        cfg, C = self.cfg, self.num_classes
        if it > 0 and it % cfg.acc_reset_every == 0:
            for q in self.queue:
                q.correct = q.seen = 0
        if it % cfg.net_generate_interval == 0:
            self.push_net()
        total, n = torch.zeros((), device=self.ctx.device), 0
        for qi in torch.randperm(len(self.queue), generator=self.gen)[: cfg.train_net_num].tolist():
            q = self.queue[qi]
            q.net.eval()
            acc = q.accuracy_percent()
            q.net.requires_grad_(False)  # only the images learn here; the queue trains below
            try:
                for c in range(C):
                    loss = self.class_loss(q.net, c, acc)
                    self.opt_img.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt_img.step()
                    total, n = total + loss.detach(), n + 1
            finally:
                q.net.requires_grad_(True)
        self.train_queue()
        return {"loss": total / max(n, 1)}

    # -- checkpoint -------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"opt_img": self.opt_img.state_dict(), "queue": [q.state_dict() for q in self.queue]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.opt_img.load_state_dict(state["opt_img"])
        self.queue = []
        for st in state["queue"]:
            q = self.new_queue_net(0)  # architecture + optimiser (no draw from self.gen); values overwritten below
            q.net.load_state_dict(st["net"])
            q.opt.load_state_dict(st["opt"])
            q.correct, q.seen = int(st["correct"]), int(st["seen"])
            self.queue.append(q)
