"""Compositions with Hydra's per-composition repository copy and YAML parsing skipped
(dfdistill/config/hydra_reuse.py) are the compositions Hydra makes without the shortcut: the same
nodes, node types, metadata and values."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig

from dfdistill.config import compose, hydra_reuse

CASES = [
    ["+exp=bilp_fig2", "profile=full", "dataset=cifar100", "method=mtt", "pruning=loss"],
    ["method=dc", "dataset=digits", "ipc=1"],
    ["method=dm", "hydra.searchpath=[file:///nonexistent_dfdistill_dir]"],  # the sources change: copied first
]


def nodes(cfg: Any, path: str = "") -> list[tuple]:
    """Every node: its path, type, metadata (less the resolver cache: `${now:}` values) and value."""
    meta = {k: v for k, v in vars(cfg._metadata).items() if k != "resolver_cache"}
    out = [(path, type(cfg).__name__, repr(meta), repr(cfg.__dict__.get("_val")))]
    content = cfg.__dict__.get("_content")
    if isinstance(cfg, DictConfig) and isinstance(content, dict):
        for key, child in content.items():
            out += nodes(child, f"{path}.{key}")
    elif isinstance(cfg, ListConfig) and isinstance(content, list):
        for i, child in enumerate(content):
            out += nodes(child, f"{path}[{i}]")
    return out


@pytest.mark.filterwarnings("ignore:provider=hydra.searchpath")
@pytest.mark.parametrize("overrides", CASES)
def test_a_composition_is_hydras(overrides, monkeypatch) -> None:
    compose.compose_run_config([])  # the schemas registered, Hydra's plugins scanned
    compose._compose(overrides, True)  # the files' parses kept
    assert hydra_reuse._parsed
    fast = compose._compose(overrides, True)
    with monkeypatch.context() as m:
        m.setattr(hydra_reuse, "reused", contextlib.nullcontext)
        plain = compose._compose(overrides, True)
    assert nodes(fast) == nodes(plain)


def test_an_edited_file_is_parsed_again(tmp_path, monkeypatch) -> None:
    """Kept parses are keyed by the file's size and time: an edit is read."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("a: 1\n")
    monkeypatch.setattr(compose, "CONF_DIR", conf)
    assert compose._compose([], False).a == 1
    (conf / "config.yaml").write_text("a: 22\n")
    assert compose._compose([], False).a == 22
