"""Run configuration: frozen dataclasses parsed from plain dicts (TOML), validated field by field.

Every error names the offending field (``optim.lr``) and says how to fix it, so a malformed sweep
spec fails before any training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping

DATASETS = ("mnist", "mnist1d", "digits", "boolean")
DATASET_PREFIXES = ("idx:", "cifar10:")
ARCHS = ("affine", "fcn", "fcn_bn", "lenet5", "vgg")
ACTIVATIONS = ("relu", "tanh")
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "mse_mean")  # formulas in collect/losses.py
LOSS_WORDS = {"cross_entropy": "cross-entropy", "binary_cross_entropy": "binary cross-entropy", "mse": "squared error",
              "mse_mean": "mean squared error"}
OPTIMIZERS = ("sgd", "gd", "adam", "adamw", "rmsprop", "adagrad", "sam", "entropy_sgd")


class SpecError(ValueError):
    """A sweep spec or run config is malformed; the message names the field and the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Which data, how much of it, and how it is relabelled (papers 000, 002)."""

    dataset: str = "mnist"
    n_train: int = 1000  # |S|
    n_test: int = 1000  # |E|
    attack_size: int = 0  # |A|: extra training points with deliberately wrong labels (paper 002)
    binary: tuple[int, ...] | str | None = None  # "low_high" (0-4 vs 5-9) or two class ids, e.g. (1, 3)
    standardize: bool = True
    data_seed: int | None = None  # None: use the run seed
    boolean_target: str = "parity"  # boolean dataset only: "parity", "majority", or a 128-char 0/1 string

    def validate(self, prefix: str) -> None:
        if self.dataset not in DATASETS and not self.dataset.startswith(DATASET_PREFIXES):
            raise SpecError(
                f"{prefix}.dataset = {self.dataset!r} is not a known dataset; use one of "
                f"{', '.join(DATASETS)} or 'idx:<folder>' / 'cifar10:<folder>'"
            )
        _positive(self.n_train, f"{prefix}.n_train")
        _positive(self.n_test, f"{prefix}.n_test")
        if self.attack_size < 0:
            raise SpecError(f"{prefix}.attack_size = {self.attack_size} must be >= 0")
        if self.data_seed is not None and self.data_seed < 0:
            raise SpecError(f"{prefix}.data_seed = {self.data_seed} must be >= 0 (numpy's generators take no negative seed)")
        if isinstance(self.binary, str) and self.binary != "low_high":
            raise SpecError(f"{prefix}.binary = {self.binary!r}: use 'low_high' or a pair of class ids like [3, 5]")
        if isinstance(self.binary, tuple) and len(self.binary) != 2:
            raise SpecError(f"{prefix}.binary = {list(self.binary)}: give exactly two class ids, e.g. [3, 5]")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture (paper 000 appendix A; paper 002 section 5; paper 004 section 3)."""

    arch: str = "fcn"
    width: int = 256  # hidden units (FCN) or base channels (VGG)
    depth: int = 2  # hidden layers (FCN) or conv blocks (VGG)
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    init_sigma_w: float | None = None  # None: PyTorch default init; else N(0, sigma_w^2 / fan_in) (NNGP convention)
    init_sigma_b: float | None = None

    def validate(self, prefix: str) -> None:
        _choice(self.arch, ARCHS, f"{prefix}.arch")
        _choice(self.activation, ACTIVATIONS, f"{prefix}.activation")
        _positive(self.width, f"{prefix}.width")
        if self.depth < 0:
            raise SpecError(f"{prefix}.depth = {self.depth} must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"{prefix}.dropout = {self.dropout} must be in [0, 1)")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and its regularisers (papers 002, 003, 004)."""

    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int = 64  # ignored by "gd" (full batch)
    momentum: float = 0.0
    weight_decay: float = 0.0  # L2 on every optimizer
    sam_rho: float = 0.0  # optimizer = "sam": neighbourhood radius
    sam_adaptive: bool = False
    sam_base: str = "sgd"  # the optimizer SAM wraps
    esgd_L: int = 5  # Entropy-SGD inner Langevin steps
    esgd_gamma: float = 0.03  # Entropy-SGD scoping (coupling) strength
    esgd_eps: float = 1e-4  # Entropy-SGD Langevin noise
    esgd_inner_lr: float = 0.1
    swa: bool = False  # iterate averaging over the last epochs
    swa_start: float = 0.75  # fraction of training after which iterates are averaged

    def validate(self, prefix: str) -> None:
        _choice(self.optimizer, OPTIMIZERS, f"{prefix}.optimizer")
        _choice(self.sam_base, tuple(o for o in OPTIMIZERS if o not in ("sam", "entropy_sgd", "gd")), f"{prefix}.sam_base")
        if not self.lr > 0:
            raise SpecError(f"{prefix}.lr = {self.lr} must be > 0")
        _positive(self.batch_size, f"{prefix}.batch_size")
        if self.weight_decay < 0:
            raise SpecError(f"{prefix}.weight_decay = {self.weight_decay} must be >= 0")
        if self.optimizer == "sam" and not self.sam_rho > 0:
            raise SpecError(f"{prefix}.sam_rho = {self.sam_rho}: SAM needs sam_rho > 0 (e.g. 0.05)")
        if not 0.0 <= self.swa_start < 1.0:
            raise SpecError(f"{prefix}.swa_start = {self.swa_start} must be in [0, 1)")


@dataclass(frozen=True)
class StopConfig:
    """When training stops and what a sweep's runs are compared at (papers 000, 002, 004; Jiang et al. 2020).

    The step budget is min(max_steps, max_epochs × steps per epoch) over the limits the spec sets; neither has a
    default, so no budget is ever capped by a value the user did not write, and a spec must set at least one.
    With full-batch GD one epoch is one step. A target (train_acc and/or train_loss, plus extra_epochs of
    overtraining) makes the target the comparison point and the budget a safety cap; without one the budget is the
    comparison point (``comparison_point``). The rule itself is ``collect.stop_rule``.
    """

    max_steps: int | None = None
    max_epochs: int | None = None
    train_acc: float | None = None  # stop once full-train accuracy >= this (e.g. 0.99 or 1.0)
    train_loss: float | None = None  # stop once full-train cross-entropy <= this (e.g. 0.01)
    extra_epochs: int = 0  # overtraining: continue this many epochs after a threshold is met
    eval_every: int | None = None  # steps between full-train evaluations and curve points; None: once per epoch

    @property
    def comparison_point(self) -> Literal["target", "budget"]:
        """What a sweep's runs are compared at: "target" when train_acc or train_loss is set (max_steps /
        max_epochs are then safety caps), else "budget" (the step budget is the comparison point)."""
        return "target" if self.train_acc is not None or self.train_loss is not None else "budget"

    def label(self, loss: str = "cross_entropy") -> str:
        """The comparison point in words, e.g. "train cross-entropy <= 0.01 + 5 epochs" or "10000 steps";
        ``loss`` names the training loss a train_loss target is about (``RunConfig.loss``)."""
        if self.comparison_point == "target":
            parts = []
            if self.train_acc is not None:
                parts.append(f"train accuracy >= {self.train_acc:g}")
            if self.train_loss is not None:
                parts.append(f"train {LOSS_WORDS.get(loss, loss)} <= {self.train_loss:g}")
            text = " or ".join(parts)
            return f"{text} + {self.extra_epochs} epochs" if self.extra_epochs else text
        caps = [f"{n} {unit}" for n, unit in ((self.max_steps, "steps"), (self.max_epochs, "epochs")) if n is not None]
        return " or ".join(caps) + (" (whichever comes first)" if len(caps) > 1 else "")

    def validate(self, prefix: str) -> None:
        if self.max_steps is None and self.max_epochs is None:
            raise SpecError(f"{prefix}: set max_steps or max_epochs (or both) so training is bounded; neither has a default")
        for name in ("max_steps", "max_epochs", "eval_every"):
            value = getattr(self, name)
            if value is not None:
                _positive(value, f"{prefix}.{name}")
        if self.train_acc is not None and not 0.0 < self.train_acc <= 1.0:
            raise SpecError(f"{prefix}.train_acc = {self.train_acc} must be in (0, 1]")
        if self.extra_epochs < 0:
            raise SpecError(f"{prefix}.extra_epochs = {self.extra_epochs} must be >= 0")


@dataclass(frozen=True)
class TransformConfig:
    """Function-preserving reparametrisations applied after training, before measuring (papers 000, 002)."""

    alpha_scale: float = 1.0  # (W_i, b_i, W_{i+1}) -> (aW_i, ab_i, W_{i+1}/a) on ReLU layer alpha_layer
    alpha_layer: int = 0
    last_layer_scale: float = 1.0  # paper 000 Prop. 5.1
    at_epoch: int | None = None  # None: after training, before measuring; else mid-training (paper 002 figure 5)

    def validate(self, prefix: str) -> None:
        for name in ("alpha_scale", "last_layer_scale"):
            if not getattr(self, name) > 0:
                raise SpecError(f"{prefix}.{name} must be > 0")
        if self.at_epoch is not None and self.at_epoch < 1:
            raise SpecError(f"{prefix}.at_epoch = {self.at_epoch} must be >= 1 (or absent: transform after training)")


@dataclass(frozen=True)
class MeasureSpec:
    """One measure to compute, by registry name, with its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one trained model; its hash identifies the run for resume."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    stop: StopConfig = StopConfig()
    transform: TransformConfig = TransformConfig()
    loss: str = "cross_entropy"
    seed: int = 0
    measures: tuple[MeasureSpec, ...] = ()
    save_weights: bool = False
    curve_measures: tuple[str, ...] = ()  # measures also logged along training, at each eval point

    def validate(self) -> "RunConfig":
        _choice(self.loss, LOSSES, "loss")
        if self.loss == "binary_cross_entropy" and self.data.binary is None and self.data.dataset != "boolean":
            raise SpecError(
                "loss = 'binary_cross_entropy' trains a single output logit and needs a two-class task, but "
                f"data.binary is not set (data.dataset = {self.data.dataset!r}); set data.binary = 'low_high' "
                "(classes 0-4 vs 5-9) or a pair of class ids such as [3, 5], or use loss = 'cross_entropy'"
            )
        if self.seed < 0:
            raise SpecError(f"seed = {self.seed} must be >= 0 (numpy's generators take no negative seed); use seeds = [0, 1, 2]")
        for section in ("data", "model", "optim", "stop", "transform"):
            _finite_floats(getattr(self, section), section)
            getattr(self, section).validate(section)
        return self

    @property
    def data_seed(self) -> int:
        return self.seed if self.data.data_seed is None else self.data.data_seed

    @property
    def comparison_label(self) -> str:
        """``stop.label`` for this run's loss: the comparison point in words (the ``comparison_point`` tag)."""
        return self.stop.label(self.loss)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["measures"] = [m.to_dict() for m in self.measures]
        return out

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the resolved config (key order and tuple/list independent)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def hyperparameters(self) -> dict[str, Any]:
        """Flat ``{leaf name: value}`` view used as ``hp.<name>`` in the ledger (field names are unique)."""
        out: dict[str, Any] = {}
        for section in ("data", "model", "optim", "stop", "transform"):
            for f in fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        out["loss"] = self.loss
        return out


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "stop": StopConfig,
    "transform": TransformConfig,
}


