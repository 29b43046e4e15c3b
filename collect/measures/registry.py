"""The measure registry: a measure is one function plus one entry here, looked up by name from a sweep spec.

A measure function has the signature ``fn(ctx: MeasureContext, **options) -> MeasureResult``. Its entry declares
the direction the literature expects for each value it returns (``+1``: a larger value goes with a larger
generalization gap, i.e. worse generalization; ``-1``: the opposite; ``0``: no expectation), so the analysis can
flag reversals. Registration happens at import time of the module that defines the measure; the registry object
is built once from the list of measure modules and is never mutated afterwards.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import Callable, Mapping

from collect.config import MeasureSpec, SpecError

# Modules that define measures (each exposes ``MEASURES: list[Measure]``). Adding a measure touches one module.
MEASURE_MODULES: tuple[str, ...] = (
    "collect.measures.generalization",
    "collect.measures.margins",
    "collect.measures.norms",
    "collect.measures.curvature",
    "collect.measures.volume",
    "collect.measures.adaptive_sharpness",
    "collect.measures.jiang",
    "collect.measures.optimization_speed",
    "collect.measures.spectra",
    "collect.measures.fisher_rao",
)


@dataclass(frozen=True)
class Measure:
    """A registered measure: its function, what it returns and what the literature expects of it."""

    name: str
    fn: Callable[..., "object"]
    directions: Mapping[str, int] = field(default_factory=dict)  # output key -> expected sign vs gap
    description: str = ""
    paper: str = ""
    binary_only: bool = False  # skipped with a logged reason on a multi-class task (log volume)
    prefix: str = "measure"  # ledger prefix of its values; "gen" for the generalization numbers
    # Output keys that are diagnostics of a measure (its standard error, HVP count, residual, convergence flag, the
    # sigma a bisection found, point counts), not quantities proposed to predict generalization. They go to the
    # ledger as ``diag.<key>`` and are never ranked, flagged or plotted as measures.
    diagnostics: frozenset[str] = frozenset()

    def kind(self, key: str) -> str:
        """'diagnostic' for a declared diagnostic output, else this entry's prefix ('measure' or 'gen')."""
        return "diagnostic" if key in self.diagnostics else self.prefix

    def __call__(self, ctx: object, **options: object) -> object:
        return self.fn(ctx, **options)

    def option_names(self) -> set[str]:
        params = inspect.signature(self.fn).parameters
        return {n for n, p in list(params.items())[1:] if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def check_options(self, options: Mapping[str, object], where: str) -> None:
        unknown = set(options) - self.option_names()
        if unknown:
            known = ", ".join(sorted(self.option_names())) or "none"
            raise SpecError(f"{where}: measure '{self.name}' has no option(s) {sorted(unknown)}; its options are {known}")


def measure(
    name: str,
    directions: Mapping[str, int] | None = None,
    description: str = "",
    paper: str = "",
    binary_only: bool = False,
    prefix: str = "measure",
    diagnostics: tuple[str, ...] | frozenset[str] = (),
) -> Callable[[Callable[..., object]], Measure]:
    """Decorator turning a function into a ``Measure`` value (collect them in the module's ``MEASURES`` list)."""

    both = set(directions or {}) & set(diagnostics)
    if both:
        raise ValueError(f"measure '{name}': {sorted(both)} declared both in directions and diagnostics; a diagnostic has no direction")

    def wrap(fn: Callable[..., object]) -> Measure:
        return Measure(
            name=name,
            fn=fn,
            directions=dict(directions or {}),
            description=description or (inspect.getdoc(fn) or "").split("\n")[0],
            paper=paper,
            binary_only=binary_only,
            prefix=prefix,
            diagnostics=frozenset(diagnostics),
        )

    return wrap


@cache
def registry() -> Mapping[str, Measure]:
    """All measures by name, collected once from ``MEASURE_MODULES`` (missing optional modules are skipped)."""
    out: dict[str, Measure] = {}
    for module_name in MEASURE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        for m in getattr(module, "MEASURES", []):
            if m.name in out:
                raise RuntimeError(f"measure '{m.name}' is registered twice ({module_name})")
            out[m.name] = m
    return out


def get_measure(name: str) -> Measure:
    reg = registry()
    if name not in reg:
        raise SpecError(f"unknown measure '{name}'; known measures: {', '.join(sorted(reg))}")
    return reg[name]


def check_measure_specs(specs: tuple[MeasureSpec, ...] | list[MeasureSpec], where: str = "measures") -> None:
    """Fail before training if a spec names an unknown measure or option."""
    for i, spec in enumerate(specs):
        try:
            m = get_measure(spec.name)
        except SpecError as exc:
            raise SpecError(f"{where}[{i}]: {exc}") from None
        m.check_options(spec.options, f"{where}[{i}]")


def expected_direction(measure_column: str) -> int:
    """Expected sign of corr(measure, gap) for a ledger column ``measure.<key>``; 0 when unknown."""
    key = measure_column.removeprefix("measure.")
    for m in registry().values():
        if key in m.directions:
            return int(m.directions[key])
    return 0


def output_kind(key: str) -> str:
    """What a registered output key is: 'measure', 'diagnostic' or 'gen'; 'unknown' if no entry declares it."""
    for m in registry().values():
        if key in m.directions or key in m.diagnostics:
            return m.kind(key)
    return "unknown"
