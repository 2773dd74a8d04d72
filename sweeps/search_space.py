"""The search space of a sweep, written with Optuna's distributions, and its sampling.

A sweep spec describes each hyperparameter with one of four forms (``docs/sweep-spec.md``):

====================================  =========================================================
TOML                                  meaning (Optuna call)
====================================  =========================================================
``epochs = 10``                       a fixed value (nothing is sampled)
``lr = {low = 1e-3, high = 1.0,       a float range (``trial.suggest_float(..., log=True)``);
log = true}``                         ``step`` is accepted too; integer parameters use
                                      ``trial.suggest_int``
``nesterov = [false, true]``          a categorical (``trial.suggest_categorical``)
``batch_size = {choices = [32, 64]}`` the same categorical, written as a table
====================================  =========================================================

The learning-rate *schedule* is a table of families, each with its own parameters in the
same four forms; Optuna picks the family (the categorical ``schedule``) and then that
family's parameters (named ``<family>.<parameter>``, so they are conditional on the
family). Every family is written in epochs and becomes a ``momentum_convert`` SPEC string
in optimizer steps once the task's ``steps_per_epoch`` is known
(:meth:`Configuration.lr_schedule`, :meth:`Configuration.schedule_spec`).

A sampled point is a :class:`Configuration`: the numbers of one trial, in the convention
the spec was written in. :mod:`sweeps.pairing` turns it into runs.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

import optuna

from momentum_convert.schedule_base import Constant, Schedule
from momentum_convert.schedules import Cosine, MultiStep, OneCycle, Warmup
from sweeps.errors import SpecError

Scalar: TypeAlias = bool | int | float | str
Value: TypeAlias = Scalar | tuple[int, ...]
Kind: TypeAlias = Literal["float", "int", "bool", "int_list", "str"]


class Distribution(Protocol):
    """One hyperparameter's distribution: a fixed value, a range or a categorical."""

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Return the value for this trial (asking Optuna unless the value is fixed)."""
        ...

    def values(self) -> tuple[Any, ...] | None:
        """Every value it can take when finite (for the grid sampler), else ``None``."""
        ...

    def bounds(self) -> tuple[Any, Any]:
        """The smallest and largest value it can take (for cross-parameter checks)."""
        ...

    def to_json(self) -> Any:
        """The distribution as written in TOML."""
        ...


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched."""

    value: Value

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        return self.value

    def values(self) -> tuple[Value, ...]:
        return (self.value,)

    def bounds(self) -> tuple[Value, Value]:
        return (self.value, self.value)

    def to_json(self) -> Any:
        return list(self.value) if isinstance(self.value, tuple) else self.value


