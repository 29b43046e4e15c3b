"""Jiang et al.'s measures against independent computations: numpy SVDs, explicit path sums and margins for the
norms; the σ' of ``pacbayes_flatness`` and the closed-form bounds; an exact sharpness radius on a linear model whose
worst-case perturbation is the same for every training point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.collect.hessian.tiny_nets import relu_net, single_thread, vector_data  # noqa: F401
from tests.collect.measures.test_curvature import ctx_for, run


def bias_free_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16, bias=False), nn.ReLU(), nn.Linear(16, 8, bias=False), nn.ReLU(),
                         nn.Linear(8, 3, bias=False)).double().eval()


def _moved(model: nn.Module, seed: int = 9) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model's parameters as 'initialisation' and a perturbed copy as the 'trained' model."""
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model, init


def _trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model after 300 full-batch Adam steps, and its initial parameters."""
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), init


def test_jiang_norms_match_numpy_and_explicit_path_sums():
    x, y = vector_data()
    model, init = _trained(bias_free_net(), x, y)
    ctx = ctx_for(model, x, y)
    ctx = type(ctx)(**{**ctx.__dict__, "init_state": init})
    got = run("jiang_norms", ctx).values

    ws = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    w0s = [init[f"{i}.weight"].numpy() for i in (0, 2, 4)]
    spec = np.array([np.linalg.svd(w, compute_uv=False)[0] ** 2 for w in ws])
    fro = np.array([(w**2).sum() for w in ws])
    logits = model(x).detach().numpy()
    true = logits[np.arange(len(y)), y.numpy()]
    other = np.where(np.eye(3, dtype=bool)[y.numpy()], -np.inf, logits).max(1)
    gamma = np.percentile(true - other, 10)
    assert gamma > 0
    # Σ over input→output paths (i, j, k, l) of the product of squared weights, by explicit loops
    a, b, c = (w**2 for w in ws)
    paths = sum(c[l, k] * b[k, j] * a[j, i] for i in range(5) for j in range(16) for k in range(8) for l in range(3))
    d = 3
    expected = {
        "param_count": 5 * 16 + 16 * 8 + 8 * 3,
        "inverse_margin": 1 / gamma**2,
        "log_prod_of_spec_over_margin": np.log(np.prod(spec) / gamma**2),
        "log_sum_of_spec_over_margin": np.log(d * (np.prod(spec) / gamma**2) ** (1 / d)),
        "log_sum_of_fro": np.log(d * np.prod(fro) ** (1 / d)),
        "log_spec_orig_main": np.log(np.prod(spec) / gamma**2 * (fro / spec).sum()),
        "log_spec_init_main": np.log(np.prod(spec) / gamma**2 * sum(((w - w0) ** 2).sum() / s for w, w0, s in zip(ws, w0s, spec))),
        "frobenius_distance": sum(((w - w0) ** 2).sum() for w, w0 in zip(ws, w0s)),
        "dist_spec_init": sum(np.linalg.svd(w - w0, compute_uv=False)[0] ** 2 for w, w0 in zip(ws, w0s)),
        "param_norm": fro.sum(),
        "path_norm_sq": paths,
        "path_norm_over_margin": paths / gamma**2,
        "jiang_margin_q10": gamma,
    }
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-10), k


def test_margin_normalised_values_are_nan_when_the_margin_is_not_positive():
    x, y = vector_data()
    model = relu_net(0)  # random init: about two thirds of the points misclassified
    got = run("jiang_norms", ctx_for(model, x, y)).values
    assert got["jiang_margin_q10"] <= 0
    assert math.isnan(got["inverse_margin"]) and math.isnan(got["log_prod_of_fro_over_margin"])
    assert math.isfinite(got["log_prod_of_fro"])


def test_pacbayes_bounds_use_the_sigma_of_pacbayes_flatness_and_the_closed_forms():
    x, y = vector_data()
    model, init = _moved(relu_net(1), seed=3)
    ctx = ctx_for(model, x, y, seed=2)
    ctx = type(ctx)(**{**ctx.__dict__, "init_state": init})
    got = run("pacbayes_bounds", ctx).values
    sigma = run("pacbayes_flatness", ctx).values["pacbayes_flatness_sigma"]
    mag_sigma = run("pacbayes_mag_flatness", ctx).values["pacbayes_mag_flatness_sigma"]
    assert got["pacbayes_bounds_sigma"] == sigma and got["pacbayes_bounds_mag_sigma"] == mag_sigma
    w = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    w0 = np.concatenate([init[k].numpy().ravel() for k, _ in model.named_parameters()])
    m, omega = len(y), w.size
    assert got["pacbayes_orig"] == pytest.approx((w @ w) / (4 * sigma**2) + np.log(m / sigma) + 10, rel=1e-10)
    d = w - w0
    assert got["pacbayes_init"] == pytest.approx((d @ d) / (4 * sigma**2) + np.log(m / sigma) + 10, rel=1e-10)
    for key, v in (("pacbayes_mag_orig", w), ("pacbayes_mag_init", d)):
        terms = np.log((1e-6 + (mag_sigma**2 + 1) * (v @ v) / omega) / (1e-6 + mag_sigma**2 * d**2))
        assert got[key] == pytest.approx(0.25 * terms.sum() + np.log(m / mag_sigma) + 10, rel=1e-10), key


def _orthant_problem(n: int = 50):
    """Two-class linear model f(x) = Wx, every x ≥ 0 and every label 0: the perturbation u = (−r row 0, +r row 1)
    lowers every margin by its largest amount at once, so the worst-case error at box size r is exact: point i is
    misclassified iff γ_i ≤ Σ_j (r_0j + r_1j) x_ij."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 4, generator=g, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.long)
    model = nn.Linear(4, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.8, 0.6, 1.2], [-0.3, 0.1, -0.2, 0.2]], dtype=torch.float64))
    return model.eval(), x, y


