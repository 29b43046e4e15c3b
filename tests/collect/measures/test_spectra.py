"""Heavy-tailed spectral metrics against an independent power-law fit written here: eigenvalues from numpy's
``eigvalsh`` of WᵀW, the exponent by numerically maximising the likelihood (scipy ``minimize_scalar``, not the closed
form) and the KS distance from ``scipy.stats.kstest``; plus recovery of a known exponent from Pareto samples.

The ``weightwatcher`` package (Apache-2.0) is not the reference: it pulls matplotlib, powerlaw, pandas and
safetensors into the test environment, and it splits conv layers and may normalise the ESD differently."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from torch import nn

from collect.measures.spectra import fit_power_law
from tests.collect.hessian.tiny_nets import single_thread  # noqa: F401
from tests.collect.measures.test_curvature import ctx_for, run


def reference_fit(evals: np.ndarray, min_tail: int = 5) -> tuple[float, float]:
    """(α, λ_min): numerical MLE per candidate λ_min, the candidate with the smallest scipy KS statistic."""
    x = np.sort(evals[evals > 0])
    best = (np.inf, np.nan, np.nan)
    for xmin in np.unique(x[: x.size - min_tail + 1]):
        tail = x[x >= xmin]
        n, s = tail.size, np.log(tail / xmin).sum()
        nll = lambda a: -(n * np.log(a - 1) - n * np.log(xmin) - a * s)  # noqa: E731
        alpha = scipy.optimize.minimize_scalar(nll, bounds=(1 + 1e-9, 200), method="bounded", options={"xatol": 1e-12}).x
        ks = scipy.stats.kstest(tail, lambda t: 1 - (t / xmin) ** (1 - alpha)).statistic
        if ks < best[0]:
            best = (ks, alpha, xmin)
    return best[1], best[2]


def test_power_law_fit_recovers_a_known_exponent():
    rng = np.random.default_rng(0)
    for alpha in (2.0, 3.5):
        samples = 0.7 * rng.random(3000) ** (-1 / (alpha - 1))  # Pareto: P(X > x) = (x / 0.7)^{1 − α}
        fit = fit_power_law(samples)
        # the MLE's standard error is (α − 1)/√n_tail ≤ 0.06 for n_tail ≥ 600; 0.2 is > 3 SE
        assert fit.n_tail >= 600 and abs(fit.alpha - alpha) < 0.2, fit


def heavy_tailed_net(seed: int = 0) -> nn.Module:
    """Student-t(2.5) weights give a heavy-tailed ESD; the 3-output last layer has too few eigenvalues to fit."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(30, 60), nn.ReLU(), nn.Linear(60, 40), nn.ReLU(), nn.Linear(40, 3)).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.distributions.StudentT(2.5).sample(m.weight.shape).double() * 0.1)
    return net.eval()


def test_fit_matches_the_independent_reference_on_the_same_matrices():
    net = heavy_tailed_net()
    x, y = torch.randn(8, 30, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])  # unused: data-free
    got = run("heavy_tail", ctx_for(net, x, y))
    layers = [m.weight.detach().numpy() for m in net if isinstance(m, nn.Linear)]
    per_layer = []
    for w in layers:
        ev = np.sort(np.linalg.eigvalsh(w.T @ w))[::-1][: min(w.shape)]
        if ev.size < 10:  # default min_evals
            continue
        alpha, xmin = reference_fit(ev)
        per_layer.append((alpha, xmin, ev.max(), ev.sum() / ev.max()))
    assert len(per_layer) == 2 and got.values["ht_n_layers"] == 2
    frame = got.per_sample
    for i, (alpha, xmin, lmax, srank) in enumerate(per_layer):
        assert frame["alpha"][i] == pytest.approx(alpha, rel=1e-5)
        assert frame["xmin"][i] == pytest.approx(xmin, rel=1e-8)
    ref = np.array(per_layer)
    assert got.values["ht_alpha"] == pytest.approx(ref[:, 0].mean(), rel=1e-5)
    assert got.values["ht_alpha_weighted"] == pytest.approx((ref[:, 0] * np.log10(ref[:, 2])).mean(), rel=1e-5)
    assert got.values["ht_log_spectral_norm"] == pytest.approx(np.log10(ref[:, 2]).mean(), rel=1e-8)
    assert got.values["ht_stable_rank"] == pytest.approx(ref[:, 3].mean(), rel=1e-8)
