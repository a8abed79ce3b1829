"""RFAD-NN: the finite-network evaluation RFAD reports (Loo et al., NeurIPS'22; facts §2).

Why not evaluation/protocol.py: RFAD's sets carry learned regression targets, and its numbers
(CIFAR-10 IPC1 53.6, IPC10 66.3) come from a different training rule. A network is trained on the
set by MSE regression, and the best network on a validation subset is tested:

* targets: the set's (N, K) targets, or one-hot - 1/K for class labels (a random real subset),
  multiplied by `label_scale`;
* centering: f0, the network at initialisation, is frozen and its output subtracted, in training
  and at test. The loss is mean((f(x) - f0(x) - s*y)^2) / s^2 + wd * ||theta - theta0||^2
  (wd * ||theta||^2 without centering), with wd = eval.weight_decay;
* SGD with eval.momentum at a constant eval.lr. `eval.epochs` counts SGD *steps*, which equal epochs
  while the set fits one batch. Full batch when N <= eval.batch_size (RFAD: 513); otherwise
  random minibatches with replacement;
* every `valid_every` steps (before that step's update), the accuracy on a validation subset drawn
  from the training split (RFAD: 500 per class with replacement, 100 for CIFAR-100); the best
  network is kept; training stops `patience` steps after the best; the best network is tested.

Deviation: RFAD's minibatch branch (|S| > 513, e.g. CIFAR-100 IPC10) leaves the targets unscaled but
still divides by s^2 (a bug noted in the facts); here the targets are scaled in both branches.
No augmentation by default (RFAD's protocol; `eval.aug` other than none augments each batch, as
RFAD's optional data_aug). The lr is constant: `eval.schedule`, its decay and `eval.cutmix_prob` do not
apply. The architecture is the configured backbone: RFAD's is `backbone=convnet_gaussian` (width
1024, no normalisation, Gaussian init).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from dfdistill.data.real import RealData


def centred_one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """RFAD/KIP label encoding: one-hot minus 1/K."""
    return F.one_hot(labels, num_classes).float() - 1.0 / num_classes


def as_targets(labels: Tensor, num_classes: int) -> Tensor:
    return labels.float() if labels.dim() == 2 else centred_one_hot(labels, num_classes)


def validation_rows(real: RealData, per_class: int, seed: int) -> Tensor:
    """`per_class` rows of every class drawn WITH replacement (RFAD's np.random.choice default)."""
    gen = torch.Generator().manual_seed(seed)
    rows = [ix[torch.randint(0, ix.numel(), (per_class,), generator=gen).to(ix.device)]
            for ix in real.class_indices if ix.numel() > 0]
    return torch.cat(rows)


@torch.no_grad()
def centred_accuracy(model: nn.Module, init: nn.Module | None, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Accuracy of argmax(f(x) - f0(x)) (f0 = None: no centering)."""
    model.eval()
    correct = 0
    for a in range(0, x.shape[0], batch_size):
        out = model(x[a : a + batch_size])
        if init is not None:
            out = out - init(x[a : a + batch_size])
        correct += int((out.argmax(1) == y[a : a + batch_size]).sum())
    return correct / max(x.shape[0], 1)


def train_finite_nn(model: nn.Module, images: Tensor, targets: Tensor, valid_x: Tensor, valid_y: Tensor, *,
                    steps: int, lr: float, momentum: float, weight_decay: float, batch_size: int,
                    label_scale: float, centering: bool, valid_every: int, patience: int,
                    seed: int, augment=None) -> tuple[nn.Module, nn.Module | None, float]:
    """RFAD's train_network: returns (best model, frozen init model or None, best validation accuracy)."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = images.detach(), targets.detach() * label_scale
    init = copy.deepcopy(model).eval().requires_grad_(False) if centering else None
    theta0 = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=0.0)
    n = images.shape[0]
    best, best_acc, best_step = copy.deepcopy(model), -1.0, -1
    model.train()
    for i in range(steps):
        if n > batch_size:
            ix = torch.randint(0, n, (batch_size,), generator=gen).to(images.device)
            x, y = images[ix], targets[ix]
        else:
            x, y = images, targets
        if augment is not None:  # RFAD's optional data_aug (off in its protocol: eval.aug=none)
            x = augment(x, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        if i % valid_every == 0:
            acc = centred_accuracy(model, init, valid_x, valid_y)
            if acc > best_acc:
                best, best_acc, best_step = copy.deepcopy(model), acc, i
            model.train()
        if i >= best_step + patience:
            break
        out = model(x)
        if init is not None:
            with torch.no_grad():
                out0 = init(x)
            out = out - out0
        loss = ((out - y) ** 2).mean() / label_scale**2
        if weight_decay > 0:
            ref = theta0 if centering else [torch.zeros_like(t) for t in theta0]
            loss = loss + weight_decay * sum(((p - r) ** 2).sum() for p, r in zip(model.parameters(), ref))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return best, init, best_acc


def evaluate_finite_nn(images: Tensor, labels: Tensor, test: RealData, model_factory: Callable[[int], nn.Module],
                       valid: tuple[Tensor, Tensor], ev, *, label_scale: float, centering: bool, valid_every: int,
                       patience: int, seed: int, augment=None, progress: bool = True,
                       desc: str = "eval") -> list[float]:
    """`ev.num_eval` fresh networks trained by RFAD-NN; their test accuracies (best-validation nets)."""
    targets = as_targets(labels, test.num_classes)
    accs = []
    for k in tqdm(range(ev.num_eval), desc=desc, disable=not progress):
        model_seed = seed * 1000 + k
        best, init, _ = train_finite_nn(
            model_factory(model_seed), images, targets, valid[0], valid[1], steps=ev.epochs, lr=ev.lr,
            momentum=ev.momentum, weight_decay=ev.weight_decay, batch_size=ev.batch_size, label_scale=label_scale,
            centering=centering, valid_every=valid_every, patience=patience, seed=model_seed,
            augment=augment if ev.aug != "none" else None)
        accs.append(centred_accuracy(best, init, test.images, test.labels, ev.test_batch_size))
    return accs
