"""The real training/test split as one stored tensor with a per-class index and model-space batches.

Why: distillation samples class-conditional batches thousands of times; keeping the split as one
tensor plus precomputed per-class index tensors makes each draw a single gather instead of a
DataLoader pass. Loaded datasets store *pixels* (uint8, 4x smaller than float32) on the device or
in host memory (`storage.py`) and every batch is normalised -- and ZCA-whitened -- on the fly with
the same float32 operations the old float32 split was built with, so batches are unchanged.
`real.images` is an indexable view (`images[idx]`, `.index_select(0, idx)`, `.shape`, slices), so
method code written against a float tensor keeps working; new code should call `real.batch(idx)`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from dfdistill.data.storage import canonical_device, gather

Index = Union[int, slice, Tensor, Sequence[int]]


class ImageView:
    """Read-only, tensor-like access to a RealData's rows in model space (each access builds a fresh batch).

    Supports what method code uses on a split: indexing by int / slice / index tensor / bool mask
    (further indices in a tuple apply to the batch), `index_select(0, idx)`, `shape`, `size()`,
    `dim()`, `dtype`, `device`, `len()`. `materialize()` builds the whole split (tests, small sets).
    """

    __slots__ = ("_real",)

    def __init__(self, real: "RealData") -> None:
        self._real = real

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._real), *self._real._store.shape[1:]))

    def size(self, dim: Optional[int] = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return len(self.shape)

    ndim = property(dim)

    def numel(self) -> int:
        return self.shape.numel()

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self._real._pixels else self._real._store.dtype

    @property
    def device(self) -> torch.device:
        return self._real.device

    def __len__(self) -> int:
        return len(self._real)

    def __getitem__(self, key: Any) -> Tensor:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if rows is Ellipsis or rows is None:  # the indices address other dims: build everything
            return self.materialize()[key]
        if isinstance(rows, int):
            n = len(self)
            if not -n <= rows < n:
                raise IndexError(f"index {rows} is out of bounds for a split of {n} rows")
            x = self._real.batch(torch.tensor([rows % n]))[0]
            return x[rest] if rest else x
        x = self._real.batch(rows)
        return x[(slice(None), *rest)] if rest else x

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        if dim != 0:
            raise ValueError("RealData.images.index_select supports dim=0 (rows) only")
        return self._real.batch(index)

    def materialize(self) -> Tensor:
        """The whole split in model space as one tensor (N x C x H x W x 4 bytes: small splits only)."""
        return self._real.batch(slice(None))

    def __repr__(self) -> str:
        return f"ImageView(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"


class RealData:
    """A split: stored images, int64 labels, class names, normalisation stats and a per-class index.

    `images` given as a float tensor is taken to be in model space already (used as is: tests,
    synthetic data). `pixels=True` marks it as pixels -- uint8 in [0, 255] or floats in [0, 1] --
    that `batch` normalises with mean/std (then ZCA when `zca` is set). The store may live on
    another device than `device` (host storage): batches always come out on `device`.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        num_classes: int,
        class_names: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        name: str = "data",
        zca: Optional[Any] = None,  # dfdistill.data.zca.ZCA when whitening is on
        source_index: Optional[Tensor] = None,
        *,
        pixels: bool = False,
        device: Optional[torch.device | str] = None,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self._store = images
        self._pixels = bool(pixels)
        self.device = canonical_device(device if device is not None else images.device)
        self.labels = labels
        self.num_classes = int(num_classes)
        self.class_names = list(class_names)
        self.mean, self.std = tuple(mean), tuple(std)
        self.name = name
        self.zca = zca
        # Index of every row in the *original* split, so pruning/scores stay traceable after subsetting.
        self.source_index = source_index if source_index is not None else torch.arange(len(labels), device=labels.device)
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=self.num_classes).tolist()
        self.class_indices: list[Tensor] = list(torch.split(order, counts))
        self._m = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._s = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    # -- shape facts -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def images(self) -> ImageView:
        return ImageView(self)

    @property
    def channels(self) -> int:
        return int(self._store.shape[1])

    @property
    def image_size(self) -> int:
        return int(self._store.shape[-1])

    @property
    def storage_device(self) -> torch.device:
        return self._store.device

    @property
    def nbytes(self) -> int:
        """Bytes of the stored split (uint8 pixels: N*C*H*W; a float32 split would be 4x that)."""
        return self._store.numel() * self._store.element_size()

    def class_counts(self) -> list[int]:
        return [int(ix.numel()) for ix in self.class_indices]

    def __repr__(self) -> str:
        kind = f"{self._store.dtype} pixels" if self._pixels else f"{self._store.dtype} model-space"
        return (f"RealData({self.name}: {len(self)} rows, {self.num_classes} classes, {kind} on {self.storage_device}, "
                f"batches on {self.device})")

    # -- batches -------------------------------------------------------------------------------
    def batch(self, idx: Index) -> Tensor:
        """Rows `idx` (slice, index tensor of any shape, bool mask, list) in model space on `device`."""
        if isinstance(idx, slice):
            x = self._store[idx]
            x = x.to(self.device, non_blocking=True) if x.device != self.device else x
            return self._to_model(x)
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise IndexError(f"a boolean row mask needs shape ({len(self)},), got {tuple(idx.shape)}")
            idx = torch.nonzero(idx).flatten()
        flat = idx.reshape(-1).long()
        x = self._to_model(gather(self._store, flat, self.device))
        return x.view(*idx.shape, *x.shape[1:])

    def _to_model(self, x: Tensor) -> Tensor:
        """Pixels -> model space with the operations the float32 split was built with (bit-identical)."""
        if not self._pixels:
            return x
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0).sub_(self._m)
        else:
            x = x.float().sub(self._m)  # out of place: a slice of a float store is a view of it
        x.div_(self._s)
        return self.zca.transform(x) if self.zca is not None else x

    # -- views ---------------------------------------------------------------------------------
    def _like(self, store: Tensor, labels: Tensor, source_index: Tensor, device: torch.device) -> "RealData":
        return RealData(store, labels, self.num_classes, self.class_names, self.mean, self.std, self.name, self.zca,
                        source_index, pixels=self._pixels, device=device)

    def subset(self, idx: Tensor) -> "RealData":
        """Rows `idx` (positions in this object) as a new RealData: gathers the stored pixels (same
        placement), remembers source indices. The caller drops the old object to free the old split."""
        idx = torch.as_tensor(idx).to(self.labels.device).long()
        store = self._store.index_select(0, idx.to(self._store.device))
        return self._like(store, self.labels.index_select(0, idx), self.source_index.index_select(0, idx), self.device)

    def to(self, device: torch.device | str) -> "RealData":
        """Batches on `device`; a store on the old batch device moves along, a host store stays on the host."""
        device = canonical_device(device)
        store = self._store.to(device) if self._store.device == self.device else self._store
        if self.zca is not None:
            self.zca.to(device)
        return self._like(store, self.labels.to(device), self.source_index.to(device), device)

    # -- sampling ------------------------------------------------------------------------------
    def class_sample_indices(self, c: int, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n random row positions of class c (without replacement; all of them if the class is smaller)."""
        ix = self.class_indices[c]
        perm = torch.randperm(ix.numel(), generator=generator, device="cpu")[:n].to(ix.device)
        return ix[perm]

    def sample_class(self, c: int, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.batch(self.class_sample_indices(c, n, generator))

    def sample_per_class(
        self, n: int, classes: Optional[Sequence[int]] = None, generator: Optional[torch.Generator] = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """min(n, n_c) random rows of each class in one gather: (images, labels, row positions)."""
        classes = range(self.num_classes) if classes is None else classes
        idx = torch.cat([self.class_sample_indices(c, n, generator) for c in classes])
        return self.batch(idx), self.labels.index_select(0, idx), idx

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
