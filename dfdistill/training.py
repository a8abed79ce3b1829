"""Plain supervised training on whole-dataset tensors, shared by coreset feature extractors,
per-sample scoring trials and expert trajectories (one epoch loop, not three)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dfdistill.runtime import autocast


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
    """SGD over shuffled minibatches of the in-memory tensors; `on_epoch_end(epoch, model)` after each.

    `optimizer`: continue with this one (its lr/momentum win) instead of building SGD(lr, momentum, wd).
    `amp`: forward and loss under bf16 autocast when gpu.bf16 is on (callers whose training is a
    first-order end in itself: expert trajectories)."""
    gen = gen or torch.Generator().manual_seed(0)
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = images.shape[0]
    model.train()
    for ep in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(n, generator=gen).to(images.device)
        for s in range(0, n, batch_size):
            ix = perm[s : s + batch_size]
            x = images[ix]
            if augment is not None:
                x = augment(x, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with autocast(x.device) if amp else nullcontext():
                loss = nn.functional.cross_entropy(model(x), labels[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch_end is not None:
            on_epoch_end(ep, model)
    return model


@torch.no_grad()
def embed_all(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """`model.embed` over the whole tensor in eval mode (features before the classifier)."""
    model.eval()
    return torch.cat([model.embed(images[s : s + batch_size]) for s in range(0, images.shape[0], batch_size)])
