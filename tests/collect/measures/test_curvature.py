"""The registered curvature measures, end to end through a MeasureContext, against dense float64 Hessians."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from collect.config import MeasureSpec, RunConfig, SpecError, TransformConfig
from collect.losses import get_loss
from collect.measures import curvature
from collect.measures.context import MeasureContext, MeasureSkipped
from collect.measures.registry import check_measure_specs, registry
from collect.transforms import alpha_scale
from tests.collect.hessian.tiny_nets import (  # noqa: F401
    bn_net,
    cached_hessian,
    dense_hessian,
    relu_net,
    single_thread,
    tanh_net,
    vector_data,
)

NETS = {"relu": relu_net, "bn": bn_net, "tanh": tanh_net}
FAST = dict(rel_se=0.05, max_probes=2000)  # random-init Hessians: 5 % takes a few hundred probes


def ctx_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss="cross_entropy", next_iterate=None, seed=0):
    return MeasureContext(
        model=model, config=RunConfig(loss=loss), x_train=x, y_train=y, x_test=x, y_test=y,
        is_attack=torch.zeros(len(y), dtype=torch.bool), num_classes=int(y.max()) + 1, loss_fn=get_loss(loss),
        init_state={k: v.detach().clone() for k, v in model.named_parameters()}, device=torch.device("cpu"),
        seed=seed, next_iterate=next_iterate,
    )


def run(name: str, ctx: MeasureContext, **options):
    m = registry()[name]
    m.check_options(options, name)
    result = m.fn(ctx, **options)
    undeclared = set(result.values) - set(m.directions) - m.diagnostics
    assert not undeclared, f"{name} returns keys that are neither a measure with a direction nor a diagnostic: {undeclared}"
    assert not set(m.directions) & m.diagnostics, f"{name}: a diagnostic must not also have a direction"
    assert all(isinstance(v, float) for v in result.values.values())
    return result


def test_all_measures_are_registered_with_their_options():
    names = {m.name for m in curvature.MEASURES}
    assert names <= set(registry())
    assert names == {
        "hessian_trace", "hessian_frobenius", "lambda_max", "top_eigenvalues", "lambda_max_between_iterates",
        "per_sample_trace", "sharpness", "pacbayes_flatness", "pacbayes_mag_flatness", "relative_flatness",
    }
    check_measure_specs([MeasureSpec("hessian_trace", {"rel_se": 0.05, "method": "hutchpp", "n_samples": 100})])
    with pytest.raises(SpecError, match="no option"):
        check_measure_specs([MeasureSpec("lambda_max", {"k": 3})])


@pytest.mark.parametrize("net", sorted(NETS))
def test_trace_frobenius_and_eigenvalues_match_the_dense_hessian(net):
    """Trace and ‖H‖_F within 4 reported SEs (see test_trace_estimators for why 4); λ_max and the top 3 within
    their certified residual of the dense eigenvalues, with the tolerance 1e-6 met."""
    x, y = vector_data()
    model = NETS[net]()
    hess = cached_hessian(net)
    ctx = ctx_for(model, x, y)
    for method in ("hutchinson", "hutchpp"):
        tr = run("hessian_trace", ctx, method=method, **FAST).values
        assert abs(tr["hessian_trace"] - float(torch.trace(hess))) <= 4 * tr["hessian_trace_se"]
        assert tr["hessian_trace_se"] <= 0.05 * abs(tr["hessian_trace"])
        w2 = sum(float(p.detach().pow(2).sum()) for p in model.parameters())
        assert tr["hessian_trace_over_weight_norm"] == pytest.approx(tr["hessian_trace"] / w2)
        assert tr["hessian_trace_times_weight_norm"] == pytest.approx(tr["hessian_trace"] * w2)
    fr = run("hessian_frobenius", ctx, **FAST).values
    assert abs(fr["hessian_frobenius"] - float(torch.linalg.norm(hess))) <= 4 * fr["hessian_frobenius_se"]
    eig = torch.linalg.eigvalsh(hess).flip(0)
    lm = run("lambda_max", ctx, tol=1e-6, max_iter=203).values
    assert lm["lambda_max_converged"] == 1.0
    assert abs(lm["lambda_max"] - float(eig[0])) <= lm["lambda_max_residual"] + 1e-12
    top = run("top_eigenvalues", ctx, k=3, tol=1e-6, max_iter=203).values
    for i in range(3):
        assert top[f"top_eig_{i + 1}"] == pytest.approx(float(eig[i]), rel=1e-6)


def test_seeded_training_subset_and_reproducibility():
    x, y = vector_data(60)
    model = relu_net()
    a = run("hessian_trace", ctx_for(model, x, y), n_samples=25, **FAST).values
    b = run("hessian_trace", ctx_for(model, x, y), n_samples=25, **FAST).values
    assert a == b  # same run seed: same subset, same probes
    idx = torch.randperm(60, generator=torch.Generator().manual_seed(0 * 7919 + curvature.SUBSET_SALT))[:25]
    true = float(torch.trace(dense_hessian(model, get_loss("cross_entropy"), x[idx], y[idx])))
    assert a["hessian_trace_se"] == 0.0  # the default is exact on this ReLU net (float64: rounding only)
    assert a["hessian_trace"] == pytest.approx(true, rel=1e-9)
    with pytest.raises(SpecError, match="n_samples"):
        run("hessian_trace", ctx_for(model, x, y), n_samples=0)
    with pytest.raises(SpecError, match="method"):
        run("hessian_trace", ctx_for(model, x, y), method="pyhessian")


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "mse_mean"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_default_trace_is_exact_where_the_gauss_newton_identity_holds(net, loss):
    """At its defaults ``hessian_trace`` is the dense trace to float64 rounding (rel 1e-9: the two differ only in
    summation order) on the piecewise-linear nets (ReLU, eval-mode batch norm) for every loss with a known output
    Hessian, with standard error 0 and no Hessian-vector products; on the tanh net, where the identity fails, it
    falls back to Hutchinson, says why, and lands within 4 of its reported standard errors (test_trace_estimators)."""
    x, y = vector_data()
    model = NETS[net]()
    ctx = ctx_for(model, x, y, loss=loss)
    true = float(torch.trace(dense_hessian(model, get_loss(loss), x, y)))
    result = run("hessian_trace", ctx, rel_se=0.05, max_probes=2000)
    tr = result.values
    if net == "tanh":
        assert result.info["method"] == "hutchinson" and "Tanh" in result.info["why_not_exact"]
        assert tr["hessian_trace_se"] > 0 and abs(tr["hessian_trace"] - true) <= 4 * tr["hessian_trace_se"]
        with pytest.raises(SpecError, match="exact.*does not apply"):
            run("hessian_trace", ctx, method="exact")
    else:
        assert result.info["method"] == "exact"
        assert tr["hessian_trace"] == pytest.approx(true, rel=1e-9)
        assert tr["hessian_trace_se"] == 0.0 and tr["hessian_trace_n_hvp"] == 0.0


def test_between_iterates_is_the_max_over_the_segment():
    """With a fake next iterate θ' = θ + δ and 3 points (t = 0, ½, 1), the value is the largest dense λ_max."""
    x, y = vector_data()
    model = bn_net()
    g = torch.Generator().manual_seed(5)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    step = {k: 0.3 * torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in params.items()}
    nxt = {k: params[k] + step[k] for k in params}
    ctx = ctx_for(model, x, y, next_iterate=lambda: nxt)
    res = run("lambda_max_between_iterates", ctx, n_points=3, tol=1e-6, max_iter=203)
    dense = []
    for t in (0.0, 0.5, 1.0):
        probe = bn_net()
        with torch.no_grad():
            for k, p in probe.named_parameters():
                p.copy_(params[k] + t * step[k])
        dense.append(float(torch.linalg.eigvalsh(dense_hessian(probe, get_loss("cross_entropy"), x, y))[-1]))
    assert res.values["lambda_max_between_iterates"] == pytest.approx(max(dense), rel=1e-6)
    assert res.values["lambda_max_between_iterates_at"] == (0.0, 0.5, 1.0)[int(np.argmax(dense))]
    with pytest.raises(MeasureSkipped, match="next training iterate"):
        run("lambda_max_between_iterates", ctx_for(model, x, y))
    # A reparametrised run: the next iterate is a step of the untransformed model, so the segment is meaningless.
    scaled = replace(ctx, config=RunConfig(transform=TransformConfig(alpha_scale=2.0)))
    with pytest.raises(MeasureSkipped, match="reparametrised"):
        run("lambda_max_between_iterates", scaled)


