"""What a run's training reached, as logged beside its measures: the comparison point, whether the run reached it,
and whether it learned at all.

- ``train.converged`` (1.0 / 0.0, target sweeps only): the run met the declared target (``stop.train_acc`` or
  ``stop.train_loss``) within its cap. Absent for budget sweeps, where every run reaches the comparison point.
- ``train.target_step``: t*, the first evaluated step at which the target was met (``collect.stop_rule``); absent
  when it was not met.
- ``train.learned`` (1.0 / 0.0, always): learned ⇔ a ≥ c + ¼ (1 − c), where a is the final train accuracy and
  c = max_k n_k / n the chance level, the largest class share of the training set: a run that closed less than a
  quarter of the distance from chance to perfect accuracy did not learn, and enters no statistic in analyze.
- tag ``comparison_point``: the comparison point in words (``RunConfig.comparison_label``), e.g.
  "train cross-entropy <= 0.01" or "10000 steps".
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from collect.config import RunConfig

LEARNED_FRACTION = 0.25  # share of the distance from chance to perfect accuracy a run must close to count as learned


def chance_level(y_train: Iterable[int]) -> float:
    """c = max_k n_k / n: the accuracy of always predicting the most frequent training class."""
    counts = Counter(int(y) for y in y_train)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("chance_level: the training set is empty")
    return max(counts.values()) / n


def learned(train_acc: float, chance: float) -> bool:
    """a ≥ c + LEARNED_FRACTION · (1 − c)."""
    return train_acc >= chance + LEARNED_FRACTION * (1.0 - chance)


def outcome_metrics(config: RunConfig, steps: int, epochs: float, seconds: float, target_step: int | None,
                    final_train_acc: float, chance: float) -> dict[str, float]:
    """The ``train.*`` metrics of one run (see the module docstring for which appear when)."""
    metrics = {"train.steps": float(steps), "train.epochs": float(epochs), "train.seconds": float(seconds),
               "train.learned": float(learned(final_train_acc, chance))}
    if config.stop.comparison_point == "target":
        metrics["train.converged"] = float(target_step is not None)
    if target_step is not None:
        metrics["train.target_step"] = float(target_step)
    return metrics


def outcome_tags(config: RunConfig, stop_reason: str) -> dict[str, str]:
    """The run's ``stop_reason`` and ``comparison_point`` tags."""
    return {"stop_reason": stop_reason, "comparison_point": config.comparison_label}
