"""Ledgers in the Robust-Generalization-Measures convention (Dziugaite et al. 2020): ``complexity.*``, ``gen.gap``,
``hp.*``, ``is.*`` and ``experiment_id``, read by auto-detection or ``--ledger-format rgm``. The fixture is written
here, in the layout of that repository's ``nin.cifar10_svhn.csv`` (pandas index column first)."""

from __future__ import annotations

import itertools
import re
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.cli import main
from analyze.public_ledger import REGISTRY_ALIASES, detect, to_flatlas
from analyze.stats import expected_sign
from collect.catalog import expected_direction


def rgm_ledger(seed: int = 0, n_seeds: int = 2) -> pl.DataFrame:
    """24 configurations × ``n_seeds``: path_norm and fro_dist track gen.gap, mar_lik is noise."""
    rng = np.random.default_rng(seed)
    configs = list(itertools.product([0.01, 0.1], [2, 3, 4], [8, 16], ["cifar10", "svhn"]))
    rows = []
    for cid, (lr, depth, width, dataset) in enumerate(configs):
        base = 0.05 * depth - 0.02 * np.log(width) + 0.1 * lr + rng.normal(0, 0.02)
        for s in range(n_seeds):
            gap = base + rng.normal(0, 0.005)
            rows.append({
                "": len(rows), "experiment_id": f"exp{cid}", "hp.lr": lr, "hp.model_depth": depth,
                "hp.model_width": width, "hp.dataset": dataset, "hp.seed": s, "train_dataset_size": 50000,
                "complexity.path_norm": 10 * gap + rng.normal(0, 0.01), "complexity.fro_dist": 50 + 100 * gap,
                "complexity.mar_lik": rng.normal(), "gen.gap": gap, "gen.train_acc": 1.0,
                "gen.val_acc": 1.0 - gap, "is.converged": True, "is.high_train_accuracy": s == 0 or cid % 2 == 0,
            })
    return pl.DataFrame(rows)


@pytest.fixture()
def rgm_csv(tmp_path: Path) -> Path:
    path = tmp_path / "nin.cifar10_svhn.csv"
    rgm_ledger().write_csv(path)
    return path


def test_conversion_renames_and_keeps_values() -> None:
    frame = rgm_ledger()
    assert detect(frame.columns) == "rgm" and detect(["measure.x", "complexity.y"]) == "flatlas"
    out = to_flatlas(frame)
    assert out.dropped == ("",)
    assert out.renamed == {"experiment_id": "tag.experiment_id", "hp.seed": "seed",
                           "complexity.path_norm": "measure.path_norm", "complexity.fro_dist": "measure.fro_dist",
                           "complexity.mar_lik": "measure.mar_lik", "is.converged": "train.converged",
                           "is.high_train_accuracy": "train.high_train_accuracy"}
    g = out.frame
    assert g["measure.path_norm"].to_list() == frame["complexity.path_norm"].to_list()
    assert g["train.high_train_accuracy"].to_list() == [float(v) for v in frame["is.high_train_accuracy"]]
    assert {"hp.lr", "hp.model_depth", "hp.model_width", "hp.dataset", "gen.gap"} <= set(g.columns)
    assert g["seed"].to_list() == frame["hp.seed"].to_list()
    no_seed = to_flatlas(frame.drop("hp.seed")).frame  # repeats numbered within their experiment_id
    assert no_seed["seed"].to_list() == frame["hp.seed"].to_list()
    with pytest.raises(ValueError, match="would all become"):
        to_flatlas(frame.with_columns(pl.lit(1.0).alias("measure.path_norm")))


# The complexity measures of the published ledger (nin.cifar10_svhn.csv); every one but the GP bounds has a direction.
PUBLISHED = """dist_spec_init_fft fro_dist fro_over_spec_fft inverse_margin log_prod_of_fro log_prod_of_fro_over_margin
log_prod_of_spec_fft log_prod_of_spec_over_margin_fft log_spec_init_main_fft log_spec_orig_main_fft log_sum_of_fro
log_sum_of_fro_over_margin log_sum_of_spec_fft log_sum_of_spec_over_margin_fft pacbayes_flatness pacbayes_init
pacbayes_mag_flatness pacbayes_mag_init pacbayes_mag_orig pacbayes_orig param_norm params path_norm
path_norm_over_margin""".split()


