"""Read a resolved config's plain copy the way code reads the config: `cfg.method.name`,
`cfg.pruning.get("ratio")`, `"width" in cfg.backbone`.

Why: a plan keeps every job's resolved config twice, as a DictConfig and as plain data (`Job.resolved_dict`,
`to_container(resolve=True)` of it), and its cost model and feasibility check read a few dozen
values of each job. Through OmegaConf each read costs microseconds of validation, and building the
DictConfig of a job derived from its sweep's shape (sweeps/plan.py `derive`) costs more than the
rest of its planning; read from the plain copy, the job's DictConfig is never built. The values are
the ones the DictConfig gives (resolved; lists as plain lists); tests/unit/sweeps/test_plan_derive.py
checks that the plan's cost and feasibility figures read through a view equal the DictConfig's.
"""

from __future__ import annotations

from typing import Any, Iterator


def _wrap(value: Any) -> Any:
    return PlainView(value) if type(value) is dict else value


class PlainView:
    """Attribute and mapping reads of a plain dict, nested dicts wrapped in turn (read only)."""

    __slots__ = ("data",)

    def __init__(self, data: dict) -> None:
        self.data = data

    def __getattr__(self, key: str) -> Any:
        try:
            return _wrap(self.data[key])
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return _wrap(self.data[key])

    def get(self, key: str, default: Any = None) -> Any:
        return _wrap(self.data[key]) if key in self.data else default

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self):  # noqa: ANN201 - dict's own view
        return self.data.keys()

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((k, _wrap(v)) for k, v in self.data.items())
