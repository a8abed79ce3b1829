"""BiLP §4.2 adaptive pruning: the individual treatment effect (ITE) of each real sample on the
synthetic-set update, estimated per mini-batch and thresholded by running normal quantiles.

Definitions (BiLP eq. 6): ITE(x_r) = dL_meta(B_r, S)/dS - dL_meta(B_r \\ {x_r}, S)/dS; the criterion
is ||ITE(x_r)||_2. Every meta loss used here is "additive variable separable" (§4.2, eq. 7):
L_meta(G, S) with G_c = sum_i w_i g(x_i) / sum_i w_i the class's weighted mean of g — per-sample
CE gradients for DC/DSA/IDC (`class_gradients` with weights), per-sample embeddings for DM
(`weighted_class_means`). Removing x_i means w_i -> 0, so

* exact (`mode: exact`, eq. 6): G_{-i} = (W G - w_i g_i) / (W - w_i); ITE_i = f(G) - f(G_{-i}) with
  f(G) = dL_meta(G, S)/dS, vmapped over i — one extra meta gradient per sample, as in the paper;
* Taylor (`mode: taylor`, eq. 7 "ITE ≈ d²L_meta/(dS dG) · g(x_r)"): first order in the removal,
  ITE_i ≈ w_i dG/dw_i-direction = H u_i with u_i = w_i (g_i - G)/W and H = d²L/(dS dG). Because
  H u = d/dS <dL/dG, u>, all B products are ONE batched vector-Jacobian product of the map
  S -> dL/dG (torch.func.vjp, vmapped over the B cotangents u_i) — "computed in one backward pass".
  We use the centred direction (g_i - G) — the exact derivative of the weighted mean — rather
  than the paper's raw g(x_r): the paper's form is for a sum G = sum g(x), ours for the mean the
  matching code actually uses (with a plain sum the two coincide).
* running statistics (eq. 8): mu <- (1-eta) mu + eta mu_B, var <- (1-eta) var + eta var_B over the
  ITE norms of the batch; the first batch initialises them (Alg. 1 line 4 leaves it open);
* selection (§4.2): keep z_{beta/2} < ||ITE|| < z_{1-beta/2} of N(mu, var) (`tail: both`), or prune
  one tail only with the whole beta there (`tail: small|large`, Table 5's single-direction columns);
* population statistics (`stats: full`, Table 6's "no optimisation" row): instead of the running
  estimate, every non-lazy call computes the ITE of EVERY real row of each class (in blocks of the
  batch size, each block acting as the mini-batch B_r of eq. 6) and takes the band from the exact
  population mean/variance; costs N_c/B times a running-stats call, which is the point of the row;
* lazy selection (§4.2 "prune and update the real data batch every several iterations"; §5.4:
  every 10 iterations like DREAM): ITE is recomputed every `lazy_every` calls *for the same classes*
  (DC/DM call once for all classes, IDC once per class); in between, each row's last decision (a
  per-row keep mask over ctx.real; unseen rows kept) is reused.
ITE is taken w.r.t. the (augmented) synthetic batch that enters the matching loss.
Every class keeps at least `min_keep` rows (the band could otherwise empty a small class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor
from torch.func import functional_call, grad, vjp, vmap

from dfdistill.errors import ConfigError
from dfdistill.methods.matching import gradient_distance

MetaLoss = Callable[[dict, Tensor], Tensor]


@dataclass
class ITEConfig:
    _target_: Optional[str] = None
    beta: float = 0.1  # adaptive pruning rate (Alg. 1 input beta)
    eta: float = 0.1  # running-stat momentum (eq. 8; BN-style default)
    mode: str = "taylor"  # taylor (eq. 7) | exact (eq. 6, leave-one-out)
    stats: str = "running"  # running (eq. 8) | full (every row's ITE each call: Table 6 "no optimisation")
    tail: str = "both"  # both: band (z_{b/2}, z_{1-b/2}) | small | large: prune that tail only
    lazy_every: int = 1  # recompute ITE every k calls (paper Table 6: 10)
    chunk: Optional[int] = None  # samples per vmapped VJP/leave-one-out chunk; None = auto_chunk(device)
    min_keep: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ConfigError(f"pruning.adaptive.beta must be in [0, 1), got {self.beta}")
        if not 0.0 < self.eta <= 1.0:
            raise ConfigError(f"pruning.adaptive.eta must be in (0, 1], got {self.eta}")
        if self.mode not in ("taylor", "exact"):
            raise ConfigError(f"pruning.adaptive.mode must be taylor|exact, got {self.mode!r}")
        if self.stats not in ("running", "full"):
            raise ConfigError(f"pruning.adaptive.stats must be running|full, got {self.stats!r}")
        if self.tail not in ("both", "small", "large"):
            raise ConfigError(f"pruning.adaptive.tail must be both|small|large, got {self.tail!r}")
        if self.lazy_every < 1 or (self.chunk is not None and self.chunk < 1) or self.min_keep < 0:
            raise ConfigError("pruning.adaptive lazy_every/chunk must be >= 1, min_keep >= 0")


def auto_chunk(device: torch.device) -> int:
    """Why not one vmap over the whole batch: on a CPU the B-wide double-backward intermediates
    (B x n_syn x activations) fall out of cache; chunks of 8 gave the same values 2.3-2.7x faster than
    64 (Taylor, exact and DM alike; docs/performance.md). A GPU wants the wide batch."""
    return 64 if device.type == "cuda" else 8


# ---------------------------------------------------------------------------------------------- #
# ITE of one class's real batch
# ---------------------------------------------------------------------------------------------- #
def _wmean(g: dict, w: Tensor) -> dict:
    W = w.sum()
    return {k: torch.tensordot(w, v, dims=1) / W for k, v in g.items()}


def ite_vectors(g: dict, w: Tensor, meta_loss: MetaLoss, s: Tensor, mode: str = "taylor", chunk: int = 64) -> Tensor:
    """(B, numel(s)) ITE vectors of the B samples whose per-sample features are g (dict of (B, ...)).

    meta_loss(G, s) -> scalar, with G the weighted class mean of g under weights w (B,)."""
    s = s.detach()
    g = {k: v.detach() for k, v in g.items()}
    G = _wmean(g, w)
    W = w.sum()
    B = w.shape[0]
    out = []
    if mode == "exact":
        f = grad(lambda s_, Gd: meta_loss(Gd, s_))
        base = f(s, G)

        def loo(gi: dict, wi: Tensor) -> Tensor:
            Gi = {k: (W * G[k] - wi * gi[k]) / (W - wi).clamp_min(1e-12) for k in G}
            return (base - f(s, Gi)).reshape(-1)

        for a in range(0, B, chunk):
            out.append(vmap(loo)({k: v[a : a + chunk] for k, v in g.items()}, w[a : a + chunk]).detach())
        return torch.cat(out)
    # Taylor: H u_i as a batched VJP of S -> dL/dG
    _, vjp_fn = vjp(lambda s_: grad(lambda Gd: meta_loss(Gd, s_))(G), s)
    for a in range(0, B, chunk):
        wa = w[a : a + chunk]
        U = {k: (wa.view(-1, *([1] * (v.dim() - 1))) * (v[a : a + chunk] - G[k])) / W for k, v in g.items()}
        out.append(vmap(vjp_fn)(U)[0].reshape(wa.shape[0], -1).detach())
    return torch.cat(out)


def per_sample_param_grads(net, params: dict, x: Tensor, y: Tensor, chunk: int = 64) -> dict:
    """dict of (B, *shape): the CE gradient of every sample (vmap(grad), chunked)."""

    def one(p, xi, yi):
        return F.cross_entropy(functional_call(net, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    parts = [vmap(grad(one), in_dims=(None, 0, 0))(params, x[a : a + chunk], y[a : a + chunk])
             for a in range(0, x.shape[0], chunk)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def gm_meta_loss(net, params: dict, y_syn: Tensor, metric: str) -> MetaLoss:
    """Gradient matching for one class: distance(G, dCE(S)/dtheta) (DC/DSA/IDC's meta loss)."""

    def syn_grad(s: Tensor) -> dict:
        return grad(lambda p: F.cross_entropy(functional_call(net, p, (s,)), y_syn))(params)

    return lambda G, s: gradient_distance(G, syn_grad(s), metric)


def dm_meta_loss(net) -> MetaLoss:
    """DM for one class: ||G - mean embed(S)||^2 (G = weighted mean real embedding)."""
    return lambda G, s: ((G["e"] - net.embed(s).mean(0)) ** 2).sum()


def batch_ite_norms(distiller, net, params, xr: Tensor, yr: Tensor, w: Optional[Tensor], xs: Tensor, ys: Tensor,
                    mode: str, chunk: int) -> Tensor:
    """(C, B) ||ITE|| for the real batch, for gradient matching (params given) or DM (params None)."""
    C, B = xr.shape[:2]
    w = torch.ones(C, B, device=xr.device) if w is None else w
    norms = torch.zeros(C, B, device=xr.device)
    metric = distiller.cfg.dis_metric
    for c in range(C):
        if params is not None:
            g = per_sample_param_grads(net, params, xr[c], yr[c], chunk)
            ml = gm_meta_loss(net, params, ys[c], metric)
        else:
            with torch.no_grad():
                g = {"e": net.embed(xr[c])}
            ml = dm_meta_loss(net)
        norms[c] = ite_vectors(g, w[c], ml, xs[c], mode, chunk).norm(dim=1)
    return norms


# ---------------------------------------------------------------------------------------------- #
# running statistics + quantile band
# ---------------------------------------------------------------------------------------------- #
class RunningNormalBand:
    """BN-style running mean/variance (eq. 8) and the keep-band of N(mu, var)."""

    def __init__(self, beta: float, eta: float, tail: str = "both"):
        self.beta, self.eta, self.tail = beta, eta, tail
        self.mean: Optional[float] = None
        self.var: Optional[float] = None

    def update(self, values: Tensor) -> None:
        mb, vb = float(values.mean()), float(values.var(unbiased=False)) if values.numel() > 1 else 0.0
        if self.mean is None:
            self.mean, self.var = mb, vb
        else:
            self.mean = (1 - self.eta) * self.mean + self.eta * mb
            self.var = (1 - self.eta) * self.var + self.eta * vb

    def bounds(self) -> tuple[float, float]:
        sd = max(self.var, 0.0) ** 0.5
        q = lambda p: self.mean + sd * float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        if self.beta == 0:
            return float("-inf"), float("inf")
        if self.tail == "both":
            return q(self.beta / 2), q(1 - self.beta / 2)
        if self.tail == "small":
            return q(self.beta), float("inf")
        return float("-inf"), q(1 - self.beta)

    def keep(self, values: Tensor) -> Tensor:
        lo, hi = self.bounds()
        return (values > lo) & (values < hi)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var}

    def load_state_dict(self, st: dict) -> None:
        self.mean, self.var = st["mean"], st["var"]


