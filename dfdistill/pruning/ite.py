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
  "update the data per 10 iterations like [DREAM]"): as DREAM holds its k-means-selected batch, a
  refresh step draws a fresh real batch, computes its ITE and keeps the selected rows (the batch
  with the pruned rows at weight 0); every later step until the next refresh REUSES that selected
  batch (freshly augmented) instead of drawing a new one. The method asks for its rows through
  `draw(fresh)`, which hands back the held batch of that call position (the k-th call of a step
  gets the k-th held batch: DC's outer-loop position, IDC's/IDM's class, DM's one call), and
  `weights` then returns its held selection without computing anything. The clock is announced by
  `begin_step(t)`: the loop announces distillation iterations (DC, DM, IDM: one `Distiller.step`);
  IDC and EDD-on-IDC announce their inner matching steps (t = it * match_steps + inner) because one
  IDC "iteration" is 100 matching steps and DREAM's interval (10) counts those. A step refreshes
  when t % lazy_every == 0, so ITE cost falls by lazy_every (Table 6: 0.27 -> 0.03 s/iter at 10);
  `lazy_every = 1` is no lazy selection (every call draws and judges a fresh batch).
ITE is taken w.r.t. the (augmented) synthetic batch that enters the matching loss.
Every class keeps at least `min_keep` rows (the band could otherwise empty a small class).

