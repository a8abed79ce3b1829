"""Shared matching objectives: gradient distances and per-class (weighted) gradients.

One implementation serves DC, DSA, IDC, DF-CoLearn, EDD and the ITE pruner:
* `gradient_distance` — DC's layer-wise distance ('ours'), plain 'mse'/'cos', and IDC's
  conv-only 'idc_mse'/'idc_l1' (1-D and 2-D tensors skipped).
* `class_gradients` — the CE gradient of every class's batch w.r.t. the network parameters in
  ONE vectorised call (`torch.func.vmap` over classes), with optional per-sample weights so that
  masks (DF-CoLearn) and adaptive selections (BiLP's ITE) reuse the same code path. Padding rows
  carry weight 0, so classes with unequal sample counts still batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from dfdistill.engine import compiled
from dfdistill.data.real import RealData
from dfdistill.engine.losses import weighted_ce
from dfdistill.engine.memory import rows_per_pass
from dfdistill.methods.batchnorm import Chunks, batch_statistics, set_statistics

GradDict = dict[str, Tensor]
MetaLoss = Callable[[GradDict, Tensor], Tensor]  # L_meta(G, s): G = class mean of g(x), s = synthetic batch

METRICS = ("ours", "mse", "cos", "idc_mse", "idc_l1")


def _layer_distance_ours(gr: Tensor, gs: Tensor) -> Tensor:
    """DC's distance for one tensor: sum over output rows of (1 - cosine); 1-D tensors give 0."""
    if gr.dim() == 1:
        return gr.new_zeros(())
    if gr.dim() == 4:
        gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
    elif gr.dim() == 3:
        gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
    num = (gr * gs).sum(-1)
    den = gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6
    return (1 - num / den).sum()


def gradient_distance(g_real: Mapping[str, Tensor], g_syn: Mapping[str, Tensor], metric: str = "ours") -> Tensor:
    """Distance between two gradient dicts with identical keys (one class, or summed with a batch dim)."""
    keys = list(g_real.keys())
    if metric == "ours":
        return sum(_layer_distance_ours(g_real[k], g_syn[k]) for k in keys)
    if metric == "mse":
        return sum(((g_real[k] - g_syn[k]) ** 2).sum() for k in keys)
    if metric == "cos":
        a = torch.cat([g_real[k].reshape(-1) for k in keys])
        b = torch.cat([g_syn[k].reshape(-1) for k in keys])
        return 1 - (a * b).sum() / (a.norm() * b.norm() + 1e-6)
    if metric in ("idc_mse", "idc_l1"):
        conv = [k for k in keys if g_real[k].dim() > 2]
        if metric == "idc_mse":
            return sum(((g_real[k] - g_syn[k]) ** 2).sum() for k in conv)
        return sum((g_real[k] - g_syn[k]).abs().sum() for k in conv)
    raise ValueError(f"unknown gradient distance {metric!r}; choose one of {METRICS}")


def batched_gradient_distance(g_real: Mapping[str, Tensor], g_syn: Mapping[str, Tensor], metric: str) -> Tensor:
    """Sum over the leading class dimension of `gradient_distance` (vmapped, no Python loop)."""
    return vmap(lambda a, b: gradient_distance(a, b, metric))(dict(g_real), dict(g_syn)).sum()


def detached_params(model: nn.Module) -> GradDict:
    return {k: v.detach() for k, v in model.named_parameters()}


def class_gradients(
    model: nn.Module,
    params: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    weights: Optional[Tensor] = None,
) -> GradDict:
    """CE gradients per class: x (C, B, ...), y (C, B[, K]), weights (C, B) or None -> dict of (C, *shape).

    Differentiable w.r.t. x (and weights) through ordinary autograd, so the synthetic-side call
    builds the graph needed for the image update while the real-side call is simply detached.
    Models with BatchNorm in train mode cannot be vmapped (running-stat updates); callers put BN
    in eval mode first, as DC does after its 16-images-per-class statistics pass.
    """

    def loss_fn(p: Mapping[str, Tensor], xb: Tensor, yb: Tensor, wb: Optional[Tensor]) -> Tensor:
        return weighted_ce(functional_call(model, dict(p), (xb,)), yb, wb)

    if weights is None:
        return vmap(grad(lambda p, xb, yb: loss_fn(p, xb, yb, None)), in_dims=(None, 0, 0))(dict(params), x, y)
    return vmap(grad(loss_fn), in_dims=(None, 0, 0, 0))(dict(params), x, y, weights)


