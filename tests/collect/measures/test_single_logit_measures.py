"""Every registered measure on a single-logit (sigmoid) head: it computes finite values or is skipped with a reason,
never fails; and the ones whose convention changes for one logit follow it (margins, 0-1 error, skips)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from collect.config import RunConfig
from collect.hessian.pacbayes import zero_one_error
from collect.losses import binary_cross_entropy
from collect.measures.context import MeasureContext, MeasureSkipped
from collect.measures.registry import registry
from collect.runner import compute_measures
from tests.collect.hessian.tiny_nets import dense_hessian

CONFIG = RunConfig(loss="binary_cross_entropy")
# measures that have nothing to compute here, with the reason they must give
EXPECTED_SKIPS = {"lambda_max_between_iterates": "next", "optimization_speed": "curves"}


@functools.cache
def one_logit_ctx() -> MeasureContext:
    """A 6-10-10-1 ReLU net fitted to 40 points of a linearly separable two-class problem (float64); cached per
    session, read-only use (measures never modify the model)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1)).double()
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        binary_cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return MeasureContext(
        model=model, config=CONFIG, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20],
        is_attack=torch.zeros(40, dtype=torch.bool), num_classes=2, loss_fn=binary_cross_entropy, init_state=init,
        device=torch.device("cpu"), seed=0,
    )


@pytest.mark.slow  # ~15 s on an idle core, every registered measure at its defaults
def test_every_measure_computes_or_skips_with_a_reason_on_one_logit():
    ctx = one_logit_ctx()
    names = sorted(registry())
    metrics, _, tags = compute_measures(ctx, [(n, {}) for n in names], timing=False)
    errors = {k: v for k, v in tags.items() if k.startswith("measure_error")}
    assert not errors, errors
    skipped = {k.removeprefix("measure_skipped."): v for k, v in tags.items() if k.startswith("measure_skipped")}
    assert set(skipped) == set(EXPECTED_SKIPS), skipped
    for name, word in EXPECTED_SKIPS.items():
        assert word in skipped[name]
    assert metrics["gen.train_acc"] == 1.0
    # the measures of the volume and alpha-scaling sweeps, and the ones with a one-logit convention, gave numbers
    for key in ("measure.margin_mean", "measure.softmax_margin_mean", "measure.sharpness", "measure.log_volume",
                "measure.hessian_trace", "measure.per_sample_trace_mean", "measure.spectral_margin_q10",
                "measure.inverse_margin", "measure.fisher_rao_norm", "measure.pacbayes_flatness"):
        assert math.isfinite(metrics[key]), key
    assert metrics["measure.margin_min"] > 0 and 0 < metrics["measure.softmax_margin_mean"] < 1


def test_jiang_margin_is_the_tenth_percentile_of_the_single_logit_margins():
    ctx = one_logit_ctx()
    with torch.no_grad():
        gamma = ((2 * ctx.y_train.double() - 1) * ctx.model(ctx.x_train)[:, 0]).numpy()
    values = registry()["jiang_norms"](ctx).values
    assert values["jiang_margin_q10"] == pytest.approx(np.percentile(gamma, 10), rel=1e-12)
    assert values["inverse_margin"] == pytest.approx(1 / np.percentile(gamma, 10) ** 2, rel=1e-12)


def test_zero_one_error_of_one_logit_counts_the_sign():
    z = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    y = torch.tensor([1, 1, 0, 0])  # right, wrong, wrong, right
    assert float(zero_one_error(z, y)) == 0.5


def test_logit_normalised_adaptive_sharpness_is_skipped_for_one_logit():
    ctx = one_logit_ctx()
    for name in ("adaptive_sharpness", "average_sharpness"):
        with pytest.raises(MeasureSkipped, match="logit_normalize.*one logit"):
            registry()[name](ctx, logit_normalize=True)


def test_exact_hessian_trace_of_one_logit_equals_the_dense_hessian_trace():
    """The measure's default (method "auto" → exact Gauss–Newton for a ReLU net) against the trace of the dense
    float64 Hessian of the mean logistic loss (torch.autograd.functional.hessian): 1e-9 relative, rounding only."""
    ctx = one_logit_ctx()
    result = registry()["hessian_trace"](ctx)
    assert result.info["method"] == "exact"
    dense = dense_hessian(ctx.model, binary_cross_entropy, ctx.x_train, ctx.y_train)
    assert result.values["hessian_trace"] == pytest.approx(float(torch.trace(dense)), rel=1e-9)
