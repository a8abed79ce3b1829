"""BatchNorm statistics of a batch that is seen in chunks, equal to those of one train-mode pass.

Why: where the reference puts the real images of ALL classes through a BatchNorm network in one
train-mode call -- DC's statistics pass (16 images per class, `freeze_batchnorm_stats`) and DM's BN
branch (embeddings of every class's batch) -- each BN layer normalises with the statistics of the
whole concatenated batch. Chunks cannot each use their own statistics. Layer l's input depends on
the statistics of the layers before it, so the exact statistics are found layer by layer: pass l
runs the chunks up to BN layer l (layers before it in eval mode, holding the batch statistics
already found), accumulates the sum and sum of squares of its input (float64), and stops there.
Then eval-mode passes over the chunks give what the one train-mode pass gave, up to rounding.
Costs one partial forward per BN layer (3 for a depth-3 ConvNetBN); it runs only when the batch
needs more than one chunk.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

Chunks = Callable[[], Iterable[Tensor]]  # a fresh iterator over the batch's chunks, each call


class _Stop(Exception):
    pass


def _bns(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def execution_order(net: nn.Module, x: Tensor) -> Optional[list[nn.modules.batchnorm._BatchNorm]]:
    """The BN layers in the order one forward of `x` calls them; None when one is called twice or has
    no running buffers (then chunking cannot reproduce the one-pass statistics)."""
    bns = _bns(net)
    if any(m.running_mean is None for m in bns):
        return None
    seen: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _i: seen.append(m)) for m in bns]
    was = {m: m.training for m in bns}
    try:
        for m in bns:
            m.eval()
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
        for m, t in was.items():
            m.train(t)
    if len(seen) != len(set(map(id, seen))) or len(seen) != len(bns):
        return None
    return seen


@torch.no_grad()
def batch_statistics(net: nn.Module, chunks: Chunks) -> Optional[dict[nn.Module, tuple[Tensor, Tensor, int]]]:
    """{BN layer: (mean, biased var, rows)} of a train-mode pass of the whole batch, from chunked passes.

    Leaves the BN layers' running buffers and modes as they were. None when the net's BN layers
    cannot be handled (see execution_order)."""
    first = next(iter(chunks()))
    order = execution_order(net, first[:2])
    if order is None:
        return None
    saved = {m: (m.training, m.running_mean.clone(), m.running_var.clone()) for m in order}
    stats: dict[nn.Module, tuple[Tensor, Tensor, int]] = {}
    try:
        for bn in order:
            acc: dict[str, object] = {"s": 0.0, "q": 0.0, "n": 0}

            def pre(m, inp, acc=acc):
                x = inp[0].double()
                dims = [d for d in range(x.dim()) if d != 1]
                acc["s"] = acc["s"] + x.sum(dims)
                acc["q"] = acc["q"] + (x * x).sum(dims)
                acc["n"] = acc["n"] + x.numel() // x.shape[1]
                raise _Stop

            hook = bn.register_forward_pre_hook(pre)
            try:
                for x in chunks():
                    try:
                        net(x)
                    except _Stop:
                        pass
            finally:
                hook.remove()
            n = int(acc["n"])
            mean = acc["s"] / n
            var = (acc["q"] / n - mean * mean).clamp_min(0)
            stats[bn] = (mean.to(bn.running_mean.dtype), var.to(bn.running_var.dtype), n)
            bn.eval()  # the layers after it see it normalise with the whole batch's statistics
            bn.running_mean.copy_(stats[bn][0])
            bn.running_var.copy_(stats[bn][1])
    finally:
        for m, (t, rm, rv) in saved.items():
            m.train(t)
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
    return stats


@torch.no_grad()
def set_statistics(stats: dict[nn.Module, tuple[Tensor, Tensor, int]], momentum_update: bool) -> None:
    """Put batch statistics into the BN layers' running buffers.

    momentum_update: what one train-mode pass does (running <- (1-m) running + m batch, unbiased
    variance; cumulative average when momentum is None; num_batches_tracked + 1). Otherwise the
    buffers become the batch statistics themselves (biased variance), so an eval-mode pass
    normalises exactly as the train-mode pass did."""
    for bn, (mean, var, n) in stats.items():
        if not momentum_update:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            continue
        bn.num_batches_tracked += 1
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        unbiased = var * (n / max(n - 1, 1))
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(unbiased, alpha=m)
