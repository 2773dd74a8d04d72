"""Keras SGD configs (Keras 2 / ``tf.keras`` and Keras 3) and their learning-rate schedules.

Input is what ``optimizer.get_config()`` or ``keras.optimizers.serialize(optimizer)``
writes, saved as JSON (or YAML). Keras' SGD is Form S (docs/reference.md)::

    v_t = μ v_{t-1} - η_t g_t        w_t = w_{t-1} + v_t
    Nesterov:                        w_t = w_{t-1} + μ v_t - η_t g_t

with ``η_t`` the schedule evaluated at the optimizer's 0-based ``iterations`` counter
(``schedule(t - 1)`` for step ``t``), divided by ``1 + decay·(t - 1)`` when Keras 2's
legacy ``decay`` is set. Keras 3's ``weight_decay`` is *decoupled*: ``w ← w(1 - η_t λ)``
before the momentum update, so it maps to the ``keras3`` convention, and a conversion to a
coupled convention is only approximate when ``μ > 0``.

The schedule formulas below are those of keras-team/keras
``keras/src/optimizers/schedules/learning_rate_schedule.py`` (read for this module):

- ``ExponentialDecay``: ``η0 · rate^(s / decay_steps)``, exponent floored when ``staircase``.
- ``PiecewiseConstantDecay``: ``values[0]`` for ``s <= boundaries[0]``, ``values[i]`` for
  ``boundaries[i-1] < s <= boundaries[i]``, ``values[-1]`` for ``s > boundaries[-1]``.
- ``InverseTimeDecay``: ``η0 / (1 + rate · s / decay_steps)``, the ratio floored when
  ``staircase``.
- ``PolynomialDecay``: ``(η0 - η_end)(1 - s/D)^power + η_end`` with ``s = min(s, D)``; with
  ``cycle``, ``D = decay_steps · ceil(s / decay_steps)`` (multiplier 1 at ``s = 0``).
- ``CosineDecay``: without ``warmup_target``, ``η0((1-α)·½(1 + cos(π min(s, D)/D)) + α)``;
  with it, ``s = min(s, D + W)``; for ``s < W`` the linear ramp
  ``η0 + (target - η0) s / W``, else the cosine from ``target`` at ``s - W``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields
from momentum_convert.importers.imported import ImportedRecipe
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray

#: Each supported schedule class: its required and optional ``config`` keys (with defaults).
SCHEDULES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "ExponentialDecay": (
        ("initial_learning_rate", "decay_steps", "decay_rate"),
        {"staircase": False},
    ),
    "PiecewiseConstantDecay": (("boundaries", "values"), {}),
    "InverseTimeDecay": (
        ("initial_learning_rate", "decay_steps", "decay_rate"),
        {"staircase": False},
    ),
    "PolynomialDecay": (
        ("initial_learning_rate", "decay_steps"),
        {"end_learning_rate": 0.0001, "power": 1.0, "cycle": False},
    ),
    "CosineDecay": (
        ("initial_learning_rate", "decay_steps"),
        {"alpha": 0.0, "warmup_target": None, "warmup_steps": 0},
    ),
}

#: Config keys with no effect on the SGD arithmetic.
_HARMLESS = frozenset(
    {"name", "jit_compile", "is_legacy_optimizer", "use_ema", "ema_momentum",
     "ema_overwrite_frequency", "loss_scale_factor", "global_clipnorm", "clipnorm", "clipvalue"}
)  # fmt: skip
_KERAS3_MARKERS = frozenset({"loss_scale_factor", "gradient_accumulation_steps"})


@dataclass(frozen=True)
class KerasSchedule:
    """A Keras learning-rate schedule (or a constant), evaluated at the 0-based iteration.

    Absolute: ``values(base, steps)`` ignores ``base``. ``decay`` is Keras 2's legacy
    ``decay``, applied on top as ``η / (1 + decay·s)``.
    """

    class_name: str
    config: tuple[tuple[str, Any], ...]
    decay: float = 0.0
    absolute: bool = field(default=True, init=False)

    def __getitem__(self, key: str) -> Any:
        return dict(self.config)[key]

    def values(self, base: float, steps: int) -> FloatArray:
        s = np.arange(steps, dtype=np.float64)
        lr = self._schedule(s)
        if self.decay:
            lr = lr / (1.0 + self.decay * s)
        return np.asarray(lr, dtype=np.float64)

    def _schedule(self, s: FloatArray) -> FloatArray:
        c = dict(self.config)
        name = self.class_name
        if name == "Constant":
            return np.full(s.shape, float(c["learning_rate"]))
        if name in ("ExponentialDecay", "InverseTimeDecay"):
            p = s / c["decay_steps"]
            if c["staircase"]:
                p = np.floor(p)
            if name == "ExponentialDecay":
                return c["initial_learning_rate"] * np.power(float(c["decay_rate"]), p)
            return c["initial_learning_rate"] / (1.0 + c["decay_rate"] * p)
        if name == "PiecewiseConstantDecay":
            boundaries = np.asarray(c["boundaries"], dtype=np.float64)
            # side="left": s equal to a boundary still takes the value before it (s <= b).
            return np.asarray(c["values"], dtype=np.float64)[
                np.searchsorted(boundaries, s, side="left")
            ]
        if name == "PolynomialDecay":
            decay_steps = float(c["decay_steps"])
            if c["cycle"]:
                multiplier = np.where(s == 0, 1.0, np.ceil(s / decay_steps))
                horizon = decay_steps * multiplier
                p = s / horizon
            else:
                p = np.minimum(s, decay_steps) / decay_steps
            start, end = c["initial_learning_rate"], c["end_learning_rate"]
            return (start - end) * np.power(1.0 - p, c["power"]) + end
        if name == "CosineDecay":
            decay_steps, alpha = float(c["decay_steps"]), c["alpha"]
            start = c["initial_learning_rate"]

            def cosine(step: FloatArray, peak: float) -> FloatArray:
                decayed = 0.5 * (1.0 + np.cos(math.pi * step / decay_steps))
                return peak * ((1.0 - alpha) * decayed + alpha)

            if c["warmup_target"] is None:
                return cosine(np.minimum(s, decay_steps), start)
            target, warmup = c["warmup_target"], float(c["warmup_steps"])
            s = np.minimum(s, decay_steps + warmup)
            with np.errstate(divide="ignore", invalid="ignore"):
                ramp = (target - start) * (s / warmup) + start
            return np.where(s < warmup, ramp, cosine(s - warmup, target))
        raise RecipeError(f"Keras schedule {name!r} is not supported.")  # pragma: no cover

    def describe(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in self.config)
        decay = f",decay={self.decay:g}" if self.decay else ""
        return f"keras-{self.class_name}:{text}{decay}"


@dataclass(frozen=True)
class KerasSGDConfig:
    """The fields of a Keras SGD config, as Keras names them."""

    learning_rate: KerasSchedule
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None
    decay: float = 0.0
    keras3: bool = False
    clipping: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


def _unwrap(obj: Any, source: str) -> tuple[str | None, dict[str, Any]]:
    """Split ``serialize()`` output (``class_name`` + ``config``) from a bare ``get_config()``."""
    if not isinstance(obj, dict):
        raise RecipeError(f"{source}: expected a JSON object (a Keras config), got {obj!r}.")
    if "config" in obj and isinstance(obj["config"], dict):
        class_name = obj.get("class_name")
        if not isinstance(class_name, str):
            raise RecipeError(f"{source}: class_name must be a string, got {class_name!r}.")
        return class_name, obj["config"]
    return None, obj


def _class(name: str) -> str:
    # "Custom>SGD", "keras.optimizers.SGD", "SGD" all name the same class.
    return name.split(">")[-1].split(".")[-1]


def parse_schedule(value: Any, source: str, decay: float = 0.0) -> KerasSchedule:
    """Read ``learning_rate``: a number, or a serialized Keras schedule."""
    if not isinstance(value, dict):
        lr = fields.non_negative(value, "learning_rate", source)
        return KerasSchedule("Constant", (("learning_rate", lr),), decay)
    class_name, config = _unwrap(value, f"{source} learning_rate")
    name = _class(class_name or "")
    if name not in SCHEDULES:
        raise RecipeError(
            f"{source}: learning_rate schedule {class_name!r} is not supported; expected one of"
            f" {', '.join(SCHEDULES)}."
        )
    required, optional = SCHEDULES[name]
    where = f"{source} {name}"
    parsed: dict[str, Any] = {}
    for key in required:
        if key not in config:
            raise RecipeError(f"{where}: {key} is missing.")
    for key, default in {**dict.fromkeys(required), **optional}.items():
        raw = config.get(key, default)
        if key in ("staircase", "cycle"):
            parsed[key] = fields.boolean(raw, key, where)
        elif key in ("boundaries", "values"):
            if not isinstance(raw, list) or not raw:
                raise RecipeError(f"{where}: {key} must be a non-empty list, got {raw!r}.")
            parsed[key] = tuple(fields.number(x, key, where) for x in raw)
        elif key == "warmup_target" and raw is None:
            parsed[key] = None
        elif key == "decay_steps":
            steps = fields.number(raw, key, where)
            if steps <= 0:
                raise RecipeError(f"{where}: decay_steps must be > 0, got {raw!r}.")
            parsed[key] = steps
        elif key == "warmup_steps":
            parsed[key] = fields.non_negative(raw, key, where)
        else:
            parsed[key] = fields.number(raw, key, where)
    if name == "PiecewiseConstantDecay":
        boundaries, values = parsed["boundaries"], parsed["values"]
        if len(boundaries) != len(values) - 1:
            raise RecipeError(
                f"{where}: values must have one more entry than boundaries, got"
                f" {len(values)} values and {len(boundaries)} boundaries."
            )
        if any(later <= earlier for earlier, later in itertools.pairwise(boundaries)):
            raise RecipeError(f"{where}: boundaries must increase, got {list(boundaries)}.")
        if any(v < 0 for v in values):
            raise RecipeError(f"{where}: values must be >= 0, got {list(values)}.")
    if (
        name == "CosineDecay"
        and parsed["warmup_target"] is not None
        and parsed["warmup_steps"] == 0
    ):
        raise RecipeError(
            f"{where}: warmup_target is set but warmup_steps is 0; give warmup_steps."
        )
    return KerasSchedule(name, tuple(parsed.items()), decay)


def parse_config(obj: Any, source: str = "config") -> KerasSGDConfig:
    """Read a Keras SGD config (``get_config()`` or ``serialize()`` output).

    Raises:
        RecipeError: an optimizer other than SGD, a missing or bad ``learning_rate``,
            momentum outside [0, 1], a bad schedule, or ``gradient_accumulation_steps`` > 1.
    """
    class_name, config = _unwrap(obj, source)
    if class_name is not None and _class(class_name) != "SGD":
        raise RecipeError(
            f"{source}: optimizer {class_name!r} is not SGD; only Keras SGD configs convert."
        )
    keras3 = "module" in obj or bool(_KERAS3_MARKERS & config.keys())
    if "learning_rate" in config:
        lr_value = config["learning_rate"]
    elif "lr" in config:  # Keras 1 and early Keras 2
        lr_value = config["lr"]
    else:
        raise RecipeError(f"{source}: learning_rate is missing; Keras SGD configs have one.")
    decay = fields.non_negative(config.get("decay", 0.0) or 0.0, "decay", source)
    if decay and keras3:
        raise RecipeError(f"{source}: decay is a Keras 2 argument that Keras 3 refuses; remove it.")
    momentum = fields.momentum(config.get("momentum", 0.0), "momentum", source)
    nesterov = fields.boolean(config.get("nesterov", False), "nesterov", source)
    raw_wd = config.get("weight_decay")
    weight_decay = None if raw_wd is None else fields.non_negative(raw_wd, "weight_decay", source)
    accumulation = config.get("gradient_accumulation_steps")
    if (
        accumulation is not None
        and fields.positive_integer(accumulation, "gradient_accumulation_steps", source) > 1
    ):
        raise RecipeError(
            f"{source}: gradient_accumulation_steps {accumulation!r} changes when the schedule"
            " advances and is not supported; use 1 (null) or a larger batch."
        )
    known = {"learning_rate", "lr", "decay", "momentum", "nesterov", "weight_decay"}
    known |= {"gradient_accumulation_steps"}
    clipping = tuple(k for k in ("clipnorm", "clipvalue", "global_clipnorm") if config.get(k))
    return KerasSGDConfig(
        learning_rate=parse_schedule(lr_value, source, decay),
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        decay=decay,
        keras3=keras3,
        clipping=clipping,
        ignored=tuple(k for k in config if k not in known | _HARMLESS),
    )


def natural_steps(schedule: KerasSchedule) -> int | None:
    """The steps a schedule itself spans (its decay horizon), or ``None`` for open-ended ones."""
    name = schedule.class_name
    if name == "PiecewiseConstantDecay":
        return int(schedule["boundaries"][-1]) + 2  # the last value is used from s = b[-1] + 1
    if name == "CosineDecay":
        return math.ceil(schedule["decay_steps"] + schedule["warmup_steps"])
    if name == "PolynomialDecay" and not schedule["cycle"]:
        return math.ceil(schedule["decay_steps"])
    return None


def to_recipe(
    config: KerasSGDConfig, steps: int | None = None, source: str = "config"
) -> ImportedRecipe:
    """Map a Keras SGD config to a recipe in the ``keras`` or ``keras3`` convention.

    ``keras3`` is chosen when the config is Keras 3's, or sets ``weight_decay`` (decoupled in
    Keras 3 and in ``tf.keras`` 2.11+); otherwise ``keras`` (Keras 2, no weight decay in the
    optimizer). ``steps`` defaults to the schedule's own horizon, else 1000. Decoupled
    weight decay has no exact coupled equivalent when μ > 0: :func:`~momentum_convert.
    conversion.convert` gives such a recipe the verdict ``approximate`` and says why.
    """
    notes: list[str] = []
    if steps is None:
        steps = natural_steps(config.learning_rate)
        if steps is None:
            steps = 1000
            notes.append("the config does not say how long training runs: 1000 steps shown;"
                         " give --steps.")  # fmt: skip
    steps = fields.step_count(steps, source)
    weight_decay = config.weight_decay or 0.0
    decoupled = config.keras3 or weight_decay > 0
    if config.clipping:
        notes.append(f"gradient clipping ({', '.join(config.clipping)}) is not converted.")
    if config.ignored:
        notes.append(
            f"ignored fields that are not Keras SGD arguments: {', '.join(config.ignored)}."
        )
    schedule = config.learning_rate
    first = float(schedule.values(1.0, 1)[0])
    recipe = Recipe(
        convention="keras3" if decoupled else "keras",
        lr=first,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=weight_decay,
        lr_schedule=schedule,
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes))


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    """Read a Keras optimizer config saved as JSON (or YAML) and map it to a recipe."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        import yaml  # type: ignore[import-untyped]

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError:
            raise RecipeError(
                f"{path.name}: not valid JSON or YAML ({exc.msg} at line {exc.lineno})."
            ) from None
    return to_recipe(parse_config(obj, path.name), steps=steps, source=path.name)
