"""The evaluation protocol: schedule, epoch count, resolution rules, and that training learns."""

import torch
from omegaconf import OmegaConf

from dfdistill.schema.groups import EvalConfig
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


def test_dc_augmentation_rules_of_the_reference():
    """DC's sets (eval_aug none) on a BatchNorm ConvNet train with DC's crop_noise for 1000 epochs
    (reference get_daparam); an explicit eval.aug wins; eval.aug=dc defaults to crop_scale_rotate (MNIST's)."""
    ecfg = OmegaConf.structured(EvalConfig)
    ev = resolve_eval(ecfg, "none", None, "color_crop", bn_convnet=True)
    assert (ev.aug, ev.aug_strategy, ev.epochs) == ("dc", "crop_noise", 1000)
    ev = resolve_eval(ecfg, "none", None, "color_crop", bn_convnet=False)
    assert (ev.aug, ev.epochs) == ("none", 300)
    ev = resolve_eval(ecfg, "dsa", None, "color_crop", bn_convnet=True)  # DSA keeps DSA on ConvNetBN
    assert (ev.aug, ev.aug_strategy) == ("dsa", "color_crop")
    explicit = OmegaConf.merge(ecfg, {"aug": "none"})
    assert resolve_eval(explicit, "none", None, "color_crop", bn_convnet=True).aug == "none"
    dc = OmegaConf.merge(ecfg, {"aug": "dc"})
    ev = resolve_eval(dc, "none", None, "color_crop")
    assert (ev.aug, ev.aug_strategy, ev.epochs) == ("dc", "crop_scale_rotate", 1000)
    assert resolve_eval(dc, "none", None, "color_crop", bn_convnet=True).aug_strategy == "crop_noise"


def test_idc_eval_strategy_follows_the_dataset_without_cutout():
    ecfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), {"aug": "idc"})
    assert resolve_eval(ecfg, "idc", None, "color_crop_cutout_flip_scale_rotate").aug_strategy == \
        "color_crop_flip_scale_rotate"
    assert resolve_eval(ecfg, "idc", None, "color_crop_cutout_scale_rotate").aug_strategy == "color_crop_scale_rotate"


def test_convnet_bn_detection_is_the_references_name():
    """get_daparam tests model_eval == 'ConvNetBN': ConvNet depth 3 with BatchNorm (any width a profile
    gives it), not a depth-4 BN ConvNet, another activation, or a BN ResNet."""
    from dfdistill.evaluation.protocol import is_convnet_bn
    from dfdistill.models import build_model

    assert is_convnet_bn(build_model("convnet", 3, 10, 32, width=8, norm="batchnorm"))
    assert not is_convnet_bn(build_model("convnet", 3, 10, 32, width=8, norm="instancenorm"))
    assert not is_convnet_bn(build_model("convnet", 3, 10, 64, width=8, depth=4, norm="batchnorm"))
    assert not is_convnet_bn(build_model("convnet", 3, 10, 32, width=8, norm="batchnorm", act="swish"))
    assert not is_convnet_bn(build_model("resnet18", 3, 10, 32, norm="batchnorm"))


def test_dc_on_mnist_follows_get_daparam_precedence(resolved):
    """DC on MNIST: crop_scale_rotate on a ConvNet, but crop_noise on ConvNetBN (get_daparam checks the
    model after the dataset); a depth-4 BN ConvNet is not 'ConvNetBN' and keeps MNIST's strategy."""
    from dfdistill.evaluation.protocol import is_convnet_bn
    from dfdistill.models import build_model

    cfg = resolved(["dataset=mnist", "dataset.root=/x", "method=dc", "ipc=1", "profile=full"])
    nets = {"convnet": build_model("convnet", 1, 10, 28, width=8),
            "convnet_bn": build_model("convnet", 1, 10, 28, width=8, norm="batchnorm"),
            "convnet_d4_bn": build_model("convnet", 1, 10, 28, width=8, depth=4, norm="batchnorm")}
    got = {name: resolve_eval(cfg.eval, "none", None, cfg.dataset.dsa_strategy, bn_convnet=is_convnet_bn(net))
           for name, net in nets.items()}
    assert {k: (v.aug, v.aug_strategy, v.epochs) for k, v in got.items()} == {
        "convnet": ("dc", "crop_scale_rotate", 1000), "convnet_bn": ("dc", "crop_noise", 1000),
        "convnet_d4_bn": ("dc", "crop_scale_rotate", 1000)}
    typed = resolved(["dataset=mnist", "dataset.root=/x", "method=dc", "ipc=1", "profile=full",
                      "eval.aug_strategy=crop"])  # a typed strategy still wins
    assert resolve_eval(typed.eval, "none", None, "x", bn_convnet=True).aug_strategy == "crop"


def test_dataset_dsa_strategies_drop_flip_for_digit_sets_only(compose_cfg):
    for name, flip in [("fashion_mnist", True), ("cifar10", True), ("mnist", False), ("svhn", False), ("digits", False)]:
        cfg = compose_cfg([f"dataset={name}"])
        assert ("flip" in cfg.dataset.dsa_strategy.split("_")) == flip, name


def test_dc_on_a_batchnorm_convnet_is_evaluated_with_crop_noise(compose_cfg):
    from dfdistill.run.pipeline import run

    rec = run(compose_cfg(["profile=smoke", "dataset=digits", "method=dc", "ipc=1", "backbone=convnet_bn",
                           "eval.compare_random=false", "profile.iterations=1"]))
    assert rec["eval"]["aug"] == "dc" and rec["eval"]["aug_strategy"] == "crop_noise"
