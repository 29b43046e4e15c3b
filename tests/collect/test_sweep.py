"""Grid expansion, zipped axes, scales, intervention labels and spec errors (every error names its field)."""

from __future__ import annotations

import pytest

from collect.config import SpecError, run_config_from_dict
import json

from collect.sweep import PlannedRun, expand, find_sweep, intervention_groups, interventions_tag, list_sweeps, load_spec, parse_spec

BASE = {"data": {"dataset": "digits", "n_train": 50, "n_test": 50}, "model": {"arch": "fcn", "width": 8}, "stop": {"max_epochs": 1}}


def spec(**extra):
    return parse_spec({"name": "t", "base": BASE, **extra}, "t.toml")


def test_grid_is_cartesian_product_times_seeds():
    runs = expand(spec(grid={"optim.batch_size": [8, 16, 32], "model.dropout": [0.0, 0.5]}, seeds=[0, 1]))
    assert len(runs) == 3 * 2 * 2
    combos = {(r.config.optim.batch_size, r.config.model.dropout, r.config.seed) for r in runs}
    assert len(combos) == 12
    assert len({r.config_hash for r in runs}) == 12


def test_zip_moves_axes_together_and_crosses_with_grid():
    runs = expand(spec(grid={"model.dropout": [0.0, 0.5]}, zip=[{"optim.batch_size": [8, 16], "optim.lr": [0.1, 0.2]}]))
    pairs = {(r.config.optim.batch_size, r.config.optim.lr) for r in runs}
    assert pairs == {(8, 0.1), (16, 0.2)}
    assert len(runs) == 4


def test_zip_lengths_must_match():
    with pytest.raises(SpecError, match=r"zip\[0\].*equal lengths"):
        expand(spec(zip=[{"optim.batch_size": [8, 16], "optim.lr": [0.1]}]))


def test_intervention_label_names_changed_axes_only():
    runs = expand(spec(grid={"optim.batch_size": [64, 512]}))  # base batch_size default is 64
    labels = sorted(r.intervention for r in runs)
    assert labels == ["base", "batch_size=512"]


def test_cases_and_explicit_labels():
    runs = expand(spec(cases=[{"label": "small", "optim.batch_size": 8}, {"label": "large", "optim.batch_size": 40}]))
    assert [(r.intervention, r.config.optim.batch_size) for r in runs] == [("small", 8), ("large", 40)]


