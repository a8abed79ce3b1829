"""TESLA — MTT's objective with memory independent of `syn_steps` (Cui et al., ICML'23).

Forward: the `syn_steps` student steps run without a graph; per step only the batch plan (row
indices + augmentation seed) and the flat parameters theta_k are kept. Backward: one step at a
time, g_k = grad CE(theta_k; aug(X[idx_k])) is recomputed with create_graph and differentiated
once, so only one step's graph is alive at any time.

Where and why this differs from the reference code (`exact: true`, the default):
  With lambda_k = dL/dtheta_k (adjoint), theta_{k+1} = theta_k - a g_k(theta_k, X_k), the exact
  reverse pass is   lambda_N = 2 (theta_N - theta*) / ||theta_0 - theta*||^2,
                    dL/dX_k  = -a d(g_k . lambda_{k+1})/dX_k,
                    dL/da   += -g_k . lambda_{k+1},
                    lambda_k = lambda_{k+1} - a H_k lambda_{k+1}   (Hessian-vector product).
  The reference (TESLA distill.py) uses lambda_N for every step, i.e. it drops the H_k terms and
  treats theta_k as independent of earlier synthetic batches; its image gradient is therefore not
  the gradient of the MTT loss. We carry the adjoint (one extra HVP per step, which comes from the
  same autograd.grad call) so the gradient equals autograd through the fully unrolled graph
  (tests/unit/methods/test_trajectories.py). `exact: false` is the reference approximation exactly: every step
  uses lambda_N, i.e. dL/dX_k = 2 d/dX_k[(a(theta* - theta_0) + a^2 G) . g_k] / ||theta_0 - theta*||^2
  with G = sum_k g_k, and dL/da = -G . lambda_N, the derivative of ||theta_0 - a G - theta*||^2 / D
  with G held constant (tested against that formula written out).
  Augmentations are recomputed from stored seeds rather than kept with their graphs (the
  reference keeps each augmented batch), so memory is O(steps x |theta|) for the stored vectors
  only.

Soft labels (`soft_label: true`, the reference's --teacher_label): every iteration the expert at
theta* labels the synthetic images (softmax, T=1; no gradient); they are the student's targets and
the evaluation's. The reference path only works for >50-image sets; ours works for any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from dfdistill.engine.losses import weighted_ce
from dfdistill.methods.mtt import MTTConfig, Plan, StudentFn, TrajectoryMatching, normalized_distance, student_batch
from dfdistill.core.registry import register_method


@dataclass
class TESLAConfig(MTTConfig):
    exact: bool = True  # false: the reference approximation (no Hessian terms)
    soft_label: bool = False


def tesla_gradients(f: StudentFn, images: Tensor, labels: Tensor, plan: Plan, theta0: Tensor, theta_star: Tensor,
                    lr: float, augment, exact: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, dL/dimages, dL/dlr) of the MTT objective with one step's graph alive at a time."""
    theta0, theta_star = theta0.detach(), theta_star.detach()
    thetas, theta = [theta0], theta0
    for idx, seed in plan:  # forward, no graph
        th = theta.detach().requires_grad_(True)
        with torch.no_grad():
            x = student_batch(images.detach(), idx, seed, augment)
        with torch.enable_grad():
            g = torch.autograd.grad(weighted_ce(f(th, x), labels[idx.to(labels.device)], None), th)[0]
        theta = (theta - lr * g).detach()
        thetas.append(theta)
    denom = ((theta0 - theta_star) ** 2).sum()
    loss = normalized_distance(theta, theta0, theta_star)
    lam_n = 2 * (theta - theta_star) / denom
    lam = lam_n
    grad_img = torch.zeros_like(images)
    grad_lr = torch.zeros((), dtype=images.dtype, device=images.device)
    for k in range(len(plan) - 1, -1, -1):  # backward, one step at a time
        idx, seed = plan[k]
        idx = idx.to(images.device)
        th = thetas[k].clone().requires_grad_(True)
        sub = images.detach()[idx].requires_grad_(True)
        x = sub if seed is None or augment is None else augment(sub, seed=seed)
        g = torch.autograd.grad(weighted_ce(f(th, x), labels[idx.to(labels.device)], None), th, create_graph=True)[0]
        gl = (g * lam).sum()
        need_theta = exact and k > 0
        grads = torch.autograd.grad(gl, [sub, th] if need_theta else [sub])
        grad_img.index_add_(0, idx, -lr * grads[0])
        grad_lr = grad_lr - gl.detach()
        if need_theta:
            lam = lam - lr * grads[1]
    return loss.detach(), grad_img, grad_lr


@register_method("tesla", config=TESLAConfig, label="TESLA")
class TESLA(TrajectoryMatching):

    def init_state(self) -> None:
        super().init_state()
        self.soft_labels: Optional[Tensor] = None

    @torch.no_grad()
    def student_labels(self, theta_star: Tensor) -> Tensor:
        if not self.cfg.soft_label:
            return self.labels
        self._net.eval()
        logits = torch.cat([self.student(theta_star, x) for x in self.images.detach().split(256)])
        self._net.train()
        self.soft_labels = torch.softmax(logits, -1)
        return self.soft_labels

    def extra_state(self) -> dict:
        return {**super().extra_state(), "soft_labels": None if self.soft_labels is None else self.soft_labels.cpu()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        sl = state.get("soft_labels")
        self.soft_labels = None if sl is None else sl.to(self.ctx.device)

    def train_set(self) -> tuple[Tensor, Tensor]:
        if self.cfg.soft_label and self.soft_labels is not None:
            return self.images.detach(), self.soft_labels.detach()
        return super().train_set()

    def step(self, it: int) -> dict[str, Tensor]:
        theta0, theta_star = self.sample_targets()
        labels = self.student_labels(theta_star)
        loss, g_img, g_lr = tesla_gradients(self.student, self.images, labels, self.plan(), theta0, theta_star,
                                            float(self.syn_lr.detach()), self.ctx.augment, exact=self.cfg.exact)
        self.opt_img.zero_grad(set_to_none=True)
        self.opt_lr.zero_grad(set_to_none=True)
        self.images.grad = g_img
        self.syn_lr.grad = g_lr.to(self.syn_lr.dtype)
        self.opt_img.step()
        self.opt_lr.step()
        return {"loss": loss, "syn_lr": self.syn_lr.detach().clone()}
