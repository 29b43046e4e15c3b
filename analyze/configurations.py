"""Honest n: the seeds of one configuration are averaged into one row before any statistic sees them.

Runs that share every hyperparameter and differ only in their seed are repeated measurements of one draw of the
interventions, not independent draws: read as independent, 3 seeds × 729 configurations would give CIs and p-values
√3 too narrow. ``configuration_means`` keeps one row per configuration of the FINISHED runs:

    configuration = the values of every ``hp.*`` column except ``hp.seed`` (a null is a value of its own);
    value(c, column) = mean over the configuration's runs with a finite value of the column
                       (``measure.*``, ``gen.*``, ``diag.*``, ``time.*``, ``train.*``; null when none has one);
    any other column = its value in the configuration's first run; ``n_seeds`` = the configuration's run count.

Rows are averaged only when the ledger says which runs are seeds of one configuration: it has a ``seed`` (or
``hp.seed``) column and no configuration holds one seed twice. Otherwise (no seed column, or a repeated seed: the
``hp.*`` columns then do not tell configurations apart, e.g. a ledger file that omits a hyperparameter) every
finished run is its own row, and ``ConfigurationMeans.sentence`` says why.

So the statistics (ranking CIs and p-values, flags, verdict) count configurations; the ledger with one seed per
configuration and the ledger with three identical copies of each row give the same numbers. The two that model the
seeds themselves take every run instead (``analyze.cli.PER_RUN``: the detectable effect, from the seed-to-seed
spread; sign-error, whose environments pair the seeds). Jiang et al. 2020 and
Dziugaite et al. 2020 (``average_over_repeats``) likewise compare configurations averaged over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analyze.columns import DIAG, GEN, HP, MEASURE, TIME

AVERAGED = (MEASURE, GEN, DIAG, TIME, "train.")
SEED_COLUMNS = ("seed", f"{HP}seed")
N_SEEDS = "n_seeds"


@dataclass(frozen=True)
class ConfigurationMeans:
    """One FINISHED row per configuration, and the counts behind it (for stderr, ``meta`` and the report)."""

    ledger: pl.DataFrame
    n_runs: int
    n_configurations: int
    keys: tuple[str, ...]
    not_averaged: str | None = None  # why the runs were left as they are, when they were

    def sentence(self, counted_by: str = "every statistic") -> str:
        """What was averaged, in one sentence; ``counted_by`` names the statistics that count configurations (e.g.
        "rank", or "every statistic except sign-error and the detectable effect, which use every run")."""
        if self.not_averaged:
            return f"each of the {self.n_runs} finished runs counts as its own configuration: {self.not_averaged}"
        per = self.n_runs / self.n_configurations if self.n_configurations else 0.0
        return (f"{self.n_runs} finished runs are {self.n_configurations} configurations ({per:.3g} seed(s) each on "
                f"average); {counted_by} counts configurations, each the mean over its seeds")


def configuration_keys(ledger: pl.DataFrame) -> list[str]:
    """The columns whose values name a configuration: every ``hp.*`` column except ``hp.seed``."""
    return [c for c in ledger.columns if c.startswith(HP) and c not in SEED_COLUMNS]


def configuration_means(ledger: pl.DataFrame) -> ConfigurationMeans:
    """The FINISHED runs of ``ledger`` averaged per configuration (module docstring); row order follows each
    configuration's first run. Without ``hp.*`` columns the finished runs are returned unchanged."""
    done = ledger.filter(pl.col("status") == "FINISHED") if "status" in ledger.columns else ledger
    keys = configuration_keys(done)
    why = _why_not_averaged(done, keys)
    if why is not None:
        return ConfigurationMeans(done, done.height, done.height, tuple(keys), why)
    averaged = [c for c in done.columns if c.startswith(AVERAGED) and c not in keys
                and (done.schema[c].is_numeric() or done.schema[c] == pl.Boolean)]
    others = [c for c in done.columns if c not in keys and c not in averaged and c != N_SEEDS]
    aggs = [pl.col(c).first() for c in others]
    for c in averaged:
        value = pl.col(c).cast(pl.Float64)
        aggs.append(value.filter(value.is_finite()).mean().alias(c))
    aggs.append(pl.len().cast(pl.Int64).alias(N_SEEDS))
    grouped = done.group_by(keys, maintain_order=True).agg(aggs)
    out = grouped.select([c for c in done.columns if c != N_SEEDS] + [N_SEEDS])
    return ConfigurationMeans(out, done.height, out.height, tuple(keys))


def _why_not_averaged(done: pl.DataFrame, keys: list[str]) -> str | None:
    """None when the seeds of each configuration can be told apart (module docstring), else the reason."""
    if done.height == 0:
        return "there are no finished runs"
    if not keys:
        return "no hp.* column tells configurations apart"
    seed = next((c for c in SEED_COLUMNS if c in done.columns and done[c].is_not_null().any()), None)
    if seed is None:
        return "the ledger has no seed column, so runs that share their hp.* values cannot be told to be seeds"
    repeated = done.group_by([*keys, seed]).len().filter(pl.col("len") > 1)
    if repeated.height:
        return (f"{repeated.height} configuration(s) hold one {seed} more than once, so the hp.* columns do not "
                "tell configurations apart (a hyperparameter missing from the ledger?)")
    return None
