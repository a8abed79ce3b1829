"""Untyped OmegaConf nodes from plain data, built directly: the same objects `OmegaConf.create`
makes, at a fraction of its cost; and the way back, `to_plain`: `OmegaConf.to_container(cfg,
resolve=True, throw_on_missing=False)` read straight off the nodes.

Why: resolution turns every composed config into plain data and back into an untyped DictConfig
(`config.resolve.effective`), and `OmegaConf.create` validates and wraps node by node (~100 us a
node, ~15 ms for a run config; a table's plan resolves hundreds). For plain data (dicts with string
keys, lists, str / int / float / bool / None) there is nothing to validate or convert: every node is
an untyped container or an `AnyNode` holding the value as given. Anything else (another config
node, an enum, a dataclass, a non-string key) raises `NotPlain`, and the callers take OmegaConf's
own path. `to_plain` reads each plain value node's value as `to_container` does, and hands every
interpolation, missing or None container to OmegaConf's own code (so does any error: the message is
OmegaConf's). tests/unit/config/test_plain_nodes.py checks both against OmegaConf on real configs.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from omegaconf import AnyNode, DictConfig, ListConfig, OmegaConf
from omegaconf.base import Container, ContainerMetadata, Metadata
from omegaconf.basecontainer import BaseContainer

_LEAF = (str, int, float, bool, type(None))


class NotPlain(TypeError):
    """The value holds something `create` does not build itself (OmegaConf's path handles it)."""


def _dict_node(value: dict, parent: Optional[Union[DictConfig, ListConfig]], key: Any) -> DictConfig:
    node = DictConfig.__new__(DictConfig)
    content: dict[str, Any] = {}
    node.__dict__.update(_metadata=ContainerMetadata(ref_type=Any, object_type=dict, optional=True, key=key, flags={},
                                                     key_type=Any, element_type=Any),
                         _parent=parent, _flags_cache=None, _content=content)
    for k, v in value.items():
        if type(k) is not str:
            raise NotPlain(f"key {k!r}")
        content[k] = _node(v, node, k)
    return node


def _list_node(value: list, parent: Optional[Union[DictConfig, ListConfig]], key: Any) -> ListConfig:
    node = ListConfig.__new__(ListConfig)
    content: list[Any] = []
    node.__dict__.update(_metadata=ContainerMetadata(ref_type=Any, object_type=list, optional=True, key=key, flags={},
                                                     key_type=int, element_type=Any),
                         _parent=parent, _flags_cache=None, _content=content)
    for i, v in enumerate(value):
        content.append(_node(v, node, i))
    return node


def _node(value: Any, parent: Union[DictConfig, ListConfig], key: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _dict_node(value, parent, key)
    if kind is list:
        return _list_node(value, parent, key)
    if kind not in _LEAF:
        raise NotPlain(f"{kind.__name__} value at {key!r}")
    node = AnyNode.__new__(AnyNode)
    node.__dict__.update(_metadata=Metadata(ref_type=Any, object_type=None, optional=True, key=key, flags={}),
                         _parent=parent, _flags_cache=None, _val=value)
    return node


def create(value: dict) -> DictConfig:
    """`OmegaConf.create(value)` for a plain dict (raises NotPlain for anything else)."""
    if type(value) is not dict:
        raise NotPlain(type(value).__name__)
    return _dict_node(value, None, None)


def put(cfg: DictConfig, key: str, value: Any) -> None:
    """`cfg[key] = value` on an untyped DictConfig with no flags set (as `create` makes it), for a
    plain `value`: the node `__setitem__` would build, put at the key's place (a new key goes last).
    Anything else goes through OmegaConf (`cfg[key] = value` itself)."""
    typed = cfg._metadata.object_type is not dict or cfg._metadata.element_type is not Any
    if typed or type(key) is not str or cfg._metadata.flags or cfg._get_flag("readonly") or cfg._get_flag("struct"):
        cfg[key] = value
        return
    try:
        node = _node(value, cfg, key)
    except NotPlain:
        cfg[key] = value
        return
    cfg.__dict__["_content"][key] = node


def _untyped(node: Any) -> bool:
    """A dict node as `create` makes it: untyped, no flags of its own."""
    meta = node.__dict__.get("_metadata")
    return (type(node) is DictConfig and isinstance(node.__dict__["_content"], dict) and meta.object_type is dict
            and meta.element_type is Any and not meta.flags)


def update(cfg: DictConfig, key: str, value: Any) -> None:
    """`OmegaConf.update(cfg, key, value, force_add=True)`. A plain leaf value under a path of untyped
    dict nodes that exist, in place of nothing or of a plain value node, is `put` there; anything
    else (a dict or list value: OmegaConf merges it; typed or flagged nodes; a path to create) goes
    through OmegaConf.update itself."""
    parts = key.split(".")
    node: Any = cfg
    fast = type(value) in _LEAF and "[" not in key and all(parts) and _untyped(cfg)
    for part in parts[:-1] if fast else ():
        node = node.__dict__["_content"].get(part)
        if node is None or not _untyped(node):
            fast = False
            break
    if fast:
        old = node.__dict__["_content"].get(parts[-1])
        fast = old is None or (type(old) is AnyNode and not old._metadata.flags and not old._metadata.resolver_cache)
    if fast:  # the old node's own key object, as OmegaConf keeps it (the same pickle, memo included)
        put(node, parts[-1] if old is None else old._metadata.key, value)
    else:
        OmegaConf.update(cfg, key, value, force_add=True)


def create_or_omegaconf(value: Any) -> DictConfig:
    """`create`, or OmegaConf's own where the value is not plain data."""
    try:
        return create(value)
    except NotPlain:
        return OmegaConf.create(value)


def _plain_value(node: Any) -> Any:
    """`to_container`'s value of one child node (resolve=True, missing kept as '???')."""
    if isinstance(node, Container):
        content = node.__dict__["_content"]
        if isinstance(content, dict):
            return {k: _plain_value(v) for k, v in content.items()}
        if isinstance(content, list):
            return [_plain_value(v) for v in content]
    else:
        value = node.__dict__["_val"]
        if not (isinstance(value, str) and "${" in value):  # not (possibly) an interpolation
            return value
    node = node._dereference_node()  # OmegaConf's own reading of everything else
    if isinstance(node, Container):
        return BaseContainer._to_content(node, resolve=True, throw_on_missing=False)
    return node._value()


def to_plain(cfg: DictConfig) -> Any:
    """`OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)`, faster."""
    try:
        if isinstance(cfg.__dict__["_content"], dict):
            return {k: _plain_value(v) for k, v in cfg.__dict__["_content"].items()}
    except Exception:  # noqa: BLE001 - OmegaConf's own conversion raises its own message
        pass
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
