"""Networks trained together as one batched model end where each would alone (evaluation protocol,
scoring trials, expert trajectories): same maths, seeds, data order, augmentation and schedule."""

from __future__ import annotations

import pytest
import torch

from dfdistill.data.augment import build_augment
from dfdistill.data.real import RealData
from dfdistill.evaluation.protocol import (
    ResolvedEval, eval_schedule, evaluate_set, group_accuracies, num_train_epochs, train_network,
)
from dfdistill.evaluation.protocol import test_accuracy as accuracy_of
from dfdistill.models import build_model
from dfdistill.engine.training import NetGroup, configure_ensemble, train_group

C, H = 4, 16


def _data(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(C, 3, H, H, generator=g)
    y = torch.arange(C).repeat_interleave(n_per_class)
    return centers[y] + 0.5 * torch.randn(len(y), 3, H, H, generator=g), y


def _factory(norm: str = "instancenorm"):
    def make(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model("convnet", 3, C, H, width=8, depth=2, norm=norm)

    return make


def _test_set() -> RealData:
    x, y = _data(6, 99)
    return RealData(x, y, C, [str(c) for c in range(C)], (0.0,) * 3, (1.0,) * 3)


PROTOCOLS = {
    # DC/DSA/DM: half schedule (lr x0.1 and a fresh optimizer after epoch E//2+1 = 3), no/DSA augmentation
    "dc": dict(epochs=5, lr=0.01, batch_size=8, aug="none"),
    "dsa": dict(epochs=5, lr=0.01, batch_size=8, aug="dsa", aug_strategy="color_crop_cutout_flip_scale_rotate"),
    # IDC: MultiStep x0.2 at 2/3 and 5/6, IDC DiffAug, CutMix with p = 0.5
    "idc": dict(epochs=6, lr=0.01, batch_size=8, schedule="multistep", aug="idc",
                aug_strategy="color_crop_flip_scale_rotate", cutmix_prob=0.5),
}


def _close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip([*a.named_parameters(), *a.named_buffers()], [*b.parameters(), *b.buffers()]):
        assert torch.allclose(p.float(), q.float(), rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm"])
def test_batched_networks_end_where_each_alone_ends(protocol, norm):
    ev = ResolvedEval(num_eval=3, **PROTOCOLS[protocol])
    aug = build_augment(ev.aug, ev.aug_strategy)
    x, y = _data(5, 0)  # 20 images, batches of 8: two full and one partial per epoch
    seeds = [11, 12, 13]
    make = _factory(norm)
    alone = [train_network(make(s), x, y, ev, aug, seed=s) for s in seeds]
    group = NetGroup([make(s) for s in seeds], batched=True)
    together = train_group(group, x, y, num_train_epochs(ev), eval_schedule(ev),
                           [torch.Generator().manual_seed(s) for s in seeds], ev.batch_size, aug)
    for a, b in zip(alone, together):
        _close(a, b)
    test = _test_set()
    assert group_accuracies(group, test, 7) == [accuracy_of(m, test, 7) for m in alone]


def test_evaluate_set_gives_the_same_accuracies_with_and_without_ensembles():
    ev = ResolvedEval(num_eval=2, **PROTOCOLS["dsa"])
    aug = build_augment(ev.aug, ev.aug_strategy)
    x, y = _data(3, 1)
    old = configure_ensemble("off")
    try:
        one_by_one = evaluate_set(x, y, _test_set(), _factory(), ev, aug, seed=3, progress=False)
        configure_ensemble("on")
        together = evaluate_set(x, y, _test_set(), _factory(), ev, aug, seed=3, progress=False)
    finally:
        configure_ensemble(old)
    assert together == one_by_one


def test_ensemble_setting_is_checked_and_auto_is_cuda_only():
    from dfdistill.core.errors import ConfigError
    from dfdistill.engine.training import ensemble_enabled

    old = configure_ensemble("auto")
    try:
        assert not ensemble_enabled(torch.device("cpu")) and ensemble_enabled(torch.device("cuda"))
        assert configure_ensemble(True) == "auto" and ensemble_enabled(torch.device("cpu"))
        with pytest.raises(ConfigError, match="auto|on|off"):
            configure_ensemble("sometimes")
    finally:
        configure_ensemble(old)


def test_expert_trajectories_are_the_same_trained_together(tmp_path):
    from dfdistill.core.artifacts import ArtifactCache
    from dfdistill.methods.base import DistillContext
    from dfdistill.methods.experts import ExpertSettings, train_experts

    x, y = _data(6, 2)
    real = RealData(x, y, C, [str(c) for c in range(C)], (0.0,) * 3, (1.0,) * 3)
    ctx = DistillContext(real=real, ipc=1, model_factory=_factory(), augment=build_augment("dsa"),
                         device=torch.device("cpu"), seed=0, cache=ArtifactCache(tmp_path), out_dir=tmp_path,
                         progress=False)
    settings = ExpertSettings(num_experts=3, train_epochs=3, batch_train=10)
    old = configure_ensemble("off")
    try:
        alone = train_experts(ctx, settings, [0, 1, 2])
        configure_ensemble("on")
        together = train_experts(ctx, settings, [0, 1, 2])
    finally:
        configure_ensemble(old)
    assert all(t.shape == (4, alone[0].shape[1]) for t in together)
    for a, b in zip(alone, together):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])


def test_scoring_trials_are_the_same_trained_together():
    from dfdistill.scoring.empirical import ScoringConfig, compute_scores

    x, y = _data(6, 3)
    real = RealData(x, y, C, [str(c) for c in range(C)], (0.0,) * 3, (1.0,) * 3)
    scfg = ScoringConfig(trials=3, epochs=[1, 2], train_epochs=2, batch_size=10)
    old = configure_ensemble("off")
    try:
        alone = compute_scores(real, _factory(), scfg, seed=1)
        configure_ensemble("on")
        together = compute_scores(real, _factory(), scfg, seed=1)
    finally:
        configure_ensemble(old)
    assert torch.allclose(alone, together, rtol=1e-4, atol=1e-5)
