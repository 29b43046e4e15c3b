"""Per-sample Hessian traces: the exact Gauss–Newton method against dense per-sample Hessians, ACEHT against the
affine model, and the Hutchinson fallback within its standard error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.hessian.per_sample import (
    aceht,
    exact_per_sample_trace,
    hutchinson_per_sample_trace,
    margin_bound,
    margins,
    piecewise_linear_reason,
)
from collect.losses import cross_entropy, squared_error
from tests.collect.hessian.tiny_nets import (  # noqa: F401
    bn_net,
    conv_net,
    cpu_generator,
    dense_hessian,
    image_data,
    relu_net,
    single_thread,
    tanh_net,
    vector_data,
)

LOSS = {"cross_entropy": cross_entropy, "mse": squared_error}


def dense_traces(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.trace(dense_hessian(model, loss_fn, x[i : i + 1], y[i : i + 1])) for i in range(len(x))])


@pytest.mark.parametrize("structured", [True, False], ids=["structured", "generic"])
@pytest.mark.parametrize("loss", sorted(LOSS))
@pytest.mark.parametrize("net", ["relu", "bn", "conv"])
def test_exact_trace_equals_dense_per_sample_trace(net, loss, structured):
    """Float64: the two agree to rounding (1e-10 relative), for ReLU, eval-mode batch norm and conv/max-pool
    networks, under cross-entropy and squared error, by both implementations (layer-wise closed forms and
    all-parameter Jacobians). A wrong GGN (the difference-of-squares sign, 1/C vs 2/C for mse, a missing bias or
    batch-norm term, a wrong unfold) would be off by O(1)."""
    model = {"relu": relu_net, "bn": bn_net, "conv": conv_net}[net]()
    x, y = image_data(8) if net == "conv" else vector_data(8)
    got, logits = exact_per_sample_trace(model, x, y, loss=loss, chunk_size=3, structured=structured)
    torch.testing.assert_close(got, dense_traces(model, LOSS[loss], x, y), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(logits, model(x).detach())


def test_exact_method_refuses_networks_where_it_is_not_exact():
    assert piecewise_linear_reason(relu_net()) is None
    assert piecewise_linear_reason(bn_net()) is None  # eval mode: affine with fixed statistics
    assert "Tanh" in piecewise_linear_reason(tanh_net())
    assert "training mode" in piecewise_linear_reason(relu_net().train())
    x, y = vector_data(4)
    with pytest.raises(ValueError, match="piecewise-linear"):
        exact_per_sample_trace(tanh_net(), x, y)


def test_aceht_is_the_exact_trace_of_the_affine_model():
    """Paper 000 Prop. 3.1: for f = Wx + b under cross-entropy, Tr ∇²ℓ = (‖x‖² + 1)(1 − Σ_j S_j²) exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 4)).double().eval()
    x, _ = vector_data(30)
    y = torch.randint(0, 4, (30,), generator=torch.Generator().manual_seed(3))
    trace, logits = exact_per_sample_trace(model, x, y)
    torch.testing.assert_close(trace, aceht(x, logits), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(trace[:5], dense_traces(model, cross_entropy, x[:5], y[:5]), rtol=1e-10, atol=1e-14)
    # Margins and the bound: ACEHT ≤ margin bound wherever the point is correctly classified.
    out_m, soft_m = margins(logits, y)
    s = torch.softmax(logits, 1)
    top2 = logits.topk(2, dim=1).values
    correct = logits.argmax(1) == y
    torch.testing.assert_close(out_m[correct], (top2[:, 0] - top2[:, 1])[correct])
    assert bool((out_m[~correct] < 0).all())
    soft_by_hand = s.gather(1, y[:, None]).squeeze(1) - s.scatter(1, y[:, None], -1.0).max(1).values
    torch.testing.assert_close(soft_m, soft_by_hand)
    assert bool((aceht(x, logits)[correct] <= margin_bound(x, soft_m)[correct] + 1e-12).all())


def test_hutchinson_per_sample_trace_covers_dense_traces_on_tanh():
    """Each point's estimate lies within 4 of its own standard errors of the dense trace (256 probes); the
    standard errors are genuine (non-zero, and the errors are not all much smaller than them)."""
    model = tanh_net()
    x, y = vector_data(6)
    est, se, logits = hutchinson_per_sample_trace(
        model, cross_entropy, x, y, n_probes=256, generator=cpu_generator(0), chunk_size=4, probe_block=64
    )
    true = dense_traces(model, cross_entropy, x, y)
    z = (est - true).abs() / se
    assert bool((se > 0).all()) and bool((z <= 4).all())
    assert float(z.max()) > 0.2
    torch.testing.assert_close(logits, model(x).detach())


def test_structured_and_generic_agree_on_project_models():
    """LeNet-5 (with and without batch norm) from collect.models: nested Sequentials with Unflatten, max-pool."""
    from collect.config import ModelConfig
    from collect.models import build_model

    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 12, 12, dtype=torch.float64, generator=g)
    y = torch.randint(0, 10, (5,), generator=g)
    for bn in (False, True):
        model = build_model(ModelConfig(arch="lenet5", batch_norm=bn), (12, 12), 10, seed=0).double().eval()
        fast, _ = exact_per_sample_trace(model, x, y, structured=True)
        slow, _ = exact_per_sample_trace(model, x, y, structured=False)
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-14)

    class Wrapped(nn.Module):  # not a plain Sequential: only the generic path applies
        def __init__(self) -> None:
            super().__init__()
            self.body = relu_net()

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return self.body(inp)

    xv, yv = vector_data(3)
    with pytest.raises(ValueError, match="plain nn.Sequential"):
        exact_per_sample_trace(Wrapped().eval(), xv, yv, structured=True)
    wrapped, _ = exact_per_sample_trace(Wrapped().eval(), xv, yv)
    torch.testing.assert_close(wrapped, exact_per_sample_trace(relu_net(), xv, yv)[0])
