"""The run identities of existing configs, pinned to the hex keys the code computed before the config
became one typed object (issue 23). Committed results, checkpoints and caches are found by these keys,
so a refactor that changes one byte of them orphans every stored run: this test must keep passing."""

from __future__ import annotations

import pytest

from dfdistill.core.artifacts import config_key
from dfdistill.config.resolve import distill_key, eval_identity, identity, resolve_config, resolve_run, result_key

C10 = ["dataset=cifar10_jpeg", "profile=cpu"]
PINS = {  # name: (overrides, distill_key, result_key of its own set, result_key of the set "0123abcd", eval_identity)
    "dc_c10": (["method=dc", *C10, "ipc=1"],
               "ae6f34a551d1d45b", "5b16708bc0ad2f4e", "562770353e961595", "8f2bbecb1badd235"),
    "dc_c10_loss": (["method=dc", *C10, "ipc=1", "pruning=loss", "pruning.ratio=0.5"],
                    "7460926bae2a2c4c", "8c05f5f1772973e1", "e4d9c83f47bdb087", "ed6fe1968701e178"),
    "dm_c10": (["method=dm", *C10, "ipc=1"],
               "3775e81108c26b22", "a6446b2d571e7d08", "dce29aedb9e8fa1c", "18f12fc154081d52"),
    "dm_c10_loss": (["method=dm", *C10, "ipc=1", "pruning=loss", "pruning.ratio=0.5"],
                    "084d9a49a6d435cc", "f0a614947ca31b06", "c3c89e4f219d65ec", "3945f673840012a1"),
    "dsa_c10": (["method=dsa", *C10, "ipc=10"],
                "569496c8277a876b", "d581dec4614c4eb7", "40ff940ac944adcf", "5e17ee972fa7e46a"),
    "digits": ([], "bd03f8145c3fa51c", "e8bb7a617d91f7e4", "b999e9e2ae7b0ab2", "513ec84d106b7130"),
    "dc_digits_ite": (["method=dc", "pruning=ite", "profile=smoke"],
                      "859ee20fc22fe4c4", "a7f335fffc9c0da0", "9fe737e0639c8071", "626fc19357aa7421"),
    "mtt_digits": (["method=mtt", "profile=smoke"],
                   "9fc28bc558fdfad5", "d1705280ac9076e1", "b570c9112e8998a4", "ecd07ceeadae4f06"),
}


@pytest.mark.parametrize("name", sorted(PINS))
def test_identity_keys_are_pinned(name, compose_cfg, monkeypatch):
    monkeypatch.delenv("DFDISTILL_CIFAR10_JPEG", raising=False)  # the root is part of the identity
    overrides, dk, rk, rk_set, ev = PINS[name]
    cfg = resolve_config(compose_cfg(overrides))
    assert distill_key(cfg) == config_key(identity(cfg)) == dk
    assert result_key(dk, cfg) == rk
    assert result_key("0123abcd", cfg) == rk_set
    assert config_key(eval_identity(cfg)) == ev


@pytest.mark.parametrize("name", ["dc_c10_loss", "digits"])
def test_resolved_run_carries_the_same_keys(name, compose_cfg, monkeypatch):
    """The keys a run computes once (ResolvedRun) are the pinned ones; a saved set's key replaces the
    distillation's as the set a stage=eval result belongs to."""
    monkeypatch.delenv("DFDISTILL_CIFAR10_JPEG", raising=False)
    overrides, dk, rk, rk_set, _ = PINS[name]
    run = resolve_run(compose_cfg(overrides))
    assert (run.distill_key, run.set_key, run.result_key) == (dk, dk, rk)
    assert config_key(run.identity) == dk
    assert resolve_run(compose_cfg(overrides), set_key="0123abcd").result_key == rk_set
