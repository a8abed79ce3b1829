"""The method class comes from the registry, not the YAML's `_target_`, and nothing a committed run is
matched by moved: distill_key/result_key and the profile's scaling are the values recorded on the code
before the registry owned the class (identities_before_registry.json: every method option x profile
cpu|smoke on cifar10_jpeg IPC 1, pruning options with DC/DM/IDC, every backbone with DM on digits).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dfdistill.schema.options import CONF_DIR
from dfdistill.config.resolve import distill_key, method_class, method_identity, resolve_config, result_key
from dfdistill.core.errors import ConfigError
from dfdistill.core.registry import METHODS

BEFORE = json.loads((Path(__file__).parent / "identities_before_registry.json").read_text())

# conf/method/*.yaml's `_target_` before it was dropped (variants inherited their parent's).
YAML_TARGETS = {
    "dc": "dfdistill.methods.dc.DC", "dsa": "dfdistill.methods.dc.DSA", "dm": "dfdistill.methods.dm.DM",
    "dfcolearn": "dfdistill.methods.dfcolearn.DFCoLearn",
    "dfcolearn_distill_only": "dfdistill.methods.dfcolearn.DFCoLearn",
    "dfcolearn_filter_only": "dfdistill.methods.dfcolearn.DFCoLearn",
    "dfcolearn_filter_then_distill": "dfdistill.methods.dfcolearn.DFCoLearn",
    "dfcolearn_random": "dfdistill.methods.dfcolearn.DFCoLearn",
    "edd": "dfdistill.methods.edd.EDD", "edd_dsa": "dfdistill.methods.edd.EDD",
    "herding": "dfdistill.methods.coreset.Herding", "kcenter": "dfdistill.methods.coreset.KCenter",
    "random": "dfdistill.methods.coreset.RandomSubset", "idc": "dfdistill.methods.idc.IDC",
    "idm": "dfdistill.methods.idm.IDM", "mtt": "dfdistill.methods.mtt.MTT", "rfad": "dfdistill.methods.rfad.RFAD",
    "tesla": "dfdistill.methods.tesla.TESLA", "whole": "dfdistill.methods.whole.Whole",
}
CELL = ["dataset=cifar10_jpeg", "ipc=1"]


@pytest.fixture
def resolved(compose_cfg, monkeypatch):
    monkeypatch.delenv("DFDISTILL_CIFAR10_JPEG", raising=False)  # the root string is part of the identity
    return lambda overrides: resolve_config(compose_cfg(overrides))


@pytest.mark.parametrize("method,keys", [("dc", ("ae6f34a551d1d45b", "5b16708bc0ad2f4e")),
                                         ("dm", ("3775e81108c26b22", "a6446b2d571e7d08"))])
def test_dc_and_dm_keep_their_committed_keys(resolved, method, keys):
    cfg = resolved([f"method={method}", *CELL, "profile=cpu"])
    assert cfg.method._target_ is None  # the YAML no longer spells it ...
    assert (distill_key(cfg), result_key(distill_key(cfg), cfg)) == keys  # ... and the keys did not move


def test_every_method_option_hashes_the_class_path_its_yaml_spelled():
    options = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
    assert options == sorted(YAML_TARGETS)  # a new option: add its row (its registered path is its target)
    for option in options:
        assert "_target_" not in OmegaConf.load(CONF_DIR / "method" / f"{option}.yaml")
        node = {"name": option, "_target_": None}
        assert method_identity(node)["_target_"] == YAML_TARGETS[option], option


def test_a_method_target_naming_another_class_is_one_line(resolved):
    with pytest.raises(ConfigError, match=r"method.name=dc is dfdistill.methods.dc.DC but method._target_=.*DM"):
        resolved(["method=dc", *CELL, "profile=cpu", "+method._target_=dfdistill.methods.dm.DM"])
    cfg = resolved(["method=dc", *CELL, "profile=cpu", "method._target_=dfdistill.methods.dc.DC"])  # a stored config
    assert method_class(cfg) is METHODS.get("dc").obj and distill_key(cfg) == "ae6f34a551d1d45b"


FAST_SCALING = {"dc/cpu", "idc/cpu", "rfad/cpu", "mtt/smoke"}  # every kind of declared cap, in the default run


@pytest.mark.parametrize("case", [c if c in FAST_SCALING else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(BEFORE["scaled"])])
def test_profile_scaling_is_what_it_was(resolved, case):
    """apply_profile reads each method's `profile_caps`; what it changes is what the named fields gave."""
    method, profile = case.split("/")
    cfg = resolved([f"method={method}", *CELL, f"profile={profile}"])
    assert OmegaConf.to_container(cfg.provenance.profile.scaled) == BEFORE["scaled"][case]
    assert [distill_key(cfg), result_key(distill_key(cfg), cfg)] == BEFORE["keys"][case]


@pytest.mark.slow
def test_pruning_and_backbone_identities_are_what_they_were(resolved):
    for case, keys in BEFORE["keys"].items():
        if "+" in case:  # method+pruning/cpu on the cell
            (method, pruning), profile = case.split("/")[0].split("+"), case.split("/")[1]
            over = [f"method={method}", f"pruning={pruning}", *CELL, f"profile={profile}"]
        elif "@" in case:  # dm@backbone/smoke on digits
            backbone = case.split("@")[1].split("/")[0]
            over = ["method=dm", f"backbone={backbone}", "dataset=digits", "ipc=1", "profile=smoke"]
        else:
            continue
        cfg = resolved(over)
        assert [distill_key(cfg), result_key(distill_key(cfg), cfg)] == keys, case
