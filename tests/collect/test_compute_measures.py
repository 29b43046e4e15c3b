"""``compute_measures``: the ledger's ``time.<measure>`` column of a measure listed twice is the sum of its entries."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from collect import runner
from collect.config import RunConfig
from collect.losses import cross_entropy
from collect.measures.context import MeasureContext


def _ctx() -> MeasureContext:
    torch.manual_seed(0)
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    return MeasureContext(
        model=model, config=RunConfig(), x_train=x, y_train=y, x_test=x[:6], y_test=y[:6],
        is_attack=torch.zeros(12, dtype=torch.bool), num_classes=3, loss_fn=cross_entropy, init_state=init,
        device=torch.device("cpu"), seed=0,
    )


def test_a_measure_listed_twice_logs_the_seconds_of_both_entries(monkeypatch):
    clock = itertools.count()  # every perf_counter call advances one second: each entry takes exactly 1 s
    monkeypatch.setattr(runner.time, "perf_counter", lambda: float(next(clock)))
    metrics, _, _ = runner.compute_measures(_ctx(), [("norms", {}), ("margins", {}), ("norms", {})])
    assert metrics["time.norms"] == 2.0
    assert metrics["time.margins"] == 1.0
