"""Adaptive sharpness at its defaults against exact maxima, and its invariance where Keskar sharpness moves.

References, independent of the Auto-PGD ascent under test:
* a linear model under squared error, where L(w + δ) − L(w) = gᵀδ + ½δᵀHδ exactly: the ℓ2-ball maximum is a
  trust-region problem, solved here by an eigendecomposition and the secular equation (scipy brentq), and the
  Gaussian average is ½ρ² Σ_i c_i² H_ii in closed form;
* a tiny bias-free ReLU net (8 parameters), where the ℓ∞ maximum is brute-forced on a 6-point grid per parameter
  (1.7 million points, corners included).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from collect.losses import cross_entropy, squared_error
from collect.measures.registry import registry
from collect.transforms import alpha_scale, last_layer_scale
from tests.collect.hessian.tiny_nets import dense_hessian, flat_params, relu_net, single_thread, vector_data  # noqa: F401
from tests.collect.measures.test_curvature import ctx_for, run


def linear_model_near_minimum(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """nn.Linear(5, 3) at the least-squares solution plus a small offset (both gradient and curvature matter)."""
    x, y = vector_data(n=40, seed=seed + 1)
    target = torch.nn.functional.one_hot(y, 3).double()
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(xa, target).solution  # [6, 3]
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(5, 3).double()
    with torch.no_grad():
        model.weight.copy_(sol[:5].T + 0.05 * torch.randn(3, 5, generator=g, dtype=torch.float64))
        model.bias.copy_(sol[5] + 0.05 * torch.randn(3, generator=g, dtype=torch.float64))
    return model.eval(), x, y


def gradient(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    model.zero_grad()
    loss_fn(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).detach()


def exact_ball_max(g: torch.Tensor, h: torch.Tensor, rho: float) -> float:
    """max_{‖u‖₂ ≤ ρ} gᵀu + ½uᵀHu for PSD H: the trust-region solution u = (λI − H)⁻¹g on the sphere, λ > λ_max(H),
    from the secular equation Σ b_i²/(λ − μ_i)² = ρ² (b = Qᵀg in H's eigenbasis)."""
    mu, q = np.linalg.eigh(h.numpy())
    b = q.T @ g.numpy()
    assert abs(b[-1]) > 1e-8 * np.abs(b).max(), "hard case: choose another offset"
    phi = lambda lam: float(np.sum(b**2 / (lam - mu) ** 2) - rho**2)  # noqa: E731 - decreasing on (μ_max, ∞)
    lo, hi = mu[-1] + 1e-12 * (1 + abs(mu[-1])), mu[-1] + np.linalg.norm(b) / rho
    lam = scipy.optimize.brentq(phi, lo, hi, xtol=1e-15, rtol=1e-15)
    u = q @ (b / (lam - mu))
    return float(g.numpy() @ u + 0.5 * u @ h.numpy() @ u)


@pytest.mark.parametrize("adaptive", [True, False])
def test_l2_worst_case_reaches_the_exact_trust_region_maximum_at_defaults(adaptive):
    model, x, y = linear_model_near_minimum()
    ctx = ctx_for(model, x, y, loss="mse")
    got = run("adaptive_sharpness", ctx, norm="l2", adaptive=adaptive)
    key = f"{'adaptive' if adaptive else 'plain'}_sharpness_l2"
    w, _ = flat_params(model)
    c = w.abs() if adaptive else torch.ones_like(w)
    g = gradient(model, squared_error, x, y)
    h = dense_hessian(model, squared_error, x, y)
    exact = exact_ball_max(c * g, c[:, None] * h * c[None, :], rho=0.1)  # default ρ for ℓ2
    value = got.values[key]
    assert exact > 0
    assert value <= exact * (1 + 1e-9) + 1e-12  # a feasible point cannot beat the maximum
    assert value >= 0.95 * exact, f"{value} < 0.95 * {exact}"
    assert got.values[f"{key}_converged"] == 1.0


@pytest.mark.parametrize("adaptive", [True, False])
def test_average_case_matches_the_closed_form_on_the_linear_model(adaptive):
    """E L(w + ρ c ⊙ z) − L(w) = ½ρ² Σ c_i² H_ii exactly for a quadratic loss; the default 100-draw mean must lie
    within 4 of its standard errors (a 6e-5 false-failure rate for a normal mean)."""
    model, x, y = linear_model_near_minimum(seed=3)
    got = run("average_sharpness", ctx_for(model, x, y, loss="mse"), adaptive=adaptive)
    key = f"{'adaptive' if adaptive else 'plain'}_avg_sharpness"
    w, _ = flat_params(model)
    c = w.abs() if adaptive else torch.ones_like(w)
    h = dense_hessian(model, squared_error, x, y)
    exact = 0.5 * 0.05**2 * float((c**2 * torch.diagonal(h)).sum())  # default ρ = 0.05
    assert abs(got.values[key] - exact) <= 4 * got.values[f"{key}_se"]
    assert got.values[f"{key}_se"] < 0.2 * exact


def tiny_relu_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double().eval()


def brute_force_linf_max(model: nn.Module, x, y, scale: torch.Tensor, rho: float, points: int = 6) -> float:
    """max over a grid of ``points`` values per coordinate of u ∈ [−ρ, ρ]^8 (corners included) of L(w + c ⊙ u)."""
    w, _ = flat_params(model)
    grid = torch.linspace(-rho, rho, points, dtype=torch.float64)
    best = -np.inf
    combos = torch.cartesian_prod(*[grid] * 4)  # the first layer's 4 weights, then loop over the second's
    for second in itertools.product(grid.tolist(), repeat=4):
        u = torch.cat([combos, torch.tensor(second, dtype=torch.float64).expand(len(combos), 4)], 1)
        theta = w + scale * u  # [B, 8]
        w1, w2 = theta[:, :4].reshape(-1, 2, 2), theta[:, 4:].reshape(-1, 2, 2)
        hidden = torch.relu(torch.einsum("bij,nj->bni", w1, x))
        logits = torch.einsum("bij,bnj->bni", w2, hidden)
        losses = torch.nn.functional.cross_entropy(logits.permute(0, 2, 1), y.expand(len(theta), -1), reduction="none").mean(1)
        best = max(best, float(losses.max()))
    return best


@pytest.mark.parametrize("adaptive,rho", [(True, None), (True, 0.5), (False, 0.3)])
def test_linf_worst_case_reaches_the_brute_force_maximum_on_a_tiny_net(adaptive, rho):
    """At the default ρ = 1e-3 and at radii where the loss is far from linear on the box (0.5|w|, 0.3)."""
    model = tiny_relu_net()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (12,), generator=g)
    options = {} if rho is None else {"rho": rho}
    got = run("adaptive_sharpness", ctx_for(model, x, y), norm="linf", adaptive=adaptive, **options)
    key = f"{'adaptive' if adaptive else 'plain'}_sharpness_linf"
    w, _ = flat_params(model)
    scale = w.abs() if adaptive else torch.ones_like(w)
    base = float(cross_entropy(model(x), y).detach())
    reference = brute_force_linf_max(model, x, y, scale, 1e-3 if rho is None else rho) - base
    assert reference > 0
    assert got.values[key] >= 0.95 * reference, f"{got.values[key]} < 0.95 * {reference}"


