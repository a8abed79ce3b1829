"""Register the structured-config schemas with Hydra's ConfigStore.

Each YAML option lists its schema first in its own defaults (e.g. `method/dc.yaml` starts with
`- base_dc`), so types and unknown keys are checked at compose time (the form Hydra 1.4 keeps).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from dfdistill.config.schema import DatasetConfig, EvalConfig, LoggerConfig, ProfileConfig


def method_schemas() -> dict[str, type]:
    from dfdistill.methods import registry

    return registry.method_config_classes()


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
    cs.store(group="profile", name="base_profile", node=ProfileConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    for name, cls in method_schemas().items():
        cs.store(group="method", name=f"base_{name}", node=cls)
