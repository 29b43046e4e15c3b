"""Entropy-SGD (Chaudhari et al. 2017/2019, "Biasing gradient descent into wide valleys"), used by paper 002.

Entropy-SGD descends the negative local entropy −F(x; γ) = −log ∫ exp(−f(x') − γ/2 ‖x − x'‖²) dx',
whose gradient is γ (x − ⟨x'⟩), the expectation taken under the Gibbs measure centred at x. One outer
step (Algorithm 1 of the paper) estimates ⟨x'⟩ with L steps of stochastic gradient Langevin dynamics,
each on a fresh minibatch B_ℓ:

    x'_0 = μ_0 = x
    for ℓ = 1..L:
        dx'  = ∇f_{B_ℓ}(x'_{ℓ-1}) − γ (x − x'_{ℓ-1})
        x'_ℓ = x'_{ℓ-1} − η' dx' + √η' · ε · ξ_ℓ,        ξ_ℓ ~ N(0, I)
        μ_ℓ  = (1 − α) μ_{ℓ-1} + α x'_ℓ
    g = γ (x − μ_L)                                        (gradient of −F)
    x ← outer_step(x, g)   (torch SGD: lr η, momentum, weight decay λ adds λx to g)

η = ``optim.lr``, η' = ``optim.esgd_inner_lr``, γ = ``optim.esgd_gamma``, ε = ``optim.esgd_eps``,
L = ``optim.esgd_L``, α = 0.75 (the paper's averaging constant). Weight decay is the L2 penalty
λ/2 ‖x‖² on the centre x, so it enters the outer step only.

Convention: the outer gradient keeps the paper's factor γ, so for γ large (with η'γ ≤ 1) x'
relaxes to about x − ∇f/γ and g ≈ ∇f: Entropy-SGD then behaves like SGD with the same lr. The authors'
code (ucla-vision/entropy-sgd) drops γ from g, i.e. its lr equals η·γ here. γ is constant
(no scoping schedule). Batch-norm running statistics are updated by the inner passes, at x'.
The returned loss is that of the first minibatch at x (before the update).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from collect.optim.step import Batch, LossFn, trainable_parameters

ALPHA = 0.75  # Chaudhari et al.: exponential average of the Langevin iterates


class EntropySGDStep:
    """One Entropy-SGD outer step; see the module docstring for the exact equations."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        L: int,
        gamma: float,
        eps: float,
        inner_lr: float,
        alpha: float = ALPHA,
    ) -> None:
        checks = {
            "optim.esgd_L": (L >= 1, f"{L} must be >= 1 (Langevin steps per outer step, e.g. 5)"),
            "optim.esgd_gamma": (gamma > 0, f"{gamma} must be > 0 (e.g. 0.03)"),
            "optim.esgd_eps": (eps >= 0, f"{eps} must be >= 0 (e.g. 1e-4)"),
            "optim.esgd_inner_lr": (inner_lr > 0, f"{inner_lr} must be > 0 (e.g. 0.1)"),
        }
        for name, (ok, message) in checks.items():
            if not ok:
                raise ValueError(f"{name} = {message}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha = {alpha} must be in (0, 1]")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.L = int(L)
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.inner_lr = float(inner_lr)
        self.alpha = float(alpha)

    def __call__(self, next_batch: Callable[[], Batch]) -> Tensor:
        params = trainable_parameters(self.model)
        centre = [p.detach().clone() for p in params]
        mean = [p.detach().clone() for p in params]
        noise_scale = math.sqrt(self.inner_lr) * self.eps
        first_loss: Tensor | None = None
        for _ in range(self.L):
            x, y = next_batch()
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            if first_loss is None:
                first_loss = loss.detach()
            with torch.no_grad():
                for p, c, m in zip(params, centre, mean):
                    grad = p.grad if p.grad is not None else torch.zeros_like(p)
                    drift = grad - self.gamma * (c - p)
                    p.add_(drift, alpha=-self.inner_lr)
                    if noise_scale > 0:
                        p.add_(torch.randn_like(p), alpha=noise_scale)
                    m.mul_(1 - self.alpha).add_(p, alpha=self.alpha)
        with torch.no_grad():
            for p, c, m in zip(params, centre, mean):
                p.copy_(c)
                p.grad = self.gamma * (c - m)
        self.optimizer.step()
        assert first_loss is not None
        return first_loss