def _exact_alpha(thresholds: np.ndarray, base_errors: int, n: int, target: float = 0.1) -> float:
    """The largest α with (#{i: α ≥ α_i} − base)/n ≤ target: just below the (k+1)-th smallest α_i."""
    allowed = int(np.floor(target * n + 1e-9)) + base_errors
    return float(np.sort(thresholds)[allowed])


@pytest.mark.parametrize("magnitude", [False, True])
def test_jiang_sharpness_radius_matches_the_exact_radius(magnitude):
    model, x, y = _orthant_problem()
    w = model.weight.detach().numpy()
    xs = x.numpy()
    margins = xs @ (w[0] - w[1])
    assert (margins > 0).all()
    if magnitude:  # r_ij = α|w_ij| + ε: γ_i ≤ α Σ_j (|w_0j| + |w_1j|) x_ij + 2ε Σ_j x_ij
        thresholds = (margins - 2e-3 * xs.sum(1)) / (xs @ (np.abs(w[0]) + np.abs(w[1])))
    else:  # r = α: γ_i ≤ 2α Σ_j x_ij
        thresholds = margins / (2 * xs.sum(1))
    exact = _exact_alpha(thresholds, 0, len(y))
    name = "jiang_sharpness_mag" if magnitude else "jiang_sharpness"
    got = run(name, ctx_for(model, x, y)).values
    alpha = got[f"{name}_alpha"]
    # bisection to hi/lo ≤ 1.01 around the exact radius (the constraint is ≤, so α' < exact ≤ α'·1.01)
    assert exact / 1.011 <= alpha < exact
    assert got[f"{name}_flatness"] == pytest.approx(1 / alpha**2)
    omega, m = w.size, len(y)
    wsq = float((w**2).sum())
    if not magnitude:
        assert got[f"{name}_orig"] == pytest.approx(wsq * np.log(2 * omega) / (4 * alpha**2) + np.log(m / alpha) + 10)


def test_magnitude_aware_radius_is_zero_when_the_epsilon_box_alone_breaks_the_target():
    model, x, y = _orthant_problem()
    got = run("jiang_sharpness_mag", ctx_for(model, x, y), mag_eps=1.0).values
    assert got["jiang_sharpness_mag_alpha"] == 0.0 and got["jiang_sharpness_mag_bracketed"] == 0.0
    assert math.isinf(got["jiang_sharpness_mag_flatness"]) and math.isinf(got["jiang_sharpness_mag_orig"])