Interface (narrow on purpose): `draw(fresh)` gives the rows of a call (the method's `fresh()` draw, or
the held batch), then `weights(xr, yr, rows, w, objective)` gets the real batch tensors,
its row indices into ctx.real, the padding weights and the method's `MetaObjective` (its matching
loss in eq. 7's separable form, built by the method: methods/matching.py). It never sees the
distiller; the pipeline checkpoints the selector beside it. `seconds` accumulates the wall time
spent inside the selector (BiLP Table 6's "ITE computation s/iter" row).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.func import grad, vjp, vmap

from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError
from dfdistill.methods.matching import MetaLoss, MetaObjective
from dfdistill.core.registry import pruner_class, register_pruner


@dataclass
class ITEConfig:
    _target_: Optional[str] = None
    beta: float = 0.1  # adaptive pruning rate (Alg. 1 input beta)
    eta: float = 0.1  # running-stat momentum (eq. 8; BN-style default)
    mode: str = "taylor"  # taylor (eq. 7) | exact (eq. 6, leave-one-out)
    stats: str = "running"  # running (eq. 8) | full (every row's ITE each call: Table 6 "no optimisation")
    tail: str = "both"  # both: band (z_{b/2}, z_{1-b/2}) | small | large: prune that tail only
    lazy_every: int = 1  # draw + judge a fresh batch every k-th step, reuse it in between (paper §5.4: 10)
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
        if self._target_ is not None:
            pruner_class(self._target_, adaptive=True)


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


def batch_ite_norms(objective: MetaObjective, xr: Tensor, yr: Tensor, w: Optional[Tensor], mode: str,
                    chunk: int) -> Tensor:
    """(P, B) ||ITE|| of every row of the real batch xr (P, B, ...) under the method's objective."""
    P, B = xr.shape[:2]
    w = torch.ones(P, B, device=xr.device) if w is None else w
    norms = torch.zeros(P, B, device=xr.device)
    for p in range(P):
        g = objective.features(xr[p], yr[p], chunk)
        norms[p] = ite_vectors(g, w[p], objective.loss(p), objective.syn[p], mode, chunk).norm(dim=1)
    return norms


# ---------------------------------------------------------------------------------------------- #
# running statistics + quantile band
# ---------------------------------------------------------------------------------------------- #
class RunningNormalBand:
    """BN-style running mean/variance (eq. 8) and the keep-band of N(mu, var).

    mean/var are 0-d tensors on the values' device, so updating and applying the band never waits
    for the device (floats only in state_dict)."""

    def __init__(self, beta: float, eta: float, tail: str = "both"):
        self.beta, self.eta, self.tail = beta, eta, tail
        self.mean: Optional[Tensor] = None
        self.var: Optional[Tensor] = None

    def update(self, values: Tensor, mask: Optional[Tensor] = None) -> None:
        """Fold the batch's mean/variance (over the entries where `mask`, all when None) into the band."""
        m = torch.ones_like(values) if mask is None else mask.to(values.dtype)
        n = m.sum().clamp_min(1)
        mb = (values * m).sum() / n
        vb = (((values - mb) ** 2) * m).sum() / n
        if self.mean is None:
            self.mean, self.var = mb, vb
        else:
            self.mean = (1 - self.eta) * self.mean + self.eta * mb
            self.var = (1 - self.eta) * self.var + self.eta * vb

    def bounds(self) -> tuple[Tensor | float, Tensor | float]:
        if self.beta == 0:
            return float("-inf"), float("inf")
        sd = self.var.clamp_min(0.0).sqrt()
        q = lambda p: self.mean + sd * float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        if self.tail == "both":
            return q(self.beta / 2), q(1 - self.beta / 2)
        if self.tail == "small":
            return q(self.beta), float("inf")
        return float("-inf"), q(1 - self.beta)

    def keep(self, values: Tensor) -> Tensor:
        lo, hi = self.bounds()
        return (values > lo) & (values < hi)

    def state_dict(self) -> dict:
        f = lambda t: None if t is None else float(t)
        return {"mean": f(self.mean), "var": f(self.var)}

    def load_state_dict(self, st: dict) -> None:
        t = lambda v: None if v is None else torch.tensor(float(v))
        self.mean, self.var = t(st["mean"]), t(st["var"])


# ---------------------------------------------------------------------------------------------- #
# the selector the pipeline plugs into DC/DSA/IDC/DM
# ---------------------------------------------------------------------------------------------- #
@register_pruner("ite", label="ITE pruning", adaptive=True)
class ITESelector:
    """`draw(fresh)` -> the real rows of a call; `weights(...)` -> (P, B) 0/1 weights of that batch (times
    the padding weights). Between refreshes both hand back the held, already selected batch."""

    def __init__(self, cfg: ITEConfig, real: RealData):
        self.cfg = cfg
        self.real = real  # the rows `rows` index (ctx.real); stats=full reads whole classes from it
        self.chunk = cfg.chunk or auto_chunk(real.device)
        self.band = RunningNormalBand(cfg.beta, cfg.eta, cfg.tail)
        # per-row decisions over ctx.real (the last judgement of each row), plus one scratch slot that
        # padded batch positions write to
        self._row_keep = torch.ones(len(real) + 1, dtype=torch.bool, device=real.device)
        self.refresh: Optional[bool] = None  # set by begin_step
        self._slot = 0  # call position within the current step
        self._served: Optional[int] = None  # the slot `draw` last served from the hold
        self._held: dict[int, dict[str, Optional[Tensor]]] = {}  # slot -> selected batch {rows, w, keep}
        self.calls = 0
        self.seconds = 0.0  # wall time inside weights(), this process (not checkpointed)
        self.cpu_seconds = 0.0  # the same in process CPU time (benchmarks on a shared machine read this)
        self._kept: list[Tensor] = []  # per call, as device tensors (read as floats once, at the end)

    @property
    def row_keep(self) -> Tensor:
        """(N,) the last decision for every row of ctx.real (rows never judged: kept)."""
        return self._row_keep[:-1]

    @property
    def kept_fraction(self) -> list[float]:
        """Kept share of the valid rows, per call."""
        return [float(k) for k in self._kept]

    def begin_step(self, step: int) -> None:
        """Step `step` of the lazy clock begins (a distillation iteration, or IDC's inner matching step):
        a refresh step (step % lazy_every == 0) draws and judges fresh batches, the others reuse."""
        self.refresh = step % self.cfg.lazy_every == 0
        self._slot, self._served = 0, None

    begin_iteration = begin_step  # the loop's announcement; methods that count inner steps re-announce

    def forget(self) -> None:
        """Drop the held batches (the method changed the pool they came from): the next calls draw anew."""
        self._held.clear()

    def draw(self, fresh: Callable[[], tuple[Tensor, Optional[Tensor]]]) -> tuple[Tensor, Optional[Tensor]]:
        """(rows, padding weights) for the next `weights` call: the held selected batch of this call
        position between refreshes, else `fresh()` (the method's own draw)."""
        held = None if self.refresh else self._held.get(self._slot)
        if held is None:
            self._served = None
            return fresh()
        self._served = self._slot
        return held["rows"], held["w"]

    def weights(self, xr: Tensor, yr: Tensor, rows: Tensor, w: Optional[Tensor], objective: MetaObjective) -> Tensor:
        """xr (P, B, ...) real batch as it enters the matching loss (a Tensor, or a methods.chunks.ClassBatch
        that builds it one class chunk at a time: it is read one position at a time), yr (P, B) its
        labels, rows (P, B) its indices into ctx.real, w (P, B) padding weights (0 = padding) or None."""
        if self.refresh is None:
            raise RuntimeError("ITESelector.begin_step(t) (the loop's begin_iteration) must be called before each step")
        if xr.device.type == "cuda":
            torch.cuda.synchronize(xr.device)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return self._weights(xr, yr, rows, w, objective)
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0

    def _weights(self, xr: Tensor, yr: Tensor, rows: Tensor, w: Optional[Tensor], objective: MetaObjective) -> Tensor:
        slot, served = self._slot, self._served
        self._slot, self._served = slot + 1, None
        self.calls += 1
        valid = torch.ones(rows.shape, dtype=torch.bool, device=xr.device) if w is None else w > 0
        if served == slot:  # the held batch `draw` handed out: its selection stands until the next refresh
            keep = self._held[slot]["keep"]
        else:
            keep = self._judge(xr, yr, rows, w, valid, objective)
            keep = self._ensure_min(keep & valid, valid)
            self._held[slot] = {"rows": rows, "w": w, "keep": keep}
        self._kept.append(keep.sum() / valid.sum().clamp_min(1))
        out = keep.float()
        return out if w is None else out * w

    def _judge(self, xr: Tensor, yr: Tensor, rows: Tensor, w: Optional[Tensor], valid: Tensor,
               objective: MetaObjective) -> Tensor:
        """Compute the batch's ITE and its keep mask (running band, or the population band of stats=full)."""
        if self.cfg.stats == "full":
            with torch.enable_grad():
                pop_rows, norms = self.population_norms(objective, yr, block=xr.shape[1])
            self.band.mean, self.band.var = norms.mean(), norms.var(unbiased=False)
            self.row_keep[pop_rows] = self.band.keep(norms)
            return self.row_keep[rows]
        with torch.enable_grad():
            norms = batch_ite_norms(objective, xr, yr, w, self.cfg.mode, self.chunk)
        self.band.update(norms, valid)
        keep = self.band.keep(norms)
        scratch = torch.full_like(rows, len(self.real))  # padded positions repeat rows: write them aside
        self._row_keep[torch.where(valid, rows, scratch)] = keep
        return keep

    def population_norms(self, objective: MetaObjective, yr: Tensor, block: int) -> tuple[Tensor, Tensor]:
        """(rows, ||ITE||) for every row of ctx.real of the classes in the batch (yr[p, 0] is position
        p's class), block-wise per class: each block plays the mini-batch B_r of eq. 6."""
        real = self.real
        rows_out, norms_out = [], []
        for p, c in enumerate(yr[:, 0].tolist()):  # one host read for all positions
            rows_c = real.class_indices[c]
            one = MetaObjective(objective.features, lambda _q, p=p: objective.loss(p), objective.syn[p : p + 1])
            for a in range(0, rows_c.numel(), block):
                rows = rows_c[a : a + block]
                rows_out.append(rows)
                norms_out.append(batch_ite_norms(one, real.images[rows][None], real.labels[rows][None], None,
                                                 self.cfg.mode, self.chunk)[0])
        return torch.cat(rows_out), torch.cat(norms_out)

    def _ensure_min(self, keep: Tensor, valid: Tensor) -> Tensor:
        """Positions keeping fewer than min_keep rows keep all their valid rows (no per-class host sync)."""
        short = keep.sum(1, keepdim=True) < self.cfg.min_keep
        return torch.where(short, valid, keep)

    def state_dict(self) -> dict[str, Any]:
        cpu = lambda t: None if t is None else t.cpu()
        return {"band": self.band.state_dict(), "row_keep": self.row_keep.cpu(), "calls": self.calls,
                "held": {int(k): {n: cpu(t) for n, t in v.items()} for k, v in self._held.items()}}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.band.load_state_dict(st["band"])
        self._row_keep[:-1] = st["row_keep"].to(self._row_keep.device)
        self.calls = int(st.get("calls", 0))
        dev = self._row_keep.device
        self._held = {int(k): {n: None if t is None else t.to(dev) for n, t in v.items()}
                      for k, v in (st.get("held") or {}).items()}
