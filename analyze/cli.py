"""``python -m analyze rank | partial | granulated | sign-error | cmi | flags | report``.

Every subcommand loads the ledger (``--ledger FILE`` or an MLflow experiment, default the most recent one), keeps
the FINISHED runs, computes one statistics frame and prints it as an aligned table, CSV or JSON (``--format``),
to stdout or to ``--out``. The JSON layout is stable and documented in the README ("JSON output of python -m analyze").
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import webbrowser
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.defaults import CONFIDENCE
from collect.names import safe_component

SCHEMA_VERSION = "flatlas.analyze/3"
COMMANDS = ("rank", "partial", "granulated", "sign-error", "cmi", "flags", "power", "report")
# subcommands that need every run, not the per-configuration means: power (the seed-to-seed spread), sign-error (its
# Hoeffding-weighted environments pair the seeds themselves and need their effective sample size)
PER_RUN = ("power", "sign-error")


# --- argument parsing --------------------------------------------------------------------------------------------


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    from analyze.comparison import MIN_AT_TARGET

    common = argparse.ArgumentParser(add_help=False)
    src = common.add_argument_group("ledger source")
    src.add_argument("--experiment", help="MLflow experiment name (default: the most recently created one)")
    src.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///data/mlflow.db)")
    src.add_argument("--ledger", type=Path, help="a CSV or Parquet ledger file instead of MLflow")
    src.add_argument("--ledger-format", choices=("auto", "flatlas", "rgm"), default="auto",
                     help="columns of --ledger: flatlas (measure.*), rgm (Robust-Generalization-Measures: complexity.*, "
                          "gen.gap, hp.*), or auto: rgm when there are complexity.* and no measure.* columns (default)")
    src.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                     help="keep only runs with this value, e.g. --where hp.optimizer=adam (repeatable)")
    src.add_argument("--all-runs", action="store_true",
                     help="analyse the runs that missed the sweep's training target too, pooled with those that reached "
                          "it (how far training got then moves the gap by itself); default: only runs at the target")
    src.add_argument("--min-at-target", type=int, default=MIN_AT_TARGET,
                     help=f"runs an intervention level needs at the comparison point to be testable (default {MIN_AT_TARGET})")
    opts = common.add_argument_group("analysis")
    opts.add_argument("--target", default=DEFAULT_TARGET, help=f"generalization column (default {DEFAULT_TARGET})")
    opts.add_argument("--target-better", choices=("lower", "higher"),
                      help="which values of --target mean better generalization, for a target without a known "
                           "orientation (known: gaps, losses, errors: lower; accuracies: higher; gen.train_*: none)")
    opts.add_argument("--no-seed-means", action="store_true",
                      help="analyse every run as an independent draw instead of averaging the seeds of each "
                           "configuration first (CIs and p-values are then too narrow when seeds repeat a configuration)")
    opts.add_argument("--measures", type=_csv_list, help="comma-separated measure columns (default: all measure.*)")
    opts.add_argument("--covariates", type=_csv_list, default=[], help="comma-separated covariate columns for partial correlations")
    opts.add_argument("--group-by", type=_csv_list, help="comma-separated hp.*/tag.* columns to group runs by (default: all hp.* axes)")
    opts.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for BCa CIs (0: no CIs; default 1000)")
    opts.add_argument("--confidence", type=float, default=CONFIDENCE, help=f"confidence level of intervals (default {CONFIDENCE})")
    opts.add_argument("--alpha", type=float, default=0.05, help="significance level after Benjamini-Hochberg (default 0.05)")
    opts.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    out = common.add_argument_group("output")
    out.add_argument("--format", choices=("table", "csv", "json"), default="table")
    out.add_argument("--out", type=Path, help="write the output to this file instead of stdout")

    parser = argparse.ArgumentParser(
        prog="python -m analyze", description="Which measures predict generalization, how strongly, and where that breaks."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    sub.add_parser("rank", parents=[common], help="Pearson, Spearman, Kendall of every measure with the target, sorted by |τ|")
    p = sub.add_parser("partial", parents=[common], help="partial correlations controlling for --covariates")
    p.add_argument("--matrix", action="store_true", help="each measure controlling for each other measure, one at a time")
    g = sub.add_parser("granulated", parents=[common], help="granulated Kendall Ψ per hyperparameter axis (Jiang et al. 2020)")
    g.add_argument("--no-seed-average", action="store_true", help="do not average seeds within a configuration first")
    _granulated_args(g)
    s = sub.add_parser("sign-error", parents=[common], help="sign-error over environments (Dziugaite et al. 2020)")
    _sign_error_args(s)
    sub.add_parser("cmi", parents=[common], help="conditional mutual information, min over hyperparameter pairs")
    f = sub.add_parser("flags", parents=[common], help="where the measure-generalization relationship breaks")
    _flag_args(f)
    w = sub.add_parser("power", parents=[common],
                       help="smallest difference in the target each intervention level could detect (at --alpha, --power)")
    w.add_argument("--n-test", type=int, help="test-set size for the binomial noise floor when the ledger has no hp.n_test")
    _power_args(w)
    r = sub.add_parser("report", parents=[common], help="every statistic, then the HTML report")
    _sign_error_args(r)
    _flag_args(r)
    _granulated_args(r)
    _power_args(r)
    r.add_argument("--open", action="store_true", help="open the report in a browser")
    r.add_argument("--log-to-mlflow", action="store_true",
                   help="also attach a report written with --out or --where to the sweep's parent run (the sweep's own "
                        "report, written to the default path from all its runs, is always attached)")
    r.add_argument("--sections", type=_csv_list, help="comma-separated report sections to render")
    r.add_argument("--no-per-sample", action="store_true", help="skip downloading per-sample artifacts")
    return parser


def _granulated_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-configs", type=int, default=2,
                   help="configurations a granulated-Kendall cell needs for its tau (default 2: a two-level axis gives "
                        "+-1 per cell and psi is the mean of those signs; psi needs at least 6 cells)")


def _power_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--power", type=float, default=0.8,
                   help="power at which the detectable effect is sized (default 0.8; the test's level is --alpha)")


def _sign_error_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-test", type=int, help="test-set size for Hoeffding weights when the ledger has no hp.n_test")
    p.add_argument("--min-ess", type=float, default=12.0, help="minimum effective sample size of an environment (default 12)")
    p.add_argument("--no-hoeffding", action="store_true", help="weight every pair of runs equally")


def _flag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-group", type=int, default=8, help="smallest group (runs) in which a relationship is tested (default 8)")
    p.add_argument("--reference", action="append", default=[], metavar="AXIS=VALUE",
                   help="level of an axis shown as the reference of a pair in which neither level breaks, e.g. "
                        "hp.optimizer=sgd (repeatable; every pair of levels is tested whatever the reference)")


def _references(items: Sequence[str]) -> dict[str, str]:
    from analyze.stats import StatsError

    out = {}
    for item in items:
        axis, sep, value = item.partition("=")
        if not sep or not axis or not value:
            raise StatsError(f"--reference {item!r}: write AXIS=VALUE, e.g. --reference hp.optimizer=sgd")
        out[axis if axis.startswith(("hp.", "tag.")) else f"hp.{axis}"] = value
    return out


# --- running -----------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact is noise here
    argv = list(sys.argv[1:] if argv is None else argv)
    if not store_usable(argv):
        return 2
    args = build_parser().parse_args(argv)
    from analyze.ledger import LedgerError
    from analyze.stats import StatsError

    try:
        return _run(args, argv)
    except (LedgerError, StatsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def store_usable(argv: Sequence[str]) -> bool:
    """collect's store probe (``collect.store_check``, read-only) on the store ``argv`` names, before the parser and
    the statistics libraries load (seconds of imports); False after printing its one line. A ``--ledger`` file,
    or ``--help``, needs no store."""
    from collect.store_check import StoreError, check_store, resolve_tracking_uri

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--tracking-uri")
    pre.add_argument("--ledger")
    known, _ = pre.parse_known_args(argv)
    if known.ledger is not None or {"-h", "--help"} & set(argv):
        return True
    try:
        check_store(resolve_tracking_uri(known.tracking_uri), write=False)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from analyze.ledger import load_ledger
    from analyze.stats import status_summary

    _check_args(args)
    loaded = load_ledger(tracking_uri=args.tracking_uri, experiment=args.experiment, ledger_path=args.ledger,
                         ledger_format=args.ledger_format)
    ledger = select_runs(loaded, args.where)
    ledger, comparison = _comparison_point(ledger, args)
    ledger, checked = _prepare(ledger, args)
    meta = {**_meta(args, argv, ledger, status_summary(ledger)), **checked}
    meta.update(comparison=comparison.to_dict(), warnings=[*comparison.warnings(), *meta["warnings"]])
    if args.command in PER_RUN:  # it models the seeds itself
        stats_ledger, meta["configurations"] = ledger, {"seed_means": False, "not_averaged": f"{args.command} uses every run"}
    else:
        stats_ledger, meta["configurations"] = _configurations(ledger, args)
    if args.command == "report":
        return _report(args, ledger, stats_ledger, meta)
    from analyze.stats import finished_runs
    from analyze.stats.interventions import alias_notes

    for warning in alias_notes(finished_runs(stats_ledger)):  # aliased hp columns are one intervention: say so
        print(f"warning: {warning}", file=sys.stderr)
        meta["warnings"] = [*meta["warnings"], warning]
    frame, table_columns, extra = HANDLERS[args.command](args, stats_ledger)
    text = render(frame, args.format, {**meta, **extra}, table_columns)
    _emit(text, args.out)
    return 0


def _prepare(ledger: pl.DataFrame, args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The ledger the statistics see (``analyze.ledger.prepare``); what it left out goes to stderr and into meta
    (``skipped_columns``: [{column, reason}], ``warnings``) so every output format and the report show it."""
    from analyze.ledger import prepare

    prepared = prepare(ledger, target=args.target, measures=args.measures)
    skipped = prepared.skipped_frame().to_dicts()
    if skipped:
        print("skipped columns (not analysed):", file=sys.stderr)
        for row in skipped:
            print(f"  {row['column']}: {row['reason']}", file=sys.stderr)
    for warning in prepared.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return prepared.ledger, {"skipped_columns": skipped, "warnings": list(prepared.warnings)}


