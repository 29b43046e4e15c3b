"""The measure catalog: what every registered measure returns, as plain data that imports nothing heavy.

``analyze`` reads from here which ledger columns are measures, diagnostics or generalization numbers, and the sign
the literature expects of each measure, so that its rankings, flags and verdicts never depend on whether torch (and
so the measure functions of ``collect.measures``) can be imported. The registry entries in ``collect/measures/*.py``
are the measures themselves; ``tests/collect/measures/test_catalog.py`` checks that every entry there agrees with its
entry here, and prints the line to paste when one is missing or differs.

Conventions (the registry's): a direction is the expected sign of corr(measure, generalization gap): ``+1`` a larger
value goes with a larger gap (worse generalization), ``-1`` the opposite, ``0`` no expectation. A diagnostic
(standard error, Hessian-vector products, residual, convergence, point counts) has no direction: it goes to the
ledger as ``diag.<key>`` and is never ranked, flagged or plotted as a measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

KINDS = ("measure", "diagnostic", "gen")


@dataclass(frozen=True)
class CatalogEntry:
    """One registered measure's outputs: ``directions`` (measure key -> expected sign vs the gap), ``diagnostics``."""

    name: str
    prefix: str = "measure"  # ledger prefix of its non-diagnostic outputs: "measure", or "gen" for targets
    directions: Mapping[str, int] = field(default_factory=dict)
    diagnostics: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "directions", MappingProxyType(dict(self.directions)))
        object.__setattr__(self, "diagnostics", frozenset(self.diagnostics))
        both = set(self.directions) & self.diagnostics
        if both:
            raise ValueError(f"catalog entry '{self.name}': {sorted(both)} is both a measure and a diagnostic")
        if self.prefix not in ("measure", "gen"):
            raise ValueError(f"catalog entry '{self.name}': prefix = {self.prefix!r}; use 'measure' or 'gen'")

    def kind(self, key: str) -> str:
        """'diagnostic' for a declared diagnostic, else this entry's prefix ('measure' or 'gen')."""
        return "diagnostic" if key in self.diagnostics else self.prefix


def _sharpness_runs(prefixes: tuple[str, ...], suffixes: tuple[str, ...]) -> tuple[str, ...]:
    """Diagnostic keys ``<prefix>_<suffix>`` for every pair (the adaptive-sharpness variants share them)."""
    return tuple(f"{p}_{s}" for p in prefixes for s in suffixes)


_ADAPTIVE = ("adaptive_sharpness_linf", "adaptive_sharpness_linf_ln", "adaptive_sharpness_l2", "adaptive_sharpness_l2_ln",
             "plain_sharpness_linf", "plain_sharpness_linf_ln", "plain_sharpness_l2", "plain_sharpness_l2_ln")
_AVERAGE = ("adaptive_avg_sharpness", "adaptive_avg_sharpness_ln", "plain_avg_sharpness", "plain_avg_sharpness_ln")
_MARGIN_STATS = {"q25": -1, "q10": -1, "q5": -1, "min": -1, "q75": -1, "mean": -1, "q50": -1,
                 "std": 0, "skew": 0, "kurtosis": 0}
