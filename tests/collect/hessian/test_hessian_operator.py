"""ChunkedLoss: values, gradients and Hessian-vector products against autograd's dense Hessian (float64)."""

from __future__ import annotations

import pytest
import torch

from collect.hessian.operator import ChunkedLoss, squared_weight_norm
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    LOSSES,
    NETS,
    cached_hessian,
    conv_net,
    dense_hessian,
    flat_params,
    image_data,
    single_thread,
    vector_data,
)

# float64 throughout: the chunked/vmapped products and the dense Hessian differ only by summation order, so they
# agree to ~1e-15 relative; 1e-10 leaves room for accumulation over chunks while catching any wrong weight (a
# missing n_chunk/N factor is an O(1) error).
RTOL = 1e-10


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_hvp_matches_dense_hessian(net, loss_name):
    model = NETS[net]()
    x, y = vector_data()
    hess = cached_hessian(net, loss_name)
    loss = ChunkedLoss(model, LOSSES[loss_name], x, y, chunk_size=13)  # 40 points: chunks of 13, 13, 13, 1
    vs = torch.randn(5, loss.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = vs @ hess
    torch.testing.assert_close(loss.hvp_batch(vs), expected, rtol=RTOL, atol=RTOL * expected.abs().max())
    torch.testing.assert_close(loss.hvp(vs[0]), expected[0], rtol=RTOL, atol=RTOL * expected.abs().max())


def test_hvp_conv_maxpool_net():
    model = conv_net()
    x, y = image_data()
    hess = dense_hessian(model, cross_entropy, x, y)
    loss = ChunkedLoss(model, cross_entropy, x, y, chunk_size=7)
    v = torch.randn(3, loss.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss.hvp_batch(v), v @ hess, rtol=RTOL, atol=1e-12)


def test_value_and_grad_and_parameter_subset():
    model = NETS["relu"]()
    x, y = vector_data()
    loss = ChunkedLoss(model, cross_entropy, x, y, chunk_size=9)
    theta, _ = flat_params(model)
    assert loss.dim == theta.numel() == 203
    value, grad = loss.value_and_grad()
    model.zero_grad()
    ref = cross_entropy(model(x), y)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    autograd_grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(grad, autograd_grad, rtol=1e-10, atol=1e-13)
    # The Hessian of a parameter subset is the corresponding diagonal block of the full Hessian.
    hess = cached_hessian("relu")
    sub = ChunkedLoss(model, cross_entropy, x, y, names=["2.weight"], chunk_size=9)
    start = 5 * 12 + 12  # layer 0 weight and bias come first
    block = hess[start : start + 96, start : start + 96]
    v = torch.randn(2, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(sub.hvp_batch(v), v @ block, rtol=RTOL, atol=1e-12)
    assert squared_weight_norm(model, ["2.weight"]) == pytest.approx(float(model[2].weight.detach().pow(2).sum()))


def test_base_parameters_move_the_point_without_touching_the_model():
    model = NETS["relu"]()
    x, y = vector_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shifted = {k: v.detach() + 0.1 for k, v in model.named_parameters()}
    loss = ChunkedLoss(model, cross_entropy, x, y, base=shifted)
    other = NETS["relu"]()
    with torch.no_grad():
        for p, (k, v) in zip(other.parameters(), shifted.items()):
            p.copy_(v)
    assert loss.value() == pytest.approx(cross_entropy(other(x), y).item(), rel=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="unknown parameter"):
        ChunkedLoss(model, cross_entropy, x, y, names=["nope.weight"])
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkedLoss(model, cross_entropy, x, y, chunk_size=0)


def test_cached_operator_for_sequential_products():
    """hvp_operator reuses one gradient graph across products (one chunk) and falls back to hvp (several)."""
    model = NETS["bn"]()
    x, y = vector_data()
    hess = cached_hessian("bn")
    v = torch.randn(3, hess.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for chunk_size in (64, 10):
        op = ChunkedLoss(model, cross_entropy, x, y, chunk_size=chunk_size).hvp_operator()
        for row in v:  # several products through the same operator
            torch.testing.assert_close(op(row), hess @ row, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("net", sorted(NETS))
def test_batched_values_and_gradients_equal_one_at_a_time(net):
    """values_batch / values_and_grads_batch (vmap over weight perturbations, as the sharpness restarts and the
    PAC-Bayes noise draws use them) agree with value_and_grad row by row, across uneven chunks, to float64
    rounding (1e-12 relative: the same arithmetic, batched)."""
    x, y = vector_data()
    model = NETS[net]()
    loss = ChunkedLoss(model, cross_entropy, x, y, chunk_size=15)  # 15 + 15 + 10: uneven chunk weights
    g = torch.Generator().manual_seed(5)
    thetas = loss.theta0 + 0.1 * torch.randn(4, loss.dim, generator=g, dtype=torch.float64)
    values, grads = loss.values_and_grads_batch(thetas)
    for i in range(4):
        v, gr = loss.value_and_grad(thetas[i])
        assert float(values[i]) == pytest.approx(v, rel=1e-12)
        torch.testing.assert_close(grads[i], gr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss.values_batch(thetas), values, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="shape"):
        loss.values_batch(thetas[:, :3])
