"""A stack of R same-shape fully connected networks and their optimizers, as tensors with a leading run axis.

Layer k of run r is ``weights[k][r]`` of shape (in, out) (the transpose of ``nn.Linear.weight``, so that the
forward pass h ↦ b + h W is one ``torch.baddbmm`` over the run axis with no transposed operand) and
``biases[k][r]`` of shape (out,). The optimizers apply the update formulas of ``torch.optim.SGD`` (momentum,
dampening 0, coupled weight decay) and ``torch.optim.Adam`` with one set of hyper-parameters and state per run,
in place: a stacked parameter is large (R × in × out), and a fresh tensor per operation would cost more in
allocation and page faults than the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which collect.optim uses


@dataclass
class StackedBatchNorm:
    """``nn.BatchNorm1d`` of R runs: affine (R, F) parameters γ, β and running statistics (R, F).

    Training: y = γ (h − μ_B) / √(σ²_B + ε) + β with the batch mean μ_B and biased variance σ²_B of each run's batch;
    running mean ← (1 − m)·running mean + m·μ_B, running var ← (1 − m)·running var + m·σ²_B·B/(B − 1) (torch's
    momentum m = 0.1 and ε = 1e-5). Eval: the running statistics replace μ_B, σ²_B.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor
    batches: int = 0
    eps: float = 1e-5
    momentum: float = 0.1

    @classmethod
    def from_modules(cls, modules: Sequence[torch.nn.BatchNorm1d], device: torch.device) -> "StackedBatchNorm":
        def stacked(name: str) -> Tensor:
            return torch.stack([getattr(m, name).detach() for m in modules]).to(device)

        first = modules[0]
        return cls(stacked("weight").requires_grad_(), stacked("bias").requires_grad_(), stacked("running_mean"),
                   stacked("running_var"), int(first.num_batches_tracked), first.eps, first.momentum)

    def __call__(self, h: Tensor, train: bool) -> Tensor:
        """Normalise (R, B, F) activations per run and feature."""
        if train:
            return self.train_forward(h)[0]
        mean, var = self.running_mean.unsqueeze(1), self.running_var.unsqueeze(1)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)

    def train_forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training mode: (γ x̂ + β, x̂ = (h − μ_B) / √(σ²_B + ε), 1 / √(σ²_B + ε)), updating the running statistics."""
        mean = h.mean(1, keepdim=True)
        var = h.var(1, unbiased=False, keepdim=True)
        with torch.no_grad():
            n = h.shape[1]
            self.running_mean.mul_(1 - self.momentum).add_(mean.squeeze(1), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var.squeeze(1) * (n / max(n - 1, 1)), alpha=self.momentum)
            self.batches += 1
        rstd = torch.rsqrt(var + self.eps)
        x_hat = (h - mean) * rstd
        return x_hat * self.weight.unsqueeze(1) + self.bias.unsqueeze(1), x_hat, rstd

    def select(self, keep: Tensor) -> "StackedBatchNorm":
        return StackedBatchNorm(self.weight.detach()[keep].requires_grad_(), self.bias.detach()[keep].requires_grad_(),
                                self.running_mean[keep], self.running_var[keep], self.batches, self.eps, self.momentum)

    def state(self, r: int) -> dict[str, Tensor]:
        """Run r's ``nn.BatchNorm1d`` state dict, on the CPU."""
        return {"weight": self.weight[r].detach().cpu().clone(), "bias": self.bias[r].detach().cpu().clone(),
                "running_mean": self.running_mean[r].cpu().clone(), "running_var": self.running_var[r].cpu().clone(),
                "num_batches_tracked": torch.tensor(self.batches, dtype=torch.long)}


