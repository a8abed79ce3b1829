"""The evaluation protocol: train fresh networks on a (synthetic or real-subset) set, test once.

Why one module: every number in a table must come from the identical protocol — distilled sets,
coreset baselines, pruned variants and the whole dataset alike. The reported accuracy is the
*final* test accuracy after the last epoch (never the best over test evaluations), mean ± std over
`num_eval` freshly initialised networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dfdistill.engine import compiled
from dfdistill.data.real import RealData
from dfdistill.engine.memory import rows_per_pass
from dfdistill.engine.training import NetGroup, Schedule, ensemble_enabled, train_group
from dfdistill.models.convnet import ConvNet


@dataclass
class ResolvedEval:
    """EvalConfig with every `null` resolved against the method (no defaults left to guess)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    num_eval: int = 5
    schedule: str = "half"
    milestones: list[float] = field(default_factory=lambda: [2 / 3, 5 / 6])
    lr_decay: float = 0.2
    aug: str = "dsa"
    aug_strategy: Optional[str] = None
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    test_batch_size: int = 512


# DC's evaluation augmentation (reference get_daparam): MNIST -> crop_scale_rotate, then an evaluation
# model named 'ConvNetBN' -> crop_noise (checked second, so it overrides MNIST's). Any other DC
# evaluation runs without augmentation. The recipe sets only eval.aug=dc for MNIST and leaves the
# strategy to this rule, so the precedence holds per evaluated network (cross-arch included).
DC_STRATEGY_DEFAULT = "crop_scale_rotate"
DC_STRATEGY_BN_CONVNET = "crop_noise"


def is_convnet_bn(model: nn.Module) -> bool:
    """Whether `model` is the reference's 'ConvNetBN' (get_network: ConvNet, depth 3, BatchNorm, ReLU,
    average pooling), the one name get_daparam tests; its width may be scaled by a profile. Other BN
    ConvNets ('ConvNetD4BN', 'ConvNetASwishBN', ...) do not match the name there, so not here."""

    if type(model) is not ConvNet:
        return False
    layers = list(model.features)
    count = lambda kind: sum(isinstance(m, kind) for m in layers)
    return (count(nn.Conv2d) == 3 and count(nn.BatchNorm2d) == 3 and count(nn.ReLU) == 3
            and count(nn.AvgPool2d) == 3)


def _default_strategy(aug: str, dsa_strategy: str, bn_convnet: bool) -> Optional[str]:
    if aug == "dc":
        return DC_STRATEGY_BN_CONVNET if bn_convnet else DC_STRATEGY_DEFAULT
    if aug == "idc":  # IDC's eval drops cutout (CutMix replaces it) and keeps the dataset's flip rule
        return "_".join(f for f in dsa_strategy.split("_") if f != "cutout")
    return dsa_strategy


def resolve_eval(ecfg, method_eval_aug: str, method_lr: Optional[float], dsa_strategy: str,
                 epochs_override: Optional[int] = None, num_eval_override: Optional[int] = None,
                 bn_convnet: bool = False) -> ResolvedEval:
    """Fill every null of the eval config. `bn_convnet`: the evaluated network is the reference's ConvNetBN
    (`is_convnet_bn`), where the reference trains DC's sets with DC's 'crop_noise' (and so 1000 epochs),
    also on MNIST (its rule comes after MNIST's); a typed eval.aug_strategy still wins."""
    aug = ecfg.aug or method_eval_aug
    if aug == "none" and ecfg.aug is None and bn_convnet:
        aug = "dc"
    epochs = ecfg.epochs if ecfg.epochs is not None else (1000 if aug != "none" else 300)
    if epochs_override is not None:
        epochs = epochs_override
    lr = ecfg.lr if ecfg.lr is not None else (method_lr if method_lr is not None else 0.01)
    return ResolvedEval(
        epochs=int(epochs), lr=float(lr), momentum=ecfg.momentum, weight_decay=ecfg.weight_decay,
        batch_size=ecfg.batch_size, num_eval=num_eval_override or ecfg.num_eval, schedule=ecfg.schedule,
        milestones=list(ecfg.milestones), lr_decay=ecfg.lr_decay, aug=aug,
        aug_strategy=ecfg.aug_strategy or _default_strategy(aug, dsa_strategy, bn_convnet),
        cutmix_prob=ecfg.cutmix_prob, cutmix_beta=ecfg.cutmix_beta, test_batch_size=ecfg.test_batch_size,
    )


