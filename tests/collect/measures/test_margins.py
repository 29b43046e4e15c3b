"""Margin statistics against a hand computation, and norms against their definitions on a tiny network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from collect.config import RunConfig
from collect.losses import cross_entropy
from collect.measures.context import MeasureContext
from collect.measures.margins import margins, normalized_margin, output_margins, summarize
from collect.measures.norms import norms, path_norm


class Fixed(nn.Module):
    """Returns preset logits for inputs 0..n-1 (the input is the row index)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def ctx_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor, init=None) -> MeasureContext:
    return MeasureContext(
        model=model, config=RunConfig(), x_train=x, y_train=y, x_test=x, y_test=y,
        is_attack=torch.zeros(len(y), dtype=torch.bool), num_classes=int(y.max()) + 1, loss_fn=cross_entropy,
        init_state=init or {k: v.detach().clone() for k, v in model.named_parameters()}, device=torch.device("cpu"), seed=0,
    )


def test_output_margin_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.2, 0.1, 2.0], [1.0, 1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    # row 0: 3 - 1 = 2; row 1 (misclassified): 0.1 - 2.0 = -1.9; row 2 (tie): 1 - 1 = 0
    assert output_margins(logits, y).tolist() == pytest.approx([2.0, -1.9, 0.0])


def test_margin_measure_summary_matches_numpy_and_scipy():
    logits = torch.tensor([[3.0, 1.0], [0.0, 2.5], [1.0, 0.0], [0.0, 0.4], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 0])
    x = torch.arange(5.0)[:, None]
    result = margins(ctx_for(Fixed(logits), x, y))
    gamma = np.array([2.0, 2.5, -1.0, -0.4, 2.0])  # by hand
    v = result.values
    assert v["margin_mean"] == pytest.approx(gamma.mean())
    assert v["margin_std"] == pytest.approx(gamma.std(ddof=1))
    assert v["margin_skew"] == pytest.approx(scipy.stats.skew(gamma))
    assert v["margin_kurtosis"] == pytest.approx(scipy.stats.kurtosis(gamma))
    assert v["margin_min"] == -1.0
    assert v["margin_q25"] == pytest.approx(np.percentile(gamma, 25))
    p = torch.softmax(logits, 1).numpy()
    soft = np.array([p[i, y[i]] - p[i, 1 - y[i]] for i in range(5)])
    assert v["softmax_margin_mean"] == pytest.approx(soft.mean())
    assert result.per_sample["output_margin"].tolist() == pytest.approx(gamma.tolist())
    assert result.per_sample["correct"].tolist() == [True, True, False, False, True]


def test_summarize_keys():
    keys = summarize(np.arange(10.0), "m")
    assert set(keys) == {"m_mean", "m_std", "m_skew", "m_kurtosis", "m_min", "m_q5", "m_q10", "m_q25", "m_q50", "m_q75"}


def test_norms_by_definition():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    init = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    v = norms(ctx_for(net, x, y, init)).values
    w1, w2 = net[0].weight.detach().double(), net[2].weight.detach().double()
    s1, s2 = np.linalg.svd(w1.numpy(), compute_uv=False)[0], np.linalg.svd(w2.numpy(), compute_uv=False)[0]
    assert v["spectral_product"] == pytest.approx(s1 * s2)
    assert v["spectral_sum"] == pytest.approx(s1 + s2)
    n_params = sum(p.numel() for p in net.parameters())
    assert v["dist_from_init"] == pytest.approx(0.1 * math.sqrt(n_params), rel=1e-5)
    assert v["l2_norm"] == pytest.approx(float(torch.cat([p.detach().flatten() for p in net.parameters()]).norm()), rel=1e-6)


def test_path_norm_enumerates_paths_on_a_tiny_net():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [-3.0, 0.5]]))
        net[0].bias.copy_(torch.tensor([0.1, -0.2]))
        net[2].weight.copy_(torch.tensor([[2.0, -1.0]]))
        net[2].bias.copy_(torch.tensor([0.3]))
    # paths input i -> hidden j -> out: (w1[j,i] w2[j])^2; bias paths: (b1[j] w2[j])^2 and b2^2
    w1, b1, w2 = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    total = sum((w1[j, i] * w2[0, j]) ** 2 for i in range(2) for j in range(2))
    total += sum((b1[j] * w2[0, j]) ** 2 for j in range(2)) + net[2].bias.detach()[0] ** 2
    assert path_norm(net, (2,)) == pytest.approx(math.sqrt(float(total)))


def test_normalized_margin_divides_by_spectral_product():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    ctx = ctx_for(net, x, y)
    v = normalized_margin(ctx).values
    gamma = output_margins(net(x).detach().double(), y).numpy()
    prod = np.linalg.norm(net[0].weight.detach().numpy(), 2) * np.linalg.norm(net[2].weight.detach().numpy(), 2)
    assert v["spectral_margin_q10"] == pytest.approx(np.percentile(gamma, 10) / prod, rel=1e-5)
