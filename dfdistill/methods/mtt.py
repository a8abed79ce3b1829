"""MTT — matching training trajectories (Cazenavette et al., CVPR'22).

Per iteration: a random expert and start epoch s ~ U{0..max_start_epoch-1} (capped so that
s + expert_epochs is a stored snapshot); the student starts at theta_0 = expert[s] and takes
`syn_steps` SGD steps with a learnable lr on (non-siamese DSA of) chunks of the synthetic set,
keeping the whole unrolled graph; loss = ||theta_N - theta*||^2 / ||theta_0 - theta*||^2 with
theta* = expert[s + expert_epochs]. Images (SGD lr_img, momentum .5) and the lr (SGD lr_lr,
momentum .5) take one step each. Evaluation uses the learned lr.

Key names: `expert_epochs` is the paper's matched span; `expert_train_epochs` is how long each
expert trains (buffer.py's --train_epochs); `syn_lr_init` is the initial learnable lr (distill.py's
--lr_teacher, a name buffer.py uses for the experts' lr, here `expert_lr`). The profile key
`expert_train_epochs` caps `method.expert_train_epochs` (dfdistill/config/resolve.py).

Per-dataset/IPC hyperparameters (MTT authors via DC-BENCH) are recipe rows:
dfdistill/recipes/mtt.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor

from dfdistill.core.errors import ConfigError
from dfdistill.methods.base import ImageDistiller, MethodConfig, ProfileCap, draw_seed
from dfdistill.methods.experts import ExpertBank, ExpertSettings, functional_net, pick, start_epoch_bound
from dfdistill.engine.losses import weighted_ce
from dfdistill.core.registry import register_method

# One student step's data: (row indices into the synthetic set, augmentation seed or None).
Plan = list[tuple[Tensor, Optional[int]]]
StudentFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class MTTConfig(MethodConfig):
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    lr_lr: float = 1e-5
    syn_lr_init: float = 0.01  # initial learnable student lr (MTT distill.py --lr_teacher)
    expert_lr: float = 0.01  # lr the experts train with (buffer.py --lr_teacher; 0.01 for all rows)
    batch_syn: Optional[int] = None  # null: all synthetic images per student step
    num_experts: int = 100
    expert_train_epochs: int = 50  # epochs each expert trains (MTT buffer.py --train_epochs)
    batch_train: int = 256  # expert minibatch
    profile_caps: ClassVar[tuple[ProfileCap, ...]] = MethodConfig.profile_caps + (
        ProfileCap("num_experts", "num_experts"), ProfileCap("expert_train_epochs", "expert_train_epochs"),
        ProfileCap("expert_epochs", "expert_train_epochs", by_field="expert_train_epochs"))

    def __post_init__(self) -> None:
        super().__post_init__()
        for k in ("syn_steps", "expert_epochs", "max_start_epoch", "num_experts", "expert_train_epochs", "batch_train"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"method.{k} must be > 0, got {getattr(self, k)}")
        if min(self.lr_lr, self.syn_lr_init, self.expert_lr) <= 0:
            raise ConfigError(f"method.lr_lr, syn_lr_init, expert_lr must be > 0, got {self.lr_lr}, {self.syn_lr_init}, {self.expert_lr}")
        if self.batch_syn is not None and self.batch_syn <= 0:
            raise ConfigError(f"method.batch_syn must be positive or null, got {self.batch_syn}")
        if self.expert_epochs > self.expert_train_epochs:
            raise ConfigError(f"method.expert_epochs={self.expert_epochs} exceeds method.expert_train_epochs={self.expert_train_epochs}")

    def expert_settings(self) -> ExpertSettings:
        return ExpertSettings(num_experts=self.num_experts, train_epochs=self.expert_train_epochs,
                              lr_teacher=self.expert_lr, batch_train=self.batch_train, dsa=self.dsa)


def make_plan(n: int, batch: Optional[int], steps: int, gen: torch.Generator, augment: bool) -> Plan:
    """Consecutive chunks of a random permutation, reshuffled when exhausted (as the reference)."""
    batch = n if batch is None else min(batch, n)
    plan: Plan = []
    chunks: list[Tensor] = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.randperm(n, generator=gen).split(batch))
        plan.append((chunks.pop(0), draw_seed(gen) if augment else None))
    return plan


def student_batch(images: Tensor, idx: Tensor, seed: Optional[int], augment) -> Tensor:
    x = images[idx.to(images.device)]
    return x if seed is None or augment is None else augment(x, seed=seed)


def normalized_distance(theta_n: Tensor, theta0: Tensor, theta_star: Tensor) -> Tensor:
    return ((theta_n - theta_star) ** 2).sum() / ((theta0 - theta_star) ** 2).sum()


def unrolled_loss(f: StudentFn, images: Tensor, labels: Tensor, plan: Plan, theta0: Tensor, theta_star: Tensor,
                  lr: Tensor, augment) -> Tensor:
    """MTT's objective with the full unrolled graph (differentiable w.r.t. images and lr)."""
    theta = theta0.detach().clone().requires_grad_(True)
    for idx, seed in plan:
        x = student_batch(images, idx, seed, augment)
        ce = weighted_ce(f(theta, x), labels[idx.to(labels.device)], None)
        g = torch.autograd.grad(ce, theta, create_graph=True)[0]
        theta = theta - lr * g
    return normalized_distance(theta, theta0, theta_star)


