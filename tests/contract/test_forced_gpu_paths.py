"""The code paths a GPU run takes by default, run on the CPU by forcing them (issue 22, item 5).

On CUDA `ensemble=auto` trains networks together (experts, scoring trials, evaluation nets), gradient
matching takes the vmapped per-class path, host-stored splits go through a staging buffer and an
asynchronous copy, and `gpu.bf16` puts the first-order parts under autocast. On this CPU none of
that runs unless forced, so a GPU-only bug would first show on a GPU. Each method here builds the
pipeline's context at profile=smoke on digits and runs `prepare` (expert training etc.),
`init_state` and one `step`, once with the CPU defaults and once with each forced variant:

- `cuda`: ensemble=on + method.vmap_on_cpu (gradient-matching methods) + the staged gather
  (unpinned: pinning needs CUDA). Same maths, other summation order: the synthetic set's change
  over the step agrees within rtol 1e-3 of its largest entry (`TIGHT`).
- `bf16`: gpu.bf16 autocast (bfloat16 keeps 8 bits of mantissa). The change agrees within 25 % of
  its largest entry (DM's gradient is a difference of two bf16 mean embeddings: measured 13 %) and
  the loss within 5 % (`LOOSE`); selection methods pick at least half the
  same images (a bf16 score can reorder near-ties).

The evaluation networks under ensemble=on are compared in tests/unit/evaluation/test_ensemble.py. A few methods
run in the default suite (one per path: DC vmapped matching + staging, DM bf16 embeddings, MTT
batched experts, random selection); the others are @slow."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import torch

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.bench.harness import build_setup, make_distiller
from dfdistill.config.compose import compose_run_config
from dfdistill.data import real as real_mod
from dfdistill.data import storage
from dfdistill.engine.runtime import gpu_settings, seed_everything
from dfdistill.engine.training import configure_ensemble

from conftest import ROOT
METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))
FAST = {"dc", "dm", "mtt", "random"}
TIGHT = 1e-3  # forced CUDA defaults: |change_forced - change_cpu| <= TIGHT * max|change_cpu| (+ 1e-6)
LOOSE = 0.25  # bf16 autocast: same form, 25 % (DM: a difference of two bf16 mean embeddings); loss within 5 %
SMALL = ["logger=none", "profile=smoke", "dataset=digits", "ipc=1", "device=cpu", "compile=off", "ensemble=auto",
         "profile.max_train_per_class=10", "profile.max_test=20", "profile.num_eval=2", "profile.eval_epochs=1",
         "profile.expert_train_epochs=1"]


@contextmanager
def _staged_storage():
    """Every batch gather goes through the staging buffer + asynchronous copy (host storage's CUDA path)."""
    orig = real_mod.gather
    real_mod.gather = lambda store, idx, device: storage.staged_gather(store, idx, device, pin=torch.cuda.is_available())
    try:
        yield
    finally:
        real_mod.gather = orig


def _outcome(setup, tmp: Path, variant: str) -> dict:
    """(synthetic set before, after one step, the step's loss) under `variant` (cpu | cuda | bf16)."""
    ctx = dataclasses.replace(setup.ctx, cache=ArtifactCache(tmp / variant))  # experts/scores trained anew
    s = dataclasses.replace(setup, ctx=ctx)
    changes = {"vmap_on_cpu": True} if variant == "cuda" and hasattr(setup.mcfg, "vmap_on_cpu") else {}
    with ExitStack() as stack:
        old = configure_ensemble("on" if variant == "cuda" else "off")
        stack.callback(configure_ensemble, old)
        if variant == "cuda":
            stack.enter_context(_staged_storage())
        if variant == "bf16":
            stack.enter_context(gpu_settings(bf16=True))
        seed_everything(0)
        d = make_distiller(s, False, **changes)
        before = d.train_set()[0].clone()
        loss = float(d.step(0)["loss"]) if d.iterations > 0 else None
        after = d.train_set()[0].clone()
    return {"before": before, "after": after, "loss": loss, "steps": d.iterations > 0}


def _setup(method: str, tmp: Path):
    cfg = compose_run_config([*SMALL, f"method={method}"])
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.output_dir, cfg.progress, cfg.cache_dir = str(tmp / "run"), False, str(tmp / "cache")
    return build_setup(cfg, tmp / "run")


def _assert_close(cpu: dict, forced: dict, tol: float, what: str) -> None:
    d_cpu, d_forced = cpu["after"] - cpu["before"], forced["after"] - forced["before"]
    assert torch.equal(cpu["before"], forced["before"]) or tol > TIGHT, f"{what}: different starting set"
    scale = float(d_cpu.abs().max())
    err = float((d_forced - d_cpu).abs().max())
    assert err <= tol * scale + 1e-6, f"{what}: change differs by {err:.3g} (largest change {scale:.3g})"


@pytest.mark.parametrize("method", [pytest.param(m, marks=() if m in FAST else pytest.mark.slow) for m in METHODS])
def test_forced_cuda_paths_match_the_cpu_default(method, tmp_path):
    setup = _setup(method, tmp_path)
    cpu = _outcome(setup, tmp_path, "cpu")
    cuda = _outcome(setup, tmp_path, "cuda")
    bf16 = _outcome(setup, tmp_path, "bf16")
    if not cpu["steps"]:  # a selection method: the chosen images
        assert torch.allclose(cuda["after"], cpu["after"], rtol=TIGHT, atol=1e-6)
        same = (bf16["after"].flatten(1)[:, None] - cpu["after"].flatten(1)[None]).abs().amax(2).min(1).values < 1e-3
        assert same.float().mean() >= 0.5, f"bf16 picked {int(same.sum())} of {len(same)} same images"
        return
    _assert_close(cpu, cuda, TIGHT, f"{method} ensemble/vmap/staged")
    assert cuda["loss"] == pytest.approx(cpu["loss"], rel=TIGHT, abs=1e-6)
    _assert_close(cpu, bf16, LOOSE, f"{method} bf16")
    assert bf16["loss"] == pytest.approx(cpu["loss"], rel=0.05, abs=1e-4)


def test_staged_gather_equals_the_direct_gather():
    store = torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8)
    idx = torch.tensor([5, 0, 11, 5])
    out = storage.staged_gather(store, idx, torch.device("cpu"), pin=False)
    assert out.dtype == torch.uint8 and torch.equal(out, store[idx])