def class_gradients_loop(
    model: nn.Module,
    x: list[Tensor],
    y: list[Tensor],
    weights: Optional[list[Optional[Tensor]]] = None,
    create_graph: bool = False,
) -> list[list[Tensor]]:
    """Reference formulation: one forward/backward and one autograd.grad per class (for BN nets,
    unequal class sizes, and the speed baseline). Returns per class a list of parameter grads."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for c in range(len(x)):
        w = None if weights is None else weights[c]
        # first-order (real side): compiled when `compile` says so; create_graph needs eager double backward
        loss = weighted_ce(model(x[c]), y[c], w) if create_graph else compiled.ce_loss(model, x[c], y[c], w)
        g = torch.autograd.grad(loss, params, create_graph=create_graph)
        out.append(list(g) if create_graph else [t.detach() for t in g])
    return out


def loop_distance(g_real: list[list[Tensor]], g_syn: list[list[Tensor]], names: list[str], metric: str) -> Tensor:
    """Class-summed distance for the loop formulation."""
    total = 0.0
    for gr, gs in zip(g_real, g_syn):
        total = total + gradient_distance(dict(zip(names, gr)), dict(zip(names, gs)), metric)
    return total


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def freeze_batchnorm_stats(model: nn.Module, real_x: Union[Tensor, Chunks]) -> None:
    """DC's BN handling: one train-mode pass on a few real images per class, then BN to eval mode.

    `real_x` may also be a callable giving the batch in chunks: when there are several, the
    one-pass statistics are found layer by layer (methods/batchnorm.py) and put into the running
    buffers as the train-mode pass would (momentum update)."""
    model.train()
    if callable(real_x):
        parts = iter(real_x())
        first, second = next(parts), next(parts, None)
        stats = batch_statistics(model, real_x) if second is not None else None
        if stats is not None:
            set_statistics(stats, momentum_update=True)
        else:
            real_x = first if second is None else torch.cat(list(real_x()))
    if not callable(real_x):
        with torch.no_grad():
            model(real_x)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze_batchnorm_rows(model: nn.Module, real: RealData, rows: Tensor) -> None:
    """`freeze_batchnorm_stats` on real rows `rows`, gathered in passes the memory budget allows."""
    per = rows_per_pass(model, real.images.shape[1:], "forward")
    freeze_batchnorm_stats(model, lambda: (real.batch(rows[a : a + per]) for a in range(0, rows.numel(), per)))


# ---------------------------------------------------------------------------------------------- #
# the matching objective as BiLP's in-loop selector sees it
# ---------------------------------------------------------------------------------------------- #
@dataclass
class MetaObjective:
    """A method's matching loss in BiLP's "additive variable separable" form (§4.2): for class
    position p of the batch, L_meta(G_p, S_p) with G_p the weighted class mean of a per-sample
    feature g(x). Built by the method (it owns the network, metric and synthetic batch), so the
    selector needs nothing else from it."""

    features: Callable[[Tensor, Tensor, int], GradDict]  # (x (B, ...), y (B,), chunk) -> g: dict of (B, ...)
    loss: Callable[[int], MetaLoss]  # class position p -> L_meta(G, s)
    syn: Any  # (P, n_s, ...) each position's synthetic batch (what ITE is taken w.r.t.), detached: a Tensor
    # or a methods.chunks.ClassBatch (read one position at a time, so it is built one chunk at a time)


def per_sample_param_grads(net: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor,
                           chunk: int = 64) -> GradDict:
    """dict of (B, *shape): the CE gradient of every sample (vmap(grad), chunked)."""

    def one(p, xi, yi):
        return F.cross_entropy(functional_call(net, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    parts = [vmap(grad(one), in_dims=(None, 0, 0))(dict(params), x[a : a + chunk], y[a : a + chunk])
             for a in range(0, x.shape[0], chunk)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def gm_meta_loss(net: nn.Module, params: Mapping[str, Tensor], y_syn: Tensor, metric: str) -> MetaLoss:
    """Gradient matching for one class: distance(G, dCE(S)/dtheta) (DC/DSA/IDC's meta loss)."""

    def syn_grad(s: Tensor) -> GradDict:
        return grad(lambda p: F.cross_entropy(functional_call(net, p, (s,)), y_syn))(dict(params))

    return lambda G, s: gradient_distance(G, syn_grad(s), metric)


def dm_meta_loss(net: nn.Module) -> MetaLoss:
    """DM for one class: ||G - mean embed(S)||^2 (G = weighted mean real embedding)."""
    return lambda G, s: ((G["e"] - net.embed(s).mean(0)) ** 2).sum()


def gm_objective(net: nn.Module, params: Mapping[str, Tensor], xs: Tensor, ys: Tensor, metric: str) -> MetaObjective:
    """Gradient matching (DC/DSA/IDC/DF-CoLearn/EDD): g = per-sample CE gradient; xs (P, n, ...) (Tensor or
    ClassBatch), ys (P, n)."""
    params = {k: v.detach() for k, v in params.items()}
    return MetaObjective(features=lambda x, y, chunk: per_sample_param_grads(net, params, x, y, chunk),
                         loss=lambda p: gm_meta_loss(net, params, ys[p], metric), syn=xs.detach())


def dm_objective(net: nn.Module, xs: Tensor) -> MetaObjective:
    """Distribution matching: g = per-sample embedding; xs (P, n, ...)."""

    def features(x: Tensor, y: Tensor, chunk: int) -> GradDict:
        with torch.no_grad():
            return {"e": net.embed(x)}

    return MetaObjective(features=features, loss=lambda p: dm_meta_loss(net), syn=xs.detach())
