"""Supervised training of networks on in-memory tensors: the one epoch loop behind the evaluation
protocol, DC's inner loop, coreset feature extractors, scoring trials and expert trajectories.

Several networks of one architecture can train *together* (`NetGroup`, batched): their parameters
are stacked and one vmapped forward/backward serves them all, with each network's own data order,
augmentation draws, CutMix draws and SGD state, so every network ends exactly where training it
alone would (up to float rounding; tests/unit/evaluation/test_ensemble.py). That pays where one network's batch is
too small to fill the device (GPU); on this 2-core CPU it measured no faster than one network after
the other, so `ensemble: auto` batches on CUDA only (docs/performance.md). The loss of each batch
goes through `dfdistill.engine.compiled` (torch.compile with parameters as inputs, so fresh networks do not
recompile).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from dfdistill.engine import compiled
from dfdistill.core.errors import ConfigError
from dfdistill.engine.losses import cutmix_draw, weighted_ce
from dfdistill.engine.runtime import autocast

ENSEMBLE_MODES = ("auto", "on", "off")
_ensemble = {"mode": "auto"}


def configure_ensemble(mode: Any = "auto") -> str:
    """Process-wide `ensemble` setting (auto | on | off); returns the previous one."""
    m = {True: "on", False: "off"}.get(mode, str(mode).lower())
    m = {"true": "on", "false": "off"}.get(m, m)
    if m not in ENSEMBLE_MODES:
        raise ConfigError(f"ensemble must be auto|on|off, got {mode!r}")
    old, _ensemble["mode"] = _ensemble["mode"], m
    return old


def ensemble_enabled(device: torch.device) -> bool:
    """Whether networks that could train together do (auto: on CUDA only, where it measured faster)."""
    m = _ensemble["mode"]
    return m == "on" or (m == "auto" and torch.device(device).type == "cuda")


def configure_speed(cfg: Any) -> None:
    """The run's top-level `compile` and `ensemble` settings (ResolvedRun.top), process-wide (like torch's backend flags).
    $DFDISTILL_COMPILE, when set, wins over `compile` (the test suite sets it to off: no inductor builds)."""
    compiled.configure(os.environ.get("DFDISTILL_COMPILE") or getattr(cfg, "compile", "auto"))
    configure_ensemble(getattr(cfg, "ensemble", "auto"))


@dataclass
class Schedule:
    """SGD settings and the per-epoch learning rate."""

    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_at: Optional[Callable[[int], float]] = None  # lr during epoch e (None: constant `lr`)
    reset_on_change: bool = False  # DC rebuilds the optimizer when its lr drops (momentum buffer reset)
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0

    def epoch_lr(self, ep: int) -> float:
        return self.lr if self.lr_at is None else self.lr_at(ep)


def _ens_ce(t: nn.Module, st: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    return vmap(lambda s, xb, yb: weighted_ce(functional_call(t, s, (xb,)), yb, None))(st, x, y).sum()


def _ens_mixed_ce(t: nn.Module, st: dict[str, Tensor], x: Tensor, ya: Tensor, yb: Tensor, lam: Tensor) -> Tensor:
    def one(s, xb, a, b, l):
        out = functional_call(t, s, (xb,))
        return l * weighted_ce(out, a, None) + (1 - l) * weighted_ce(out, b, None)

    return vmap(one)(st, x, ya, yb, lam).sum()


def _ens_logits(t: nn.Module, st: dict[str, Tensor], x: Tensor) -> Tensor:
    return vmap(lambda s: functional_call(t, s, (x,)))(st)


# compiled on CUDA only: on this CPU a compiled vmap measured ~5x slower than the eager one
ENS_CE = compiled.Path(_ens_ce, "ensemble cross-entropy", devices=("cuda",))
ENS_MIXED_CE = compiled.Path(_ens_mixed_ce, "ensemble CutMix cross-entropy", devices=("cuda",))
ENS_LOGITS = compiled.Path(_ens_logits, "ensemble logits", devices=("cuda",))


class NetGroup:
    """K networks of one architecture trained in lockstep.

    batched (K > 1): one stacked parameter/buffer set and one vmapped call per batch (BatchNorm
    running statistics are stacked buffers, updated per network); `sync()` writes the state back
    into the networks. Otherwise K must be 1 and the network trains in place."""

    def __init__(self, models: Sequence[nn.Module], batched: bool = False) -> None:
        self.models = list(models)
        self.batched = batched and len(self.models) > 1
        if not self.batched and len(self.models) != 1:
            raise ValueError("an unbatched NetGroup holds one network")
        if self.batched:
            params, buffers = stack_module_state(self.models)
            self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            self.buffers = {k: v.detach() for k, v in buffers.items()}

    def __len__(self) -> int:
        return len(self.models)

    def parameters(self) -> list[Tensor]:
        return list(self.params.values()) if self.batched else list(self.models[0].parameters())

    def train(self, mode: bool = True) -> None:
        for m in self.models:
            m.train(mode)

    def _stacked(self) -> tuple[nn.Module, dict[str, Tensor]]:
        return compiled.template(self.models[0]), {**self.params, **self.buffers}

    def loss(self, x: Tensor, ya: Tensor, yb: Optional[Tensor] = None, lam: Optional[Tensor] = None) -> Tensor:
        """Sum over networks of each one's mean CE (x (K, B, ...), ya (K, B)), or of its CutMix loss
        lam_k CE(., ya_k) + (1 - lam_k) CE(., yb_k) when yb/lam (K,) are given."""
        if self.batched:
            t, st = self._stacked()
            if yb is None:
                return ENS_CE(t, st, x, ya)
            return ENS_MIXED_CE(t, st, x, ya, yb, lam)
        m, lam0 = self.models[0], None if lam is None else float(lam[0])
        if yb is None or lam0 == 1.0:  # a batch CutMix left alone: the plain loss, as one network computes it
            return compiled.ce_loss(m, x[0], ya[0])
        return compiled.mixed_ce_loss(m, x[0], ya[0], yb[0], lam0)

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """(K, b, classes): every network on the same images."""
        if self.batched:
            t, st = self._stacked()
            return ENS_LOGITS(t, st, x)
        return compiled.logits(self.models[0], x).unsqueeze(0)

    @torch.no_grad()
    def sync(self) -> list[nn.Module]:
        """The networks, holding the group's current state."""
        if self.batched:
            for k, m in enumerate(self.models):
                for name, t in [*m.named_parameters(), *m.named_buffers()]:
                    t.copy_((self.params.get(name) if name in self.params else self.buffers[name])[k])
        return self.models


