"""The config tree on disk: where `conf/` is, one group option with its defaults chain, and which
schema each method option extends. Read-only YAML access with no dependency on the rest of the
package, so every layer (models, registry, resolve) can use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dfdistill.core.errors import ConfigError
from dfdistill.core.registry import METHODS, Entry

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
SCHEMA_PREFIX = "base_"  # structured-config schemas stored beside the YAML options


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


@lru_cache(maxsize=1)
def groups() -> dict[str, list[str]]:
    """conf/<group>/ -> its selectable options (YAML files; `base_*` schemas and example dirs excluded)."""
    out = {}
    for d in sorted(CONF_DIR.iterdir()):
        if d.is_dir() and "." not in d.name:
            out[d.name] = sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith(SCHEMA_PREFIX))
    return out


def method_entry(option: str) -> Entry[type]:
    """The registered method serving a method option: its own name, or for a YAML variant such as
    dfcolearn_random the schema it extends (`- base_<name>` in its defaults chain). Here, not in the
    registry, because the variants are a fact of conf/ (this layer reads conf/, the registry does not)."""
    return METHODS.get(option if option in METHODS else method_schemas_by_option().get(option, option))
