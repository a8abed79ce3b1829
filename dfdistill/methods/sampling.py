"""Per-class row draws for every class in one device operation.

Why: the methods draw a real batch of every class at every matching step. A CPU `randperm` per
class plus a host-to-device copy each is C small kernels and C transfers per step (1000 at
ImageNet-1K). Here the rows of all classes sit in one padded (C, max n_c) index table on the device;
one draw is `rand` keys for the whole table, padding keys pushed to the end, and one `topk` of the
B smallest keys per class: a uniformly random subset of min(B, n_c) rows of each class, in random
order. Classes with fewer rows than B (after pruning, or an EDD pool) are padded by repeating their
drawn rows with weight 0, exactly as before, so batches stay rectangular.

RNG: the keys come from a generator on the device (`Distiller.sample_gen`, created once per
distiller and checkpointed), not from the distiller's CPU generator; draws differ from the old
per-class randperm stream only in which rows are picked, never in distribution.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import Tensor

from dfdistill.data.real import RealData
from dfdistill.core.errors import DataError

_tables: "weakref.WeakKeyDictionary[RealData, tuple[Tensor, Tensor]]" = weakref.WeakKeyDictionary()


def class_table(real: RealData) -> tuple[Tensor, Tensor]:
    """(C, max n_c) row indices of every class (padded with 0) and (C,) counts, on real.device; cached."""
    hit = _tables.get(real)
    if hit is not None:
        return hit
    counts = real.class_counts()
    width = max(max(counts), 1)
    table = torch.zeros(real.num_classes, width, dtype=torch.long, device=real.device)
    for c, ix in enumerate(real.class_indices):
        table[c, : ix.numel()] = ix.to(real.device)
    out = (table, torch.tensor(counts, dtype=torch.long, device=real.device))
    _tables[real] = out
    return out


def per_class_rows(real: RealData, n: int, gen: torch.Generator,
                   active: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
    """(C, B) random rows of every class (B = min(n, max_c n_c)) and (C, B) weights, None without padding.

    `active` (an (N,) bool mask over real's rows) restricts the draw to those rows (EDD's pool); it
    costs one host sync (the active counts set B)."""
    table, counts = class_table(real)
    C, width = table.shape
    valid = torch.arange(width, device=table.device)[None, :] < counts[:, None]
    if active is not None:
        valid = valid & active[table]
        counts = valid.sum(1)
        host_counts = counts.tolist()
    else:
        host_counts = real.class_counts()
    if min(host_counts) == 0:
        raise DataError(f"class {host_counts.index(0)} has no real samples left; lower pruning.ratio")
    B = min(n, max(host_counts))
    keys = torch.rand((C, width), generator=gen, device=table.device).masked_fill_(~valid, 2.0)
    order = torch.topk(keys, B, dim=1, largest=False, sorted=True).indices  # padding/inactive keys sort last
    if min(host_counts) >= B:
        return table.gather(1, order), None
    j = torch.arange(B, device=table.device)[None, :]
    k = counts.clamp(max=B)[:, None]
    pad = j >= k
    order = torch.where(pad, order.gather(1, j % k), order)  # pad with the class's own drawn rows, weight 0
    return table.gather(1, order), (~pad).to(torch.get_default_dtype())


def valid_rows(rows: Tensor, w: Optional[Tensor]) -> Tensor:
    """The drawn rows without the padding (flat, class-major): what an unpadded per-class draw gives."""
    return rows.reshape(-1) if w is None else rows[w > 0]


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` for draws made there (created once by its owner and reused)."""
    return torch.Generator(device=device).manual_seed(int(seed))
