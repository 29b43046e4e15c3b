"""Which registry outputs are measures, diagnostics or generalization numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.config import RunConfig
from collect.losses import cross_entropy
from collect.measures.context import MeasureContext
from collect.measures.registry import get_measure, measure, output_kind


def tiny_ctx() -> MeasureContext:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x, y = torch.randn(12, 4, generator=g), torch.arange(12) % 3
    return MeasureContext(
        model=model, config=RunConfig(), x_train=x, y_train=y, x_test=x, y_test=y,
        is_attack=torch.zeros(12, dtype=torch.bool), num_classes=3, loss_fn=cross_entropy,
        init_state={k: v.detach().clone() for k, v in model.named_parameters()}, device=torch.device("cpu"), seed=0,
    )


@pytest.mark.parametrize("name", ["margins", "normalized_margin", "norms"])
def test_margin_and_norm_outputs_are_all_declared_measures(name: str) -> None:
    """Every value these return has a declared direction (kind 'measure'); none is a diagnostic."""
    m = get_measure(name)
    values = m(tiny_ctx()).values
    assert set(values) == set(m.directions) and not m.diagnostics
    assert {m.kind(k) for k in values} == {"measure"}


def test_generalization_outputs_are_gen_targets() -> None:
    m = get_measure("generalization")
    values = m(tiny_ctx()).values
    assert {m.kind(k) for k in values} == {"gen"} and "gap_acc" in values


def test_output_kind_by_key() -> None:
    assert output_kind("margin_mean") == "measure"
    assert output_kind("log_volume_sampled_se") == "diagnostic"
    assert output_kind("log_volume_ep_converged") == "diagnostic"
    assert output_kind("no_such_output") == "unknown"


def test_a_diagnostic_cannot_have_a_direction() -> None:
    with pytest.raises(ValueError, match="both in directions and diagnostics"):
        measure("bad", directions={"x": 1, "x_se": 0}, diagnostics=("x_se",))
