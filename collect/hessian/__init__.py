"""Curvature of the training loss: Hessian-vector products over chunked data, stochastic trace and Frobenius
estimators with standard errors, Lanczos eigenvalues, exact per-sample traces, Keskar sharpness and PAC-Bayes
flatness. The registered measures built on these live in ``collect.measures.curvature``.
"""

from collect.hessian.lanczos import EigenResult, lanczos_top_eigenvalues
from collect.hessian.operator import ChunkedLoss, squared_weight_norm
from collect.hessian.pacbayes import SigmaSearch, largest_admissible_sigma
from collect.hessian.per_sample import exact_per_sample_trace, hutchinson_per_sample_trace, piecewise_linear_reason
from collect.hessian.sharpness import BoxMax, keskar_sharpness, maximize_in_box
from collect.hessian.trace import Estimate, hutchinson_frobenius, hutchinson_trace, hutchpp_trace

__all__ = [
    "BoxMax",
    "ChunkedLoss",
    "EigenResult",
    "Estimate",
    "SigmaSearch",
    "exact_per_sample_trace",
    "hutchinson_frobenius",
    "hutchinson_per_sample_trace",
    "hutchinson_trace",
    "hutchpp_trace",
    "keskar_sharpness",
    "lanczos_top_eigenvalues",
    "largest_admissible_sigma",
    "maximize_in_box",
    "piecewise_linear_reason",
    "squared_weight_norm",
]