@dataclass(frozen=True)
class FloatRange:
    """``trial.suggest_float(name, low, high, log=log, step=step)``."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def values(self) -> tuple[float, ...] | None:
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return tuple(self.low + i * self.step for i in range(count))

    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def to_json(self) -> Any:
        out: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class IntRange:
    """``trial.suggest_int(name, low, high, log=log, step=step)``."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def bounds(self) -> tuple[int, int]:
        return (self.low, self.high)

    def to_json(self) -> Any:
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class Choice:
    """``trial.suggest_categorical(name, choices)``.

    Optuna's categoricals hold scalars only, so a choice among lists (epoch milestones)
    is offered to Optuna as the strings ``"5/8"`` and turned back into tuples.
    """

    choices: tuple[Value, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        if not any(isinstance(choice, tuple) for choice in self.choices):
            scalar = trial.suggest_categorical(name, [_encode(c) for c in self.choices])
            assert scalar is not None  # the choices hold no None
            return scalar
        picked = trial.suggest_categorical(name, [_encode(c) for c in self.choices])
        return _decode(str(picked))

    def values(self) -> tuple[Value, ...]:
        return tuple(_encode(c) if isinstance(c, tuple) else c for c in self.choices)

    def bounds(self) -> tuple[Value, Value]:
        ordered = sorted(self.choices, key=_order_key)
        return (ordered[0], ordered[-1])

    def to_json(self) -> Any:
        return {"choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}


def _encode(choice: Value) -> Scalar:
    return "/".join(str(v) for v in choice) if isinstance(choice, tuple) else choice


def _decode(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("/")) if text else ()


def _order_key(value: Value) -> Any:
    return value[-1] if isinstance(value, tuple) and value else value


# --- parsing ---------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _scalar(value: object, kind: Kind, path: str) -> Value:
    """Check one fixed value (or one categorical choice) against the parameter's kind."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise SpecError(f"{path} must be true or false, got {_type_name(value)} ({value!r}).")
    if kind == "str":
        if isinstance(value, str) and value:
            return value
        raise SpecError(f"{path} must be a non-empty string, got {_type_name(value)} ({value!r}).")
    if kind == "int_list":
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return tuple(value)
        raise SpecError(
            f"{path} must be a non-empty list of whole numbers such as [5, 8], got {value!r}."
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path} must be a number, got {_type_name(value)} ({value!r}).")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise SpecError(f"{path} must be a whole number, got {value!r}.")
            return int(value)
        return value
    if not math.isfinite(value):
        raise SpecError(f"{path} must be a finite number, got {value!r}.")
    return float(value)


_RANGE_KEYS = ("low", "high", "log", "step")


def parse_distribution(raw: object, kind: Kind, path: str) -> Distribution:
    """Turn one TOML value into a distribution, or raise :class:`SpecError` naming ``path``.

    ``kind`` is the parameter's type: ``float``, ``int``, ``bool`` or ``int_list`` (a list of
    whole numbers such as epoch milestones, where a TOML list is a fixed value and
    ``{choices = [[5, 8], [3, 6]]}`` a categorical).
    """
    if isinstance(raw, dict):
        if "choices" in raw:
            _reject_unknown(raw, ("choices",), path)
            return _choice(raw["choices"], kind, f"{path}.choices")
        if "value" in raw:
            _reject_unknown(raw, ("value",), path)
            return Fixed(_scalar(raw["value"], kind, f"{path}.value"))
        _reject_unknown(raw, _RANGE_KEYS, path)
        if kind in ("bool", "int_list", "str"):
            raise SpecError(f"{path} cannot be a range; give a fixed value or {{choices = [...]}}.")
        return _range(raw, kind, path)
    if isinstance(raw, list) and kind != "int_list":
        return _choice(raw, kind, path)
    return Fixed(_scalar(raw, kind, path))


def _choice(raw: object, kind: Kind, path: str) -> Distribution:
    if not isinstance(raw, list):
        raise SpecError(f"{path} must be a list of choices, got {_type_name(raw)} ({raw!r}).")
    if not raw:
        raise SpecError(f"{path} is an empty list of choices; give at least one value.")
    choices = tuple(_scalar(v, kind, f"{path}[{i}]") for i, v in enumerate(raw))
    if len(set(choices)) != len(choices):
        raise SpecError(f"{path} lists the same choice twice: {raw!r}.")
    return Fixed(choices[0]) if len(choices) == 1 else Choice(choices)


def _range(raw: dict[str, Any], kind: Kind, path: str) -> Distribution:
    for key in ("low", "high"):
        if key not in raw:
            raise SpecError(f"{path}.{key} is missing; a range needs both low and high.")
    low = _scalar(raw["low"], kind, f"{path}.low")
    high = _scalar(raw["high"], kind, f"{path}.high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"{path}.log must be true or false, got {log!r}.")
    assert isinstance(low, int | float)
    assert isinstance(high, int | float)
    if low > high:
        raise SpecError(f"{path}.low ({low!r}) is greater than {path}.high ({high!r}).")
    if log and low <= 0:
        raise SpecError(f"{path}.low must be > 0 for a log range, got {low!r}.")
    step = raw.get("step")
    if step is not None:
        step = _scalar(step, kind, f"{path}.step")
        assert isinstance(step, int | float)
        if step <= 0:
            raise SpecError(f"{path}.step must be > 0, got {step!r}.")
        if log:
            raise SpecError(f"{path} cannot have both log = true and a step; pick one.")
    if kind == "int":
        return IntRange(int(low), int(high), log, int(step) if step is not None else 1)
    return FloatRange(float(low), float(high), log, float(step) if step is not None else None)


def _reject_unknown(table: Mapping[str, Any], accepted: tuple[str, ...], path: str) -> None:
    for key in table:
        if key not in accepted:
            raise SpecError(unknown_key_message(key, accepted, path))


def unknown_key_message(key: str, accepted: tuple[str, ...] | list[str], path: str) -> str:
    """``unknown key 'search_space.lrr'; did you mean 'lr'? accepted keys: ...``."""
    where = f"{path}.{key}" if path else key
    # A transposition (``lgo``) is the likeliest typo; then the closest spelling.
    close = [a for a in accepted if sorted(a) == sorted(key)] or difflib.get_close_matches(
        key, list(accepted), n=1
    )
    hint = f" did you mean '{close[0]}'?" if close else ""
    # repr: a key with a newline or a quote in it still makes one line.
    return f"unknown key {where!r};{hint} accepted keys: {', '.join(accepted)}."


def check_bounds(
    distribution: Distribution,
    path: str,
    *,
    minimum: float,
    inclusive: bool = True,
    maximum: float | None = None,
    below_maximum: bool = False,
) -> None:
    """Reject a distribution that can reach a value outside ``[minimum, maximum]``."""
    low, high = distribution.bounds()
    low_v, high_v = float(low), float(high)  # type: ignore[arg-type]
    too_low = low_v < minimum if inclusive else low_v <= minimum
    if too_low:
        relation = ">=" if inclusive else ">"
        raise SpecError(f"{path} must be {relation} {minimum:g}, but it can be {low_v!r}.")
    if maximum is not None:
        too_high = high_v >= maximum if below_maximum else high_v > maximum
        if too_high:
            relation = "<" if below_maximum else "<="
            raise SpecError(f"{path} must be {relation} {maximum:g}, but it can be {high_v!r}.")


def _all_values(distribution: Distribution) -> tuple[Any, ...]:
    if isinstance(distribution, Choice):
        return distribution.choices
    if isinstance(distribution, Fixed):
        return (distribution.value,)
    return distribution.bounds()


# --- schedule families -----------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One parameter of a schedule family: its kind, default and the check on its values."""

    kind: Kind
    default: Value | None
    doc: str
    check: Callable[[Distribution, str], None] | None = None


def _positive(distribution: Distribution, path: str) -> None:
    check_bounds(distribution, path, minimum=0.0, inclusive=False)


def _non_negative(distribution: Distribution, path: str) -> None:
    check_bounds(distribution, path, minimum=0.0)


def _fraction(distribution: Distribution, path: str) -> None:
    check_bounds(distribution, path, minimum=0.0, inclusive=False, maximum=1.0, below_maximum=True)


def _at_least_one(distribution: Distribution, path: str) -> None:
    check_bounds(distribution, path, minimum=1.0)


def _milestones(distribution: Distribution, path: str) -> None:
    for milestones in _all_values(distribution):
        if any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
            raise SpecError(
                f"{path} must be increasing whole epochs >= 1 such as [5, 8], got"
                f" {list(milestones)!r}."
            )


@dataclass(frozen=True)
class ScheduleFamily:
    """A learning-rate schedule family written in epochs, built in optimizer steps.

    ``build(lr, params, steps_per_epoch, epochs)`` returns the
    :class:`~momentum_convert.schedule_base.Schedule` whose ``values(lr, steps)[i]`` is the
    learning rate used at optimizer step ``i + 1``; its ``describe()`` is the SPEC string
    (``docs/schedules.md``) recorded with every run.
    """

    name: str
    parameters: Mapping[str, Parameter]
    build: Callable[[float, Mapping[str, Any], int, int], Schedule]
    doc: str


def _constant(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    return Constant()


def _step(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    # torch's MultiStepLR stepped once per epoch: the cut applies from the first step of
    # epoch ``m + 1``, the 0-based step index ``m * steps_per_epoch``. Milestones at or past
    # the last epoch are never reached and are left out.
    reached = tuple(m * steps_per_epoch for m in p["milestones_epochs"] if m < epochs)
    if not reached:
        return Constant()
    return MultiStep(milestones=reached, gamma=float(p["gamma"]))


def _cosine(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    return Cosine(t_max=steps_per_epoch * epochs, eta_min=float(p["eta_min"]))


def _warmup_cosine(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    warmup = int(p["warmup_epochs"]) * steps_per_epoch
    total = steps_per_epoch * epochs
    return Warmup(
        steps=warmup,
        then=Cosine(t_max=total - warmup, eta_min=float(p["eta_min"])),
        start_factor=float(p["start_factor"]),
    )


def _onecycle(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    return OneCycle(
        max_lr=lr,
        total_steps=steps_per_epoch * epochs,
        pct_start=float(p["pct_start"]),
        div_factor=float(p["div_factor"]),
        final_div_factor=float(p["final_div_factor"]),
        cycle_momentum=False,
    )


def _recipe(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    # A catalog recipe's own schedule at the same fractions of training (sweeps.recipe_start).
    from sweeps.recipe_start import recipe_schedule

    return recipe_schedule(str(p["name"]), steps_per_epoch * epochs)


def _plateau(lr: float, p: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Schedule:
    # Reactive: the planned values are the base lr; sweeps.plateau cuts it while training.
    return Constant()


def _threshold_mode(distribution: Distribution, path: str) -> None:
    from sweeps.plateau import THRESHOLD_MODES

    for mode in _all_values(distribution):
        if mode not in THRESHOLD_MODES:
            raise SpecError(f"{path} must be 'rel' or 'abs', got {mode!r}.")


def _recipe_names(distribution: Distribution, path: str) -> None:
    from sweeps.recipe_start import check_recipe_names

    check_recipe_names(distribution, path)


SCHEDULE_FAMILIES: dict[str, ScheduleFamily] = {
    family.name: family
    for family in (
        ScheduleFamily("constant", {}, _constant, "the base lr throughout"),
        ScheduleFamily(
            "step",
            {
                "milestones_epochs": Parameter(
                    "int_list", None, "epochs after which the lr is cut", _milestones
                ),
                "gamma": Parameter("float", 0.1, "the factor of each cut", _positive),
            },
            _step,
            "step decay: lr × gamma after each milestone epoch (torch MultiStepLR per epoch)",
        ),
        ScheduleFamily(
            "cosine",
            {"eta_min": Parameter("float", 0.0, "the lr at the last step", _non_negative)},
            _cosine,
            "cosine annealing over all optimizer steps (torch CosineAnnealingLR per step)",
        ),
        ScheduleFamily(
            "warmup_cosine",
            {
                "warmup_epochs": Parameter("int", 1, "epochs of linear warmup", _at_least_one),
                "start_factor": Parameter(
                    "float", 0.01, "the first step's lr as a fraction of lr", _non_negative
                ),
                "eta_min": Parameter("float", 0.0, "the lr at the last step", _non_negative),
            },
            _warmup_cosine,
            "linear warmup from start_factor × lr, then cosine annealing",
        ),
        ScheduleFamily(
            "onecycle",
            {
                "pct_start": Parameter("float", 0.3, "fraction of steps going up", _fraction),
                "div_factor": Parameter("float", 25.0, "lr / initial lr", _positive),
                "final_div_factor": Parameter("float", 1e4, "initial lr / final lr", _positive),
            },
            _onecycle,
            "torch OneCycleLR with max_lr = lr (the learning rate only; momentum stays fixed)",
        ),
        ScheduleFamily(
            "plateau",
            {
                "factor": Parameter("float", 0.1, "the factor of each cut", _fraction),
                "patience": Parameter(
                    "int", 10, "bad epochs tolerated before a cut", _non_negative
                ),
                "threshold": Parameter(
                    "float", 1e-4, "the least change that counts as better", _non_negative
                ),
                "threshold_mode": Parameter(
                    "str", "rel", "'rel' (a fraction of the best) or 'abs'", _threshold_mode
                ),
                "cooldown": Parameter(
                    "int", 0, "epochs after a cut before bad epochs count", _non_negative
                ),
                "min_lr": Parameter("float", 0.0, "the lr is never cut below it", _non_negative),
                "eps": Parameter(
                    "float", 1e-8, "a cut smaller than this is not applied", _non_negative
                ),
            },
            _plateau,
            "torch ReduceLROnPlateau on the run's own objective, per epoch (mode from the"
            " direction)",
        ),
        ScheduleFamily(
            "recipe",
            {"name": Parameter("str", None, "a momentum_convert catalog recipe", _recipe_names)},
            _recipe,
            "a published recipe's schedule, its changes at the same fractions of training",
        ),
    )
}


# --- the search space and its samples --------------------------------------------------

#: The hyperparameters of the search space: kind, default (``None``: required).
HYPERPARAMETERS: dict[str, tuple[Kind, Value | None]] = {
    "lr": ("float", None),
    "momentum": ("float", None),
    "weight_decay": ("float", 0.0),
    "nesterov": ("bool", False),
    "batch_size": ("int", 32),
    "epochs": ("int", None),
}


@dataclass(frozen=True)
class SearchSpace:
    """Every searched hyperparameter's distribution, in one convention."""

    lr: Distribution
    momentum: Distribution
    weight_decay: Distribution
    nesterov: Distribution
    batch_size: Distribution
    epochs: Distribution
    schedules: Mapping[str, Mapping[str, Distribution]]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name).to_json() for name in HYPERPARAMETERS}
        out["schedule"] = {
            family: {key: d.to_json() for key, d in params.items()}
            for family, params in self.schedules.items()
        }
        return out


@dataclass(frozen=True)
class Configuration:
    """The hyperparameters of one trial, in the spec's convention.

    ``optimizer`` is set only when the optimizer itself is searched (pairing off with both
    optimizers); ``schedule_params`` holds the family's parameters (milestones as tuples).
    """

    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    schedule: str
    batch_size: int
    epochs: int
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str | None = None

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.epochs * steps_per_epoch

    def lr_schedule(self, steps_per_epoch: int) -> Schedule:
        """The learning-rate schedule in optimizer steps (relative to ``lr`` unless absolute)."""
        family = SCHEDULE_FAMILIES[self.schedule]
        return family.build(self.lr, self.schedule_params, steps_per_epoch, self.epochs)

    def schedule_spec(self, steps_per_epoch: int) -> str:
        """The ``momentum_convert`` SPEC string of :meth:`lr_schedule`."""
        return self.lr_schedule(steps_per_epoch).describe()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "schedule": self.schedule,
            "schedule_params": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.schedule_params.items()
            },
            "batch_size": self.batch_size,
            "epochs": self.epochs,
        }
        if self.optimizer is not None:
            out["optimizer"] = self.optimizer
        return out


class _HasSearchSpace(Protocol):
    @property
    def search_space(self) -> SearchSpace: ...

    @property
    def optimizers(self) -> tuple[str, ...]: ...

    @property
    def pairing(self) -> bool: ...


def searches_optimizer(spec: _HasSearchSpace) -> bool:
    """Whether the optimizer is a categorical parameter (pairing off, both optimizers)."""
    return not spec.pairing and len(spec.optimizers) > 1


def sample_configuration(spec: _HasSearchSpace, trial: optuna.Trial) -> Configuration:
    """Ask Optuna for one configuration of ``spec``'s search space.

    Parameter names in the study: ``lr``, ``momentum``, ``weight_decay``, ``nesterov``,
    ``batch_size``, ``epochs``, ``schedule`` (the family), ``<family>.<parameter>`` (e.g.
    ``step.gamma``) and ``optimizer`` (only when the optimizer is searched). Fixed values
    are not sent to Optuna.
    """
    space = spec.search_space
    values = {name: getattr(space, name).suggest(trial, name) for name in HYPERPARAMETERS}
    families = list(space.schedules)
    family = (
        families[0] if len(families) == 1 else str(trial.suggest_categorical("schedule", families))
    )
    params = {
        key: distribution.suggest(trial, f"{family}.{key}")
        for key, distribution in space.schedules[family].items()
    }
    optimizer = None
    if searches_optimizer(spec):
        optimizer = str(trial.suggest_categorical("optimizer", list(spec.optimizers)))
    return Configuration(
        lr=float(values["lr"]),
        momentum=float(values["momentum"]),
        weight_decay=float(values["weight_decay"]),
        nesterov=bool(values["nesterov"]),
        schedule=family,
        batch_size=int(values["batch_size"]),
        epochs=int(values["epochs"]),
        schedule_params=params,
        optimizer=optimizer,
    )


def grid_search_space(spec: _HasSearchSpace) -> dict[str, list[Scalar]]:
    """The value lists for :class:`optuna.samplers.GridSampler` (searched parameters only).

    Raises :class:`SpecError` naming the first parameter that is a continuous range.
    """
    space = spec.search_space
    grid: dict[str, list[Scalar]] = {}

    def add(name: str, distribution: Distribution, path: str) -> None:
        if isinstance(distribution, Fixed):
            return
        values = distribution.values()
        if values is None:
            raise SpecError(
                f"{path} is a continuous range, which the grid sampler cannot enumerate;"
                " give {choices = [...]} or a step."
            )
        grid[name] = [_encode(v) for v in values]

    for name in HYPERPARAMETERS:
        add(name, getattr(space, name), f"search_space.{name}")
    if len(space.schedules) > 1:
        grid["schedule"] = list(space.schedules)
    for family, params in space.schedules.items():
        for key, distribution in params.items():
            add(f"{family}.{key}", distribution, f"search_space.schedule.{family}.{key}")
    if searches_optimizer(spec):
        grid["optimizer"] = list(spec.optimizers)
    return grid
