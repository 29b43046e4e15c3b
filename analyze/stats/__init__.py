"""Statistics over a ledger: plain functions taking a polars ledger frame and returning a tidy polars frame.

One module per family: correlations, partial correlations, ranking, granulated Kendall, sign-error, conditional
mutual information, per-sample analysis, multiple testing, break flags and the verdict; ``interventions`` says which
hp columns move together (one intervention each, from the ``tag.interventions`` column); ``suite.report_frames``
runs them all for the HTML report. Only FINISHED runs and only ``measure.*`` columns (never ``diag.*``) enter.
"""

from analyze.stats._data import StatsError, expected_sign, finished_runs, status_summary
from analyze.stats.bootstrap import bca_interval, correlation_replicates, resample_counts
from analyze.stats.cmi import conditional_mutual_information
from analyze.stats.correlations import correlations
from analyze.stats.flags import break_flags, decide_flags, evidence_frame, flag_coverage, flag_evidence, reference_value
from analyze.stats.granulated import granulated_kendall, grouped_tau_b
from analyze.stats.interventions import Intervention, interventions
from analyze.stats.multiple_testing import adjust_family, adjust_pvalues, benjamini_hochberg
from analyze.stats.partial import partial_correlations, partial_matrix
from analyze.stats.per_sample import lof_inliers, per_sample_correlations
from analyze.stats.ranking import rank_frame, rank_measures
from analyze.stats.sign_error import hoeffding_weight, sign_error, sign_error_environments, sign_error_tables
from analyze.stats.suite import report_frames, time_cost
from analyze.stats.verdict import measure_family, reversal_explanations, verdict_matrix, verdict_sentences

__all__ = [
    "Intervention",
    "StatsError",
    "adjust_family",
    "adjust_pvalues",
    "bca_interval",
    "benjamini_hochberg",
    "break_flags",
    "conditional_mutual_information",
    "correlation_replicates",
    "correlations",
    "decide_flags",
    "evidence_frame",
    "expected_sign",
    "finished_runs",
    "flag_coverage",
    "flag_evidence",
    "granulated_kendall",
    "grouped_tau_b",
    "hoeffding_weight",
    "interventions",
    "lof_inliers",
    "measure_family",
    "partial_correlations",
    "partial_matrix",
    "per_sample_correlations",
    "rank_frame",
    "rank_measures",
    "reference_value",
    "report_frames",
    "resample_counts",
    "reversal_explanations",
    "sign_error",
    "sign_error_environments",
    "sign_error_tables",
    "time_cost",
    "status_summary",
    "verdict_matrix",
    "verdict_sentences",
]
