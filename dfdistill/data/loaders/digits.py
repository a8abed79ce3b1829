"""scikit-learn's bundled 8x8 digits: works offline, MNIST-shaped, for tests and first runs."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data.image_folder import Split
from dfdistill.data.registry import register_dataset


@register_dataset("digits")
def load_digits_split(cfg: DatasetConfig, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """Fixed stratified 80/20 split, bilinear-upsampled to image_size (default 28); [0,1] float pixels."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
    size = cfg.image_size or 28
    x = torch.tensor(d.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.long)
    names = [str(i) for i in range(10)]
    tr_t, te_t = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    return Split(x[tr_t], y[tr_t], names), Split(x[te_t], y[te_t], names)
