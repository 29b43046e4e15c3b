"""The training losses against their written formulas, and the exact per-sample Hessian trace of both squared-error
conventions against dense per-sample Hessians (the Gauss–Newton factor ∇²_f ℓ = I for ``mse``, (2/C) I for
``mse_mean``)."""

from __future__ import annotations

import pytest
import torch

from collect.config import LOSSES as CONFIG_LOSSES
from collect.hessian.per_sample import exact_per_sample_trace
from collect.losses import LOSSES, get_loss
from tests.collect.hessian.tiny_nets import dense_hessian, relu_net, single_thread, vector_data  # noqa: F401


def logits_and_labels(n: int = 7, c: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def test_mse_is_half_squared_norm_summed_over_outputs_averaged_over_samples():
    f, y = logits_and_labels()
    by_hand = sum(0.5 * sum((f[i, c].item() - (c == y[i].item())) ** 2 for c in range(10)) for i in range(7)) / 7
    assert get_loss("mse")(f, y).item() == pytest.approx(by_hand, rel=1e-12)


def test_mse_mean_is_pytorch_mean_over_samples_and_outputs():
    f, y = logits_and_labels()
    by_hand = sum((f[i, c].item() - (c == y[i].item())) ** 2 for i in range(7) for c in range(10)) / 70
    assert get_loss("mse_mean")(f, y).item() == pytest.approx(by_hand, rel=1e-12)
    assert get_loss("mse_mean")(f, y).item() == pytest.approx(2 / 10 * get_loss("mse")(f, y).item(), rel=1e-12)


def test_every_configurable_loss_has_a_function():
    assert set(CONFIG_LOSSES) == set(LOSSES)


@pytest.mark.parametrize("loss", ["mse", "mse_mean"])
def test_exact_per_sample_trace_uses_the_same_squared_error(loss):
    """Float64, 1e-10 relative: the closed-form per-sample trace of each convention equals the trace of the dense
    Hessian of ``get_loss(loss)`` at every point, so Hessian measures and training optimise the same function."""
    model, (x, y) = relu_net(), vector_data(6)
    got, _ = exact_per_sample_trace(model, x, y, loss=loss, chunk_size=4)
    dense = torch.stack([torch.trace(dense_hessian(model, get_loss(loss), x[i : i + 1], y[i : i + 1])) for i in range(6)])
    torch.testing.assert_close(got, dense, rtol=1e-10, atol=1e-14)