def _trained_relu() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y = vector_data()
    model = relu_net(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def _value(name: str, model, x, y, **options) -> float:
    res = run(name, ctx_for(model, x, y), **options)
    return next(v for k, v in res.values.items() if k in registry()[name].directions)


@pytest.mark.parametrize(
    "name,options",
    [
        ("adaptive_sharpness", {"norm": "linf"}),
        ("adaptive_sharpness", {"norm": "l2"}),
        ("average_sharpness", {}),
    ],
)
def test_adaptive_sharpness_is_invariant_where_keskar_sharpness_moves(name, options):
    """Alpha scaling (function unchanged) leaves adaptive sharpness unchanged; last-layer scaling (logits × α) does
    too under logit normalisation. Keskar sharpness moves under both (by more than 20 %), as does plain sharpness
    under alpha scaling."""
    model, x, y = _trained_relu()
    scaled = alpha_scale(model, 8.0, 0)
    lasted = last_layer_scale(model, 8.0)
    base = _value(name, model, x, y, **options)
    assert base > 0
    assert _value(name, scaled, x, y, **options) == pytest.approx(base, rel=1e-6)
    ln = dict(options, logit_normalize=True)
    assert _value(name, lasted, x, y, **ln) == pytest.approx(_value(name, model, x, y, **ln), rel=1e-6)

    plain = dict(options, adaptive=False)
    assert _value(name, scaled, x, y, **plain) != pytest.approx(_value(name, model, x, y, **plain), rel=0.2)
    keskar = _value("sharpness", model, x, y)
    assert _value("sharpness", scaled, x, y) != pytest.approx(keskar, rel=0.2)
    assert _value("sharpness", lasted, x, y) != pytest.approx(keskar, rel=0.2)


def test_options_are_checked_and_keys_follow_the_options():
    model, x, y = _trained_relu()
    ctx = ctx_for(model, x, y)
    from collect.config import SpecError

    with pytest.raises(SpecError, match="norm"):
        run("adaptive_sharpness", ctx, norm="l1")
    with pytest.raises(SpecError, match="rho"):
        run("adaptive_sharpness", ctx, rho=-1.0)
    res = run("adaptive_sharpness", ctx, norm="l2", adaptive=False, logit_normalize=True, max_restarts=12)
    assert "plain_sharpness_l2_ln" in res.values
    res = run("adaptive_sharpness", ctx, norm="linf", max_restarts=12)
    assert res.values["adaptive_sharpness_linf_n_restarts"] == 12.0


def test_m_sharpness_is_the_mean_of_the_batch_maxima():
    """With m = 20 on 40 points: the mean of the two batches' own maxima (each computed as a 20-point run)."""
    model, x, y = _trained_relu()
    got = run("adaptive_sharpness", ctx_for(model, x, y), norm="l2", m=20).values["adaptive_sharpness_l2"]
    halves = [run("adaptive_sharpness", ctx_for(model, x[i : i + 20], y[i : i + 20]), norm="l2").values["adaptive_sharpness_l2"]
              for i in (0, 20)]
    assert got == pytest.approx(sum(halves) / 2, rel=0.02)
    assert got >= run("adaptive_sharpness", ctx_for(model, x, y), norm="l2").values["adaptive_sharpness_l2"]
