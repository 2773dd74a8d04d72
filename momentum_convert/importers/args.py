"""Optimizer arguments written as JSON or YAML: TF1 ``MomentumOptimizer``, optax ``sgd``,
Torch7 ``optim.sgd``.

These three are Form P (docs/reference.md): the learning rate multiplies the buffer from
outside, ``b_t = μ b_{t-1} + (1 - τ) ĝ_t``, ``θ_t = θ_{t-1} - η_t b_t``. The file holds the
call's keyword arguments, with the framework's own names:

- ``tf1``: ``tf.compat.v1.train.MomentumOptimizer(learning_rate, momentum, use_nesterov)``.
  ``learning_rate`` is a number or one of the TF1 decay functions written as an object,
  ``{"schedule": "exponential_decay", "learning_rate": 0.1, "decay_steps": 1000,
  "decay_rate": 0.96, "staircase": true}`` (also ``piecewise_constant``,
  ``polynomial_decay``, ``inverse_time_decay``, ``cosine_decay``). These are evaluated at
  ``global_step`` before ``minimize`` increments it: the 0-based step, with the same
  formulas as the Keras schedules they are built on in TF 2. TF1 has no weight decay in
  the optimizer; ``l2_loss_weight`` (our name) is the ``λ`` of a ``λ·tf.nn.l2_loss(w)`` loss.
- ``optax``: ``optax.sgd(learning_rate, momentum, nesterov)``; ``weight_decay`` (our name)
  is ``optax.add_decayed_weights(weight_decay)`` chained before ``sgd``. ``learning_rate``
  may be ``{"schedule": "piecewise_constant_schedule", "init_value": 0.1,
  "boundaries_and_scales": {"30000": 0.1}}``, ``exponential_decay``,
  ``cosine_decay_schedule``, ``linear_schedule`` or ``polynomial_schedule``, with optax's
  argument names; optax evaluates them at its 0-based ``count``.
- ``torch7``: ``optim.sgd`` config ``learningRate, learningRateDecay, weightDecay,
  momentum, dampening, nesterov``; ``dampening`` defaults to ``momentum`` as in
  ``sgd.lua``, and ``learningRateDecay`` gives ``lr / (1 + nevals · decay)`` with
  ``nevals`` counted from 0.

Every kind also accepts ``epochs`` (our key): with ``--steps-per-epoch`` it sets how many
steps the recipe covers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from momentum_convert import schedules
from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields
from momentum_convert.importers.imported import ImportedRecipe
from momentum_convert.importers.keras import parse_schedule as parse_keras_schedule
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import Constant, FloatArray, Schedule

KINDS = ("tf1", "optax", "torch7")

#: TF1 decay function -> (Keras schedule class, {TF1 argument: Keras config key}).
_TF1_SCHEDULES: dict[str, tuple[str, dict[str, str]]] = {
    "exponential_decay": (
        "ExponentialDecay",
        {"learning_rate": "initial_learning_rate", "decay_steps": "decay_steps",
         "decay_rate": "decay_rate", "staircase": "staircase"},
    ),
    "inverse_time_decay": (
        "InverseTimeDecay",
        {"learning_rate": "initial_learning_rate", "decay_steps": "decay_steps",
         "decay_rate": "decay_rate", "staircase": "staircase"},
    ),
    "polynomial_decay": (
        "PolynomialDecay",
        {"learning_rate": "initial_learning_rate", "decay_steps": "decay_steps",
         "end_learning_rate": "end_learning_rate", "power": "power", "cycle": "cycle"},
    ),
    "cosine_decay": (
        "CosineDecay",
        {"learning_rate": "initial_learning_rate", "decay_steps": "decay_steps", "alpha": "alpha"},
    ),
    "piecewise_constant": (
        "PiecewiseConstantDecay", {"boundaries": "boundaries", "values": "values"}
    ),
}  # fmt: skip

#: optax schedule -> (required arguments, optional arguments with defaults).
OPTAX_SCHEDULES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant_schedule": (("value",), {}),
    "piecewise_constant_schedule": (("init_value",), {"boundaries_and_scales": None}),
    "exponential_decay": (
        ("init_value", "transition_steps", "decay_rate"),
        {"transition_begin": 0, "staircase": False, "end_value": None},
    ),
    "cosine_decay_schedule": (("init_value", "decay_steps"), {"alpha": 0.0, "exponent": 1.0}),
    "polynomial_schedule": (
        ("init_value", "end_value", "power", "transition_steps"),
        {"transition_begin": 0},
    ),
    "linear_schedule": (
        ("init_value", "end_value", "transition_steps"),
        {"transition_begin": 0},
    ),
}


@dataclass(frozen=True)
class OptaxSchedule:
    """An optax schedule evaluated at optax's 0-based ``count`` (formulas of
    ``optax/schedules/_schedule.py``, read for this module). Absolute values.

    - ``piecewise_constant_schedule``: ``init_value · Π scale_i`` over ``count >= boundary_i``.
    - ``exponential_decay``: ``init · rate^((count - begin) / steps)`` (exponent floored when
      ``staircase``), ``init`` while ``count <= begin``, clipped at ``end_value``.
    - ``cosine_decay_schedule``: ``init((1-α)(½(1 + cos(π min(count, D)/D)))^exponent + α)``.
    - ``polynomial_schedule`` / ``linear_schedule``:
      ``(init - end)(1 - clip(count - begin, 0, T)/T)^power + end``.
    """

    name: str
    arguments: tuple[tuple[str, Any], ...]
    absolute: bool = field(default=True, init=False)

    def values(self, base: float, steps: int) -> FloatArray:
        a = dict(self.arguments)
        count = np.arange(steps, dtype=np.float64)
        if self.name == "constant_schedule":
            return np.full(steps, a["value"])
        if self.name == "piecewise_constant_schedule":
            value = np.full(steps, a["init_value"])
            for boundary, scale in sorted(a["boundaries_and_scales"] or ()):
                value = np.where(count >= boundary, value * scale, value)
            return value
        if self.name == "exponential_decay":
            init, rate, begin = a["init_value"], a["decay_rate"], a["transition_begin"]
            if a["transition_steps"] <= 0 or rate == 0:
                return np.full(steps, init)  # optax: a constant schedule
            shifted = count - max(begin, 0)
            p = shifted / a["transition_steps"]
            if a["staircase"]:
                p = np.floor(p)
            value = np.where(shifted <= 0, init, init * np.power(float(rate), p))
            if a["end_value"] is not None:
                clip = np.maximum if rate < 1.0 else np.minimum
                value = clip(value, a["end_value"])
            return value
        if self.name == "cosine_decay_schedule":
            decay_steps = a["decay_steps"]
            cosine = 0.5 * (1.0 + np.cos(math.pi * np.minimum(count, decay_steps) / decay_steps))
            return a["init_value"] * ((1 - a["alpha"]) * cosine ** a["exponent"] + a["alpha"])
        # polynomial_schedule, linear_schedule
        power = a.get("power", 1.0)
        init, end, span = a["init_value"], a["end_value"], a["transition_steps"]
        if span <= 0:
            return np.full(steps, init)
        done = np.clip(count - max(a["transition_begin"], 0), 0, span)
        return (init - end) * (1.0 - done / span) ** power + end

    def describe(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in self.arguments)
        return f"optax-{self.name}:{text}"


@dataclass(frozen=True)
class FrameworkArgs:
    """The optimizer arguments of a Form P framework, as that framework names them."""

    kind: str
    learning_rate: float
    lr_schedule: Schedule
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    ignored: tuple[str, ...] = ()
    epochs: float | None = None


def _schedule_object(value: dict[str, Any], kind: str, source: str) -> tuple[float, Schedule]:
    name = value.get("schedule")
    if kind == "tf1":
        if name not in _TF1_SCHEDULES:
            raise RecipeError(
                f"{source}: learning_rate schedule {name!r} is not a TF1 decay function; expected"
                f" one of {', '.join(_TF1_SCHEDULES)}."
            )
        class_name, renames = _TF1_SCHEDULES[name]
        unknown = set(value) - set(renames) - {"schedule", "global_step", "name"}
        if unknown:
            raise RecipeError(
                f"{source}: {name} has no argument {sorted(unknown)[0]!r}; it takes"
                f" {', '.join(renames)}."
            )
        config = {renames[k]: v for k, v in value.items() if k in renames}
        keras = parse_keras_schedule({"class_name": class_name, "config": config}, source)
        return float(keras.values(1.0, 1)[0]), keras
    if name not in OPTAX_SCHEDULES:
        raise RecipeError(
            f"{source}: learning_rate schedule {name!r} is not an optax schedule; expected one of"
            f" {', '.join(OPTAX_SCHEDULES)}."
        )
    required, optional = OPTAX_SCHEDULES[name]
    where = f"{source} {name}"
    unknown = set(value) - set(required) - set(optional) - {"schedule"}
    if unknown:
        raise RecipeError(
            f"{where}: no argument {sorted(unknown)[0]!r}; it takes"
            f" {', '.join([*required, *optional])}."
        )
    parsed: dict[str, Any] = {}
    for key in required:
        if key not in value:
            raise RecipeError(f"{where}: {key} is missing.")
    for key, default in {**dict.fromkeys(required), **optional}.items():
        raw = value.get(key, default)
        if key == "staircase":
            parsed[key] = fields.boolean(raw, key, where)
        elif key == "boundaries_and_scales":
            if raw is None:
                parsed[key] = ()
                continue
            if not isinstance(raw, dict):
                raise RecipeError(f"{where}: boundaries_and_scales must be a mapping, got {raw!r}.")
            parsed[key] = tuple(
                sorted(
                    (fields.integer(b, "boundaries_and_scales step", where),
                     fields.non_negative(s, "boundaries_and_scales scale", where))
                    for b, s in raw.items()
                )
            )  # fmt: skip
        elif key == "end_value" and raw is None:
            parsed[key] = None
        elif key == "decay_steps":
            parsed[key] = fields.number(raw, key, where)
            if parsed[key] <= 0:
                raise RecipeError(f"{where}: decay_steps must be > 0, got {raw!r}.")
        else:
            parsed[key] = fields.number(raw, key, where)
    schedule = OptaxSchedule(name, tuple(parsed.items()))
    return float(schedule.values(1.0, 1)[0]), schedule


def _learning_rate(value: Any, name: str, kind: str, source: str) -> tuple[float, Schedule]:
    if isinstance(value, dict) and kind != "torch7":
        return _schedule_object(value, kind, source)
    return fields.non_negative(value, name, source), Constant()


def parse_args(obj: Any, kind: str, source: str = "args") -> FrameworkArgs:
    """Read the arguments of a TF1, optax or Torch7 SGD call.

    Raises:
        RecipeError: an unknown kind, a missing learning rate, momentum outside [0, 1],
            a non-numeric value, or an argument the optimizer does not take.
    """
    if kind not in KINDS:
        raise RecipeError(f"unknown argument kind {kind!r}; expected one of {', '.join(KINDS)}.")
    if not isinstance(obj, dict):
        raise RecipeError(f"{source}: expected a mapping of argument names to values, got {obj!r}.")
    if kind == "torch7":
        return _torch7(obj, source)
    lr_key = "learning_rate"
    if lr_key not in obj:
        raise RecipeError(f"{source}: learning_rate is missing; {kind} SGD needs one.")
    learning_rate, schedule = _learning_rate(obj[lr_key], lr_key, kind, source)
    raw_momentum = obj.get("momentum")
    momentum = 0.0 if raw_momentum is None else fields.momentum(raw_momentum, "momentum", source)
    if kind == "tf1":
        known = {"learning_rate", "momentum", "use_nesterov", "use_locking", "name"}
        nesterov = fields.boolean(obj.get("use_nesterov", False), "use_nesterov", source)
        weight_decay = fields.non_negative(obj.get("l2_loss_weight", 0.0), "l2_loss_weight", source)
        known.add("l2_loss_weight")
    else:
        known = {"learning_rate", "momentum", "nesterov", "accumulator_dtype", "weight_decay"}
        nesterov = fields.boolean(obj.get("nesterov", False), "nesterov", source)
        weight_decay = fields.non_negative(obj.get("weight_decay", 0.0), "weight_decay", source)
    ignored = tuple(key for key in obj if key not in known | {"epochs"})
    return FrameworkArgs(
        kind,
        learning_rate,
        schedule,
        momentum,
        0.0,
        nesterov,
        weight_decay,
        ignored,
        _epochs(obj, source),
    )


def _epochs(obj: dict[str, Any], source: str) -> float | None:
    """``epochs`` (our key, not the optimizer's): how long the recipe trains, in epochs."""
    if obj.get("epochs") is None:
        return None
    epochs = fields.number(obj["epochs"], "epochs", source)
    if epochs <= 0:
        raise RecipeError(f"{source}: epochs must be > 0, got {obj['epochs']!r}.")
    return epochs


def _torch7(obj: dict[str, Any], source: str) -> FrameworkArgs:
    known = {"learningRate", "learningRateDecay", "weightDecay", "momentum", "dampening",
             "nesterov"}  # fmt: skip
    for per_parameter in ("learningRates", "weightDecays"):
        if per_parameter in obj:
            raise RecipeError(
                f"{source}: {per_parameter} (per-parameter tensors) cannot be read from a file;"
                " convert each parameter group separately."
            )
    learning_rate = fields.non_negative(obj.get("learningRate", 1e-3), "learningRate", source)
    decay = fields.non_negative(obj.get("learningRateDecay", 0.0), "learningRateDecay", source)
    momentum = fields.momentum(obj.get("momentum", 0.0), "momentum", source)
    dampening = fields.number(obj.get("dampening", momentum), "dampening", source)
    if not 0 <= dampening <= 1:
        raise RecipeError(f"{source}: dampening must be in [0, 1], got {dampening!r}.")
    nesterov = fields.boolean(obj.get("nesterov", False), "nesterov", source)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise RecipeError(
            f"{source}: optim.sgd's nesterov needs momentum > 0 and dampening 0, got"
            f" momentum={momentum!r}, dampening={dampening!r}."
        )
    schedule: Schedule = schedules.InverseTime(decay=decay) if decay else Constant()
    weight_decay = fields.non_negative(obj.get("weightDecay", 0.0), "weightDecay", source)
    ignored = tuple(key for key in obj if key not in known | {"epochs"})
    return FrameworkArgs(
        "torch7",
        learning_rate,
        schedule,
        momentum,
        dampening,
        nesterov,
        weight_decay,
        ignored,
        _epochs(obj, source),
    )


def to_recipe(
    args: FrameworkArgs,
    steps: int | None = None,
    source: str = "args",
    steps_per_epoch: int | None = None,
) -> ImportedRecipe:
    """Map framework arguments to a recipe in that framework's convention.

    ``steps`` defaults to the file's ``epochs`` times ``steps_per_epoch`` when both are
    known, else 1000 (with a note).
    """
    notes: list[str] = []
    if steps is None and args.epochs is not None and steps_per_epoch is not None:
        steps = math.ceil(args.epochs * steps_per_epoch)
    if steps is None:
        steps = 1000
        notes.append("the arguments do not say how long training runs: 1000 steps shown;"
                     " give --steps.")  # fmt: skip
    steps = fields.step_count(steps, source)
    if args.ignored:
        notes.append(
            f"ignored arguments that {args.kind} SGD does not take: {', '.join(args.ignored)}."
        )
    recipe = Recipe(
        convention=args.kind,
        lr=args.learning_rate,
        momentum=args.momentum,
        dampening=args.dampening,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule,
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes))


def read_mapping(path: Path) -> Any:
    """Read JSON, falling back to YAML (a superset), naming the file on a syntax error."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        import yaml  # type: ignore[import-untyped]

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise RecipeError(
                f"{path.name}: not valid JSON or YAML ({exc.msg} at line {exc.lineno})."
            ) from None


def load(
    path: str | Path, kind: str, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    """Read a JSON or YAML file of ``kind`` arguments and map it to a recipe."""
    path = Path(path)
    args = parse_args(read_mapping(path), kind, path.name)
    return to_recipe(args, steps=steps, source=path.name, steps_per_epoch=steps_per_epoch)
