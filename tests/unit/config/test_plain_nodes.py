"""dfdistill/config/plain_nodes.py builds the very objects OmegaConf builds (compared through their
pickles: every node's type, metadata, parent link and value), and a resolution through it is the
resolution OmegaConf's own path gives, to the byte."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from dfdistill.config import plain_nodes, resolve
from dfdistill.config.compose import compose_run_config

EDGES: dict[str, Any] = {
    "int": 1, "float": 0.5, "bool": True, "none": None, "text": "x", "missing": "???", "interp": "${int}",
    "nested": {"list": [1, {"deep": None}, [2.5, "y"]], "empty_list": [], "empty_dict": {}},
}


def same_objects(a: DictConfig, b: DictConfig) -> bool:
    return type(a) is type(b) and pickle.dumps(a) == pickle.dumps(b)


def test_create_builds_what_omegaconf_builds() -> None:
    made = plain_nodes.create(EDGES)
    assert same_objects(made, OmegaConf.create(EDGES))
    assert made.nested.list[1].deep is None and made.interp == 1 and OmegaConf.is_missing(made, "missing")
    made.nested.list.append(3)  # a working ListConfig, parent links included
    assert OmegaConf.to_container(made, resolve=True)["nested"]["list"][-1] == 3


@pytest.mark.parametrize("bad", [{1: "int key"}, {"a": OmegaConf.create({"b": 1})}, {"a": (1, 2)}, ["a list"]])
def test_anything_not_plain_is_refused_and_left_to_omegaconf(bad) -> None:
    with pytest.raises(plain_nodes.NotPlain):
        plain_nodes.create(bad)
    if isinstance(bad, dict) and all(isinstance(k, str) for k in bad):
        assert same_objects(plain_nodes.create_or_omegaconf(bad), OmegaConf.create(bad))


def test_put_sets_what_setitem_sets_new_key_last_old_key_in_place() -> None:
    mine, theirs = OmegaConf.create(EDGES), OmegaConf.create(EDGES)
    for key, value in (("added", {"a": [1, {"b": "c"}]}), ("int", {"now": "a dict"}), ("text", None)):
        plain_nodes.put(mine, key, value)
        theirs[key] = value
    assert same_objects(mine, theirs) and list(mine) == list(theirs)


def test_put_leaves_flagged_or_typed_configs_to_omegaconf() -> None:
    """A struct config refuses a new key as OmegaConf does (put must not slip it in)."""
    cfg = OmegaConf.create({"a": 1})
    OmegaConf.set_struct(cfg, True)
    with pytest.raises(Exception):
        plain_nodes.put(cfg, "b", 2)


def resolved_both_ways(overrides: list[str], monkeypatch, out_dir: str) -> tuple[DictConfig, DictConfig]:
    composed = compose_run_config(overrides)
    with open_dict(composed):  # as sweep planning and run.py give it (not Hydra's run-dir interpolation)
        composed.output_dir = out_dir
    fast, _ = resolve.effective(composed)
    with monkeypatch.context() as m:  # OmegaConf's own create, setitem and update in their place
        m.setattr(plain_nodes, "create_or_omegaconf", OmegaConf.create)
        m.setattr(plain_nodes, "put", lambda cfg, key, value: cfg.__setitem__(key, value))
        m.setattr(plain_nodes, "update", lambda cfg, key, value: OmegaConf.update(cfg, key, value, force_add=True))
        slow, _ = resolve.effective(composed)
    return fast, slow


@pytest.mark.parametrize("overrides", [
    ["+exp=bilp_fig2", "profile=full", "dataset=cifar10", "method=mtt", "ipc=10", "pruning=loss", "pruning.ratio=0.5"],
    ["+exp=bilp_tab3", "profile=full", "dataset=tinyimagenet", "method=idc", "ipc=1"],
])
def test_a_resolution_is_the_one_omegaconfs_own_nodes_give(overrides, monkeypatch, tmp_path) -> None:
    fast, slow = resolved_both_ways(overrides, monkeypatch, str(tmp_path))
    assert same_objects(fast, slow)
    assert resolve.distill_key(fast) == resolve.distill_key(slow)


def same_plain(cfg: DictConfig) -> bool:
    """to_plain gives to_container's data: values, their types, key order."""
    return pickle.dumps(plain_nodes.to_plain(cfg)) == pickle.dumps(
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def test_to_plain_reads_what_to_container_reads() -> None:
    cfg = OmegaConf.create({**EDGES, "alias": "${nested}", "in_text": "a ${text} b", "gone": None,
                            "escaped": "\\${int}", "none_node": {"x": "${none}"}})
    cfg.boxed = OmegaConf.create({"x": 1})
    assert same_plain(cfg)
    assert plain_nodes.to_plain(cfg)["alias"] == OmegaConf.to_container(cfg, resolve=True)["nested"]


def test_to_plain_leaves_an_error_to_omegaconf() -> None:
    cfg = OmegaConf.create({"a": "${does.not.exist}"})
    with pytest.raises(Exception) as mine:
        plain_nodes.to_plain(cfg)
    with pytest.raises(Exception) as theirs:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("overrides", [
    ["+exp=bilp_fig2", "profile=full", "dataset=tinyimagenet", "method=mtt", "ipc=10", "pruning=loss"],
    ["+exp=edd_tinyimagenet", "profile=full"],
    ["+exp=bilp_tab4", "profile=full", "method=idc", "dataset=svhn", "ipc=50", "pruning=bilp", "method.factor=3"],
])
def test_to_plain_of_typed_composed_and_resolved_configs(overrides, tmp_path) -> None:
    composed = compose_run_config(overrides)
    with open_dict(composed):
        composed.output_dir = str(tmp_path)
    assert same_plain(composed)  # schema-typed nodes, interpolations, ???
    resolved = resolve.resolve_config(composed)
    assert same_plain(resolved)
    for group in resolve.GROUPS:  # a group alone (validation's cache key), interpolations read from the root
        assert same_plain(composed[group]) and same_plain(resolved[group]), group
