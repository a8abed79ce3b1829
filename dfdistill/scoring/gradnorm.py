"""Per-sample losses and parameter-gradient norms in one vectorised pass (torch.func).

Why: DF-CoLearn's hardness κ (eq. 4) and BiLP's ITE both need per-sample quantities; a Python
loop over samples is ~100x slower than `vmap(grad)` over a chunk of samples.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from dfdistill.engine.memory import rows_per_pass


def default_chunk(device: torch.device) -> int:
    """Rows per vmapped per-sample-gradient call. Why not larger on a CPU: the per-sample weight
    gradients of a wide chunk fall out of cache; at width 32, 640 rows took 0.30 s at 64 vs 0.52 s
    at 256 on one core (docs/performance.md). A GPU wants the wider batch."""
    return 256 if device.type == "cuda" else 64


def per_sample_loss_and_grad_norm(model: nn.Module, x: Tensor, y: Tensor, params: Optional[Mapping[str, Tensor]] = None,
                                  chunk: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """(N,) CE losses and (N,) L2 norms of d CE_i / d theta, chunked vmap over samples
    (chunk None = default_chunk(x.device)).

    BatchNorm nets must be in eval mode (a single-sample train-mode BN has no statistics)."""
    params = {k: v.detach() for k, v in (params or dict(model.named_parameters())).items()}

    def one(p, xi, yi):
        logits = functional_call(model, p, (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    if chunk is None:  # the device default, fewer when the memory budget cannot hold that many per-sample grads
        chunk = min(default_chunk(x.device), rows_per_pass(model, x.shape[1:], "backward", per_row_grads=True))
    fn = vmap(grad_and_value(one), in_dims=(None, 0, 0))
    losses, norms = [], []
    for s in range(0, x.shape[0], chunk):
        g, loss = fn(params, x[s : s + chunk], y[s : s + chunk])
        sq = sum(v.reshape(v.shape[0], -1).pow(2).sum(1) for v in g.values())
        losses.append(loss.detach())
        norms.append(sq.sqrt().detach())
    return torch.cat(losses), torch.cat(norms)


def hardness(loss: Tensor, grad_norm: Tensor, alpha: float) -> Tensor:
    """DF-CoLearn eq. 4: kappa = alpha * loss + (1 - alpha) * ||grad_theta loss||_2."""
    return alpha * loss + (1.0 - alpha) * grad_norm


@torch.no_grad()
def per_sample_loss(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1024) -> Tensor:
    """(N,) CE of every sample, batched forward in eval mode (no grads; at most `batch` rows per pass,
    fewer when the memory budget says so)."""
    was = model.training
    model.eval()
    batch = min(batch, rows_per_pass(model, x.shape[1:], "forward"))
    out = torch.cat([F.cross_entropy(model(x[s : s + batch]), y[s : s + batch], reduction="none")
                     for s in range(0, x.shape[0], batch)])
    model.train(was)
    return out
