"""The real training/test split as whole-dataset tensors with a per-class index.

Why: distillation samples class-conditional batches thousands of times; keeping the split as one
normalized tensor on the device plus precomputed per-class index tensors makes each draw a single
`index_select` instead of a DataLoader pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass
class RealData:
    images: Tensor  # (N, C, H, W) float32, normalized (and ZCA-whitened when `zca` is set)
    labels: Tensor  # (N,) int64
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "data"
    zca: Optional[object] = None  # dfdistill.data.zca.ZCA when whitening is on
    # Index of every row in the *original* split, so pruning/scores stay traceable after subsetting.
    source_index: Optional[Tensor] = None
    class_indices: list[Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source_index is None:
            self.source_index = torch.arange(len(self.labels), device=self.labels.device)
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        self.class_indices = list(torch.split(order, counts))

    # -- shape facts -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def class_counts(self) -> list[int]:
        return [int(ix.numel()) for ix in self.class_indices]

    # -- views ---------------------------------------------------------------------------------
    def subset(self, idx: Tensor) -> "RealData":
        """Rows `idx` (positions in this object) as a new RealData that remembers source indices."""
        idx = idx.to(self.labels.device)
        return RealData(
            images=self.images.index_select(0, idx),
            labels=self.labels.index_select(0, idx),
            num_classes=self.num_classes,
            class_names=self.class_names,
            mean=self.mean,
            std=self.std,
            name=self.name,
            zca=self.zca,
            source_index=self.source_index.index_select(0, idx),
        )

    def to(self, device: torch.device | str) -> "RealData":
        return RealData(
            images=self.images.to(device),
            labels=self.labels.to(device),
            num_classes=self.num_classes,
            class_names=self.class_names,
            mean=self.mean,
            std=self.std,
            name=self.name,
            zca=self.zca,
            source_index=self.source_index.to(device),
        )

    # -- sampling ------------------------------------------------------------------------------
    def class_sample_indices(self, c: int, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n random row positions of class c (without replacement; all of them if the class is smaller)."""
        ix = self.class_indices[c]
        perm = torch.randperm(ix.numel(), generator=generator, device="cpu")[:n].to(ix.device)
        return ix[perm]

    def sample_class(self, c: int, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.images.index_select(0, self.class_sample_indices(c, n, generator))

    def sample_per_class(
        self, n: int, classes: Optional[Sequence[int]] = None, generator: Optional[torch.Generator] = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """min(n, n_c) random rows of each class in one gather: (images, labels, row positions)."""
        classes = range(self.num_classes) if classes is None else classes
        idx = torch.cat([self.class_sample_indices(c, n, generator) for c in classes])
        return self.images.index_select(0, idx), self.labels.index_select(0, idx), idx

    # -- pixel space -----------------------------------------------------------------------------
    def denormalize(self, x: Tensor) -> Tensor:
        """Back to [0,1] pixels (undoing ZCA first when it was applied); for grids and W&B images."""
        if self.zca is not None:
            x = self.zca.inverse(x)
        m = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x * s + m).clamp(0, 1)

    def normalize_pixels(self, x: Tensor) -> Tensor:
        """[0,1] pixels to this dataset's model space (mean/std, then ZCA when on)."""
        m = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - m) / s
        if self.zca is not None:
            x = self.zca.transform(x)
        return x
