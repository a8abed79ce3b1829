"""The evaluation protocol: schedule, epoch count, resolution rules, and that training learns."""

import torch
from omegaconf import OmegaConf

from dfdistill.config.schema import EvalConfig
from dfdistill.data.augment import build_augment
from dfdistill.data.real import RealData
from dfdistill.evaluation.protocol import (
    ResolvedEval, evaluate_set, lr_at_epoch, num_train_epochs, resolve_eval,
)


def test_half_schedule_matches_reference_loop():
    ev = ResolvedEval(epochs=10, lr=0.01)
    # reference: epochs 0..10 (11 epochs); lr x0.1 after finishing epoch 10//2+1 = 6
    assert num_train_epochs(ev) == 11
    lrs = [lr_at_epoch(ev, e) for e in range(11)]
    assert lrs[:7] == [0.01] * 7
    assert all(abs(l - 0.001) < 1e-12 for l in lrs[7:])


def test_multistep_schedule_idc():
    ev = ResolvedEval(epochs=12, lr=0.01, schedule="multistep", milestones=[2 / 3, 5 / 6], lr_decay=0.2)
    assert num_train_epochs(ev) == 12
    assert lr_at_epoch(ev, 7) == 0.01
    assert abs(lr_at_epoch(ev, 8) - 0.002) < 1e-12
    assert abs(lr_at_epoch(ev, 10) - 0.0004) < 1e-12


def test_resolve_epochs_rule_and_learned_lr():
    ecfg = OmegaConf.structured(EvalConfig)
    assert resolve_eval(ecfg, "dsa", None, "crop").epochs == 1000
    assert resolve_eval(ecfg, "none", None, "crop").epochs == 300
    assert resolve_eval(ecfg, "dsa", 0.03, "crop").lr == 0.03
    assert resolve_eval(ecfg, "dsa", None, "crop").lr == 0.01


def test_training_on_separable_data_beats_chance():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 1, 4, 4, generator=g) * 3
    y = torch.arange(3).repeat_interleave(10)
    x = centers[y] + 0.1 * torch.randn(30, 1, 4, 4, generator=g)
    test = RealData(x.clone(), y.clone(), 3, ["a", "b", "c"], (0.0,), (1.0,))

    def factory(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))

    ev = ResolvedEval(epochs=20, lr=0.1, num_eval=2, batch_size=8, aug="none")
    accs = evaluate_set(x, y, test, factory, ev, build_augment("none"), seed=0, progress=False)
    assert len(accs) == 2 and min(accs) > 0.9
