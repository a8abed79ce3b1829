"""The kept compositions of dfdistill.config.compose equal a fresh Hydra composition, byte for byte,
errors included, and no caller sees another caller's edits."""

from __future__ import annotations

import shutil

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ValidationError

import dfdistill.config.compose as composing
from dfdistill.config.compose import compose_run_config
from conftest import CONF


def _fresh(overrides: list[str], conf=CONF):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf)):
            cfg = compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.cli_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    return cfg


def _outcome(fn, overrides):
    try:
        cfg = fn(overrides)
    except Exception as exc:  # noqa: BLE001 - the error is part of what must agree
        return f"{type(exc).__name__}: {exc}"
    return OmegaConf.to_yaml(cfg), OmegaConf.is_struct(cfg)


CASES = [
    ["logger=none", "ipc=1", "method.iterations=3"],
    ["ipc=2", "dataset=cifar10", "dataset.root=/x", "+exp=bilp_tab1", "method=dc"],
    ["~seed"],
    ["+method.extra=1"],
    ["++ipc=4", "eval.cross_arch=[convnet,mlp]", "memory={class_chunk: 2}"],
    ["ipc=1", "hydra.job.name=x"],
    ["method=dc", "method.iterations=lots"],  # wrong type
    ["+ipc=3"],  # appending an existing key
    ["nope=1"],  # unknown key
    ["dataset=nonexistent"],
]


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) for c in CASES])
def test_kept_composition_equals_hydras(overrides):
    want = _outcome(_fresh, overrides)
    assert _outcome(compose_run_config, overrides) == want
    assert _outcome(compose_run_config, overrides) == want  # the second call is served from the kept one


def test_each_caller_gets_its_own_copy_with_the_schema_types():
    first = compose_run_config(["logger=none", "ipc=1"])
    first.method.iterations = 12345
    with open_dict(first):
        first.extra = 1
    second = compose_run_config(["logger=none", "ipc=1"])
    assert second.method.iterations != 12345 and "extra" not in second
    with pytest.raises(ValidationError):
        second.method.iterations = "lots"  # the structured schema still checks assignments
    assert OmegaConf.is_struct(second)


def test_an_edited_yaml_is_composed_afresh(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    monkeypatch.setattr(composing, "CONF_DIR", conf)
    assert compose_run_config(["ipc=1"]).seed == 0
    text = (conf / "config.yaml").read_text()
    (conf / "config.yaml").write_text(text.replace("\nseed: 0\n", "\nseed: 7\n"))
    assert compose_run_config(["ipc=1"]).seed == 7 == _fresh(["ipc=1"], conf).seed
