"""Tiny float64 networks (a few hundred parameters) and their dense Hessians: the ground truth of the curvature
tests (tests/collect/hessian, tests/collect/measures/test_curvature.py, tests/collect/test_transforms.py).

The dense Hessian comes from ``torch.autograd.functional.hessian`` on a plain closure of the flat parameter vector,
independent of the chunked, vmapped code under test.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.func import functional_call

from collect.losses import cross_entropy, squared_error

LOSSES = {"ce": cross_entropy, "mse": squared_error}


def flat_params(model: nn.Module) -> tuple[torch.Tensor, list[tuple[str, torch.Size]]]:
    named = [(k, v) for k, v in model.named_parameters()]
    return torch.cat([v.detach().reshape(-1) for _, v in named]), [(k, v.shape) for k, v in named]


def as_dict(theta: torch.Tensor, layout: list[tuple[str, torch.Size]]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, shape in layout:
        n = shape.numel()
        out[k] = theta[i : i + n].view(shape)
        i += n
    return out


def dense_hessian(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    theta, layout = flat_params(model)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, as_dict(t, layout), (x,)), y)

    try:  # forward-mode outer Jacobian: several times faster, but some ops (max-pool, mse) lack the batching rule
        hess = torch.autograd.functional.hessian(loss, theta, vectorize=True, outer_jacobian_strategy="forward-mode")
    except RuntimeError:
        hess = torch.autograd.functional.hessian(loss, theta, vectorize=True)
    return hess.detach()


@functools.cache
def cached_hessian(net: str, loss: str = "ce", seed: int = 0) -> torch.Tensor:
    """Dense Hessian of NETS[net](seed) on ``vector_data()``, computed once per test session (read-only use)."""
    x, y = vector_data()
    return dense_hessian(NETS[net](seed), LOSSES[loss], x, y)


def relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()


def tanh_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()


def bn_net(seed: int = 0) -> nn.Module:
    """ReLU net with batch norm, whose running statistics are set by a few training-mode passes, then eval."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Linear(5, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    m.train()
    with torch.no_grad():
        for _ in range(5):
            m(2 * torch.randn(64, 5, dtype=torch.float64) + 1)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


def conv_net(seed: int = 0) -> nn.Module:
    """A miniature LeNet: conv → ReLU → max-pool → flatten → linear, on 1×6×6 images."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double().eval()


NETS = {"relu": relu_net, "tanh": tanh_net, "bn": bn_net}


@functools.cache
def trained_net(net: str, seed: int = 0) -> nn.Module:
    """NETS[net](seed) after 300 full-batch Adam steps (lr 0.01) on ``vector_data()`` (training loss ~1e-3): near a
    minimum, where the gradient is small and curvature decides — the hard case for maximisers and the regime of
    trained networks for trace estimators (a few dominant eigenvalues). Batch norm keeps its running statistics.
    Cached per session: read-only use."""
    x, y = vector_data()
    model = NETS[net](seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@functools.cache
def trained_hessian(net: str, seed: int = 0) -> torch.Tensor:
    """Dense cross-entropy Hessian of ``trained_net(net, seed)`` on ``vector_data()``."""
    x, y = vector_data()
    return dense_hessian(trained_net(net, seed), cross_entropy, x, y)


def vector_data(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def image_data(n: int = 20, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def cpu_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


F64 = dict(dtype=torch.float64, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny matrices: intra-op threads only add overhead (measured 15x slower with 2 threads on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