@dataclass
class StackedFCN:
    """Per-layer stacked weights (R, in, out) and biases (R, out) of R fcn runs, the batch norms of the hidden layers
    (``norms[k]``, None without batch norm), and the runs' dropout rates: Linear → (BatchNorm1d) → activation →
    (Dropout) per hidden layer, then Linear, as ``collect.models`` builds fcn and fcn_bn."""

    weights: list[Tensor]
    biases: list[Tensor]
    activation: str
    dropout: list[float]
    generators: list[torch.Generator]
    norms: list[StackedBatchNorm | None] | None = None

    @classmethod
    def from_models(cls, models: Sequence[torch.nn.Module], activation: str, dropout: list[float],
                    generators: list[torch.Generator], device: torch.device) -> "StackedFCN":
        """The stack of R runs' fcn / fcn_bn models (same shape)."""
        layers = [[m for m in model.modules() if isinstance(m, torch.nn.Linear)] for model in models]
        bns = [[m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)] for model in models]
        depth = len(layers[0])
        weights = [torch.stack([ls[k].weight.detach().t() for ls in layers]).to(device).contiguous().requires_grad_()
                   for k in range(depth)]
        biases = [torch.stack([ls[k].bias.detach() for ls in layers]).to(device).requires_grad_() for k in range(depth)]
        norms = ([StackedBatchNorm.from_modules([b[k] for b in bns], device) for k in range(depth - 1)]
                 if bns[0] else [None] * (depth - 1))
        return cls(weights, biases, activation, dropout, generators, norms)

    def __post_init__(self) -> None:
        if self.norms is None:
            self.norms = [None] * (len(self.weights) - 1)

    def params(self) -> list[Tensor]:
        """The parameters in the order of the runs' ``nn.Sequential``: weight, bias (, γ, β) per layer."""
        out: list[Tensor] = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            out += [w, b]
            norm = self.norms[k] if k < len(self.norms) else None
            if norm is not None:
                out += [norm.weight, norm.bias]
        return out

    def transposed(self) -> list[bool]:
        """Per entry of ``params()``: whether it is a Linear weight, stored transposed to ``nn.Linear``'s (out, in)."""
        out: list[bool] = []
        for k in range(len(self.weights)):
            out += [True, False] + ([False, False] if k < len(self.norms) and self.norms[k] is not None else [])
        return out

    def linear(self, r: int) -> list[tuple[Tensor, Tensor]]:
        """Run r's (weight (out, in), bias) per layer, as ``nn.Linear`` holds them, on the CPU."""
        return [(w[r].detach().t().cpu().clone(), b[r].detach().cpu().clone()) for w, b in zip(self.weights, self.biases)]

    def norm_states(self, r: int) -> list[dict[str, Tensor]]:
        """Run r's ``nn.BatchNorm1d`` state per hidden layer (empty without batch norm)."""
        return [n.state(r) for n in self.norms if n is not None]

    def forward(self, x: Tensor, train: bool) -> Tensor:
        """Logits (R, B, C) for inputs (R, B, d), or for (N, d) inputs shared by every run (one GEMM for the first
        layer); in training mode each run draws its own dropout masks."""
        act = ACTIVATIONS[self.activation]
        last = len(self.weights) - 1
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if h.dim() == 2:
                r, d, out = w.shape
                h = torch.addmm(b.reshape(1, r * out), h, w.permute(1, 0, 2).reshape(d, r * out))
                h = h.view(-1, r, out).transpose(0, 1)
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < last:
                if self.norms[i] is not None:
                    h = self.norms[i](h, train)
                h = act(h)
                if train:
                    h = self._dropout(h)
        return h

    def _dropout(self, h: Tensor) -> Tensor:
        masks = self._dropout_masks(h)
        return h if masks is None else h * masks

    def _dropout_masks(self, h: Tensor) -> Tensor | None:
        """Each run's scaled dropout mask for (R, B, F) activations (None when no run drops out)."""
        if not any(p > 0 for p in self.dropout):
            return None
        # the sequential run calls F.dropout on its (B, width) activations, which on the CPU draws
        # empty_like(h).bernoulli_(1 - p) from the global generator and scales by 1/(1 - p)
        masks = torch.ones_like(h)
        for r, p in enumerate(self.dropout):
            if p > 0:
                masks[r].bernoulli_(1 - p, generator=self.generators[r]).div_(1 - p)
        return masks

    @property
    def explicit_gradients(self) -> bool:
        """Whether ``cross_entropy_grads`` applies: an activation whose derivative it writes (with or without batch
        norm)."""
        return self.activation in ("relu", "tanh")

    @property
    def fused_sgd(self) -> bool:
        """Whether ``cross_entropy_sgd_step`` applies: written-out gradients and no batch norm (γ and β have
        gradients that are not a product hᵀδ or a sum of δ)."""
        return self.explicit_gradients and all(n is None for n in self.norms)

    def _param_index(self) -> list[tuple[int, int, int | None]]:
        """Per layer, the positions in ``params()`` of its weight, its bias and its batch norm's γ (β follows γ)."""
        out, i = [], 0
        for k in range(len(self.weights)):
            norm = self.norms[k] if k < len(self.norms) else None
            out.append((i, i + 1, i + 2 if norm is not None else None))
            i += 4 if norm is not None else 2
        return out

    @torch.no_grad()
    def cross_entropy_grads(self, x: Tensor, y: Tensor, grads: Sequence[Tensor]) -> Tensor:
        """Each run's mean cross-entropy on its training batch (x (R, B, d), labels y (R, B)), with its gradient
        with respect to ``params()`` written into ``grads`` (preallocated, same shapes), by the chain rule written
        out instead of an autograd graph (no graph, no fresh gradient tensors each step):

            z_k = b_k + h_k W_k,  h_{k+1} = m_k ⊙ φ(z_k),  L_r = −(1/B) Σ_i log softmax(z_K)_{i, y_i}
            δ_K = (softmax(z_K) − onehot(y)) / B,  ∂W_k = h_kᵀ δ_k,  ∂b_k = Σ_i δ_k,  δ_{k−1} = (δ_k W_kᵀ) ⊙ m ⊙ φ'(z)

        (m the run's dropout mask scaled by 1/(1 − p); φ' = 1[z > 0] for ReLU, 1 − φ(z)² for tanh). Dropout draws
        the same masks from the same generators as ``forward``. With batch norm (a = γ x̂ + β, x̂ = (z − μ_B) s,
        s = 1/√(σ²_B + ε), batch statistics over the B rows of each run) the δ reaching a is carried back to z by

            ∂γ = Σ_i δ_a x̂,  ∂β = Σ_i δ_a,  g = γ δ_a,  δ_z = (s / B) (B g − Σ_i g − x̂ Σ_i g x̂)."""
        losses, inputs, slopes, delta, normed = self._output_delta(x, y)
        index = self._param_index()
        for i in range(len(self.weights) - 1, -1, -1):
            w_at, b_at, _ = index[i]
            torch.bmm(inputs[i].transpose(1, 2), delta, out=grads[w_at])
            torch.sum(delta, dim=1, out=grads[b_at])
            if i == 0:
                break
            delta = torch.bmm(delta, self.weights[i].transpose(1, 2)).mul_(slopes[i - 1])
            if normed[i - 1] is not None:
                x_hat, rstd = normed[i - 1]
                g_at = index[i - 1][2]
                torch.sum(delta * x_hat, dim=1, out=grads[g_at])
                torch.sum(delta, dim=1, out=grads[g_at + 1])
                g = delta.mul_(self.norms[i - 1].weight.detach().unsqueeze(1))
                n = g.shape[1]
                delta = (g * n - g.sum(1, keepdim=True) - x_hat * (g * x_hat).sum(1, keepdim=True)).mul_(rstd / n)
        return losses

    @torch.no_grad()
    def cross_entropy_sgd_step(self, x: Tensor, y: Tensor, opt: "StackedOptimizer") -> Tensor:
        """One SGD step of every run on its batch (as ``cross_entropy_grads`` + ``opt.step``), each weight
        gradient accumulated straight into the tensor it updates (``StackedOptimizer.sgd_update``): no gradient
        is stored and read back. W_k is read for δ_{k−1} before it is updated. Without momentum δ_K is scaled by
        −η_r first; the chain is linear in δ, so every δ_k is then −η_r ∂L_r/∂z_k. Returns the (R,) losses."""
        if not self.fused_sgd:
            raise ValueError("cross_entropy_sgd_step needs a stack without batch norm; use cross_entropy_grads")
        losses, inputs, slopes, delta, _ = self._output_delta(x, y)
        if not opt.use_momentum:
            delta.mul_(opt.neg_lr)
        for i in range(len(self.weights) - 1, -1, -1):
            below = torch.bmm(delta, self.weights[i].transpose(1, 2)).mul_(slopes[i - 1]) if i > 0 else None
            opt.sgd_update(2 * i, self.weights[i], inputs[i], delta)
            opt.sgd_update(2 * i + 1, self.biases[i], None, delta)
            delta = below
        opt.steps += 1
        return losses

    def _output_delta(self, x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor], Tensor,
                                                          list[tuple[Tensor, Tensor] | None]]:
        """The forward pass of ``cross_entropy_grads``: (R,) losses, each layer's input h_k, each hidden layer's
        m ⊙ φ'(a_k) (a_k = z_k without batch norm), δ_K = (softmax(z_K) − onehot(y)) / B, and each hidden layer's
        (x̂, 1/√(σ²_B + ε)) with batch norm (None without; the running statistics are updated as in ``forward``)."""
        last = len(self.weights) - 1
        inputs: list[Tensor] = []
        slopes: list[Tensor] = []
        normed: list[tuple[Tensor, Tensor] | None] = []
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(h)
            z = torch.baddbmm(b.unsqueeze(1), h, w)
            if i == last:
                h = z
                break
            norm = self.norms[i]
            if norm is not None:
                z, x_hat, rstd = norm.train_forward(z)
                normed.append((x_hat, rstd))
            else:
                normed.append(None)
            if self.activation == "relu":
                h, slope = torch.relu(z), (z > 0).to(z.dtype)
            else:
                h = torch.tanh(z)
                slope = 1 - h * h
            masks = self._dropout_masks(h)
            if masks is not None:
                h, slope = h * masks, slope.mul_(masks)
            slopes.append(slope)
        log_p = torch.log_softmax(h, dim=-1)
        picked = y.unsqueeze(-1)
        losses = -log_p.gather(2, picked).squeeze(-1).mean(1)
        delta = log_p.exp_()
        delta.scatter_add_(2, picked, torch.full_like(picked, -1, dtype=delta.dtype)).div_(delta.shape[1])
        return losses, inputs, slopes, delta, normed

    def select(self, keep: Tensor) -> None:
        """Keep only the runs at positions ``keep`` (a stopped run leaves the stack)."""
        idx = keep.tolist()
        self.weights = [w.detach()[keep].requires_grad_() for w in self.weights]
        self.biases = [b.detach()[keep].requires_grad_() for b in self.biases]
        self.norms = [n.select(keep) if n is not None else None for n in self.norms]
        self.dropout = [self.dropout[i] for i in idx]
        self.generators = [self.generators[i] for i in idx]