def test_scale_overrides_base_and_grid():
    s = spec(
        grid={"optim.batch_size": [8, 16], "model.dropout": [0.0, 0.5]},
        scales={"smoke": {"base": {"data.n_train": 20}, "grid": {"model.dropout": []}, "seeds": [3]}},
    )
    runs = expand(s, "smoke")
    assert len(runs) == 2 and all(r.config.data.n_train == 20 and r.config.seed == 3 for r in runs)
    with pytest.raises(SpecError, match="no scale 'huge'"):
        expand(s, "huge")


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"base": {**BASE, "optim": {"lr": "fast"}}}, "optim.lr"),
        ({"base": {**BASE, "optim": {"optimzer": "sgd"}}}, "optim.optimzer"),
        ({"base": {**BASE, "model": {"arch": "resnet"}}}, "model.arch"),
        ({"base": {**BASE, "model": {"dropout": 1.5}}}, "model.dropout"),
        ({"base": BASE, "grid": {"optim.batch_size": 32}}, "optim.batch_size"),
        ({"base": BASE, "grid": {"batch_size": [1, 2]}}, "batch_size"),
        ({"base": BASE, "measures": ["no_such_measure"]}, "no_such_measure"),
        ({"base": BASE, "measures": [{"name": "margins", "options": {"splitt": "train"}}]}, "splitt"),
        ({"base": {**BASE, "stop": {"max_epochs": None}}}, "max_epochs"),
    ],
)
def test_malformed_spec_names_the_field(raw, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        expand(parse_spec({"name": "bad", **{k: v for k, v in raw.items()}}, "bad.toml"))


def test_unknown_top_level_key_and_missing_name():
    with pytest.raises(SpecError, match="gird"):
        parse_spec({"name": "x", "gird": {}})
    with pytest.raises(SpecError, match="name"):
        parse_spec({"base": {}})


def test_builtin_sweeps_expand_at_every_scale():
    for s in list_sweeps():
        for scale in s.scales or [None]:
            runs = expand(s, scale)
            assert runs, (s.name, scale)


def test_quick_sweep_covers_the_interventions():
    runs = expand(load_spec(find_sweep("quick")))
    assert len(runs) >= 24
    seen = lambda f: {f(r.config) for r in runs}  # noqa: E731
    assert len(seen(lambda c: c.optim.batch_size)) >= 2
    assert seen(lambda c: c.optim.optimizer) >= {"sgd", "adam"}
    assert len(seen(lambda c: c.model.dropout)) == 2 and len(seen(lambda c: c.optim.weight_decay)) == 2
    assert 0 in seen(lambda c: c.data.attack_size) and max(seen(lambda c: c.data.attack_size)) > 0
    assert seen(lambda c: c.data.dataset) == {"mnist"}


def test_quick_sweep_has_the_seeds_sign_error_and_flags_need():
    """A sign-error environment (two configurations differing in one axis) has seeds² run pairs, its effective sample
    size is at most that, and analyze counts it only from the default ``min_ess``; flags need ``min_group`` runs per
    level of an axis. The quick sweep must make both reachable, and leave sharpness at its own defaults."""
    import inspect

    from analyze.stats.flags import break_flags
    from analyze.stats.sign_error import sign_error_tables

    spec = load_spec(find_sweep("quick"))
    runs = expand(spec)
    seeds = {r.config.seed for r in runs}
    min_ess = inspect.signature(sign_error_tables).parameters["min_ess"].default
    assert len(seeds) ** 2 >= min_ess
    min_group = inspect.signature(break_flags).parameters["min_group"].default
    assert min(sum(r.config.optim.batch_size == b for r in runs) for b in {r.config.optim.batch_size for r in runs}) >= min_group
    sharpness = next(m for m in runs[0].config.measures if m.name == "sharpness")
    assert "max_iter" not in sharpness.options


def groups_of(runs) -> list[list[str]]:
    tags = {r.interventions_tags()["interventions"] for r in runs}
    assert len(tags) == 1  # every run of a sweep carries the same tag
    return json.loads(tags.pop())


def test_interventions_of_the_quick_sweep_at_each_scale():
    """Every grid axis is its own intervention, the [[zip]] of optimizer and lr one; the smoke scale removes three."""
    quick = load_spec(find_sweep("quick"))
    assert groups_of(expand(quick)) == [
        ["hp.batch_size"], ["hp.dropout"], ["hp.weight_decay"], ["hp.attack_size"], ["hp.optimizer", "hp.lr"]
    ]
    assert groups_of(expand(quick, "smoke")) == [["hp.batch_size"], ["hp.optimizer", "hp.lr"]]


def test_interventions_with_zip_cases_and_one_value_axes():
    runs = expand(spec(
        grid={"model.dropout": [0.0, 0.5], "model.width": [8]},  # a one-value axis moves nothing
        zip=[{"optim.batch_size": [8, 16], "optim.lr": [0.1, 0.2]}],
        cases=[{"label": "a", "optim.weight_decay": 0.0, "model.depth": 1},
               {"label": "b", "optim.weight_decay": 1e-3, "model.depth": 1},
               {"label": "c", "optim.momentum": 0.9, "model.depth": 1}],
        seeds=[0, 1],
    ))
    assert len(runs) == 2 * 2 * 3 * 2
    # cases vary weight_decay and momentum (depth is 1 in every case); seeds are not an intervention
    assert groups_of(runs) == [["hp.dropout"], ["hp.batch_size", "hp.lr"], ["hp.weight_decay", "hp.momentum"]]
    only_cases = expand(spec(cases=[{"optim.lr": 0.1, "optim.batch_size": 8}, {"optim.lr": 0.2, "optim.batch_size": 8}]))
    assert groups_of(only_cases) == [["hp.lr"]]


def test_groups_sharing_a_column_are_one_intervention():
    import dataclasses

    from collect.config import RunConfig

    raw = {"grid": {"optim.lr": [0.1, 0.2]}, "zip": [{"optim.batch_size": [8, 16], "optim.lr": [0.1, 0.3]}]}
    configs = [RunConfig(optim=dataclasses.replace(RunConfig().optim, lr=lr, batch_size=b)) for lr, b in ((0.1, 8), (0.3, 16))]
    assert intervention_groups(raw, configs) == (("hp.lr", "hp.batch_size"),)
    with pytest.raises(SpecError, match="axis 'optim.lr' is set in grid and in zip"):  # a spec cannot set an axis twice
        expand(spec(**raw))
    assert groups_of(expand(spec())) == []  # a spec with no axes: one configuration, no intervention


def test_runs_planned_outside_a_spec_carry_no_interventions_tag():
    assert PlannedRun(run_config_from_dict(BASE), "base", {}).interventions_tags() == {}
    assert interventions_tag((("hp.optimizer", "hp.lr"),)) == '[["hp.optimizer", "hp.lr"]]'


def test_config_hash_is_stable_and_sensitive():
    a = run_config_from_dict(BASE)
    b = run_config_from_dict({"model": BASE["model"], "stop": BASE["stop"], "data": BASE["data"]})
    c = run_config_from_dict({**BASE, "seed": 1})
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_unknown_sweep_lists_the_builtin_ones():
    with pytest.raises(SpecError, match="quick"):
        find_sweep("nope")
