"""Load runs into the ledger: one polars row per trained model, columns prefixed as in ``analyze.columns``.

Sources: an MLflow store (the child runs of an experiment) or a CSV/Parquet ledger file with the same columns
(for example exported from another study). Either way the statistics see the same frame.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from analyze.columns import DIAG, GEN, HP, ID_COLUMNS, MEASURE, TAG, TIME
from analyze.public_ledger import AUTO, COMPLEXITY, RGM, resolve_format, to_flatlas
from analyze.sqlite_store import (
    CURVE_PREFIXES,
    curve_key,
    local_artifact_dirs,
    read_curves,
    read_sqlite_store,
)
from collect.catalog import output_kind

# Params that are bookkeeping, not hyperparameters.
NON_HP_PARAMS = {"measures", "curve_measures", "save_weights", "seed"}
METRIC_PREFIXES = (MEASURE, DIAG, GEN, TIME, "train.")
FLATLAS_KIND = "flatlas.kind"


class LedgerError(ValueError):
    """The runs could not be loaded into a ledger; the message says what is missing and how to fix it."""


def parse_param(value: str) -> Any:
    """MLflow params are strings: turn 'True', 'None', '3', '0.1' back into Python values; keep other text.

    A string of digits is an integer only when it reads back the same and fits in 64 bits: '007' or a 128-character
    0/1 truth table (``data.boolean_target``) is a label, not a number."""
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        if str(number) == value and -(2**63) <= number < 2**63:
            return number
        return value
    try:
        return float(value)
    except ValueError:
        return value


def metric_column(name: str) -> str:
    """Ledger column of an MLflow metric name: ``measure/lambda_max`` -> ``measure.lambda_max`` (the first ``/``
    becomes ``.``; collect logs ``<group>/<key>`` so MLflow's run page groups metrics). A store written before
    diagnostics were told apart holds them as ``measure.<key>``: when the measure registry declares ``<key>`` a
    diagnostic (``collect.catalog.output_kind``), the column is ``diag.<key>``. Names already dotted keep their form."""
    group, slash, key = name.partition("/")
    if slash and "." not in group:
        name = f"{group}.{key}"
    if name.startswith(MEASURE) and output_kind(name.removeprefix(MEASURE)) == "diagnostic":
        return DIAG + name.removeprefix(MEASURE)
    return name


def run_row(run: Any, experiment: str) -> dict[str, Any]:
    """One ledger row from an MLflow run: params → hp.<leaf>, metrics → their ledger columns (``metric_column``),
    user tags → tag.<name>."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "experiment": experiment,
        "seed": parse_param(params["seed"]) if "seed" in params else None,
        "status": run.info.status,
    }
    for key, value in params.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf not in NON_HP_PARAMS:
            row[f"{HP}{leaf}"] = parse_param(value)
    for key, value in metrics.items():
        column = metric_column(key)
        if column.startswith(METRIC_PREFIXES):
            row[column] = value
    for key, value in tags.items():
        if not key.startswith("mlflow."):
            row[f"{TAG}{key}"] = value
    return row


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    data = {c: [row.get(c) for row in rows] for c in columns}
    series = []
    for name, values in data.items():
        try:
            series.append(pl.Series(name, values, strict=False))
        except (TypeError, pl.exceptions.PolarsError):
            series.append(pl.Series(name, [None if v is None else str(v) for v in values]))
    front = [c for c in ID_COLUMNS if c in columns]
    ordered = front + sorted(c for c in columns if c not in front)
    return pl.DataFrame(series).select(ordered)


def load_from_mlflow(tracking_uri: str | None = None, experiment: str | None = None) -> pl.DataFrame:
    """All configuration runs (any status) of ``experiment`` (default: the most recently created one)."""
    from collect.tracking import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise LedgerError(f"no MLflow store at {db}; run `python -m collect` first or pass --tracking-uri / --ledger")
    if db is not None:
        fast = read_sqlite_store(db, experiment)
        if fast is not None:
            name, runs = fast
            return _config_frame(runs, name, uri)
    from mlflow import MlflowClient  # imported here: the SQLite path above does without it (2 s of imports)

    client = MlflowClient(tracking_uri=uri)
    exp = _find_experiment(client, experiment, uri)
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return _config_frame(runs, exp.name, uri)


