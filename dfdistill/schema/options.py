"""The config tree on disk: where `conf/` is, one group option with its defaults chain, and which
schema each method option extends. Read-only YAML access with no dependency on the rest of the
package, so every layer (models, registry, resolve) can use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dfdistill.core.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def load_option(group: str, option: str, depth: int = 0) -> DictConfig:
    """conf/<group>/<option>.yaml with its defaults chain merged (schema entries `base_*` skipped)."""
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group}={option} does not exist; choose from {valid}")
    node = OmegaConf.load(path)
    parents = [d for d in (node.pop("defaults", None) or []) if isinstance(d, str) and d != "_self_"
               and not d.startswith("base_")]
    merged = OmegaConf.create()
    for parent in parents:
        if depth > 10:
            raise ConfigError(f"{group}/{option}.yaml: defaults chain too deep")
        merged = OmegaConf.merge(merged, load_option(group, parent, depth + 1))
    return OmegaConf.merge(merged, node)


@lru_cache(maxsize=1)
def method_schemas_by_option() -> dict[str, str]:
    """conf/method/<option>.yaml -> the schema it extends (`- base_<schema>` in its defaults)."""
    parents = {}
    for path in (CONF_DIR / "method").glob("*.yaml"):
        defaults = OmegaConf.load(path).get("defaults") or []
        parents[path.stem] = next((d for d in defaults if isinstance(d, str) and d != "_self_"), None)

    def schema(option: str, depth: int = 0) -> str:  # variants extend another option's yaml
        parent = parents.get(option)
        if parent is None or depth > 10:
            return option
        return parent[len("base_"):] if parent.startswith("base_") else schema(parent, depth + 1)

    return {option: schema(option) for option in parents}
