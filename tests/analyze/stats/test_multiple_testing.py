"""Benjamini–Hochberg: a hand-worked family, missing p-values, and one family across frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import adjust_family, adjust_pvalues, benjamini_hochberg


def test_hand_worked_family() -> None:
    # sorted p = .01, .02, .03, .5 (m = 4): p·m/rank = .04, .04, .04, .5, then the running min from the top
    p = np.array([0.03, 0.5, 0.01, np.nan, 0.02])
    adj = benjamini_hochberg(p)
    assert adj[[2, 4, 0, 1]] == pytest.approx([0.04, 0.04, 0.04, 0.5])
    assert np.isnan(adj[3])


def test_one_family_across_frames() -> None:
    a = pl.DataFrame({"x_p": [0.01, 0.02]})
    b = pl.DataFrame({"y_p": [0.03, None], "other": [1, 2]})
    out = adjust_family({"a": a, "b": b})
    assert out["a"]["x_p_adj"].to_list() == pytest.approx([0.03, 0.03])
    assert out["b"]["y_p_adj"].to_list()[0] == pytest.approx(0.03) and out["b"]["y_p_adj"][1] is None
    assert out["b"].columns == ["y_p", "y_p_adj", "other"]
    assert adjust_pvalues(a)["x_p_adj"].to_list() == pytest.approx([0.02, 0.02])
