"""Warn once when a distillation diverges without producing NaN: its loss grows by orders of
magnitude, or a learned learning rate (MTT/TESLA's `syn_lr`) turns negative.

Why: MTT with too high a `lr_lr` ran from loss 0.95 to 8.8e6 with a learned lr of -145 and finished
silently, reporting an accuracy as if nothing had happened. NaN/Inf stops the run (loop.py); these
finite signs only warn (the run may recover), once, and the result record keeps the note.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

GROWTH = 1e3  # loss above this multiple of the first loss: three orders of magnitude


class DivergenceWatch:
    """Fed every iteration's loss and metrics; `note` is the first warning (None while healthy)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.first: Optional[tuple[int, float]] = None
        self.note: Optional[dict[str, Any]] = None

    def update(self, it: int, loss: float, metrics: Mapping[str, Any]) -> Optional[str]:
        """The warning text the first time a sign of divergence shows, else None."""
        if self.note is not None or not math.isfinite(loss):
            return None
        if self.first is None:
            self.first = (it, loss)
            return None
        it0, loss0 = self.first
        if loss0 > 0 and loss > GROWTH * loss0:
            self.note = {"iteration": it, "kind": "loss_growth", "first_loss": loss0, "loss": loss}
            return (f"method={self.method} looks divergent: the matching loss grew from {loss0:.3g} (iteration {it0}) "
                    f"to {loss:.3g} at iteration {it} (x{loss / loss0:.2g}); lower the method's learning rates "
                    "(recorded as 'divergence' in results.jsonl)")
        for key, value in metrics.items():
            if "lr" in key and _number(value) is not None and _number(value) < 0:
                self.note = {"iteration": it, "kind": "negative_lr", "key": key, "value": _number(value)}
                return (f"method={self.method} looks divergent: its learned {key} turned negative ({_number(value):.3g}) "
                        f"at iteration {it}; lower method.lr_lr (recorded as 'divergence' in results.jsonl)")
        return None


def _number(v: Any) -> Optional[float]:
    try:
        return float(v) if getattr(v, "numel", lambda: 1)() == 1 else None
    except (TypeError, ValueError):
        return None