# ---------------------------------------------------------------------------------------------- #
# the selector the pipeline plugs into DC/DSA/IDC/DM
# ---------------------------------------------------------------------------------------------- #
class ITESelector:
    """`weights(...)` -> (C, B) 0/1 weights of the current real batch (times the padding weights)."""

    def __init__(self, cfg: ITEConfig, num_rows: int, device: torch.device):
        self.cfg = cfg
        self.chunk = cfg.chunk or auto_chunk(device)
        self.band = RunningNormalBand(cfg.beta, cfg.eta, cfg.tail)
        self.row_keep = torch.ones(num_rows, dtype=torch.bool, device=device)
        # lazy counters per set of classes in a call: DC/DM call once for all classes, IDC once per
        # class; one shared counter would recompute only the class that happens to land on k*lazy_every
        self.group_calls: dict[str, int] = {}
        self.kept_fraction: list[float] = []

    @property
    def calls(self) -> int:
        return sum(self.group_calls.values())

    @classmethod
    def from_config(cls, cfg, train) -> "ITESelector":
        node = cfg.pruning.adaptive
        d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        known = {f.name for f in fields(ITEConfig)}
        if set(d) - known:
            raise ConfigError(f"unknown pruning.adaptive keys {sorted(set(d) - known)}; valid: {sorted(known)}")
        return cls(ITEConfig(**d), len(train), train.device)

    def weights(self, distiller, net, params, xr: Tensor, yr: Tensor, idx: Tensor, w: Optional[Tensor],
                xs: Tensor, ys: Tensor) -> Tensor:
        valid = torch.ones(idx.shape, dtype=torch.bool, device=xr.device) if w is None else w > 0
        group = ",".join(str(c) for c in ys[:, 0].tolist())
        n = self.group_calls.get(group, 0)
        lazy = n % self.cfg.lazy_every != 0 and self.band.mean is not None
        self.group_calls[group] = n + 1
        if lazy:
            keep = self.row_keep[idx]
        elif self.cfg.stats == "full":
            with torch.enable_grad():
                rows, norms = self.population_norms(distiller, net, params, xs, ys, block=xr.shape[1])
            self.band.mean, self.band.var = float(norms.mean()), float(norms.var(unbiased=False))
            self.row_keep[rows] = self.band.keep(norms)
            keep = self.row_keep[idx]
        else:
            with torch.enable_grad():
                norms = batch_ite_norms(distiller, net, params, xr, yr, w, xs, ys, self.cfg.mode, self.chunk)
            self.band.update(norms[valid])
            keep = self.band.keep(norms)
            self.row_keep[idx[valid]] = keep[valid]
        keep = keep & valid
        keep = self._ensure_min(keep, valid)
        self.kept_fraction.append(float(keep.sum()) / max(int(valid.sum()), 1))
        out = keep.float()
        return out if w is None else out * w

    def population_norms(self, distiller, net, params, xs: Tensor, ys: Tensor, block: int) -> tuple[Tensor, Tensor]:
        """(rows, ||ITE||) for every row of ctx.real of the classes in the synthetic batch (ys[p, 0] is
        row p's class), block-wise per class: each block plays the mini-batch B_r of eq. 6."""
        real = distiller.ctx.real
        rows_out, norms_out = [], []
        for p in range(xs.shape[0]):
            rows_c = real.class_indices[int(ys[p, 0])]
            for a in range(0, rows_c.numel(), block):
                rows = rows_c[a : a + block]
                rows_out.append(rows)
                norms_out.append(batch_ite_norms(distiller, net, params, real.images[rows][None],
                                                 real.labels[rows][None], None, xs[p : p + 1], ys[p : p + 1],
                                                 self.cfg.mode, self.chunk)[0])
        return torch.cat(rows_out), torch.cat(norms_out)

    def _ensure_min(self, keep: Tensor, valid: Tensor) -> Tensor:
        for c in range(keep.shape[0]):
            if int(keep[c].sum()) < self.cfg.min_keep:
                keep[c] = valid[c]
        return keep

    def state_dict(self) -> dict[str, Any]:
        return {"band": self.band.state_dict(), "row_keep": self.row_keep.cpu(), "group_calls": dict(self.group_calls)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.band.load_state_dict(st["band"])
        self.row_keep = st["row_keep"].to(self.row_keep.device)
        self.group_calls = dict(st.get("group_calls", {}))  # absent in checkpoints from before per-group counting
