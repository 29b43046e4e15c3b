"""Unbiased importance-sampling estimate of log P(f), used to check EP where exact orthant probabilities are out of reach.

P(f) = E_{z~N(0,K)}[1{sign z = f}]. The proposal is the EP posterior N(μ, Σ) restricted to the orthant one
coordinate at a time (the GHK construction of Geweke, Hajivassiliou and Keane on the Cholesky factor of Σ): with
Σ = L Lᵀ and z = μ + L e, each e_i is drawn from N(0, 1) truncated so that f_i z_i > 0 given e_{<i}, which has
probability Φ_i. Every draw lies in the orthant and its weight is

    w = N(z | 0, K) / N(z | μ, Σ) · Π_i Φ_i,

so mean(w) is unbiased for P(f) whatever the proposal; EP only makes the variance small. The estimator runs in
float64 with scipy's log-space inverse normal CDF, on the CPU (a verification tool, not a hot path).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.special
import torch

from collect.nngp.ep import EPResult, ep_posterior


def importance_log_prob(
    kernel: torch.Tensor,
    f: torch.Tensor,
    ep: EPResult,
    n_samples: int,
    seed: int = 0,
    jitter: float = 0.0,
) -> tuple[float, float]:
    """(log P̂(f), its standard error by the delta method: sd(w) / (mean(w) √N)) from ``n_samples`` draws.

    ``jitter`` is added to the diagonals of K and Σ before their Cholesky factorisations (0 for well-conditioned K).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples = {n_samples} must be >= 2 for a standard error")
    mean_t, cov_t = ep_posterior(kernel, ep.site_tau, ep.site_nu)
    k = kernel.detach().to("cpu", torch.float64).numpy()
    mu = mean_t.detach().cpu().numpy()
    cov = cov_t.detach().cpu().numpy()
    y = f.detach().cpu().numpy().astype(np.float64)
    n = k.shape[0]
    eye = np.eye(n) * jitter
    chol_q = np.linalg.cholesky(0.5 * (cov + cov.T) + eye)
    chol_k = np.linalg.cholesky(k + eye)

    rng = np.random.default_rng(seed)
    e = np.zeros((n_samples, n))
    log_w = np.zeros(n_samples)
    for i in range(n):
        centre = mu[i] + e[:, :i] @ chol_q[i, :i]
        s = y[i] * centre / chol_q[i, i]  # f_i z_i > 0  <=>  −f_i e_i < s
        log_phi = scipy.special.log_ndtr(s)
        log_u = np.log(rng.random(n_samples))
        h = scipy.special.ndtri_exp(log_u + log_phi)  # standard normal truncated to h < s
        e[:, i] = -y[i] * h
        log_w += log_phi
    z = mu + e @ chol_q.T
    white = scipy.linalg.solve_triangular(chol_k, z.T, lower=True).T
    log_prior = -0.5 * (white * white).sum(1) - np.log(np.diag(chol_k)).sum()
    log_q = -0.5 * (e * e).sum(1) - np.log(np.diag(chol_q)).sum()
    log_w += log_prior - log_q
    top = log_w.max()
    w = np.exp(log_w - top)
    log_p = float(top + np.log(w.mean()))
    std_err = float(w.std(ddof=1) / (w.mean() * math.sqrt(n_samples)))
    return log_p, std_err
