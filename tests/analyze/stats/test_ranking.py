

def test_undefined_tau_does_not_shift_the_ranks_of_defined_ones():
    import numpy as np
    import polars as pl

    from analyze.stats.ranking import rank_frame

    corr = pl.DataFrame(
        {
            "measure": ["measure.a", "measure.const", "measure.b"],
            "target": ["gen.gap_acc"] * 3,
            "n": [10, 10, 10],
            "n_missing": [0, 0, 0],
            **{c: [0.5, float("nan"), -0.2] for c in ("kendall_tau", "spearman_rho", "pearson_r")},
            **{c: [0.01, float("nan"), 0.3] for c in ("kendall_p", "spearman_p", "pearson_p")},
            **{f"{m}_ci_{s}": [None, None, None] for m in ("kendall", "spearman", "pearson") for s in ("low", "high")},
            "note": ["", "constant column", ""],
        },
        schema_overrides={f"{m}_ci_{s}": pl.Float64 for m in ("kendall", "spearman", "pearson") for s in ("low", "high")},
    )
    ranked = rank_frame(corr)
    assert ranked["measure"].to_list() == ["measure.a", "measure.b", "measure.const"]
    assert ranked["rank"].to_list() == [1, 2, None]
    assert not np.isnan(ranked["kendall_tau"][0])