def _config_frame(runs: list[Any], experiment: str, uri: str) -> pl.DataFrame:
    """The ledger of an experiment's configuration runs (flatlas's ``config`` runs, or every non-parent run of an
    experiment logged by another tool)."""
    configs = [r for r in runs if r.data.tags.get(FLATLAS_KIND) == "config"]
    if not configs:  # an experiment logged by another tool: every run that is not a parent
        parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
        configs = [r for r in runs if r.info.run_id not in parents]
    if not configs:
        raise LedgerError(f"experiment '{experiment}' in {uri} has no runs yet; run `python -m collect --experiment {experiment}`")
    return _frame([run_row(r, experiment) for r in configs])


def _find_experiment(client: Any, name: str | None, uri: str) -> Any:
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise LedgerError(f"no experiment named '{name}' in {uri}; experiments there: {known}")
        return exp
    candidates = [e for e in client.search_experiments(order_by=["creation_time DESC"]) if e.name != "Default"]
    if not candidates:
        raise LedgerError(f"no experiments in {uri}; run `python -m collect` first or pass --ledger FILE")
    return candidates[0]


def load_file(path: Path, ledger_format: str = AUTO) -> pl.DataFrame:
    """A CSV or Parquet ledger; it needs at least one ``measure.*`` and one ``gen.*`` column, and at least one row.

    ``ledger_format``: "flatlas", "rgm" (the Robust-Generalization-Measures convention, read through
    ``analyze.public_ledger.to_flatlas``; its rows get ``tag.ledger_format`` = "rgm") or "auto" (rgm when the file
    has ``complexity.*`` columns and no ``measure.*`` one). A CSV header with a repeated column name or a name that
    is not UTF-8 is an error naming the column.
    """
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"ledger file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".tsv"):
        raise LedgerError(f"ledger file {path}: use a .csv, .tsv or .parquet file")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:  # every row decides a column's type, so a late text cell cannot break parsing
            check_header(path, "\t" if suffix == ".tsv" else ",")
            frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=None)
    except pl.exceptions.NoDataError:
        raise LedgerError(f"ledger file {path} is empty: the ledger has no rows (one row per run, with a header)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LedgerError(f"ledger file {path} could not be read ({first}); check that it is a valid {suffix[1:]} file") from None
    return validate(convert_format(frame, ledger_format, str(path)), str(path), from_file=True)


LEDGER_FORMAT = f"{TAG}ledger_format"


def convert_format(frame: pl.DataFrame, ledger_format: str, source: str) -> pl.DataFrame:
    """The frame in flatlas columns: unchanged for "flatlas", converted for "rgm", detected for "auto"."""
    try:
        fmt = resolve_format(frame.columns, ledger_format)
        if fmt != RGM:
            return frame
        converted = to_flatlas(frame).frame
    except ValueError as exc:
        raise LedgerError(f"{source}: {exc} (--ledger-format {ledger_format})") from None
    return converted.with_columns(pl.lit(RGM).alias(LEDGER_FORMAT))


def check_header(path: Path, separator: str) -> None:
    """Raise ``LedgerError`` when the CSV header repeats a column name or has a name that is not UTF-8.

    The header line is split as bytes (decoded as Latin-1, which maps every byte to one character, so the split is
    the CSV module's on the raw bytes) and each name is then decoded as UTF-8 strictly.
    """
    with open(path, "rb") as fh:
        raw = fh.readline().rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
    if not raw:
        return
    fields = next(csv.reader([raw.decode("latin-1")], delimiter=separator))
    names: list[str] = []
    for i, field in enumerate(fields, start=1):
        data = field.encode("latin-1")
        try:
            names.append(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise LedgerError(
                f"ledger file {path}: column {i} of the header ({data!r}) is not UTF-8 (byte "
                f"{data[exc.start:exc.start + 1]!r} at position {exc.start}); save the file as UTF-8 or rename the column"
            ) from None
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        seen.setdefault(name, []).append(i)
    repeated = {n: cols for n, cols in seen.items() if len(cols) > 1}
    if repeated:
        listed = "; ".join(f"{n!r} in columns {', '.join(map(str, cols))}" for n, cols in repeated.items())
        raise LedgerError(f"ledger file {path}: duplicate column name {listed}; each column needs its own name "
                          "(rename or remove the repeated one)")


def validate(frame: pl.DataFrame, source: str, from_file: bool = False) -> pl.DataFrame:
    """Check a ledger's shape and fill the id columns; raise ``LedgerError`` naming the problem and the fix.

    Every ledger: at least one row, a ``measure.*`` and a ``gen.*`` column, no ``run_id`` twice. Text cells of
    ``measure.*``/``gen.*`` columns that all read as numbers ("nan", "inf") become numbers. A file's ``hp.*``
    columns must be all numbers or all text, with no blank cell unless the column is blank in every row (not set
    in any run); an MLflow ledger's null ``hp.*`` value is a logged ``None`` and stays.
    """
    if frame.height == 0:
        raise LedgerError(f"{source}: the ledger has no rows (a header without runs); it needs one row per run")
    missing = [p for p in (MEASURE, GEN) if not any(c.startswith(p) for c in frame.columns)]
    if missing:
        hint = ""
        if MEASURE in missing and any(c.startswith(COMPLEXITY) for c in frame.columns):
            hint = ("; its complexity.* columns follow the Robust-Generalization-Measures convention: read it with "
                    "--ledger-format rgm (or auto)")
        raise LedgerError(
            f"{source}: no column starting with {' or '.join(repr(m) for m in missing)}; a ledger has one row per run "
            f"with columns like measure.hessian_trace and gen.test_acc (see docs/statistics.md, 'Ledger columns'){hint}"
        )
    if "status" not in frame.columns:
        frame = frame.with_columns(pl.lit("FINISHED").alias("status"))
    if "run_id" not in frame.columns:
        frame = frame.with_row_index("run_id").with_columns(pl.col("run_id").cast(pl.Utf8))
    if "experiment" not in frame.columns:
        frame = frame.with_columns(pl.lit(Path(source).stem).alias("experiment"))
    _check_unique_run_ids(frame, source)
    frame = _numbers_from_text(frame, [c for c in frame.columns if c.startswith((MEASURE, GEN))])
    if from_file:
        for column in (c for c in frame.columns if c.startswith(HP)):
            _check_hp_column(frame, column, source)
    return frame


def _rows(frame: pl.DataFrame, mask: pl.Series, limit: int = 8) -> str:
    """'rows 2, 5 (run_id a, b)': 1-based data rows (the header is not counted) and their run ids."""
    idx = [i for i, hit in enumerate(mask.to_list()) if hit]
    shown = idx[:limit]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    ids = ", ".join(str(frame["run_id"][i]) for i in shown)
    return f"row{'s' if len(idx) > 1 else ''} {', '.join(str(i + 1) for i in shown)}{more} (run_id {ids}{more and ', ...'})"


def _check_unique_run_ids(frame: pl.DataFrame, source: str) -> None:
    counts = frame.group_by("run_id", maintain_order=True).len().filter(pl.col("len") > 1)
    if counts.height:
        dupes = ", ".join(f"{r['run_id']!s} ({r['len']} times)" for r in counts.head(8).iter_rows(named=True))
        more = f" and {counts.height - 8} more" if counts.height > 8 else ""
        raise LedgerError(f"{source}: duplicate run_id {dupes}{more}; each run must appear once (remove the repeated rows)")


def _text_cells(series: pl.Series) -> pl.Series:
    """True where a non-blank cell does not read as a number."""
    as_number = series.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
    return series.is_not_null() & as_number.is_null()


def _numbers_from_text(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Text columns whose every non-blank cell reads as a number (e.g. 'nan', 'inf', '1e-3') become Float64."""
    casts = [
        pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
        for c in columns
        if frame.schema[c] == pl.Utf8 and not _text_cells(frame[c]).any()
    ]
    return frame.with_columns(casts) if casts else frame


def _check_hp_column(frame: pl.DataFrame, column: str, source: str) -> None:
    values = frame[column]
    blank = values.is_null()
    if values.dtype == pl.Utf8:
        blank = blank | (values.str.strip_chars() == "")
    if blank.all():
        return  # not set in any run: a constant, never an axis
    if blank.any():
        raise LedgerError(
            f"{source}: {column} has blank cells in {_rows(frame, blank)}; every run needs a value of each hp.* "
            f"column: fill in the value those runs used, or drop the column"
        )
    if values.dtype == pl.Utf8:
        text = _text_cells(values)
        if 0 < int(text.sum()) < values.len():
            raise LedgerError(
                f"{source}: {column} mixes numbers and text: text in {_rows(frame, text)} "
                f"(e.g. {values.filter(text)[0]!r}), numbers elsewhere; make the column all numbers or all text"
            )


# --- the ledger ready for statistics -----------------------------------------------------------------------------

CONFIG_HASH = f"{TAG}config_hash"  # collect.tracking.TAG_HASH as a ledger column


@dataclass(frozen=True)
class SkippedColumn:
    """A measure column left out of every statistic, and why."""

    column: str
    reason: str


@dataclass(frozen=True)
class PreparedLedger:
    """The ledger as the statistics see it, plus what was left out of it (shown to the user, never silent)."""

    ledger: pl.DataFrame  # skipped columns removed; one FINISHED run per configuration
    skipped: tuple[SkippedColumn, ...] = ()
    warnings: tuple[str, ...] = ()

    def skipped_frame(self) -> pl.DataFrame:
        """Columns ``column``, ``reason``: one row per skipped column (for the CLI output and the report)."""
        return pl.DataFrame([{"column": s.column, "reason": s.reason} for s in self.skipped],
                            schema={"column": pl.Utf8, "reason": pl.Utf8})


def prepare(ledger: pl.DataFrame, target: str | None = None, measures: Sequence[str] | None = None) -> PreparedLedger:
    """Check a loaded ledger against what an analysis needs; raise ``LedgerError`` where it cannot proceed.

    - several FINISHED runs of one configuration (same ``tag.config_hash``): the first row of each is kept, with a
      warning saying how many were dropped (a run that trained twice must count once);
    - ``measure.*`` columns that are not numeric, or have no finite value among the FINISHED runs, are skipped with
      the reason; naming such a column in ``measures`` is an error;
    - ``target``: an error when no FINISHED run has a finite value of it;
    - ±inf cells of ``measure.*``/``gen.*`` columns among the FINISHED runs are counted in a warning per column
      (the statistics treat them as missing, like blank and NaN cells).
    """
    warnings: list[str] = []
    ledger = _drop_repeated_configurations(ledger, warnings)
    done = ledger.filter(pl.col("status") == "FINISHED") if "status" in ledger.columns else ledger
    # A text column whose finished runs all hold numbers (text only in failed runs' cells) is numeric for analysis.
    numeric = [c for c in ledger.columns if c.startswith((MEASURE, GEN)) and ledger.schema[c] == pl.Utf8
               and done[c].is_not_null().any() and not _text_cells(done[c]).any()]
    if numeric:
        ledger = ledger.with_columns(pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in numeric)
        done = ledger.filter(pl.col("status") == "FINISHED") if "status" in ledger.columns else ledger
    _warn_mixed_convergence(done, warnings)
    warnings.extend(infinite_cells(done))
    named = {m if m.startswith(MEASURE) else MEASURE + m for m in measures or ()}
    skipped: list[SkippedColumn] = []
    for column in (c for c in ledger.columns if c.startswith(MEASURE)):
        reason = _unusable(done, column)
        if reason is None:
            continue
        if column in named:
            raise LedgerError(f"--measures names {column}, but {reason}; leave it out of --measures or fix the ledger")
        skipped.append(SkippedColumn(column, reason))
    if target is not None:
        name = target if target.startswith(GEN) else GEN + target
        if name in ledger.columns and ledger.schema[name].is_numeric():
            if _finite_count(done, name) == 0:
                raise LedgerError(
                    f"no finished run has a value of {name} ({done.height} finished of {ledger.height} runs); "
                    f"choose another --target (the ledger has {', '.join(c for c in ledger.columns if c.startswith(GEN))})"
                )
    kept = ledger.drop([s.column for s in skipped])
    return PreparedLedger(kept, tuple(skipped), tuple(warnings))


def _warn_mixed_convergence(done: pl.DataFrame, warnings: list[str]) -> None:
    """Warn when some finished runs reached their stopping target and others were ended by an epoch or step cap.

    Runs stopped at different distances from the target fit the training set to different degrees, and that alone
    moves train accuracy and so the generalization gap; Jiang et al. 2020 compare runs at one cross-entropy target.
    Where the runs that missed the target relate a measure to the gap with the opposite sign, pooling them reverses
    the measure (tests/analyze/test_comparison.py builds such a ledger)."""
    column = "train.converged"
    if column not in done.columns or not done.schema[column].is_numeric() or done.height == 0:
        return
    reached = int(done.select((pl.col(column) == 1).sum()).item() or 0)
    if 0 < reached < done.height:
        warnings.append(
            f"{done.height - reached} of {done.height} finished runs stopped before their stopping target "
            f"(train.converged = 0: an epoch or step cap ended them) and {reached} reached it; how far training got "
            f"moves the gap by itself. By default the analysis uses only the runs at the target (Jiang et al. 2020 "
            f"compare runs at one target) and --all-runs pools them, as here: drop --all-runs, or raise the spec's "
            f"epoch or step cap so that more runs reach the target"
        )


def infinite_cells(done: pl.DataFrame) -> list[str]:
    """One warning per numeric ``measure.*``/``gen.*`` column with ±inf cells: how many, and in which runs."""
    out = []
    for column in (c for c in done.columns if c.startswith((MEASURE, GEN)) and done.schema[c].is_float()):
        mask = done[column].is_infinite().fill_null(False)
        count = int(mask.sum())
        if count:
            out.append(f"{column}: {count} of {done.height} finished runs have ±inf ({_rows(done, mask)}); "
                       "those cells are left out of every statistic of the column, like blank and NaN cells")
    return out


def _finite_count(frame: pl.DataFrame, column: str) -> int:
    return int(frame.select(pl.col(column).cast(pl.Float64).is_finite().sum()).item() or 0)


def _unusable(done: pl.DataFrame, column: str) -> str | None:
    """Why ``column`` cannot enter a statistic, or None when it can."""
    dtype = done.schema[column]
    if dtype == pl.Utf8:
        text = _text_cells(done[column])
        if text.any():
            example = done[column].filter(text)[0]
            return f"not numeric: {int(text.sum())} of {done.height} finished runs have text (e.g. {example!r})"
    elif not (dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null):
        return f"not numeric (type {dtype})"
    if done.height == 0 or dtype == pl.Null or dtype == pl.Utf8 or _finite_count(done, column) == 0:
        return f"no finished run has a value (all {done.height} are blank or NaN)"
    return None


def _drop_repeated_configurations(ledger: pl.DataFrame, warnings: list[str]) -> pl.DataFrame:
    if CONFIG_HASH not in ledger.columns or "status" not in ledger.columns:
        return ledger
    indexed = ledger.with_row_index("_row")
    done = indexed.filter((pl.col("status") == "FINISHED") & pl.col(CONFIG_HASH).is_not_null())
    repeated = done.filter(pl.col(CONFIG_HASH).is_duplicated())
    if repeated.height == 0:
        return ledger
    first = repeated.group_by(CONFIG_HASH).agg(pl.col("_row").min())["_row"]
    dropped = repeated.filter(~pl.col("_row").is_in(first.implode()))
    ids = ", ".join(str(r) for r in dropped["run_id"].head(8))
    warnings.append(
        f"{dropped.height} duplicate FINISHED run(s) of {repeated[CONFIG_HASH].n_unique()} configuration(s) "
        f"(same {CONFIG_HASH}) dropped, so each configuration is analysed once; kept the first row of each, "
        f"dropped run_id {ids}{' ...' if dropped.height > 8 else ''}"
    )
    return indexed.filter(~pl.col("_row").is_in(dropped["_row"].implode())).drop("_row")


def load_ledger(*, tracking_uri: str | None = None, experiment: str | None = None, ledger_path: Path | None = None,
                ledger_format: str = AUTO) -> pl.DataFrame:
    """The ledger from a file (``ledger_path``, in ``ledger_format``, see ``load_file``) or from MLflow; raises
    ``LedgerError`` with a fix on bad input."""
    if ledger_path is not None:
        return load_file(Path(ledger_path), ledger_format)
    return validate(load_from_mlflow(tracking_uri, experiment), f"experiment {experiment or '(most recent)'}")


def finished(ledger: pl.DataFrame) -> pl.DataFrame:
    """Only FINISHED runs enter statistics; failed and killed runs are counted, never mixed in."""
    return ledger.filter(pl.col("status") == "FINISHED")


def status_counts(ledger: pl.DataFrame) -> dict[str, int]:
    return {row["status"]: row["len"] for row in ledger.group_by("status").len().iter_rows(named=True)}


def load_per_sample(
    ledger: pl.DataFrame, measure: str = "per_sample_trace", tracking_uri: str | None = None, run_ids: Iterable[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Per-sample artifacts ``per_sample/<measure>.parquet`` of the ledger's runs, by run id (runs without one are left out).

    Runs whose artifacts live in a local folder (a SQLite store's ``file://`` artifact root) are read in place; the
    others are downloaded through ``MlflowClient`` (one download per run takes 70 s of a 2,187-run report).
    """
    from collect.tracking import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    out: dict[str, pl.DataFrame] = {}
    wanted = list(run_ids) if run_ids is not None else ledger["run_id"].to_list()
    db = sqlite_path(uri)
    local = local_artifact_dirs(db, wanted) if db is not None else {}
    for run_id, folder in local.items():
        path = folder / "per_sample" / f"{measure}.parquet"
        if path.is_file():
            out[run_id] = pl.read_parquet(path)
    wanted = [r for r in wanted if r not in local]
    if not wanted:
        return out
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in wanted:
            try:
                path = client.download_artifacts(run_id, f"per_sample/{measure}.parquet", tmp)
            except (MlflowException, OSError):
                continue
            out[run_id] = pl.read_parquet(path)
    return out


def ledger_hash(ledger: pl.DataFrame) -> str:
    """A short content hash of the ledger (rows sorted by run id), printed in reports for provenance."""
    import hashlib

    frame = ledger.sort("run_id") if "run_id" in ledger.columns else ledger
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:12]


def curves(run_ids: Iterable[str], tracking_uri: str | None = None, keys: Iterable[str] | None = None) -> pl.DataFrame:
    """Training curves (metrics ``curve/<key>``, or ``curve.<key>`` in older stores, with their steps) of the given
    runs as a long frame; ``keys`` are curve keys (``train_loss``) or metric names."""
    from collect.tracking import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    run_ids = list(run_ids)
    db = sqlite_path(uri)
    if db is not None:
        fast = read_curves(db, run_ids, keys)
        if fast is not None:
            return fast
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    rows: list[Mapping[str, Any]] = []
    for run_id in run_ids:
        stored = [k for k in client.get_run(run_id).data.metrics if k.startswith(CURVE_PREFIXES)]
        wanted = None if keys is None else {curve_key(k) for k in keys}
        for name in stored:
            key = curve_key(name)
            if wanted is not None and key not in wanted:
                continue
            for m in client.get_metric_history(run_id, name):
                rows.append({"run_id": run_id, "metric": key, "step": m.step, "value": m.value})
    return pl.DataFrame(rows, schema={"run_id": pl.Utf8, "metric": pl.Utf8, "step": pl.Int64, "value": pl.Float64})