def run_config_from_dict(raw: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Parse a nested dict (as loaded from TOML) into a validated RunConfig."""
    try:  # every error names ``where`` (the spec file and run), whichever field it is about
        return _run_config(dict(raw))
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _run_config(raw: dict[str, Any]) -> RunConfig:
    kwargs: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section in raw:
            value = raw.pop(section)
            if not isinstance(value, Mapping):
                raise SpecError(f"'{section}' must be a table of fields, got {type(value).__name__}")
            kwargs[section] = _dataclass_from_dict(cls, value, f"{section}")
    if "measures" in raw:
        kwargs["measures"] = tuple(parse_measures(raw.pop("measures"), "measures"))
    if "curve_measures" in raw:
        curve = raw.pop("curve_measures")
        if isinstance(curve, str) or not isinstance(curve, (list, tuple)):
            raise SpecError(f"curve_measures = {curve!r}: give a list of measure names, e.g. curve_measures = [\"margins\"]")
        kwargs["curve_measures"] = tuple(str(m) for m in curve)
    top = {f.name: f for f in fields(RunConfig)}
    for key, value in raw.items():
        if key not in top:
            raise SpecError(f"unknown field '{key}'; known top-level fields are {', '.join(sorted(top))}")
        kwargs[key] = _coerce(value, top[key].type, key)
    return RunConfig(**kwargs).validate()


def parse_measures(raw: Any, where: str) -> list[MeasureSpec]:
    """Measures are given as names or as ``{name = ..., options = {...}}`` tables."""
    if not isinstance(raw, (list, tuple)):
        raise SpecError(f"{where} must be a list of measure names or tables")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            out.append(MeasureSpec(item))
        elif isinstance(item, Mapping) and "name" in item:
            extra = set(item) - {"name", "options"}
            if extra:
                raise SpecError(f"{where}[{i}]: unknown keys {sorted(extra)}; a measure has 'name' and 'options'")
            out.append(MeasureSpec(str(item["name"]), dict(item.get("options", {}))))
        elif isinstance(item, MeasureSpec):
            out.append(item)
        else:
            raise SpecError(f"{where}[{i}] = {item!r}: give a measure name or {{name = ..., options = {{...}}}}")
    return out


def _dataclass_from_dict(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            raise SpecError(f"unknown field '{where}.{key}'; {where} has {', '.join(sorted(known))}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against a type annotation (SpecError naming ``where`` otherwise); e.g. a measure option."""
    return _coerce(value, annotation, where)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats, lists for tuples."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing))  # noqa: S307 - annotations of this module only
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except SpecError:
                continue
        raise SpecError(f"{where} = {value!r} has the wrong type; expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise SpecError(f"{where}: expected nothing")
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} = {value!r}: expected a list")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise SpecError(f"{where} = {value!r}: expected one of {typing.get_args(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(f"{where} = {value!r}: expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SpecError(f"{where} = {value!r}: expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SpecError(f"{where} = {value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SpecError(f"{where} = {value!r}: expected a string")
    if origin in (dict, Mapping) or tp is Mapping:
        if isinstance(value, Mapping):
            return dict(value)
        raise SpecError(f"{where} = {value!r}: expected a table")
    return value


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    names = [getattr(a, "__name__", str(a)) for a in args] if args else [getattr(tp, "__name__", str(tp))]
    return " or ".join("nothing" if n == "NoneType" else n for n in names)


def _finite_floats(section: Any, prefix: str) -> None:
    """Every float field of a config section is a finite number (TOML reads ``inf`` and ``nan``)."""
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{prefix}.{f.name} = {value}: must be a finite number")


def _positive(value: int, where: str) -> None:
    if not value > 0:
        raise SpecError(f"{where} = {value} must be > 0")


def _choice(value: str, options: tuple[str, ...], where: str) -> None:
    if value not in options:
        raise SpecError(f"{where} = {value!r} is not supported; use one of {', '.join(options)}")
