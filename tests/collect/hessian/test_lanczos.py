"""Lanczos: largest *algebraic* eigenvalues, certified residual bounds, agreement with the dense spectrum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.hessian.lanczos import lanczos_top_eigenvalues
from collect.hessian.operator import ChunkedLoss
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    F64,
    NETS,
    cached_hessian,
    cpu_generator,
    single_thread,
    vector_data,
)


def test_indefinite_quadratic_returns_largest_algebraic_not_largest_magnitude():
    """H = Q diag(-10, -7, -4, 0.5, 1, 3) Qᵀ: λ_max is 3, while power iteration would return -10."""
    eig = torch.tensor([-10.0, -7.0, -4.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    hess = q @ torch.diag(eig) @ q.T
    res = lanczos_top_eigenvalues(lambda v: hess @ v, 6, k=3, tol=1e-10, generator=cpu_generator(1), **F64)
    assert res.converged
    assert res.eigenvalues == pytest.approx((3.0, 1.0, 0.5), rel=1e-9)
    # The quadratic loss ½ θᵀHθ through the real HVP operator: its Hessian is H at every θ.
    loss = ChunkedLoss(Quadratic(hess), lambda out, _y: out.mean(), torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    res = lanczos_top_eigenvalues(loss.hvp, loss.dim, k=1, tol=1e-8, generator=cpu_generator(2), **F64)
    assert res.converged and res.eigenvalues[0] == pytest.approx(3.0, rel=1e-7)


class Quadratic(nn.Module):
    """A 'network' whose output is the loss ½ θᵀHθ of its parameter θ (for every input row)."""

    def __init__(self, hess: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.randn(hess.shape[0], dtype=hess.dtype))
        self.register_buffer("hess", hess)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.theta @ self.hess @ self.theta).expand(x.shape[0], 1)


@pytest.mark.parametrize("net", sorted(NETS))
def test_top3_matches_dense_spectrum(net):
    """Top-3 Ritz values are within their reported residual of the true eigenvalues (Bauer–Fike), and the
    residual meets the relative tolerance. tol = 1e-6 in float64 keeps this far from rounding (1e-16·‖H‖)."""
    x, y = vector_data()
    hess = cached_hessian(net)
    true = torch.linalg.eigvalsh(hess).flip(0)[:3]
    loss = ChunkedLoss(NETS[net](), cross_entropy, x, y)
    res = lanczos_top_eigenvalues(loss.hvp, loss.dim, k=3, tol=1e-6, max_iter=203, generator=cpu_generator(0), **F64)
    assert res.converged
    for got, want, r in zip(res.eigenvalues, true.tolist(), res.residuals):
        assert r <= 1e-6 * abs(got)
        assert abs(got - want) <= r + 1e-12
    assert res.n_matvecs < 120  # far fewer than the 203 a full tridiagonalisation would take


def test_unconverged_run_says_so():
    hess = cached_hessian("tanh")
    res = lanczos_top_eigenvalues(
        lambda v: hess @ v, 203, k=1, tol=1e-12, max_iter=5, generator=cpu_generator(0), **F64
    )
    assert not res.converged and res.n_matvecs == 5
    # Even unconverged, a Ritz value never exceeds λ_max and its residual still bounds its distance to an eigenvalue.
    lam = torch.linalg.eigvalsh(hess)
    assert res.eigenvalues[0] <= float(lam[-1]) + 1e-12
    assert float((lam - res.eigenvalues[0]).abs().min()) <= res.residuals[0] + 1e-12
    with pytest.raises(ValueError, match="max_iter"):
        lanczos_top_eigenvalues(lambda v: hess @ v, 203, k=3, max_iter=2, generator=cpu_generator(0), **F64)