def _comparison_point(ledger: pl.DataFrame, args: argparse.Namespace) -> tuple[pl.DataFrame, Any]:
    """The runs at the sweep's comparison point, none that did not learn (``analyze.comparison``); ``--all-runs``
    keeps the runs that missed the target. What was left out, per intervention level, goes to stderr."""
    from analyze.comparison import select_comparison_point

    ledger, selection = select_comparison_point(ledger, all_runs=args.all_runs, min_at_target=args.min_at_target,
                                                axes=args.group_by)
    for line in selection.messages():
        print(line, file=sys.stderr)
    return ledger, selection


def _configurations(ledger: pl.DataFrame, args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The ledger the statistics see: the seeds of each configuration averaged (``analyze.configurations``) unless
    ``--no-seed-means`` (or ``granulated --no-seed-average``) asks for every run; the counts go to stderr and meta."""
    from analyze.configurations import configuration_means

    if args.no_seed_means or getattr(args, "no_seed_average", False):
        return ledger, {"seed_means": False}
    means = configuration_means(ledger)
    sentence = means.sentence(counted_by(args.command))
    if means.not_averaged and means.keys:
        print(f"note: {sentence}", file=sys.stderr)
    elif means.n_configurations < means.n_runs:
        print(f"note: {sentence} (--no-seed-means to treat runs as independent)", file=sys.stderr)
    return means.ledger, {"seed_means": means.not_averaged is None, "finished_runs": means.n_runs,
                          "configurations": means.n_configurations, "keys": list(means.keys),
                          "not_averaged": means.not_averaged, "sentence": sentence}


def counted_by(command: str) -> str:
    """Which statistics of ``command`` count configurations (seed means): all of a subcommand's, except for the
    ``PER_RUN`` ones, which model the seeds themselves; in the report, all but sign-error and the detectable effect."""
    if command == "report":
        return "every statistic except sign-error and the detectable effect (which use every run)"
    if command in PER_RUN:
        raise ValueError(f"{command} uses every run: it counts no configurations")
    return f"every statistic of {command}"


def select_runs(ledger: pl.DataFrame, where: Sequence[str]) -> pl.DataFrame:
    """Rows whose ``COLUMN`` equals ``VALUE`` for every ``COLUMN=VALUE`` (compared as text, so 0.1 and "sgd" both work)."""
    from analyze.stats import StatsError

    for item in where:
        column, sep, value = item.partition("=")
        if not sep:
            raise StatsError(f"--where {item!r}: write COLUMN=VALUE, e.g. --where hp.optimizer=adam")
        if column not in ledger.columns:
            raise StatsError(f"--where {item!r}: the ledger has no column {column!r}")
        ledger = ledger.filter(_equals(ledger, column, value))
        if ledger.height == 0:
            raise StatsError(f"--where {item!r}: no run has {column} = {value}")
    return ledger


def _equals(ledger: pl.DataFrame, column: str, value: str) -> pl.Expr:
    """``column == value``: numerically for a numeric column when the value is a number (so 1 matches 1.0, as a
    float metric such as train.converged stores it), else as text."""
    if ledger.schema[column].is_numeric():
        try:
            return pl.col(column) == float(value)
        except ValueError:
            pass
    return pl.col(column).cast(pl.Utf8) == value


def _check_args(args: argparse.Namespace) -> None:
    from analyze.stats import StatsError

    if not 0 < args.confidence < 1:
        raise StatsError(f"--confidence {args.confidence}: must lie strictly between 0 and 1 (e.g. 0.95)")
    if not 0 < args.alpha < 1:
        raise StatsError(f"--alpha {args.alpha}: must lie strictly between 0 and 1 (e.g. 0.05)")
    if args.ledger is None and args.ledger_format != "auto":
        raise StatsError(f"--ledger-format {args.ledger_format}: it says how to read a --ledger file; an MLflow store "
                         "is always read as flatlas columns")
    if not args.target.startswith("gen."):
        args.target = f"gen.{args.target}"
    if args.resamples < 0:
        raise StatsError(f"--resamples {args.resamples}: must be 0 (no intervals) or a positive count such as 1000")


def _meta(args: argparse.Namespace, argv: list[str], ledger: pl.DataFrame, statuses: Mapping[str, int]) -> dict[str, Any]:
    experiment = args.experiment
    if experiment is None and "experiment" in ledger.columns and ledger.height:
        experiment = str(ledger["experiment"][0])
    n_finished = statuses.get("FINISHED", 0)
    return {
        "command": "python -m analyze " + shlex.join(argv),
        "subcommand": args.command,
        "experiment": experiment,
        "tracking_uri": args.tracking_uri,
        "ledger_path": str(args.ledger) if args.ledger else None,
        "target": args.target,
        "target_better": args.target_better,
        "ledger_format": _ledger_format(args, ledger),
        "runs": {"total": ledger.height, "finished": n_finished, "excluded": ledger.height - n_finished, "by_status": dict(statuses)},
        "seed": args.seed,
        "resamples": args.resamples,
        "confidence": args.confidence,
        "alpha": args.alpha,
    }


def _ledger_format(args: argparse.Namespace, ledger: pl.DataFrame) -> str | None:
    """The format the ledger file was read in ("flatlas" | "rgm"); None for an MLflow store."""
    from analyze.ledger import LEDGER_FORMAT

    if args.ledger is None:
        return None
    return "rgm" if LEDGER_FORMAT in ledger.columns else "flatlas"


Handled = tuple[pl.DataFrame, list[str], dict[str, Any]]  # frame, table columns, extra meta


def _rank(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats import adjust_pvalues, rank_measures

    frame = rank_measures(
        ledger, target=args.target, measures=args.measures, resamples=args.resamples,
        confidence=args.confidence, seed=args.seed, alpha=args.alpha, target_better=args.target_better,
    )
    frame = adjust_pvalues(frame)
    cols = ["rank", "measure", "n", "kendall_tau", "kendall_ci", "kendall_p", "kendall_p_adj", "spearman_rho", "spearman_p",
            "pearson_r", "pearson_p", "direction", "note"]
    return frame, cols, {}


def _partial(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats import StatsError, adjust_pvalues, partial_correlations, partial_matrix

    if args.matrix:
        frame = partial_matrix(ledger, target=args.target, measures=args.measures)
        cols = ["measure", "control", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p", "kendall_tau",
                "kendall_p", "note"]
    else:
        if not args.covariates:
            raise StatsError("partial: pass --covariates col1,col2 (e.g. measure.margin_mean,gen.train_loss) or --matrix")
        frame = partial_correlations(
            ledger, covariates=args.covariates, targets=[args.target], measures=args.measures,
            resamples=args.resamples, confidence=args.confidence, seed=args.seed,
        )
        cols = ["measure", "covariates", "n", "pearson_r", "pearson_ci", "pearson_p", "spearman_rho", "spearman_ci",
                "spearman_p", "kendall_tau", "kendall_ci", "kendall_p", "note"]
    return adjust_pvalues(frame), cols, {}


def _granulated(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats import granulated_kendall

    frame = granulated_kendall(
        ledger, target=args.target, measures=args.measures, axes=args.group_by, average_seeds=not args.no_seed_average,
        min_configs=args.min_configs, confidence=args.confidence,
    )
    return frame, ["measure", "axis", "psi", "psi_ci_low", "psi_ci_high", "sign_p", "n_cells", "n_cells_undefined",
                   "n_cells_small", "note"], {}


def _sign_error(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats import sign_error

    frame = sign_error(
        ledger, target=args.target, measures=args.measures, axes=args.group_by, n_test=args.n_test,
        min_ess=args.min_ess, hoeffding=not args.no_hoeffding,
    )
    return frame, ["measure", "axis", "mean", "p90", "max", "n_envs", "n_envs_kept", "max_ess", "weighting", "note", "fix"], {}


def _cmi(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats import conditional_mutual_information

    frame = conditional_mutual_information(ledger, target=args.target, measures=args.measures, axes=args.group_by)
    return frame, ["measure", "cmi", "conditioning", "n_sets", "n_pairs", "note"], {}


def _flags(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats.flags import decide_flags, flag_coverage, flag_evidence

    records = flag_evidence(
        ledger, target=args.target, measures=args.measures, group_by=args.group_by, min_group=args.min_group,
        confidence=args.confidence, references=_references(args.reference),
    )
    frame = decide_flags(records, alpha=args.alpha, min_group=args.min_group, confidence=args.confidence)
    coverage = flag_coverage(records)
    tested, untestable = int(coverage["n_tested"].sum()), int(coverage["n_untestable"].sum())
    extra = {"relationships": {"tested": tested, "untestable": untestable,
                               "by_axis": coverage.to_dicts()}}
    cols = ["flag", "measure", "axis", "group", "reference", "n_group", "r_group", "r_reference", "p_adj", "sentence"]
    return frame, cols, extra


def _power(args: argparse.Namespace, ledger: pl.DataFrame) -> Handled:
    from analyze.stats.power import detectable_effects

    frame = detectable_effects(ledger, target=args.target, axes=args.group_by, n_test=args.n_test,
                               alpha=args.alpha, power=args.power)
    cols = ["intervention", "level", "reference", "n_level", "n_reference", "n_blocks", "sigma", "df", "mde", "diff",
            "ci_low", "ci_high", "p", "decision"]
    return frame, cols, {"power": args.power, "sigma_source": frame["sigma_source"][0] if frame.height else None}


HANDLERS: dict[str, Callable[[argparse.Namespace, pl.DataFrame], Handled]] = {
    "rank": _rank,
    "partial": _partial,
    "granulated": _granulated,
    "sign-error": _sign_error,
    "cmi": _cmi,
    "flags": _flags,
    "power": _power,
}


def _report(args: argparse.Namespace, ledger: pl.DataFrame, stats_ledger: pl.DataFrame, meta: dict[str, Any]) -> int:
    """Statistics on ``stats_ledger`` (one row per configuration, see ``_configurations``); the page's charts and run
    counts on ``ledger`` (every run)."""
    from analyze.report import log_report_to_mlflow, write_report
    from analyze.report.sections import resolve_sections
    from analyze.stats import StatsError, report_frames

    try:
        resolve_sections(args.sections)
    except ValueError as exc:
        raise StatsError(f"--sections: {exc}") from None
    frames, notes = report_frames(
        stats_ledger,
        every_run=ledger,
        target=args.target,
        target_better=args.target_better,
        covariates=args.covariates,
        measures=args.measures,
        group_by=args.group_by,
        resamples=args.resamples,
        confidence=args.confidence,
        alpha=args.alpha,
        seed=args.seed,
        n_test=args.n_test,
        min_ess=args.min_ess,
        hoeffding=not args.no_hoeffding,
        min_group=args.min_group,
        min_configs=args.min_configs,
        references=_references(args.reference),
        per_sample=None if args.no_per_sample else _per_sample_loader(args, ledger),
    )
    frames.update(_detectable_effects(args, ledger, notes))
    # the page's charts show runs, its statistics configurations (stderr already has this sentence)
    seeds_note = [f"seeds: {meta['configurations']['sentence']}"] if meta["configurations"].get("sentence") else []
    if args.ledger is None:  # training curves live in MLflow only
        try:
            from analyze.ledger import curves
            from analyze.report.sections import MAX_CURVE_RUNS  # fetch no more curves than the report draws
            from analyze.stats import finished_runs

            done = finished_runs(ledger)["run_id"]
            shown = done.sample(min(MAX_CURVE_RUNS, done.len()), seed=args.seed) if done.len() > MAX_CURVE_RUNS else done
            if shown.len() < done.len():
                notes.append(f"curves: {shown.len()} of {done.len()} finished runs shown (random sample, seed {args.seed})")
            frames["curves"] = curves(shown.to_list(), tracking_uri=args.tracking_uri)
        except Exception as exc:  # the report still renders without curves
            notes.append(f"curves: could not load training curves ({exc})")
    from analyze.columns import DEFAULT_TARGETS

    targets = [t for t in DEFAULT_TARGETS if t in ledger.columns]
    ranked = args.target if args.target.startswith("gen.") else f"gen.{args.target}"
    meta = {**meta, "targets": targets + [ranked] * (ranked not in targets), "notes": seeds_note + notes,
            "open": args.open, "sections": args.sections, "power": args.power}
    name = meta.get("experiment") or (args.ledger.stem if args.ledger else "report")
    out = args.out or Path("reports") / f"{safe_component(str(name))}.html"  # the name is a label, never a path
    path = write_report(ledger, frames, meta, out)
    print(f"report written to {path}")
    if args.ledger is None and (is_sweep_report(args) or args.log_to_mlflow):  # the sweep's own report: mlflow ui shows it
        try:
            parent = log_report_to_mlflow(path, args.tracking_uri, meta["experiment"])
            if parent:
                print(f"report logged to MLflow run {parent} (artifact report/{Path(path).name})")
        except Exception as exc:  # the file on disk is the deliverable; logging is a convenience
            print(f"note: could not log the report to MLflow ({exc})", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.open:
        webbrowser.open(Path(path).resolve().as_uri())
    return 0


def is_sweep_report(args: argparse.Namespace) -> bool:
    """Whether this report is the sweep's own: written to the default path (no ``--out``) from all its runs (no
    ``--where``). Only that one is attached to the sweep's parent run unless ``--log-to-mlflow`` asks."""
    return args.out is None and not getattr(args, "where", None)


