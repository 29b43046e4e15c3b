"""The torch-free measure catalog (``collect/catalog.py``) agrees with the measure registry, entry by entry.

``analyze`` takes measure kinds and directions from the catalog; a registry entry that the catalog does not mirror
would be ranked, flagged and drawn wrongly. Each failure prints the exact ``CatalogEntry(...)`` to put in ``CATALOG``.
"""
from __future__ import annotations

import subprocess
import sys

from collect import catalog
from collect.measures.registry import expected_direction, output_kind, registry


def _literal(m) -> str:
    """The CatalogEntry a registry entry needs, as Python source to paste into collect/catalog.py's CATALOG."""
    parts = [repr(m.name)]
    if m.prefix != "measure":
        parts.append(f"prefix={m.prefix!r}")
    if m.directions:
        parts.append(f"directions={dict(sorted(m.directions.items()))!r}")
    if m.diagnostics:
        parts.append(f"diagnostics=frozenset({sorted(m.diagnostics)!r})")
    return f"CatalogEntry({', '.join(parts)}),"


def test_every_registry_entry_is_in_the_catalog() -> None:
    problems = []
    for m in registry().values():
        entry = catalog.BY_NAME.get(m.name)
        fix = f"\n    put this in CATALOG in collect/catalog.py:\n    {_literal(m)}"
        if entry is None:
            problems.append(f"measure '{m.name}' is registered but missing from collect/catalog.py{fix}")
            continue
        if entry.prefix != m.prefix:
            problems.append(f"'{m.name}': prefix {m.prefix!r} in the registry, {entry.prefix!r} in the catalog{fix}")
        if dict(entry.directions) != dict(m.directions):
            diff = {k: (m.directions.get(k), entry.directions.get(k))
                    for k in set(m.directions) | set(entry.directions) if m.directions.get(k) != entry.directions.get(k)}
            problems.append(f"'{m.name}': directions differ (key: (registry, catalog)) {diff}{fix}")
        if entry.diagnostics != m.diagnostics:
            problems.append(f"'{m.name}': diagnostics only in the registry {sorted(m.diagnostics - entry.diagnostics)}, "
                            f"only in the catalog {sorted(entry.diagnostics - m.diagnostics)}{fix}")
    assert not problems, "\n".join(problems)


def test_every_catalog_entry_is_registered() -> None:
    stale = sorted(set(catalog.BY_NAME) - set(registry()))
    assert not stale, (f"collect/catalog.py lists {stale}, which no module in MEASURE_MODULES registers: register the "
                       "measure (collect/measures/registry.py) or remove its CatalogEntry")


def test_no_output_key_declared_twice() -> None:
    seen: dict[str, str] = {}
    twice = []
    for entry in catalog.CATALOG:
        for key in (*entry.directions, *entry.diagnostics):
            if key in seen:
                twice.append(f"{key} ({seen[key]} and {entry.name})")
            seen[key] = entry.name
    assert not twice, f"output keys declared by two measures (their ledger kind would be ambiguous): {twice}"


def test_lookups_equal_the_registry() -> None:
    keys = {k for m in registry().values() for k in (*m.directions, *m.diagnostics)} | {"not_a_key"}
    for key in sorted(keys):
        assert catalog.output_kind(key) == output_kind(key), key
        assert catalog.expected_direction(f"measure.{key}") == expected_direction(f"measure.{key}"), key
    assert catalog.output_kind("not_a_key") == "unknown" and catalog.expected_direction("measure.not_a_key") == 0
    assert catalog.output_kind("hessian_trace_se") == "diagnostic"
    assert catalog.expected_direction("measure.margin_q10") == -1 and catalog.entry_name("top_eig_3") == "top_eigenvalues"


def test_catalog_imports_nothing_heavy() -> None:
    code = ("import sys, collect.catalog; heavy = sorted(m for m in ('torch', 'numpy', 'mlflow', 'polars', 'scipy') "
            "if m in sys.modules); print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"importing collect.catalog imported {out.stdout.strip()} {out.stderr[-500:]}"
