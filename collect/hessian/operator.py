"""The mean training loss as a function of a flat parameter vector, with its gradient and Hessian-vector products.

Everything here is evaluated chunk by chunk over the data, so memory stays bounded by ``chunk_size`` points
whatever the size of the training set: because each chunk's loss is a *mean*, the full mean loss is
Σ_chunks (n_chunk / N) · loss_chunk, and the same weights combine gradients and Hessian-vector products.

Hessian-vector products are reverse-over-reverse (``torch.func.vjp`` of ``torch.func.grad``; H is symmetric, so
vᵀH = (Hv)ᵀ): on CPU this measured 2-3x faster than forward-over-reverse (``jvp`` of ``grad``) for the FCN and
LeNet-5 of this project. Several vectors share one forward and backward pass through ``torch.func.vmap`` over the
pullback, which is where most of the speed comes from (about 5x per product for 8 vectors on the quick FCN).

The model is never modified: parameters are passed to ``torch.func.functional_call``, so the measure's model stays
exactly as the runner handed it over (eval mode, batch norm on running statistics, dropout off).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vjp, vmap

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ChunkedLoss:
    """L(θ) = mean loss of ``model`` on (x, y), as a function of the flat vector θ of the parameters ``names``.

    ``names`` selects which parameters θ covers (default: all trainable ones, in ``named_parameters`` order);
    the others stay at their values in ``base`` (default: the model's own). ``base`` lets a caller evaluate the
    loss at another point, e.g. between two training iterates, without touching the model.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        names: Sequence[str] | None = None,
        base: Mapping[str, torch.Tensor] | None = None,
        chunk_size: int = 1000,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size = {chunk_size} must be >= 1")
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"x and y must hold the same, non-zero number of points (got {x.shape[0]}, {y.shape[0]})")
        self.model = model
        self.loss_fn = loss_fn
        self.x, self.y = x, y
        self.chunk_size = int(chunk_size)
        own = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
        if base is not None:
            unknown = set(base) - set(own)
            if unknown:
                raise ValueError(f"base holds tensors that are not trainable parameters: {sorted(unknown)}")
            own.update({k: v.detach().to(own[k]) for k, v in base.items()})
        self.names: list[str] = list(own) if names is None else list(names)
        missing = [n for n in self.names if n not in own]
        if missing:
            raise ValueError(f"unknown parameter names {missing}; the model has {list(own)}")
        self.fixed = {k: v for k, v in own.items() if k not in self.names}
        self.shapes = [own[n].shape for n in self.names]
        self.sizes = [own[n].numel() for n in self.names]
        self.theta0 = torch.cat([own[n].reshape(-1) for n in self.names])

    # ------------------------------------------------------------------------------------------ plumbing
    @property
    def dim(self) -> int:
        return self.theta0.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.theta0.dtype

    @property
    def device(self) -> torch.device:
        return self.theta0.device

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten_batch(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        k = flat.shape[0]
        return {n: t.reshape(k, *s) for n, t, s in zip(self.names, flat.split(self.sizes, dim=1), self.shapes)}

    def flatten_batch(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(tensors[n].shape[0], -1) for n in self.names], dim=1)

    def _chunks(self):
        for i in range(0, self.n, self.chunk_size):
            xb, yb = self.x[i : i + self.chunk_size], self.y[i : i + self.chunk_size]
            yield xb, yb, xb.shape[0] / self.n

    def _chunk_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(functional_call(self.model, {**self.fixed, **params}, (x,)), y)

    # ------------------------------------------------------------------------------------------ values
    def value(self, theta: torch.Tensor | None = None) -> float:
        """L(θ) (θ defaults to the current parameters)."""
        params = self.unflatten(self.theta0 if theta is None else theta)
        with torch.no_grad():
            return float(sum(w * self._chunk_loss(params, xb, yb) for xb, yb, w in self._chunks()))

    def value_and_grad(self, theta: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
        """L(θ) and ∇L(θ) as a flat vector."""
        params = self.unflatten(self.theta0 if theta is None else theta)
        g_fn = grad(self._chunk_loss, has_aux=False)
        total, g = 0.0, torch.zeros_like(self.theta0)
        for xb, yb, w in self._chunks():
            with torch.no_grad():
                total += w * float(self._chunk_loss(params, xb, yb))
            g += w * self.flatten(g_fn(params, xb, yb))
        return total, g

    def values_batch(self, thetas: torch.Tensor) -> torch.Tensor:
        """L(θ_r) for each row θ_r of ``thetas`` ([R, dim]), one vmapped forward pass per chunk (no graph)."""
        self._check_batch(thetas)
        params = self.unflatten_batch(thetas)
        out = torch.zeros(thetas.shape[0], dtype=thetas.dtype, device=thetas.device)
        with torch.no_grad():
            for xb, yb, w in self._chunks():
                out += w * vmap(self._chunk_loss, in_dims=(0, None, None))(params, xb, yb)
        return out

    def values_and_grads_batch(self, thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L(θ_r) and ∇L(θ_r) for each row θ_r of ``thetas`` ([R, dim]): one vmapped forward and backward per chunk.

        Many weight perturbations (sharpness restarts, PAC-Bayes noise draws) then cost one batched matmul per
        layer instead of R small ones.
        """
        self._check_batch(thetas)
        params = self.unflatten_batch(thetas)
        fn = vmap(grad_and_value(self._chunk_loss), in_dims=(0, None, None))
        values = torch.zeros(thetas.shape[0], dtype=thetas.dtype, device=thetas.device)
        grads = torch.zeros_like(thetas)
        for xb, yb, w in self._chunks():
            g, v = fn(params, xb, yb)
            values += w * v.detach()
            grads += w * self.flatten_batch(g).detach()
        return values, grads

    def _check_batch(self, thetas: torch.Tensor) -> None:
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ValueError(f"thetas must have shape [R, {self.dim}], got {tuple(thetas.shape)}")

    def hvp(self, v: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """H(θ) v for one flat vector v."""
        return self.hvp_batch(v.unsqueeze(0), theta)[0]

    def hvp_batch(self, vs: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """H(θ) vᵢ for each row vᵢ of ``vs`` (shape [k, dim]), vectorised over the rows with vmap."""
        if vs.ndim != 2 or vs.shape[1] != self.dim:
            raise ValueError(f"vs must have shape [k, {self.dim}], got {tuple(vs.shape)}")
        params = self.unflatten(self.theta0 if theta is None else theta)
        g_fn = grad(self._chunk_loss)
        tangents = self.unflatten_batch(vs)
        out = torch.zeros_like(vs)
        for xb, yb, w in self._chunks():
            _, pullback = vjp(lambda p: g_fn(p, xb, yb), params)  # v ↦ vᵀ∇²L = (∇²L v)ᵀ, H symmetric
            if vs.shape[0] == 1:
                hv = self.flatten(pullback({k: t[0] for k, t in tangents.items()})[0]).unsqueeze(0)
            else:
                hv = self.flatten_batch(vmap(pullback)(tangents)[0])
            out += w * hv
        return out.detach()


    def hvp_operator(self, theta: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """A matvec v ↦ H(θ)v for many sequential products (Lanczos).

        When the data fit in one chunk, the gradient graph is built once and its pullback reused for every
        product, which skips the forward and first backward pass (measured 1.8x faster per product on the quick
        FCN); memory stays that of one chunk. With several chunks each product recomputes them (``hvp``).
        """
        if self.n > self.chunk_size:
            return lambda v: self.hvp(v, theta)
        params = self.unflatten(self.theta0 if theta is None else theta)
        _, pullback = vjp(lambda p: grad(self._chunk_loss)(p, self.x, self.y), params)
        return lambda v: self.flatten(pullback(self.unflatten(v))[0]).detach()


def trainable_names(model: nn.Module) -> list[str]:
    return [k for k, v in model.named_parameters() if v.requires_grad]


def squared_weight_norm(model: nn.Module, names: Sequence[str] | None = None) -> float:
    """‖θ‖² over the named (default: all trainable) parameters."""
    params = dict(model.named_parameters())
    keys = trainable_names(model) if names is None else names
    return float(sum(params[k].detach().double().pow(2).sum() for k in keys))
