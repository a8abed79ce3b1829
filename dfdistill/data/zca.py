"""ZCA whitening fitted on the training split, in one of two conventions (`dataset.zca_mode`).

Why two: the papers whiten differently and the difference is large (RFAD's regulariser is ~16x
weaker than kornia's on CIFAR-10), so each recipe names its convention:

* kornia (MTT, TESLA: kornia `ZCAWhitening(eps=0.1, compute_inv=True)` on ToTensor pixels): centre
  every feature, covariance with N-1, W = U diag(1/sqrt(S + eps)) U^T (eps absolute); x -> (x - mean) W.
* rfad (RFAD data.py `get_zca_matrix(X, reg_coef=0.1)` after a per-channel standardisation with the
  train split's own mean/std): covariance X^T X / N of the standardised rows WITHOUT centring each
  feature, regulariser eps * tr(cov) / D (eps x the mean eigenvalue), W = U diag(1/sqrt(S + reg)) U^T;
  x -> x W (the standardisation already centred each channel).

Both keep the inverse (to show images in pixel space). Statistics are accumulated in float64 in row
chunks read from the (uint8) split, so a 50k x 3072 split needs no float64 or float32 copy; the
matrices are stored in float32 and applied per batch (`RealData.batch`).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor


MODES = ("kornia", "rfad")


class ZCA:
    """x -> (x - mean) @ W with W = U diag(1/sqrt(S + reg)) U^T; inverse y -> y @ W_inv + mean.

    kornia: mean = the feature means, reg = eps. rfad: mean = 0, reg = eps * mean eigenvalue."""

    def __init__(self, chunk_size: int = 4096) -> None:
        self.chunk_size = int(chunk_size)
        self.mean: Optional[Tensor] = None  # (D,)
        self.W: Optional[Tensor] = None  # (D, D), symmetric
        self.W_inv: Optional[Tensor] = None  # (D, D), symmetric
        self.eps: float = 0.1
        self.mode: str = "kornia"
        self.shape: Optional[tuple[int, ...]] = None  # (C, H, W) it was fitted on

    # -- fitting -----------------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, x: Any, eps: float = 0.1, mode: str = "kornia") -> "ZCA":
        """Fit on (N, C, H, W) images in model space (kornia: [0,1] pixels; rfad: standardised).

        `x` is a tensor or anything sliceable by rows with `.shape`/`.device` (RealData.images):
        rows are read `chunk_size` at a time, so no float64 (or float32) copy of the split is made.
        """
        if mode not in MODES:
            raise ValueError(f"unknown ZCA mode {mode!r}; valid: {', '.join(MODES)}")
        shape = tuple(x.shape)
        if len(shape) < 2 or shape[0] < 2:
            raise ValueError(f"ZCA.fit needs at least 2 samples, got shape {shape}")
        n = shape[0]
        d = 1
        for s in shape[1:]:
            d *= s

        def chunks():  # two passes (mean, then the second moment), each one chunk in float64 at a time
            return (x[i : i + self.chunk_size].reshape(-1, d).double() for i in range(0, n, self.chunk_size))

        mean = torch.zeros(d, dtype=torch.float64, device=x.device)
        if mode == "kornia":
            for chunk in chunks():
                mean += chunk.sum(0)
            mean /= n
        cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        for chunk in chunks():
            c = chunk - mean
            cov.addmm_(c.T, c)
        cov /= (n - 1) if mode == "kornia" else n
        reg = eps if mode == "kornia" else eps * float(cov.diagonal().mean())
        s, u = torch.linalg.eigh(cov)
        s = s.clamp_min(0.0)  # tiny negative eigenvalues are round-off of a PSD matrix
        self.W = ((u * torch.rsqrt(s + reg)) @ u.T).float()
        self.W_inv = ((u * torch.sqrt(s + reg)) @ u.T).float()
        self.mean = mean.float()
        self.eps = float(eps)
        self.mode = mode
        self.shape = shape[1:]
        return self

    # -- applying ----------------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if self.W is None or self.mean is None or self.W_inv is None:
            raise RuntimeError("ZCA is not fitted; call fit() or from_state_dict() first")
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"ZCA fitted on per-sample shape {self.shape}, got {tuple(x.shape[1:])}")

    def _mats(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert self.mean is not None and self.W is not None and self.W_inv is not None
        kw = dict(device=x.device, dtype=x.dtype)
        return self.mean.to(**kw), self.W.to(**kw), self.W_inv.to(**kw)

    def transform(self, x: Tensor) -> Tensor:
        """Whiten; differentiable, processed in row chunks to bound the temporary memory."""
        self._check(x)
        mean, w, _ = self._mats(x)
        flat = x.reshape(x.shape[0], -1)
        out = [(c - mean) @ w for c in flat.split(self.chunk_size)]
        return (torch.cat(out) if out else flat).reshape(x.shape)

    def inverse(self, x: Tensor) -> Tensor:
        """Un-whiten (back to the space it was fitted in); differentiable, chunked."""
        self._check(x)
        mean, _, w_inv = self._mats(x)
        flat = x.reshape(x.shape[0], -1)
        out = [c @ w_inv + mean for c in flat.split(self.chunk_size)]
        return (torch.cat(out) if out else flat).reshape(x.shape)

    __call__ = transform

    # -- persistence / placement -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.W is None:
            raise RuntimeError("ZCA is not fitted; nothing to save")
        return {
            "mean": self.mean.cpu(),
            "W": self.W.cpu(),
            "W_inv": self.W_inv.cpu(),
            "eps": self.eps,
            "mode": self.mode,
            "shape": list(self.shape) if self.shape is not None else None,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str | None = None) -> "ZCA":
        missing = {"mean", "W", "W_inv"} - set(state)
        if missing:
            raise ValueError(f"ZCA state is missing {sorted(missing)} (corrupt cache?)")
        z = cls()
        z.mean, z.W, z.W_inv = state["mean"].float(), state["W"].float(), state["W_inv"].float()
        d = z.mean.numel()
        if z.W.shape != (d, d) or z.W_inv.shape != (d, d):
            raise ValueError(f"ZCA state has inconsistent shapes: mean {d}, W {tuple(z.W.shape)}")
        z.eps = float(state.get("eps", 0.1))
        z.mode = str(state.get("mode", "kornia"))
        shape = state.get("shape")
        z.shape = tuple(int(s) for s in shape) if shape is not None else None
        return z.to(device) if device is not None else z

    def load_state_dict(self, state: dict[str, Any]) -> "ZCA":
        other = ZCA.from_state_dict(state)
        self.mean, self.W, self.W_inv = other.mean, other.W, other.W_inv
        self.eps, self.mode, self.shape = other.eps, other.mode, other.shape
        return self

    def to(self, device: torch.device | str) -> "ZCA":
        """Move the statistics in place (returns self, like nn.Module.to)."""
        for name in ("mean", "W", "W_inv"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    @property
    def device(self) -> Optional[torch.device]:
        return None if self.mean is None else self.mean.device

    def __repr__(self) -> str:
        return f"ZCA(mode={self.mode}, eps={self.eps}, shape={self.shape}, fitted={self.W is not None})"
