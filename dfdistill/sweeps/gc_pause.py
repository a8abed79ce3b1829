"""Python's cyclic garbage collector paused while a plan is computed.

Why: a plan builds and drops thousands of OmegaConf nodes (each holds its parent: a reference
cycle), and every ~70,000 allocations the collector walks every tracked object, the ~400,000 that
importing torch, Hydra and the package left behind included. Measured on `bilp_fig2 --plan
--profile full --no-plan-memo`: ~15% of the plan's CPU. A plan is short, so its cyclic garbage
(~65 MB for the largest table) waits for the collector's next pass after the block (or the process
end) instead of being freed along the way. The collector only decides *when* memory is freed:
nothing a plan prints or computes depends on it.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused(on: bool = True) -> Iterator[None]:
    """Collector off inside the block (when `on` and it was on), on again after."""
    was = gc.isenabled()
    if on and was:
        gc.disable()
    try:
        yield
    finally:
        if on and was:
            gc.enable()
