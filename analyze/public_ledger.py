"""Read ledgers written in the Robust-Generalization-Measures convention (Dziugaite et al. 2020, "In search of
robust measures of generalization"; github.com/nitarshan/robust-generalization-measures) as flatlas ledgers.

That convention names one trained model per row with ``complexity.<name>`` (a generalization measure),
``gen.<name>`` (``gen.gap`` = train accuracy − validation accuracy, ``gen.train_acc``, ``gen.val_acc``),
``hp.<name>`` (hyperparameters), ``is.converged`` / ``is.high_train_accuracy`` (the run met the cross-entropy /
train-accuracy standard) and an ``experiment_id`` shared by the repeats (seeds) of one configuration.

The mapping (``to_flatlas``): ``complexity.<name>`` → ``measure.<name>``; ``is.<name>`` → ``train.<name>`` as
1.0/0.0 (``train.converged`` is then the comparison point: only converged runs are analysed by default, as the
paper's own loader does, ``analyze.comparison``);
``hp.seed`` → ``seed`` (a seed is not an intervention); ``experiment_id`` → ``tag.experiment_id``, and without a
seed column ``seed`` = the repeat's number within its ``experiment_id`` (0, 1, … in file order), so the repeats of a
configuration are averaged as seeds (``analyze.configurations``); an unnamed index column (pandas' ``to_csv``
default) is dropped; ``gen.*`` and the other ``hp.*`` columns keep their names.

Directions: a ``measure.<name>`` whose name is a measure registry key gets the registry's direction (most of the
convention's names are: ``jiang_norms``, ``pacbayes_bounds``, ``norms``, the PAC-Bayes flatness entries);
``registry_key`` maps the others that compute a registry measure under another name (``REGISTRY_ALIASES``, and the
``_fft`` variants); the rest (the GP bounds ``mar_lik`` and ``prior``, whose sign convention the data does not
state) have direction "unknown": ranked and shown with their τ, never called reversed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import polars as pl

from analyze.columns import MEASURE, TAG

FLATLAS, RGM, AUTO = "flatlas", "rgm", "auto"
FORMATS = (AUTO, FLATLAS, RGM)
COMPLEXITY = "complexity."
IS = "is."

# RGM name -> the flatlas measure registry key that computes the same quantity under another name (so the expected
# sign is the same): fro_dist = Σ_layers ‖W − W⁰‖_F² = frobenius_distance; params = the parameter count = param_count;
# l2 = ‖θ‖ = l2_norm; l2_dist = ‖θ − θ⁰‖ = dist_from_init. A name ending in ``_fft`` is the measure of the name
# without it, its spectral norms of convolutions computed through the FFT (``registry_key``).
REGISTRY_ALIASES: Mapping[str, str] = {
    "fro_dist": "frobenius_distance",
    "params": "param_count",
    "l2": "l2_norm",
    "l2_dist": "dist_from_init",
}
FFT_SUFFIX = "_fft"
INDEX_COLUMNS = ("", "Unnamed: 0", "__index_level_0__")  # a pandas index written as a column


@dataclass(frozen=True)
class Conversion:
    """A converted ledger, what was renamed (old → new) and the index columns dropped."""

    frame: pl.DataFrame
    renamed: Mapping[str, str]
    dropped: tuple[str, ...] = ()


def detect(columns: list[str]) -> str:
    """``rgm`` when the ledger has ``complexity.*`` columns and no ``measure.*`` column, else ``flatlas``."""
    has_complexity = any(c.startswith(COMPLEXITY) for c in columns)
    has_measure = any(c.startswith(MEASURE) for c in columns)
    return RGM if has_complexity and not has_measure else FLATLAS


def resolve_format(columns: list[str], fmt: str) -> str:
    """The format to read: ``fmt`` itself, or the detected one for ``auto``."""
    if fmt not in FORMATS:
        raise ValueError(f"ledger format must be one of {FORMATS}, not {fmt!r}")
    return detect(columns) if fmt == AUTO else fmt


def to_flatlas(frame: pl.DataFrame) -> Conversion:
    """The RGM-convention ``frame`` with flatlas column names (module docstring); the values are unchanged except
    the ``is.*`` flags, which become 1.0/0.0. A name the mapping would produce twice is an error (ValueError)."""
    renamed: dict[str, str] = {}
    dropped = tuple(c for c in frame.columns if c in INDEX_COLUMNS)
    frame = frame.drop(list(dropped))
    for column in frame.columns:
        if column.startswith(COMPLEXITY):
            renamed[column] = MEASURE + column.removeprefix(COMPLEXITY)
        elif column.startswith(IS):
            renamed[column] = "train." + column.removeprefix(IS)
        elif column == "hp.seed" and "seed" not in frame.columns:
            renamed[column] = "seed"
        elif column == "experiment_id":
            renamed[column] = TAG + "experiment_id"
    targets = list(renamed.values())
    clash = sorted({t for t in targets if targets.count(t) > 1 or (t in frame.columns and t not in renamed)})
    if clash:
        sources = [c for c, t in renamed.items() if t in clash]
        raise ValueError(f"columns {sources} would all become {clash}; rename one of them")
    flags = [pl.col(c).cast(pl.Float64) for c in frame.columns if c.startswith(IS)]
    frame = frame.with_columns(flags).rename(renamed)
    if "seed" not in frame.columns and f"{TAG}experiment_id" in frame.columns:
        # the repeats of a configuration share its experiment_id: number them 0, 1, … in file order
        frame = frame.with_columns(pl.int_range(pl.len()).over(f"{TAG}experiment_id").cast(pl.Int64).alias("seed"))
    return Conversion(frame, renamed, dropped)


def registry_key(measure_column: str) -> str:
    """The measure registry key whose direction ``measure_column`` shares: the name without ``measure.`` and without
    a trailing ``_fft``, through ``REGISTRY_ALIASES``."""
    key = measure_column.removeprefix(MEASURE).removesuffix(FFT_SUFFIX)
    return REGISTRY_ALIASES.get(key, key)

