"""Sharpness-Aware Minimization (Foret et al. 2021) and its adaptive variant ASAM (Kwon et al. 2021).

Used by paper 004 (λ_max vs generalization under SAM's ρ). One update, on ONE minibatch B:

    g   = ∇L_B(w)
    ε   = ρ g / ‖g‖                        (SAM)
    ε   = ρ T² g / ‖T g‖,  T = diag(|w|)   (ASAM, ``adaptive=True``)
    w  ← base_step(w, ∇L_B(w + ε))         (the wrapped optimizer, at w, with the perturbed gradient)

‖·‖ is the 2-norm over all trainable parameters together. Weight decay belongs to the base optimizer,
so it acts at w, not in the ascent direction. Buffers (batch-norm running statistics) are restored after
the perturbed pass, so they are updated once per step, from the unperturbed forward pass.
Dropout draws a fresh mask in the second pass (as in Foret et al.'s reference code).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from collect.optim.step import Batch, LossFn, trainable_parameters


class SAMStep:
    """One SAM/ASAM update wrapping ``optimizer`` (the base: SGD, Adam, ...); see the module docstring."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, rho: float, adaptive: bool = False
    ) -> None:
        if not rho > 0:
            raise ValueError(f"optim.sam_rho = {rho}: SAM needs sam_rho > 0 (e.g. 0.05)")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.rho = float(rho)
        self.adaptive = adaptive

    def ascent_direction(self, params: list[nn.Parameter]) -> list[Tensor]:
        """ε for the gradients currently stored in ``params`` (zero where a gradient is missing or ‖g‖ = 0)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        scale = [p.abs() if self.adaptive else None for p in params]
        scaled = [g if t is None else t * g for g, t in zip(grads, scale)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = self.rho / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        return [(s if t is None else t * s) * factor for s, t in zip(scaled, scale)]

    def __call__(self, next_batch: Callable[[], Batch]) -> Tensor:
        x, y = next_batch()
        params = trainable_parameters(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        with torch.no_grad():
            eps = self.ascent_direction(params)
            for p, e in zip(params, eps):
                p.add_(e)
        buffers = [b.detach().clone() for b in self.model.buffers()]
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(x), y).backward()
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.sub_(e)
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)
        self.optimizer.step()
        return loss.detach()
