"""GPU options as config values: applied where they belong, ignored on a CPU where they mean nothing;
memory settings are config values outside a run's identity; one device generator per device."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dfdistill.config.resolve import identity
from dfdistill.data.augment import build_augment
from dfdistill.core.errors import ConfigError
from dfdistill.evaluation.protocol import ResolvedEval, train_network
from dfdistill.engine.memory import memory_config
from dfdistill.models.factory import make_model_factory
from dfdistill.engine.runtime import GPUConfig, configure_gpu, configure_runtime, gpu_options, gpu_settings, reseeded_generator
from dfdistill.engine.training import train_epochs


class Recorder(nn.Module):
    """A tiny classifier that records, per forward, whether bf16 autocast was active."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, 2)
        self.seen: list[bool] = []

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return self.lin(self.embed(x))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 4, 4, generator=g), torch.tensor([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("bf16", [False, True])
def test_autocast_in_evaluation_and_expert_training(bf16):
    x, y = _data()
    ev = ResolvedEval(epochs=1, lr=0.01, batch_size=4, aug="none")
    with gpu_settings(bf16=bf16):
        m = Recorder()
        train_network(m, x, y, ev, None, seed=0)
        assert m.seen and all(s == bf16 for s in m.seen)
        m = Recorder()
        train_epochs(m, x, y, 1, batch_size=4, amp=True)  # expert trajectories pass amp=True
        assert m.seen and all(s == bf16 for s in m.seen)
        m = Recorder()
        train_epochs(m, x, y, 1, batch_size=4)  # other callers (DC's inner loop, scoring trials): never
        assert m.seen and not any(m.seen)


def test_dm_embeddings_under_autocast_keep_the_input_dtype():
    from dfdistill.methods.dm import embed_classes

    m = Recorder()
    x = torch.randn(2, 3, 3, 4, 4)
    with gpu_settings(bf16=True):
        e = embed_classes(m, x)
    assert e.shape == (6, 48) and e.dtype == torch.float32


@pytest.mark.parametrize("on", [False, True])
def test_channels_last_from_the_model_factory(on):
    bcfg = OmegaConf.create({"name": "convnet", "width": 4, "depth": 2})
    shape = type("S", (), {"channels": 3, "num_classes": 2, "image_size": 8})
    with gpu_settings(channels_last=on):
        net = make_model_factory(bcfg, shape, torch.device("cpu"))(0)
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == on
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_cuda_only_switches_are_ignored_on_cpu(caplog):
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    old = gpu_options()
    try:
        assert configure_gpu(GPUConfig(cudnn_benchmark=True, tf32=True), torch.device("cpu")) == ["cudnn_benchmark", "tf32"]
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before
        with caplog.at_level(logging.INFO, logger="dfdistill"):
            configure_runtime(OmegaConf.create({"gpu": {"tf32": True}, "memory": {"class_chunk": 3}}), torch.device("cpu"))
        lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert len(lines) == 1 and "gpu.tf32" in lines[0]
        assert memory_config().class_chunk == 3
    finally:
        configure_runtime(OmegaConf.create({}), torch.device("cpu"))
        configure_gpu(old, torch.device("cpu"))
    assert memory_config().class_chunk is None


def test_memory_is_config_but_not_identity(resolved):
    a = resolved(["method=dm"])
    b = resolved(["method=dm", "memory.class_chunk=2", "memory.cpu_budget_mb=64"])
    c = resolved(["method=dm", "gpu.bf16=true"])
    assert b.memory.class_chunk == 2 and identity(a) == identity(b)
    assert identity(a) != identity(c)  # bf16 changes the numbers: a different run


@pytest.mark.parametrize("bad,key", [("memory.class_chunk=0", "memory.class_chunk"),
                                     ("memory.device_memory_fraction=1.5", "memory.device_memory_fraction")])
def test_bad_memory_values_are_one_line_errors(resolved, bad, key):
    with pytest.raises(ConfigError, match=key):
        resolved(["method=dm", bad])


def test_one_generator_per_device_reseeded():
    g1 = reseeded_generator(torch.device("cpu"), 5)
    a = torch.rand(3, generator=g1)
    g2 = reseeded_generator(torch.device("cpu"), 5)
    assert g1 is g2 and torch.equal(a, torch.rand(3, generator=g2))
    aug, x = build_augment("dsa"), torch.randn(4, 3, 8, 8)
    assert torch.equal(aug(x, seed=11, siamese=True), aug(x, seed=11, siamese=True))
