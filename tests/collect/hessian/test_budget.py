"""The probe budget of the stochastic trace estimators is checked in one place (``check_budget``), and the curvature
measures' options go through it: each bad value gets an error naming its field."""
from __future__ import annotations

import inspect

import pytest

from collect.hessian import trace
from collect.measures import curvature
from collect.config import SpecError


@pytest.mark.parametrize(("args", "field"), [
    ((-0.1, 64, 500), "rel_se"), ((0.02, 64, 1), "max_probes"), ((0.02, 1, 500), "min_probes"),
    ((0.02, 100, 50), "max_probes"), ((0.02, 64, 500, 0), "block"),
])
def test_bad_budgets_name_their_field(args: tuple, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} = "):
        trace.check_budget(*args)


def test_measure_options_use_the_same_check() -> None:
    with pytest.raises(SpecError, match=r"measures\.hessian_trace: max_probes = 1 must be >= 2"):
        curvature._check_probes("hessian_trace", 0.02, None, 1)
    assert curvature._check_probes("hessian_trace", 0.02, None, 40) == 40  # a smaller cap lowers the pilot
    assert curvature._check_probes("hessian_trace", 0.02, None, 500) == trace.MIN_PROBES


def test_defaults_are_written_once() -> None:
    """Every estimator and curvature measure defaults to the constants of collect.hessian.trace."""
    fns = [trace.hutchinson_trace, trace.hutchpp_trace, trace.hutchinson_frobenius,
           *(m.fn for m in curvature.MEASURES if "max_probes" in inspect.signature(m.fn).parameters)]
    assert len(fns) >= 5
    for fn in fns:
        params = inspect.signature(fn).parameters
        assert params["rel_se"].default == trace.REL_SE and params["max_probes"].default == trace.MAX_PROBES, fn
        assert params["min_probes"].default in (trace.MIN_PROBES, None), fn  # None: min(MIN_PROBES, max_probes)