def _optimizer(group: NetGroup, s: Schedule, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(group.parameters(), lr=lr, momentum=s.momentum, weight_decay=s.weight_decay)


def train_group(group: NetGroup, images: Tensor, labels: Tensor, epochs: int, schedule: Schedule,
                gens: Sequence[torch.Generator], batch_size: int = 256, augment=None,
                on_epoch_end: Optional[Callable[[int, list[nn.Module]], None]] = None,
                optimizer: Optional[torch.optim.Optimizer] = None, progress: bool = False,
                desc: str = "train", amp: bool = False) -> list[nn.Module]:
    """SGD over shuffled minibatches for every network of the group; network k draws its data order,
    augmentation seeds and CutMix from `gens[k]`, in the order one network alone draws them.
    `optimizer`: continue with this one (one network; its lr/momentum win). `amp`: forward and loss
    under bf16 autocast when gpu.bf16 is on (first-order ends in themselves: evaluation, experts)."""
    if len(gens) != len(group):
        raise ValueError(f"{len(group)} networks need as many generators, got {len(gens)}")
    n = images.shape[0]
    group.train()
    lr = schedule.epoch_lr(0)
    opt = optimizer or _optimizer(group, schedule, lr)
    for ep in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        new_lr = schedule.epoch_lr(ep)
        if new_lr != lr:
            lr = new_lr
            if schedule.reset_on_change:
                opt = _optimizer(group, schedule, lr)
            else:
                for g in opt.param_groups:
                    g["lr"] = lr
        perms = [torch.randperm(n, generator=g).to(images.device) for g in gens]
        for start in range(0, n, batch_size):
            xs, ya, yb, lam = [], [], [], []
            for perm, g in zip(perms, gens):
                ix = perm[start : start + batch_size]
                x, y = images[ix], labels[ix]
                if augment is not None:
                    x = augment(x, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
                if schedule.cutmix_prob > 0:
                    x, y, y2, l = cutmix_draw(x, y, schedule.cutmix_prob, schedule.cutmix_beta, g)
                    yb.append(y2)
                    lam.append(l)
                xs.append(x)
                ya.append(y)
            mixed = schedule.cutmix_prob > 0
            with autocast(images.device) if amp else nullcontext():
                loss = group.loss(torch.stack(xs), torch.stack(ya), torch.stack(yb) if mixed else None,
                                  torch.tensor(lam, device=images.device) if mixed else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch_end is not None:
            on_epoch_end(ep, group.sync())
    return group.sync()


def train_epochs(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    augment=None,
    gen: Optional[torch.Generator] = None,
    on_epoch_end: Optional[Callable[[int, nn.Module], None]] = None,
    progress: bool = False,
    desc: str = "train",
    optimizer: Optional[torch.optim.Optimizer] = None,
    amp: bool = False,
) -> nn.Module:
    """One network: SGD(lr, momentum, wd) over shuffled minibatches; `on_epoch_end(epoch, model)` after each.

    `optimizer`: continue with this one (its lr/momentum win) instead of building SGD(lr, momentum, wd)."""
    cb = None if on_epoch_end is None else (lambda ep, ms: on_epoch_end(ep, ms[0]))
    train_group(NetGroup([model]), images, labels, epochs, Schedule(lr, momentum, weight_decay),
                [gen or torch.Generator().manual_seed(0)], batch_size, augment, cb, optimizer, progress, desc, amp)
    return model


def train_together(models: Sequence[nn.Module], images: Tensor, labels: Tensor, epochs: int, schedule: Schedule,
                   gens: Sequence[torch.Generator], batch_size: int = 256, augment=None,
                   on_epoch_end: Optional[Callable[[int, int, nn.Module], None]] = None,
                   batched: Optional[bool] = None, progress: bool = False, desc: str = "train",
                   amp: bool = False) -> list[nn.Module]:
    """Several networks on the same set, network k with generator gens[k]: as one batched group
    (`batched`, default `ensemble_enabled`) or one after the other, with the same result either way.
    `on_epoch_end(k, epoch, model_k)` after every epoch of every network."""
    if batched is None:
        batched = ensemble_enabled(images.device)

    def per_net(offset: int) -> Optional[Callable[[int, list[nn.Module]], None]]:
        if on_epoch_end is None:
            return None

        def each(ep: int, ms: list[nn.Module]) -> None:
            for k, m in enumerate(ms):
                on_epoch_end(offset + k, ep, m)

        return each

    if batched and len(models) > 1:
        return train_group(NetGroup(models, batched=True), images, labels, epochs, schedule, gens, batch_size,
                           augment, per_net(0), progress=progress, desc=desc, amp=amp)
    for k, (m, g) in enumerate(zip(models, gens)):
        train_group(NetGroup([m]), images, labels, epochs, schedule, [g], batch_size, augment, per_net(k),
                    progress=progress, desc=desc, amp=amp)
    return list(models)


@torch.no_grad()
def embed_all(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """`model.embed` over the whole tensor in eval mode (features before the classifier)."""
    model.eval()
    return torch.cat([compiled.embed(model, images[s : s + batch_size]) for s in range(0, images.shape[0], batch_size)])