def test_per_sample_trace_on_the_affine_model_recovers_aceht_exactly():
    """Affine model: per-sample trace = ACEHT, so Pearson r = 1 before and after outlier removal; columns and
    metrics are all there; the exact method is chosen automatically."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 3)).double().eval()
    x, y = vector_data(60)
    with torch.no_grad():
        model[1].weight.mul_(4)  # some confident points, some not, so the scatter has spread
    res = run("per_sample_trace", ctx_for(model, x, y), n_points=50)
    cols = res.per_sample
    assert set(cols) >= {"trace", "aceht", "margin_bound", "output_margin", "softmax_margin", "x_sq_norm", "correct"}
    assert all(len(v) == 50 for v in cols.values())
    np.testing.assert_allclose(cols["trace"], cols["aceht"], rtol=1e-10)
    assert res.values["per_sample_r_aceht"] == pytest.approx(1.0, abs=1e-10)
    assert res.values["per_sample_r_aceht_lof"] == pytest.approx(1.0, abs=1e-10)
    assert -1 <= res.values["per_sample_r_margin_bound"] <= 1
    assert res.values["per_sample_n_correct"] == float(cols["correct"].sum()) > 3
    assert res.values["per_sample_trace_mean_se"] == 0.0
    assert res.info["method"] == "exact"
    # The mean of the per-sample traces is the trace of the mean loss on the same points.
    idx = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:50]
    hess = dense_hessian(model, get_loss("cross_entropy"), x[idx], y[idx])
    assert res.values["per_sample_trace_mean"] == pytest.approx(float(torch.trace(hess)), rel=1e-10)


def test_per_sample_trace_falls_back_to_hutchinson_on_tanh():
    x, y = vector_data(8)
    res = run("per_sample_trace", ctx_for(tanh_net(), x, y), n_points=8, n_probes=16)
    assert res.info["method"].startswith("hutchinson")
    assert "Tanh" in res.info["why_not_exact"]
    assert (res.per_sample["trace_se"] > 0).all()
    with pytest.raises(SpecError, match="does not apply"):
        run("per_sample_trace", ctx_for(tanh_net(), x, y), method="exact")


def test_alpha_scaling_moves_raw_curvature_but_not_relative_flatness():
    """Same function, same outputs: trace and λ_max move by large factors, the last layer's relative flatness
    ‖W‖²·Tr H_W does not (its block scales by exactly α² while ‖W‖² scales by 1/α²; same probes, so the two
    estimates agree to rounding)."""
    x, y = vector_data()
    model = relu_net()
    scaled = alpha_scale(model, 5.0, 1)
    before, after = ctx_for(model, x, y), ctx_for(scaled, x, y)
    for name, key in (("hessian_trace", "hessian_trace"), ("lambda_max", "lambda_max")):
        v0, v1 = run(name, before).values[key], run(name, after).values[key]
        assert v1 > 3 * v0
    r0 = run("relative_flatness", before, **FAST).values
    r1 = run("relative_flatness", after, **FAST).values
    assert r1["relative_flatness"] == pytest.approx(r0["relative_flatness"], rel=1e-9)
    hess = cached_hessian("relu")
    start = 72 + 104  # layer 0 and layer 1 (weights and biases) come first
    block = hess[start : start + 24, start : start + 24]
    true = float(model[4].weight.detach().pow(2).sum()) * float(torch.trace(block))
    assert abs(r0["relative_flatness"] - true) <= 4 * r0["relative_flatness_se"]


def test_sharpness_and_pacbayes_run_through_the_context():
    x, y = vector_data()
    ctx = ctx_for(relu_net(), x, y)
    s1 = run("sharpness", ctx, epsilon=1e-3).values["sharpness"]
    s2 = run("sharpness", ctx, epsilon=1e-3).values["sharpness"]
    s_big = run("sharpness", ctx, epsilon=1e-2).values["sharpness"]
    assert 0 < s1 == s2 < s_big  # a larger box can only contain larger losses (up to the local search)
    assert run("sharpness", ctx, method="pga", max_iter=10).values["sharpness"] > 0
    with pytest.raises(SpecError, match="epsilon"):
        run("sharpness", ctx, epsilon=0.0)
    with pytest.raises(SpecError, match=r"sharpness\.step = 0\.0"):
        run("sharpness", ctx, step=0.0)
    with pytest.raises(SpecError, match=r"sharpness\.patience = 0"):
        run("sharpness", ctx, patience=0)
    # the pre-issue-14 setting is still reachable, and on this net lands within 1 % of the default
    old = run("sharpness", ctx, epsilon=1e-3, step=0.5, patience=5).values["sharpness"]
    assert old == pytest.approx(s1, rel=0.01)
    pb = run("pacbayes_flatness", ctx, n_draws=4, n_iter=6).values
    assert pb["pacbayes_flatness"] == pytest.approx(1 / pb["pacbayes_flatness_sigma"] ** 2)
    mag = run("pacbayes_mag_flatness", ctx, n_draws=4, n_iter=6).values
    assert mag["pacbayes_mag_flatness"] > 0
    with pytest.raises(SpecError, match="target_deviation"):
        run("pacbayes_flatness", ctx, target_deviation=1.5)


def test_curvature_diagnostics_are_declared_and_have_no_direction():
    """Interfaces §1: standard errors, product counts, residuals, convergence flags, the σ a bisection found, point
    counts and the per-sample r-values are diagnostics (ledger ``diag.``), never ranked as measures."""
    diagnostic_like = ("_se", "_n_hvp", "_n_evals", "_n_restarts", "_n_iter", "_residual", "_converged", "_sigma",
                       "_bracketed", "_n_correct", "_improved", "_at")
    for m in curvature.MEASURES:
        assert not set(m.directions) & m.diagnostics, m.name
        for key in set(m.directions):
            assert not key.endswith(diagnostic_like) and "_r_" not in key, f"{m.name}: {key} has a direction"
    reg = registry()
    for key in ("hessian_trace_se", "hessian_trace_n_hvp", "lambda_max_residual", "lambda_max_converged",
                "pacbayes_flatness_sigma", "pacbayes_mag_flatness_sigma", "per_sample_n_correct",
                "per_sample_trace_mean_se", "per_sample_r_aceht", "per_sample_r_margin_bound_lof",
                "relative_flatness_se", "hessian_frobenius_se", "sharpness_last_restart_improved",
                "sharpness_n_restarts", "sharpness_n_iter"):
        assert any(reg[m.name].kind(key) == "diagnostic" for m in curvature.MEASURES), key
    assert reg["sharpness"].kind("sharpness") == "measure"