@pytest.mark.parametrize("method, paths", [("dc", ("staged", "vmap")),
                                           pytest.param("mtt", ("batched",), marks=pytest.mark.slow)])
def test_forcing_really_switches_the_paths(method, paths, tmp_path, monkeypatch):
    """The forced variant takes the staged gather, the vmapped matching and batched networks (else the
    test above proves nothing); the CPU default takes none of them."""
    from dfdistill.engine import training
    from dfdistill.methods import dc as dc_mod

    setup = _setup(method, tmp_path)
    calls = {"staged": 0, "vmap": 0, "batched": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(storage, "staged_gather", counting("staged", storage.staged_gather))
    monkeypatch.setattr(dc_mod, "batched_gradient_distance", counting("vmap", dc_mod.batched_gradient_distance))
    group = training.NetGroup

    class CountingGroup(group):  # type: ignore[misc, valid-type]
        def __init__(self, models, batched=False, **k):
            calls["batched"] += bool(batched) and len(models) > 1
            super().__init__(models, batched=batched, **k)

    monkeypatch.setattr(training, "NetGroup", CountingGroup)
    _outcome(setup, tmp_path, "cpu")
    assert calls == {"staged": 0, "vmap": 0, "batched": 0}
    _outcome(setup, tmp_path, "cuda")
    assert all(calls[p] > 0 for p in paths), calls
