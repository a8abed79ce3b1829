"""EDD Figs. 1-2 from a finished run: how different the synthetic segments are (pure tensor functions).

EDD Fig. 1: "Cosine similarity of back-propagation signals [...] obtained by subtracting initialized
images from the generated synthetic images, where both OUR and IDC are initialized with the same set
of images. The cosine similarity is averaged for all classes." -> `within_class_cosine` (one number
per method) and `segment_cosine` (EDD's segment × segment matrix).
EDD Fig. 2: "T-SNE distribution of synthetic images [...] images generated in different segments
tend to cover different parts of the distribution." -> `tsne_2d` over real images of one class and
the synthetic images of each set (pixels of the normalised images).

Segments: EDD distils slots [a_k, b_k) of every class's ipc slots as segment k
(methods/edd.py::segment_bounds). A parameterised set (IDC's multi-formation) decodes each slot into
several images kept next to each other, so image j of a class with n images is slot j * ipc // n.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def update_signals(final: Tensor, init: Tensor) -> Tensor:
    """(N, D) back-propagation signals: the synthetic images minus the images they started from."""
    if final.shape != init.shape:
        raise ValueError(f"final {tuple(final.shape)} and initial {tuple(init.shape)} sets differ in shape")
    return (final.float() - init.float()).flatten(1)


def slot_segments(labels: Tensor, ipc: int, bounds: list[tuple[int, int]]) -> Tensor:
    """Segment id of every image: its slot within its class (j * ipc // n_class) -> the segment holding it."""
    seg = torch.empty(labels.shape[0], dtype=torch.long)
    for c in labels.unique():
        rows = torch.nonzero(labels == c).squeeze(1)
        slots = torch.arange(rows.numel()) * ipc // rows.numel()
        for k, (a, b) in enumerate(bounds):
            seg[rows[(slots >= a) & (slots < b)]] = k
    return seg


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def within_class_cosine(signals: Tensor, labels: Tensor) -> float:
    """Mean cosine similarity over pairs of distinct images of a class, averaged over classes."""
    vals = []
    for c in labels.unique():
        u = _unit(signals[labels == c])
        n = u.shape[0]
        if n < 2:
            continue
        s = u @ u.T
        vals.append(float((s.sum() - s.diagonal().sum()) / (n * (n - 1))))
    return float(np.mean(vals)) if vals else float("nan")


def segment_cosine(signals: Tensor, labels: Tensor, seg: Tensor, k: int) -> Tensor:
    """(k, k): mean cosine similarity between images of segment a and segment b of the same class
    (distinct images only), averaged over classes."""
    out = torch.zeros(k, k)
    for a in range(k):
        for b in range(k):
            vals = []
            for c in labels.unique():
                ua = _unit(signals[(labels == c) & (seg == a)])
                ub = _unit(signals[(labels == c) & (seg == b)])
                if ua.shape[0] == 0 or ub.shape[0] == 0:
                    continue
                s = ua @ ub.T
                if a == b:
                    n = ua.shape[0]
                    if n < 2:
                        continue
                    vals.append(float((s.sum() - s.diagonal().sum()) / (n * (n - 1))))
                else:
                    vals.append(float(s.mean()))
            out[a, b] = float(np.mean(vals)) if vals else float("nan")
    return out


def tsne_2d(points: Tensor, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE embedding (scikit-learn) of flattened points; perplexity capped for small N."""
    from sklearn.manifold import TSNE  # local: scikit-learn's t-SNE loads only for the EDD figure

    x = points.flatten(1).float().cpu().numpy()
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