def test_every_alias_names_a_registered_measure_with_a_direction() -> None:
    for name, key in REGISTRY_ALIASES.items():
        assert expected_direction(f"measure.{key}") != 0, (name, key)
    for name in PUBLISHED:
        assert expected_sign(f"measure.{name}", "gen.gap") == 1, name  # every one is a complexity: larger, larger gap
    for name in ("mar_lik", "prior"):
        assert expected_sign(f"measure.{name}", "gen.gap") == 0, name


def test_rank_reads_the_public_ledger_with_registry_directions(rgm_csv: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["rank", "--ledger", str(rgm_csv), "--target", "gen.gap", "--format", "json", "--resamples", "0"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["meta"]["ledger_format"] == "rgm" and doc["meta"]["configurations"]["configurations"] == 24
    rows = {r["measure"]: r for r in doc["rows"]}
    assert set(rows) == {"measure.path_norm", "measure.fro_dist", "measure.mar_lik"}
    # path_norm: the registry's own key; fro_dist: through its alias (frobenius_distance); mar_lik: not registered
    assert (rows["measure.path_norm"]["expected_sign"], rows["measure.path_norm"]["direction"]) == (1, "as expected")
    assert (rows["measure.fro_dist"]["expected_sign"], rows["measure.fro_dist"]["direction"]) == (1, "as expected")
    assert (rows["measure.mar_lik"]["expected_sign"], rows["measure.mar_lik"]["direction"]) == (0, "unknown")
    # τ on the seed means of each configuration (experiment_id), computed independently with pandas-free grouping
    raw = rgm_ledger()
    means: dict[str, list[float]] = {}
    for key in ("complexity.path_norm", "gen.gap"):
        groups: dict[str, list[float]] = {}
        for e, v in zip(raw["experiment_id"], raw[key]):
            groups.setdefault(e, []).append(v)
        means[key] = [float(np.mean(v)) for v in groups.values()]
    ref = stats.kendalltau(means["complexity.path_norm"], means["gen.gap"])
    assert rows["measure.path_norm"]["kendall_tau"] == pytest.approx(ref.statistic, abs=1e-12)
    # the paper's loader keeps only runs meeting both standards: --where does the same on the renamed flags
    assert main(["rank", "--ledger", str(rgm_csv), "--target", "gen.gap", "--format", "json", "--resamples", "0",
                 "--where", "train.high_train_accuracy=1"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["runs"]["total"] == 36


def test_forced_flatlas_format_refuses_with_a_hint(rgm_csv: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["rank", "--ledger", str(rgm_csv), "--ledger-format", "flatlas", "--target", "gen.gap"]) == 2
    err = capsys.readouterr().err
    assert "no column starting with 'measure.'" in err and "--ledger-format rgm" in err
    assert main(["rank", "--ledger", str(rgm_csv), "--ledger-format", "rgm", "--target", "gen.gap",
                 "--resamples", "0"]) == 0
    assert "measure.path_norm" in capsys.readouterr().out
    assert main(["rank", "--ledger-format", "rgm", "--tracking-uri", "sqlite:///nowhere.db"]) == 2
    assert "--ledger-format rgm: it says how to read a --ledger file" in capsys.readouterr().err


def test_report_on_the_public_ledger_names_the_registered_predictors(rgm_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "rgm.html"
    assert main(["report", "--ledger", str(rgm_csv), "--target", "gen.gap", "--resamples", "0", "--out", str(out)]) == 0
    html = out.read_text()
    (sentences,) = re.findall(r"<ol class='verdict' id='verdict-sentences'>(.*?)</ol>", html, re.S)
    first = sentences.split("</li>")[0]
    assert "path_norm (τ = +" in first and "fro_dist (τ = +" in first and "predict gen.gap with the expected sign" in first
    assert "mar_lik" not in first
