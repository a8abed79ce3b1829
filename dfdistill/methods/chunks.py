"""Per-class batches built one class chunk at a time, and the chunked backward of a class-summed loss.

Why: a (C, B, ...) real batch of every class is itself linear in C (786 MB at C=1000, B=64, 32 px),
and its activations are 30-100x that. The matching objectives are sums over classes, so each
chunk's loss can be backpropagated as soon as it is formed: the image gradient accumulates to
exactly the one-pass gradient (up to float summation order) while only one chunk's batch, graph
and per-class gradients are alive. `ClassBatch` is the lazy batch (gather + siamese augmentation of
a class range on demand; deterministic: a chunk applies its slice of the step's one siamese draw, `ClassDraw[lo:hi]`), and
`backward_in_chunks` runs the chunked loss/backward.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from dfdistill.engine.memory import class_ranges

Build = Callable[[int, int], Tensor]  # (lo, hi) -> (hi - lo, B, ...) batch of classes lo..hi-1


class ClassBatch:
    """A (C, B, ...) batch materialised per class range by `build(lo, hi)`.

    Supports what the matching code and the ITE selector use: `shape`, `device`, `len`, `x[p]` (one
    class), `x[lo:hi]` (a class range) and `materialize()`. With `cache`, the chunk of `chunk`
    classes last built is kept, so a pass over the classes in order builds each chunk once even
    when it is read class by class (the ITE selector) and then by range (the loss)."""

    def __init__(self, build: Build, shape: Sequence[int], device: torch.device, chunk: int, cache: bool = True):
        self._build, self.shape, self.device = build, torch.Size(shape), device
        self.chunk, self.cache = max(1, int(chunk)), cache
        self._hit: Optional[tuple[int, int, Tensor]] = None

    def __len__(self) -> int:
        return self.shape[0]

    def _range(self, lo: int, hi: int) -> Tensor:
        if self._hit is not None and self._hit[0] <= lo and hi <= self._hit[1]:
            a = self._hit[0]
            return self._hit[2][lo - a : hi - a]
        x = self._build(lo, hi)
        if self.cache:
            self._hit = (lo, hi, x)
        return x

    def __getitem__(self, key: Union[int, slice]) -> Tensor:
        C = len(self)
        if isinstance(key, int):
            p = key % C
            lo = (p // self.chunk) * self.chunk
            return self._range(lo, min(lo + self.chunk, C))[p - lo]
        lo, hi, step = key.indices(C)
        if step != 1:
            raise IndexError("ClassBatch supports contiguous class ranges only")
        return self._range(lo, hi)

    def ranges(self) -> list[tuple[int, int]]:
        return class_ranges(len(self), self.chunk)

    def materialize(self) -> Tensor:
        """The whole (C, B, ...) batch (what a method that needs every class at once gets)."""
        return torch.cat([self[lo:hi] for lo, hi in self.ranges()])

    def detach(self) -> "ClassBatch":
        """The same batch without autograd history (built under no_grad)."""

        def build(lo: int, hi: int) -> Tensor:
            with torch.no_grad():
                return self._build(lo, hi)

        return ClassBatch(build, self.shape, self.device, self.chunk, cache=True)


Batch = Union[Tensor, ClassBatch]


def materialize(x: Batch) -> Tensor:
    return x.materialize() if isinstance(x, ClassBatch) else x


def backward_in_chunks(loss_of: Callable[..., Tensor], num_classes: int, chunk: int,
                       graph_inputs: Sequence[Tensor] = ()) -> Tensor:
    """sum over class ranges [lo, hi) of `loss_of(lo, hi, *[t[lo:hi] for t in graph_inputs])`, each
    range's backward run right after its forward; returns the detached sum.

    A tensor in `graph_inputs` that carries autograd history shared by all classes (e.g. one
    augmentation call over the whole synthetic set) is cut into a leaf first: the chunks
    accumulate into the leaf's gradient, which then goes back through the shared history once."""
    leaves = [t.detach().requires_grad_(t.requires_grad) for t in graph_inputs]
    total: Optional[Tensor] = None
    for lo, hi in class_ranges(num_classes, chunk):
        loss = loss_of(lo, hi, *[leaf[lo:hi] for leaf in leaves])
        if loss.requires_grad:
            loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    back = [(t, leaf.grad) for t, leaf in zip(graph_inputs, leaves) if t.requires_grad and leaf.grad is not None]
    if back:
        torch.autograd.backward([t for t, _ in back], [g for _, g in back])
    return total if total is not None else torch.zeros(())