def _detectable_effects(args: argparse.Namespace, ledger: pl.DataFrame, notes: list[str]) -> dict[str, pl.DataFrame]:
    """The report's ``detectable_effect`` frame (``analyze.stats.power``) from every run at the comparison point
    (the seed-to-seed spread needs the runs, not the per-configuration means); why it is missing goes to the notes."""
    from analyze.stats import StatsError
    from analyze.stats.power import detectable_effects

    try:
        return {"detectable_effect": detectable_effects(
            ledger, target=args.target, axes=args.group_by, n_test=args.n_test, references=_references(args.reference),
            alpha=args.alpha, power=args.power)}
    except StatsError as exc:
        notes.append(f"detectable_effect: {exc}")
        return {}


def _per_sample_loader(args: argparse.Namespace, ledger: pl.DataFrame) -> Callable[[pl.DataFrame], Mapping[str, pl.DataFrame]] | None:
    """Per-sample artifacts live in MLflow; a ledger file has none. They are per run, so every finished run of
    ``ledger`` is read (not one row per configuration)."""
    if args.ledger is not None:
        return None

    def load(_configurations: pl.DataFrame) -> Mapping[str, pl.DataFrame]:
        from analyze.ledger import finished, load_per_sample

        return load_per_sample(finished(ledger), tracking_uri=args.tracking_uri)

    return load


