"""The suite's shared composition (tests/conftest.py) is Hydra's composition, and its cached resolved
configs are private copies: a fast suite must not test a different config than run.py would run."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf, open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.config.resolve import resolve_config
from dfdistill.core.errors import ConfigError

from conftest import compose_config

CASES = [  # the shapes the suite composes: groups in any order, values
    ["profile=smoke", "dataset=digits", "method=idc", "eval=idc", "ipc=1", "method.batch_real=8"],
    ["method=dc", "pruning=bilp", "profile=smoke", "dataset=digits", "pruning.ratio=0.5", "backbone=convnet_d4"],
]  # +exp contexts: tests/unit/sweeps/test_plan_speed.py (slow)


@pytest.mark.parametrize("overrides", CASES, ids=["idc", "dc-bilp"])
def test_fixture_composition_equals_hydras(overrides, tmp_path):
    mine = compose_config(overrides, tmp_path)
    ref = compose_run_config(["logger=none", *overrides])
    with open_dict(ref):
        ref.output_dir, ref.progress = str(tmp_path), False
    assert OmegaConf.to_container(mine) == OmegaConf.to_container(ref)
    assert resolve_config(mine) == resolve_config(ref)


def test_a_bad_override_raises_hydras_and_our_messages(tmp_path):
    with pytest.raises(Exception, match="nope"):
        compose_config(["method=nope"], tmp_path)
    with pytest.raises(ConfigError, match="renamed to method.dis_metric"):
        compose_config(["method=idc", "method.metric=idc_l1"], tmp_path)


def test_resolved_configs_are_private_copies(resolved):
    first = resolved(["method=dm", "profile=smoke"])
    assert first.method.name == "dm" and first.profile.name == "smoke"
    first.method.lr_img = -123.0  # a test editing its copy
    again = resolved(["method=dm", "profile=smoke"])
    assert again.method.lr_img != -123.0 and again is not first
    assert again == resolve_config(compose_config(["method=dm", "profile=smoke"], again.output_dir))
