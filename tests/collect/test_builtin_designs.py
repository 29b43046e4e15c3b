"""The `quick` and `study` sweeps say what they run: the run counts in their scale descriptions equal what
``--dry-run`` expands, every scale is listed (``--list`` shows the default ``cpu``), and both compare their runs at a
training target with the cap only as a safety limit."""

from __future__ import annotations

import re

import pytest

from collect.sweep import expand, find_sweep, load_spec

SWEEPS = ("quick", "study")


def _stated_runs(text: str) -> int:
    match = re.search(r"(\d[\d,]*) runs", text)
    assert match, f"no run count in {text!r}"
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("name", SWEEPS)
def test_scale_descriptions_state_the_expanded_run_counts(name):
    spec = load_spec(find_sweep(name))
    assert spec.default_scale == "cpu" and "cpu" in spec.scales
    for scale in spec.scales:
        described = spec.raw["scales"][scale]["description"]
        assert _stated_runs(described) == len(expand(spec, scale)), (name, scale, described)


@pytest.mark.parametrize("name", SWEEPS)
def test_runs_are_compared_at_a_target_with_every_axis_at_two_or_more_levels(name):
    runs = expand(load_spec(find_sweep(name)))
    assert {r.config.stop.comparison_point for r in runs} == {"target"}
    assert all(r.config.stop.max_epochs is not None for r in runs)  # the safety cap
    for path in runs[0].axes:
        assert len({str(r.axes[path]) for r in runs}) >= 2, path


def test_quick_keeps_the_interventions_the_papers_care_about():
    runs = expand(load_spec(find_sweep("quick")))
    assert len(runs) == 128
    axes = set(runs[0].axes)
    assert {"optim.batch_size", "optim.optimizer", "model.dropout", "optim.weight_decay", "data.attack_size"} <= axes
