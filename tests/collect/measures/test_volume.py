"""The log_volume measure end to end: which function it measures, against exact orthant probabilities, the
PAC-Bayes bound of paper 002 eq. (4), invariance under alpha scaling, skips and option errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.stats
import torch

from collect.config import ModelConfig, RunConfig, SpecError
from collect.losses import cross_entropy
from collect.measures.context import MeasureContext, MeasureSkipped
from collect.measures.registry import get_measure
from collect.measures.volume import log_volume, prior_sigmas
from collect.models import build_model
from collect.nngp.kernels import relu_nngp_kernel
from collect.transforms import alpha_scale


def make_ctx(model_cfg: ModelConfig, x_train, y_train, x_test, y_test, is_attack=None, num_classes=2, seed=0, model=None):
    model = model or build_model(model_cfg, tuple(x_train.shape[1:]), num_classes, seed=seed)
    model.eval()
    return MeasureContext(
        model=model, config=dataclasses.replace(RunConfig(), model=model_cfg), x_train=x_train, y_train=y_train,
        x_test=x_test, y_test=y_test,
        is_attack=torch.zeros(len(y_train), dtype=torch.bool) if is_attack is None else is_attack,
        num_classes=num_classes, loss_fn=cross_entropy, init_state={}, device=torch.device("cpu"), seed=seed,
    )


def fitted_ctx(model_cfg: ModelConfig, n_train: int, n_test: int, dim: int = 5, seed: int = 0, model=None) -> MeasureContext:
    """A random network and data labelled by the network itself on S (zero training error by construction)."""
    g = torch.Generator().manual_seed(seed)
    x_train, x_test = torch.randn(n_train, dim, generator=g), torch.randn(n_test, dim, generator=g)
    model = model or build_model(model_cfg, (dim,), 2, seed=seed).eval()
    with torch.no_grad():
        y_train, y_test = model(x_train).argmax(1), model(x_test).argmax(1)
    return make_ctx(model_cfg, x_train, y_train, x_test, y_test, model=model)


FCN = ModelConfig(arch="fcn", width=32, depth=2, init_sigma_w=1.0, init_sigma_b=0.1)


def test_small_case_against_exact_orthant_probability_and_bound():
    ctx = fitted_ctx(FCN, n_train=4, n_test=3, seed=1)
    result = log_volume(ctx, delta=0.1)
    with torch.no_grad():
        f = np.where(ctx.model(torch.cat([ctx.x_train, ctx.x_test])).argmax(1).numpy() == 1, 1.0, -1.0)
    k = relu_nngp_kernel(torch.cat([ctx.x_train, ctx.x_test]), 2, 1.0, 0.1).numpy()
    d = np.diag(f)
    exact = math.log(scipy.stats.multivariate_normal.cdf(np.zeros(7), mean=np.zeros(7), cov=d @ k @ d, abseps=1e-7, rng=0))
    v = result.values
    # 0.1 nats: EP's error for n <= 10 (see tests/collect/nngp/test_ep.py for the measurements behind it)
    assert v["log_volume"] == pytest.approx(exact, abs=0.1)
    assert v["log_volume_per_point"] == pytest.approx(v["log_volume"] / 7)
    assert v["pac_bayes_bound"] == pytest.approx((-v["log_volume"] + math.log(10)) / 4)
    assert result.info["kernel"] == "arccos(depth=2)" and result.info["ep_converged"] == "true"
    assert v["log_volume_ep_converged"] == 1.0 and v["log_volume_n_points"] == 7 and v["log_volume_ep_iterations"] >= 1
    m = get_measure("log_volume")
    assert {k for k in v if m.kind(k) == "diagnostic"} == {"log_volume_ep_iterations", "log_volume_ep_converged", "log_volume_n_points"}


def test_function_excludes_attack_points_and_bound_needs_zero_error():
    ctx = fitted_ctx(FCN, n_train=12, n_test=8, seed=2)
    y = ctx.y_train.clone()
    y[-3:] = 1 - y[-3:]  # the last three training points become attack points with wrong labels ...
    attack = torch.zeros(12, dtype=torch.bool)
    attack[-3:] = True
    with_attack = dataclasses.replace(ctx, y_train=y, is_attack=attack)
    reduced = dataclasses.replace(ctx, x_train=ctx.x_train[:9], y_train=ctx.y_train[:9], is_attack=attack[:9])
    a, b = log_volume(with_attack), log_volume(reduced)
    # ... which the network does not fit, yet S alone has zero error: same function on S ∪ E, same bound
    assert a.values["log_volume"] == pytest.approx(b.values["log_volume"], abs=1e-10)
    assert a.values["pac_bayes_bound"] == pytest.approx(b.values["pac_bayes_bound"], abs=1e-10)
    assert a.info["n_points"] == "17"
    included = log_volume(with_attack, include_attack=True)
    assert included.info["n_points"] == "20"
    # a training error on S itself voids eq. (4)
    y_bad = ctx.y_train.clone()
    y_bad[0] = 1 - y_bad[0]
    bad = log_volume(dataclasses.replace(ctx, y_train=y_bad))
    assert math.isnan(bad.values["pac_bayes_bound"]) and "misclassifies 1 of 12" in bad.info["pac_bayes_bound"]
    assert bad.values["log_volume"] == pytest.approx(log_volume(ctx).values["log_volume"])


def test_alpha_scaling_leaves_log_volume_unchanged():
    """Paper 002 appendix C: (W_i, b_i, W_{i+1}) -> (αW_i, αb_i, W_{i+1}/α) keeps the function, hence P(f)."""
    ctx = fitted_ctx(FCN, n_train=30, n_test=30, seed=3)
    before = log_volume(ctx).values["log_volume"]
    for alpha, layer in ((5.0, 0), (0.1, 1)):
        scaled = alpha_scale(ctx.model, alpha, layer).eval()
        flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
        assert not torch.allclose(flat(scaled), flat(ctx.model))  # the parameters did change
        after = log_volume(dataclasses.replace(ctx, model=scaled)).values["log_volume"]
        assert after == pytest.approx(before, abs=1e-9)
    # ... whereas another network, with another function on the same inputs, has another volume
    other = build_model(FCN, (5,), 2, seed=99).eval()
    assert abs(log_volume(dataclasses.replace(ctx, model=other)).values["log_volume"] - before) > 0.1


def test_repeated_inputs_are_counted_once():
    ctx = fitted_ctx(FCN, n_train=10, n_test=6, seed=4)
    doubled = dataclasses.replace(ctx, x_test=torch.cat([ctx.x_test, ctx.x_train[:3]]), y_test=torch.cat([ctx.y_test, ctx.y_train[:3]]))
    a, b = log_volume(ctx), log_volume(doubled)
    assert b.values["log_volume"] == pytest.approx(a.values["log_volume"], abs=1e-10)
    assert b.info["n_duplicates"] == "3"


def test_non_binary_task_is_skipped_with_a_reason():
    ctx = fitted_ctx(FCN, n_train=5, n_test=5)
    with pytest.raises(MeasureSkipped, match="data.binary"):
        log_volume(dataclasses.replace(ctx, num_classes=10))
    m = get_measure("log_volume")
    assert m.binary_only and m.directions == {"log_volume": -1, "log_volume_per_point": -1, "pac_bayes_bound": 1, "log_volume_sampled": -1}


@pytest.mark.parametrize("cfg", [ModelConfig(arch="lenet5"), ModelConfig(arch="fcn_bn", width=16), ModelConfig(arch="fcn", activation="tanh", width=16)])
def test_other_architectures_use_the_empirical_kernel(cfg):
    g = torch.Generator().manual_seed(0)
    shape = (1, 8, 8) if cfg.arch == "lenet5" else (6,)
    x_train, x_test = torch.randn(8, *shape, generator=g), torch.randn(6, *shape, generator=g)
    ctx = make_ctx(cfg, x_train, torch.randint(0, 2, (8,), generator=g), x_test, torch.randint(0, 2, (6,), generator=g))
    result = log_volume(ctx, mc_samples=3)
    assert result.info["kernel"] == "empirical" and result.info["mc_samples"] == "3"
    assert math.isfinite(result.values["log_volume"]) and result.values["log_volume"] < 0
    assert log_volume(ctx).info["mc_samples"] == "2"  # default M = 0.1 (|S| + |E|), rounded up


def _frequency_of_class_one_everywhere(x: torch.Tensor, n: int, width: int, depth: int, sigma_w: float, sigma_b: float,
                                      seed: int) -> int:
    """How many of ``n`` random two-logit ReLU FCNs predict class 1 on every row of ``x``: the reference for
    P(constant function), written here independently of collect.nngp.sampling (two logits and argmax rather than
    one output and its sign; its own generator). Prior of paper 002 section 5.1: weights N(0, σ_w²/fan_in),
    biases N(0, σ_b²), ``depth`` hidden layers of ``width``."""
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for start in range(0, n, 2500):
        b = min(2500, n - start)
        h, fan = x.expand(b, *x.shape), x.shape[1]
        for layer in range(depth + 1):
            out = 2 if layer == depth else width
            z = h @ (torch.randn(b, fan, out, generator=g) * (sigma_w / math.sqrt(fan))) + torch.randn(b, 1, out, generator=g) * sigma_b
            h, fan = (z.relu() if layer < depth else z), out
        hits += int((h[..., 1] > h[..., 0]).all(dim=1).sum())
    return hits


def test_direct_sampling_option_on_the_boolean_system():
    """On all 128 Boolean inputs the constant function is frequent for 2 x 40 ReLU, σ_w = 1, σ_b = 0.1 (P ≈ 0.08), so
    its sampled log volume is measurable. Reference: the frequency p_ref of that function among N_REF = 20,000
    random networks drawn in this test (``_frequency_of_class_one_everywhere``). Both are binomial frequencies, so
    log p̂ has standard error √((1 − p)/(N p)) (delta method): ≈ 0.048 for the measure's 5,000 samples, ≈ 0.023 for
    the reference. The tolerance is 4 combined standard errors (≈ 0.21 nats; two unbiased estimates differ by more
    with probability 6e-5). It catches a wrong depth (one layer fewer: log P ≈ −3.18, more: ≈ −1.96, against −2.47)
    and a dropped bias (P = 0: the all-zero input's output is then exactly 0), not a width of 20 instead of 40
    (≈ −2.38). The sampled value also agrees with EP within EP's measured bias on this kernel (0.5 nats, see
    tests/collect/nngp/test_sampling.py) plus 3 sampling standard errors (≈ 0.15 nats)."""
    from collect.boolean import boolean_inputs

    cfg = ModelConfig(arch="fcn", width=40, depth=2, init_sigma_w=1.0, init_sigma_b=0.1)
    x = torch.tensor(boolean_inputs())
    model = build_model(cfg, (7,), 2, seed=0).eval()
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([-50.0, 50.0]))  # every input ↦ class 1: the constant function
    ctx = make_ctx(cfg, x[:100], torch.ones(100, dtype=torch.long), x[100:], torch.ones(28, dtype=torch.long), model=model)
    n_measure, n_ref = 5000, 20_000
    result = log_volume(ctx, direct_samples=n_measure)
    v = result.values
    p_ref = _frequency_of_class_one_everywhere(x, n_ref, 40, 2, 1.0, 0.1, seed=20_260_101) / n_ref
    p_hat = math.exp(v["log_volume_sampled"])
    se = math.sqrt((1 - p_hat) / (n_measure * p_hat) + (1 - p_ref) / (n_ref * p_ref))
    assert abs(v["log_volume_sampled"] - math.log(p_ref)) <= 4 * se, (v["log_volume_sampled"], math.log(p_ref), se)
    assert abs(v["log_volume_sampled"] - v["log_volume"]) <= 0.65
    assert "5000 samples" in result.info["log_volume_sampled"]
    # SE of log p̂ (delta method) = √((1 − p)/(N p)): 0.0467 at the P ≈ 0.084 above; 10 % covers p̂'s sampling spread.
    assert v["log_volume_sampled_se"] == pytest.approx(math.sqrt((1 - 0.084) / (5000 * 0.084)), rel=0.1)
    assert get_measure("log_volume").kind("log_volume_sampled_se") == "diagnostic"
    rare = log_volume(fitted_ctx(cfg, n_train=20, n_test=10, dim=7), direct_samples=200)
    assert math.isnan(rare.values["log_volume_sampled"]) and math.isnan(rare.values["log_volume_sampled_se"])
    assert "not among 200" in rare.info["log_volume_sampled"]
    with pytest.raises(SpecError, match="direct_samples"):
        log_volume(make_ctx(ModelConfig(arch="lenet5"), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), torch.randn(2, 1, 8, 8), torch.tensor([0, 1])), direct_samples=10)
    with pytest.raises(SpecError, match="direct_samples = -1"):
        log_volume(ctx, direct_samples=-1)


def test_prior_sigmas_follow_options_then_model_then_paper():
    assert prior_sigmas(ModelConfig(), None, None) == (1.0, 0.1)
    assert prior_sigmas(ModelConfig(init_sigma_w=1.4), None, None) == (1.4, 0.0)
    assert prior_sigmas(ModelConfig(init_sigma_w=1.4, init_sigma_b=0.2), 2.0, None) == (2.0, 0.2)


def test_bad_options_name_the_option():
    ctx = fitted_ctx(FCN, n_train=5, n_test=5)
    with pytest.raises(SpecError, match="kernel = 'rbf'"):
        log_volume(ctx, kernel="rbf")
    with pytest.raises(SpecError, match="delta"):
        log_volume(ctx, delta=1.5)
    with pytest.raises(SpecError, match="mc_samples"):
        log_volume(ctx, kernel="empirical", mc_samples=0)
    lenet = make_ctx(ModelConfig(arch="lenet5"), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(SpecError, match="kernel = 'empirical'"):
        log_volume(lenet, kernel="arccos")
