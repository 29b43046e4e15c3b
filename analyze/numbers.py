"""Small number conversions shared by the statistics and the report."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(v: Any) -> float | None:
    """``float(v)`` when it is a finite number; None for None, NaN, ±inf or anything that is not a number.

    JSON, CSV and the report write "missing" for None, so a statistic that is undefined never prints as NaN.
    """
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
