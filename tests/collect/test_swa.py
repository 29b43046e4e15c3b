"""Stochastic weight averaging (``optim.swa``) against an independent reference: the plain mean of the iterates.

Convention (collect/train.py, Izmailov et al. 2018): with a budget of B steps and E steps per epoch, the iterates
θ_t at the end of every epoch with t ≥ ⌊swa_start · B⌋ are averaged, θ_SWA = (1/K) Σ_k θ_{t_k}, and the model that
is measured holds θ_SWA (batch-norm running statistics recomputed for θ_SWA on the training set).

The reference collects θ_t itself through the ``on_eval`` hook (called at the end of every epoch with the live
model) and averages them with ``torch.stack(...).mean(0)``; it shares nothing with ``AveragedModel`` or
``_load_average``.
"""

from __future__ import annotations

import torch
from torch import nn

from collect.config import run_config_from_dict
from collect.losses import cross_entropy
from collect.optim import build_optimizer
from collect.train import TensorData, evaluate, train
from tests.collect.hessian.tiny_nets import single_thread  # noqa: F401 (autouse: tiny nets run faster on one thread)


def _data(n: int = 64, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 4, generator=g) + (y[:, None].float() * 2 - 1) * 0.5  # overlapping blobs: SGD keeps moving
    return TensorData(x, y, x[:16].clone(), y[:16].clone(), torch.zeros(n, dtype=torch.bool))


def _swa_run(model: nn.Module, epochs: int = 8, swa_start: float = 0.5):
    """Train with SWA, recording (step, parameters) at the end of every epoch through ``on_eval``."""
    cfg = run_config_from_dict({
        "optim": {"lr": 0.2, "batch_size": 16, "swa": True, "swa_start": swa_start},
        "stop": {"max_epochs": epochs},
    })
    seen: list[tuple[int, list[torch.Tensor]]] = []

    def on_eval(m: nn.Module, step: int) -> dict[str, float]:
        seen.append((step, [p.detach().clone() for p in m.parameters()]))
        return {}

    data = _data()
    result = train(cfg, model, data, cross_entropy, lambda m: build_optimizer(cfg.optim, m, cross_entropy),
                   on_eval=on_eval, progress=False)
    return result, seen, data


def test_swa_model_holds_the_mean_of_the_iterates_from_swa_start():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    result, seen, data = _swa_run(model, epochs=8, swa_start=0.5)
    spe, budget = 4, 32  # 64 points, batch 16; 8 epochs
    assert [s for s, _ in seen] == [spe * (k + 1) for k in range(8)]
    averaged = [params for step, params in seen if step >= int(0.5 * budget)]
    assert len(averaged) == 5  # steps 16, 20, 24, 28, 32
    reference = [torch.stack(ps).mean(0) for ps in zip(*averaged)]
    last = seen[-1][1]
    # The test can tell the average from the last iterate (and from an average over all epochs) by far more than
    # float32 rounding: otherwise it would not catch a missing copy.
    gap = max(float((r - q).abs().max()) for r, q in zip(reference, last))
    everything = [torch.stack(ps).mean(0) for ps in zip(*(p for _, p in seen))]
    assert gap > 1e-2 and max(float((r - q).abs().max()) for r, q in zip(reference, everything)) > 1e-2
    # float32 running mean of 5 tensors of size ~1 vs. a float32 stack mean: agree to ~1e-7; 1e-5 is ample.
    for p, r in zip(result.model.parameters(), reference):
        torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-5)
    # The final curve row (marked swa) is evaluated on the averaged weights, not the last iterate.
    final = result.curves[-1]
    assert final["swa"] == 1.0 and final["step"] == budget
    loss, acc = evaluate(result.model, data.x_train, data.y_train, cross_entropy)
    assert final["train_loss"] == loss and final["train_acc"] == acc


def test_swa_recomputes_batch_norm_statistics_for_the_averaged_weights():
    """After loading θ_SWA, BN's running mean/variance are the training set's batch statistics of the pre-BN
    activations under θ_SWA (torch's update_bn: one cumulative pass; the variance is the unbiased one)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    result, _, data = _swa_run(model, epochs=6, swa_start=0.5)
    with torch.no_grad():
        z = result.model[0](data.x_train)  # pre-BN activations under the averaged first layer
    bn = result.model[1]
    torch.testing.assert_close(bn.running_mean, z.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, z.var(0, unbiased=True), rtol=1e-5, atol=1e-5)
