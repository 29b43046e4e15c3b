"""Per-sample Hessian traces of a single-logit (sigmoid) head under the logistic loss against dense per-sample
Hessians, and ACEHT / the margin bound for one logit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.hessian.per_sample import aceht, exact_per_sample_trace, hutchinson_per_sample_trace, margin_bound, margins
from collect.losses import binary_cross_entropy
from tests.collect.hessian.tiny_nets import cpu_generator, dense_hessian, single_thread  # noqa: F401


def one_logit_data(n: int = 8, seed: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)


def relu_one_logit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1)).double().eval()


def dense_traces(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.trace(dense_hessian(model, binary_cross_entropy, x[i : i + 1], y[i : i + 1]))
                        for i in range(len(x))])


@pytest.mark.parametrize("structured", [True, False], ids=["structured", "generic"])
def test_exact_trace_of_one_logit_equals_dense_per_sample_trace(structured):
    """Float64, 1e-10 relative (rounding only): Tr = σ(z)(1 − σ(z))‖∇z‖² for a ReLU net; using the softmax weights
    or the squared-error constant instead would be off by O(1)."""
    model = relu_one_logit()
    x, y = one_logit_data()
    got, logits = exact_per_sample_trace(model, x, y, loss="binary_cross_entropy", chunk_size=3, structured=structured)
    torch.testing.assert_close(got, dense_traces(model, x, y), rtol=1e-10, atol=1e-14)
    assert logits.shape == (8, 1)


def test_hutchinson_per_sample_trace_of_one_logit_is_within_its_standard_error():
    """Each point's estimate is within 4 standard errors of the dense trace (all 8 at once: a false failure has
    probability < 1e-3 under the CLT)."""
    model = relu_one_logit()
    x, y = one_logit_data()
    est, se, _ = hutchinson_per_sample_trace(model, binary_cross_entropy, x, y, n_probes=256,
                                             generator=cpu_generator(0), chunk_size=4)
    truth = dense_traces(model, x, y)
    assert bool(((est - truth).abs() <= 4 * se + 1e-12).all())


def test_aceht_of_one_logit_is_the_exact_trace_of_the_affine_model_and_below_the_margin_bound():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 1)).double().eval()
    x, y = one_logit_data(20)
    trace, logits = exact_per_sample_trace(model, x, y, loss="binary_cross_entropy")
    torch.testing.assert_close(trace, dense_traces(model, x, y), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(aceht(x, logits), trace, rtol=1e-12, atol=1e-14)
    out_m, soft_m = margins(logits, y)
    z = logits[:, 0]
    torch.testing.assert_close(out_m, (2 * y.double() - 1) * z)
    torch.testing.assert_close(soft_m, 2 * torch.sigmoid((2 * y.double() - 1) * z) - 1)
    # 1 − γ_S² = 4σ(1 − σ): the margin bound is exactly 4 · ACEHT for one logit
    torch.testing.assert_close(margin_bound(x, soft_m), 4 * aceht(x, logits), rtol=1e-10, atol=1e-14)