def per_run_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], logits: Tensor, y: Tensor, fused: bool) -> Tensor:
    """(R,) mean loss of each run's batch: one fused call when ``fused`` (cross-entropy), else one call per run."""
    r, b, c = logits.shape
    if fused:
        return F.cross_entropy(logits.reshape(r * b, c), y.reshape(-1), reduction="none").view(r, b).mean(1)
    return torch.stack([loss_fn(logits[i], y[i]) for i in range(r)])


def _per_run(values: Sequence[float], like: Tensor) -> Tensor:
    """A (R, 1, ..., 1) tensor broadcasting one value per run over a stacked parameter."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """torch.optim.SGD (momentum, dampening 0, coupled weight decay) or torch.optim.Adam, one set of
    hyper-parameters and state per run, in the order of operations of torch's single-tensor implementations:

    SGD:  g ← g + λ w;  m ← μ m + g (m₁ = g);  w ← w − η m  (w ← w − η g without momentum)
    Adam: g ← g + λ w;  m ← m + (1 − β₁)(g − m);  v ← β₂ v + (1 − β₂) g²;
          w ← w − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    def __init__(self, name: str, params: list[Tensor], lr: list[float], wd: list[float], momentum: list[float]):
        self.name = "adam" if name == "adam" else "sgd"
        self.lr, self.wd, self.momentum = list(lr), list(wd), list(momentum)
        self.steps = 0
        self.state: list[list[Tensor]] = [[torch.zeros_like(p)] for p in params]
        if self.name == "adam":
            for s, p in zip(self.state, params):
                s.append(torch.zeros_like(p))
        self._broadcast(params)

    def _broadcast(self, params: list[Tensor]) -> None:
        """Per-run hyper-parameters shaped to broadcast over each stacked parameter (rebuilt when runs leave)."""
        self.hp = [tuple(_per_run(v, p) for v in (self.lr, self.wd, self.momentum)) for p in params]
        self.use_wd, self.use_momentum = any(self.wd), any(self.momentum)
        self.neg_lr = _per_run([-v for v in self.lr], params[0])  # (R, 1, 1): −η_r (``StackedFCN.cross_entropy_sgd_step``)
        self.decay = [_per_run([1 - a * b for a, b in zip(self.lr, self.wd)], p) for p in params]  # 1 − η_r λ_r
        self.scratch = [torch.empty_like(p) for p in params] if self.name == "adam" else []

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """One update of every run; ``grads`` (fresh from autograd) are overwritten."""
        self.steps += 1
        b1, b2 = ADAM_BETAS
        for i, (p, g, s, (lr, wd, mom)) in enumerate(zip(params, grads, self.state, self.hp)):
            if self.use_wd:
                g.addcmul_(wd, p)
            if self.name == "sgd":
                if self.use_momentum:
                    s[0].mul_(mom).add_(g)  # first step: 0·0 + g = g, torch's clone(g)
                    g = s[0]
                p.addcmul_(lr, g, value=-1.0)
            else:
                m, v = s
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = torch.sqrt(v, out=self.scratch[i]).div_(math.sqrt(1 - b2**self.steps)).add_(ADAM_EPS)
                torch.div(m, denom, out=denom)
                p.addcmul_(lr / (1 - b1**self.steps), denom, value=-1.0)

    @torch.no_grad()
    def sgd_update(self, i: int, p: Tensor, h: Tensor | None, delta: Tensor) -> None:
        """SGD's update of parameter i with its loss gradient given as a product, accumulated into the tensor it
        updates: hᵀδ summed over the batch for a weight (h (R, B, in), δ (R, B, out)), Σ_B δ for a bias (h None).
        With momentum (δ = ∂L/∂z):  m ← μ m + λ w + hᵀδ;  w ← w − η m.  Without (δ = −η ∂L/∂z, see
        ``StackedFCN.cross_entropy_sgd_step``):  w ← (1 − η λ) w + hᵀδ. Equal to ``step`` up to rounding (the
        products are accumulated, not added after)."""
        lr, wd, mom = self.hp[i]
        acc = p
        if self.use_momentum:
            acc = self.state[i][0].mul_(mom)
            if self.use_wd:
                acc.addcmul_(wd, p)
        elif self.use_wd:
            p.mul_(self.decay[i])
        if h is None:
            acc.add_(delta.sum(1))
        else:
            acc.baddbmm_(h.transpose(1, 2), delta)
        if self.use_momentum:
            p.addcmul_(lr, acc, value=-1.0)

    def select(self, keep: Tensor, params: list[Tensor]) -> None:
        idx = keep.tolist()
        self.state = [[t[keep] for t in s] for s in self.state]
        self.lr, self.wd, self.momentum = ([xs[i] for i in idx] for xs in (self.lr, self.wd, self.momentum))
        self._broadcast(params)

    def torch_state(self, r: int, transposed: Sequence[bool]) -> list[dict[str, Tensor]]:
        """Run r's state per model parameter, as torch.optim.SGD / Adam keep it (for one more step from the final
        iterate); ``transposed`` (``StackedFCN.transposed``) marks the Linear weights, stored as (in, out)."""
        out = []
        for s, flip in zip(self.state, transposed):
            own = [t[r].t().contiguous() if flip else t[r] for t in s]
            if self.name == "adam":
                out.append({"step": torch.tensor(float(self.steps)), "exp_avg": own[0].clone(), "exp_avg_sq": own[1].clone()})
            else:
                out.append({"momentum_buffer": own[0].clone()} if self.momentum[r] else {})
        return out