def num_train_epochs(ev: ResolvedEval) -> int:
    """DC's loop runs Epoch+1 epochs (ep = 0..Epoch); IDC's MultiStep schedule runs Epoch."""
    return ev.epochs + 1 if ev.schedule == "half" else ev.epochs


def lr_at_epoch(ev: ResolvedEval, epoch: int) -> float:
    """Learning rate used *during* `epoch` (0-based).

    half: DC multiplies by 0.1 after finishing epoch Epoch//2+1 (and rebuilds the optimizer).
    multistep: x lr_decay at each milestone fraction of Epoch (IDC: 2/3 and 5/6, MultiStepLR gamma 0.2)."""
    if ev.schedule == "half":
        return ev.lr * (0.1 if epoch > ev.epochs // 2 + 1 else 1.0)
    steps = sum(epoch >= int(m * ev.epochs) for m in ev.milestones)
    return ev.lr * (ev.lr_decay**steps)


def eval_schedule(ev: ResolvedEval) -> Schedule:
    """The protocol's SGD, lr schedule (DC's optimizer rebuild at the half-point, IDC's MultiStep) and CutMix."""
    return Schedule(lr=ev.lr, momentum=ev.momentum, weight_decay=ev.weight_decay, lr_at=lambda ep: lr_at_epoch(ev, ep),
                    reset_on_change=ev.schedule == "half", cutmix_prob=ev.cutmix_prob, cutmix_beta=ev.cutmix_beta)


def train_network(model: nn.Module, images: Tensor, labels: Tensor, ev: ResolvedEval, augment,
                  seed: int, progress: bool = False) -> nn.Module:
    """SGD(momentum, wd) on (images, labels) with the protocol's schedule and augmentation."""
    train_group(NetGroup([model]), images.detach(), labels.detach(), num_train_epochs(ev), eval_schedule(ev),
                [torch.Generator().manual_seed(seed)], ev.batch_size, augment, progress=progress, desc="eval-train",
                amp=True)
    return model


@torch.no_grad()
def test_accuracy(model: nn.Module, test: RealData, batch_size: int = 512) -> float:
    """Top-1 accuracy on the test split, in passes of at most `batch_size` rows (fewer when the memory
    budget says so); one host read at the end."""
    model.eval()
    correct = 0
    batch_size = min(batch_size, rows_per_pass(model, test.images.shape[1:], "forward"))
    for start in range(0, len(test), batch_size):
        x = test.images[start : start + batch_size]
        y = test.labels[start : start + batch_size]
        correct += (compiled.logits(model, x).argmax(-1) == y).sum()
    return float(correct) / max(len(test), 1)


@torch.no_grad()
def group_accuracies(group: NetGroup, test: RealData, batch_size: int = 512) -> list[float]:
    """`test_accuracy` of every network of a batched group, each test batch read once for all (a pass
    holds K networks' activations: the memory budget's rows are shared among them)."""
    group.train(False)
    per_net = rows_per_pass(group.models[0], test.images.shape[1:], "forward")
    batch_size = max(1, min(batch_size, per_net // len(group)))
    correct = torch.zeros(len(group), dtype=torch.long, device=test.labels.device)
    for start in range(0, len(test), batch_size):
        x = test.images[start : start + batch_size]
        y = test.labels[start : start + batch_size]
        correct += (group.logits(x).argmax(-1) == y).sum(-1)
    return [float(c) / max(len(test), 1) for c in correct.tolist()]


def evaluate_set(images: Tensor, labels: Tensor, test: RealData, model_factory: Callable[[int], nn.Module],
                 ev: ResolvedEval, augment, seed: int, progress: bool = True, desc: str = "eval") -> list[float]:
    """Train `ev.num_eval` fresh networks on the set; return their final test accuracies.

    Network k is model_factory(seed * 1000 + k), trained with its own generator of that seed; with
    ensembles on (`ensemble`, training.ensemble_enabled) all of them train as one batched model."""
    seeds = [seed * 1000 + k for k in range(ev.num_eval)]
    if ev.num_eval > 1 and ensemble_enabled(images.device):
        group = NetGroup([model_factory(s) for s in seeds], batched=True)
        train_group(group, images.detach(), labels.detach(), num_train_epochs(ev), eval_schedule(ev),
                    [torch.Generator().manual_seed(s) for s in seeds], ev.batch_size, augment,
                    progress=progress, desc=desc, amp=True)
        return group_accuracies(group, test, ev.test_batch_size)
    accs = []
    for s in tqdm(seeds, desc=desc, disable=not progress):
        model = train_network(model_factory(s), images, labels, ev, augment, seed=s)
        accs.append(test_accuracy(model, test, ev.test_batch_size))
    return accs