# --- output ------------------------------------------------------------------------------------------------------


def render(frame: pl.DataFrame, fmt: str, meta: Mapping[str, Any], table_columns: Sequence[str] | None = None) -> str:
    """The frame as an aligned text table (with a header saying what was analysed), CSV, or versioned JSON."""
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        doc = {"schema": SCHEMA_VERSION, "meta": dict(meta), "columns": frame.columns, "rows": _json_rows(frame)}
        return json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"
    return _header(meta) + format_table(frame, table_columns) + "\n"


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return [{k: clean(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _header(meta: Mapping[str, Any]) -> str:
    runs = meta.get("runs", {})
    excluded = {k: v for k, v in runs.get("by_status", {}).items() if k != "FINISHED"}
    parts = [f"experiment: {meta.get('experiment') or meta.get('ledger_path') or '?'}", f"target: {meta.get('target')}",
             f"finished runs: {runs.get('finished', '?')} of {runs.get('total', '?')}"]
    if excluded:
        parts.append("excluded: " + ", ".join(f"{v} {k}" for k, v in sorted(excluded.items())))
    comp = meta.get("comparison") or {}
    if comp.get("mode") in ("target", "all_runs", "budget"):
        n = comp["runs"]
        what = {"target": "at the target", "all_runs": "pooled (--all-runs)", "budget": "learned"}[comp["mode"]]
        parts.append(f"{what}: {n['kept']} of {n['finished']} finished ({n['missed_target']} missed the target, "
                     f"{n['not_learned']} did not learn)")
    rel = meta.get("relationships")
    if rel:
        parts.append(f"relationships tested: {rel['tested']}, untestable: {rel['untestable']}")
    return "# " + " | ".join(parts) + "\n"


def format_table(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    """An aligned plain-text table; ``<coef>_ci`` pseudo-columns show ``[low, high]``."""
    columns = [c for c in (columns or frame.columns) if c in frame.columns or _ci_source(c, frame)]
    if frame.height == 0:
        return "(no rows)"
    cells = [[_cell(frame, c, i) for c in columns] for i in range(frame.height)]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _ci_source(col: str, frame: pl.DataFrame) -> bool:
    return col.endswith("_ci") and f"{col}_low" in frame.columns


def _cell(frame: pl.DataFrame, col: str, i: int) -> str:
    if col not in frame.columns and _ci_source(col, frame):
        lo, hi = frame[f"{col}_low"][i], frame[f"{col}_high"][i]
        return "" if lo is None or hi is None else f"[{_num(lo)}, {_num(hi)}]"
    v = frame[col][i]
    if v is None:
        return ""
    if isinstance(v, float):
        return _num(v, p=col.endswith("_p") or col.endswith("_adj") or col == "p_adj")
    return str(v)


def _num(v: float, p: bool = False) -> str:
    if not math.isfinite(v):
        return "nan"
    if p:
        return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