TOP_EIGENVALUES = 20  # top_eigenvalues logs top_eig_1 … top_eig_20 (its largest k)

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("generalization", prefix="gen"),
    CatalogEntry("margins", directions={**{f"margin_{s}": d for s, d in _MARGIN_STATS.items()},
                                        **{f"softmax_margin_{s}": d for s, d in _MARGIN_STATS.items()}}),
    CatalogEntry("normalized_margin", directions={"spectral_margin_q10": -1, "spectral_margin_median": -1}),
    CatalogEntry("norms", directions={"l2_norm": 1, "dist_from_init": 1, "spectral_product": 1,
                                      "log_spectral_product": 1, "spectral_sum": 1, "frobenius_sum": 1,
                                      "path_norm": 1}),
    CatalogEntry("hessian_trace",
                 directions={"hessian_trace": 1, "hessian_trace_over_weight_norm": 1,
                             "hessian_trace_times_weight_norm": 1},
                 diagnostics=frozenset({"hessian_trace_n_hvp", "hessian_trace_se"})),
    CatalogEntry("hessian_frobenius", directions={"hessian_frobenius": 1},
                 diagnostics=frozenset({"hessian_frobenius_n_hvp", "hessian_frobenius_se"})),
    CatalogEntry("lambda_max", directions={"lambda_max": 1},
                 diagnostics=frozenset({"lambda_max_converged", "lambda_max_n_hvp", "lambda_max_residual"})),
    CatalogEntry("top_eigenvalues", directions={f"top_eig_{i}": 1 for i in range(1, TOP_EIGENVALUES + 1)},
                 diagnostics=frozenset({"top_eig_converged", "top_eig_max_residual", "top_eig_n_hvp"})),
    CatalogEntry("lambda_max_between_iterates", directions={"lambda_max_between_iterates": 1},
                 diagnostics=frozenset({"lambda_max_between_iterates_at", "lambda_max_between_iterates_converged",
                                        "lambda_max_between_iterates_n_hvp"})),
    CatalogEntry("per_sample_trace", directions={"per_sample_trace_mean": 1},
                 diagnostics=frozenset({"per_sample_n_correct", "per_sample_r_aceht", "per_sample_r_aceht_lof",
                                        "per_sample_r_margin_bound", "per_sample_r_margin_bound_lof",
                                        "per_sample_trace_mean_se"})),
    CatalogEntry("sharpness", directions={"sharpness": 1},
                 diagnostics=frozenset({"sharpness_converged", "sharpness_last_restart_improved", "sharpness_n_evals",
                                        "sharpness_n_hvp", "sharpness_n_iter", "sharpness_n_restarts"})),
    CatalogEntry("pacbayes_flatness", directions={"pacbayes_flatness": 1},
                 diagnostics=frozenset({"pacbayes_flatness_bracketed", "pacbayes_flatness_n_evals",
                                        "pacbayes_flatness_sigma"})),
    CatalogEntry("pacbayes_mag_flatness", directions={"pacbayes_mag_flatness": 1},
                 diagnostics=frozenset({"pacbayes_mag_flatness_bracketed", "pacbayes_mag_flatness_n_evals",
                                        "pacbayes_mag_flatness_sigma"})),
    CatalogEntry("relative_flatness", directions={"relative_flatness": 1},
                 diagnostics=frozenset({"relative_flatness_n_hvp", "relative_flatness_se"})),
    CatalogEntry("log_volume",
                 directions={"log_volume": -1, "log_volume_per_point": -1, "pac_bayes_bound": 1,
                             "log_volume_sampled": -1},
                 diagnostics=frozenset({"log_volume_ep_converged", "log_volume_ep_iterations", "log_volume_n_points",
                                        "log_volume_sampled_se"})),
    CatalogEntry("adaptive_sharpness", directions={k: 1 for k in _ADAPTIVE},
                 diagnostics=frozenset(_sharpness_runs(_ADAPTIVE, ("converged", "last_restart_improved", "n_evals",
                                                                   "n_restarts")))),
    CatalogEntry("average_sharpness", directions={k: 1 for k in _AVERAGE},
                 diagnostics=frozenset(f"{k}_se" for k in _AVERAGE)),
    CatalogEntry("jiang_norms",
                 directions={k: 1 for k in (
                     "param_count", "inverse_margin", "log_prod_of_spec", "log_prod_of_spec_over_margin",
                     "log_sum_of_spec", "log_sum_of_spec_over_margin", "log_spec_init_main", "log_spec_orig_main",
                     "fro_over_spec", "log_prod_of_fro", "log_prod_of_fro_over_margin", "log_sum_of_fro",
                     "log_sum_of_fro_over_margin", "frobenius_distance", "dist_spec_init", "param_norm",
                     "path_norm_sq", "path_norm_over_margin")},
                 diagnostics=frozenset({"jiang_margin_q10"})),
    CatalogEntry("pacbayes_bounds",
                 directions={"pacbayes_orig": 1, "pacbayes_init": 1, "pacbayes_mag_orig": 1, "pacbayes_mag_init": 1},
                 diagnostics=frozenset({"pacbayes_bounds_sigma", "pacbayes_bounds_mag_sigma", "pacbayes_bounds_bracketed"})),
    *(CatalogEntry(p, directions={f"{p}_flatness": 1, f"{p}_orig": 1, f"{p}_init": 1},
                   diagnostics=frozenset({f"{p}_alpha", f"{p}_n_evals", f"{p}_bracketed"}))
      for p in ("jiang_sharpness", "jiang_sharpness_mag")),
    CatalogEntry("optimization_speed", directions={"steps_to_loss_0p1": 1, "steps_loss_0p1_to_0p01": 1},
                 diagnostics=frozenset({"steps_to_loss_0p1_reached", "steps_to_loss_0p01_reached", "curve_eval_every"})),
    CatalogEntry("grad_noise", directions={"grad_noise_variance": 1},
                 diagnostics=frozenset({"grad_noise_n_batches", "grad_noise_mean_grad_sq"})),
    CatalogEntry("heavy_tail",
                 directions={"ht_alpha": 1, "ht_alpha_weighted": 1, "ht_log_spectral_norm": 1, "ht_stable_rank": 1},
                 diagnostics=frozenset({"ht_n_layers", "ht_ks_distance"})),
    CatalogEntry("fisher_rao", directions={"fisher_rao_norm": 1}, diagnostics=frozenset({"fisher_rao_formula_gap"})),
)


def _index() -> Mapping[str, CatalogEntry]:
    """Output key -> the first catalog entry declaring it (the registry's lookup order)."""
    out: dict[str, CatalogEntry] = {}
    for entry in CATALOG:
        for key in (*entry.directions, *sorted(entry.diagnostics)):
            out.setdefault(key, entry)
    return MappingProxyType(out)


BY_KEY: Mapping[str, CatalogEntry] = _index()
BY_NAME: Mapping[str, CatalogEntry] = MappingProxyType({e.name: e for e in CATALOG})


def entry_name(key: str) -> str | None:
    """The name of the measure whose entry declares output ``key`` (e.g. 'lambda_max'), or None."""
    entry = BY_KEY.get(key)
    return entry.name if entry else None


def output_kind(key: str) -> str:
    """What output ``key`` is: 'measure', 'diagnostic' or 'gen'; 'unknown' if no entry declares it."""
    entry = BY_KEY.get(key)
    return entry.kind(key) if entry else "unknown"


def expected_direction(measure_column: str) -> int:
    """Expected sign of corr(measure, gap) for a ledger column ``measure.<key>`` (or a bare key); 0 when unknown."""
    key = measure_column.removeprefix("measure.")
    entry = BY_KEY.get(key)
    return int(entry.directions.get(key, 0)) if entry else 0