@register_method("mtt", config=MTTConfig, label="MTT", target="dfdistill.methods.mtt.MTT")
class TrajectoryMatching(ImageDistiller):
    """Shared by MTT and TESLA: experts, learnable lr, sampling of (expert, start epoch)."""

    def prepare(self) -> None:
        self.bank = ExpertBank(self.ctx, self.cfg.expert_settings()).build()

    def init_state(self) -> None:
        super().init_state()
        self.syn_lr = torch.tensor(float(self.cfg.syn_lr_init), device=self.ctx.device, requires_grad=True)
        self.opt_lr = torch.optim.SGD([self.syn_lr], lr=self.cfg.lr_lr, momentum=0.5)
        net = self.ctx.model_factory(0)
        self.student = functional_net(net)
        self._net = net

    def eval_lr(self) -> Optional[float]:
        """The learned lr; None (-> method.eval_lr) if it went non-positive, which the reference
        would pass on to a failing/diverging evaluation."""
        lr = float(self.syn_lr.detach())
        if not lr > 0:
            print(f"[dfdistill] learned lr {lr:.3g} is not positive; evaluating with method.eval_lr")
            return None
        return lr

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "syn_lr": self.syn_lr.detach().cpu(), "opt_lr": self.opt_lr.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.syn_lr.device))
        self.opt_lr.load_state_dict(state["opt_lr"])

    def sample_targets(self) -> tuple[Tensor, Tensor]:
        traj = self.bank.get(pick(self.gen, len(self.bank)))
        start = pick(self.gen, start_epoch_bound(traj.shape[0], self.cfg.expert_epochs, self.cfg.max_start_epoch))
        dev = self.ctx.device
        return traj[start].to(dev), traj[start + self.cfg.expert_epochs].to(dev)

    def plan(self) -> Plan:
        return make_plan(self.images.shape[0], self.cfg.batch_syn, self.cfg.syn_steps, self.gen, self.cfg.dsa)

    def student_labels(self, theta_star: Tensor) -> Tensor:
        return self.labels

    def step(self, it: int) -> dict[str, Tensor]:
        theta0, theta_star = self.sample_targets()
        labels = self.student_labels(theta_star)
        loss = unrolled_loss(self.student, self.images, labels, self.plan(), theta0, theta_star, self.syn_lr,
                             self.ctx.augment)
        self.opt_img.zero_grad(set_to_none=True)
        self.opt_lr.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_img.step()
        self.opt_lr.step()
        return {"loss": loss.detach(), "syn_lr": self.syn_lr.detach().clone()}


MTT = TrajectoryMatching
