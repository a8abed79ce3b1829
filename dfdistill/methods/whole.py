"""`method=whole`: the "Full dataset" row of the tables (BiLP Table 4, DC/DM/MTT papers).

Nothing is distilled: the "set" is the whole (statically pruned, if `pruning=` is given) real
training split, so the evaluation protocol trains its fresh networks on all of it, exactly as it
trains them on a distilled set (DC-BENCH's `whole` path: the same evaluation loop on the full
dataset). With `pruning=loss|random pruning.ratio=r` it measures the kept subset instead. IPC is
not used. The checkpoint stores no images (the set is the split itself, rebuilt on resume);
synthetic.pt holds the whole split like any saved set (about 600 MB at CIFAR-10), so `stage=eval`
can evaluate it on other backbones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfdistill.core.errors import ConfigError
from dfdistill.methods.base import Distiller, MethodConfig
from dfdistill.core.registry import register_method


@dataclass
class WholeConfig(MethodConfig):
    iterations: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations != 0:
            raise ConfigError("method=whole trains on the real split and has no iterations; "
                              f"drop method.iterations={self.iterations}")


@register_method("whole", config=WholeConfig, label="Full dataset")
class Whole(Distiller):
    def init_state(self) -> None:
        real = self.ctx.real
        self.images = real.images.materialize()  # the whole (kept) split in model space
        self.labels = real.labels

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
