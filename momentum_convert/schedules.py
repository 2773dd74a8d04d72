"""The learning-rate and momentum schedules users bring, as closed-form numpy rules.

Every class here is a frozen dataclass implementing
:class:`~momentum_convert.schedule_base.Schedule`: ``values(base, steps)`` returns the value
*used* at optimizer steps ``1..steps`` as a float64 array, where index ``i`` is PyTorch's
``scheduler.last_epoch`` after ``i`` calls to ``scheduler.step()`` and Caffe's / Keras'
0-based ``iter`` (docs/reference.md, "Scheduler timing"). ``describe()`` returns the SPEC string
(:mod:`momentum_convert.schedule_spec`) that parses back to an equal schedule.

Families, each checked step by step against its source in the tests:

* PyTorch ``torch.optim.lr_scheduler``: :class:`Step` (``StepLR``), :class:`MultiStep`
  (``MultiStepLR``), :class:`Exponential` (``ExponentialLR``), :class:`Cosine`
  (``CosineAnnealingLR``), :class:`Polynomial` (``PolynomialLR``), :class:`Linear`
  (``LinearLR``), :class:`Warmup` (``SequentialLR(LinearLR, X)``), :class:`OneCycle`
  (``OneCycleLR``, learning rate and momentum), :class:`Cyclic` (``CyclicLR``, both).
* Keras' legacy ``decay`` and Torch7's ``learningRateDecay``: :class:`InverseTime`.
* Caffe's ``lr_policy`` (``sgd_solver.cpp``, ``GetLearningRate``): :class:`CaffeFixed`,
  :class:`CaffeStep`, :class:`CaffeExp`, :class:`CaffeInv`, :class:`CaffeMultiStep`,
  :class:`CaffePoly`, :class:`CaffeSigmoid`.
* Sutskever et al. (2013), "On the importance of initialization and momentum in deep
  learning", section 3: :class:`SutskeverMomentum`.
* :class:`PerEpoch` turns a schedule counted in epochs (a torch scheduler stepped once per
  epoch) into one counted in optimizer steps.

Relative schedules scale the recipe's base value; absolute ones (``absolute = True``:
:class:`OneCycle`, :class:`Cyclic`, :class:`SutskeverMomentum`, ``file:``) ignore it.
:func:`momentum_schedule_for` gives the momentum schedule that a learning-rate schedule
cycles (OneCycle, Cyclic), as torch writes it into ``group["momentum"]``.

Every ``values`` is vectorised (no Python loop over steps): a million steps take a few
milliseconds (``benchmarks/bench_schedules.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from momentum_convert.errors import ScheduleSpecError
from momentum_convert.schedule_base import Constant, FloatArray, PerStep, Schedule

__all__ = [
    "CaffeExp",
    "CaffeFixed",
    "CaffeInv",
    "CaffeMultiStep",
    "CaffePoly",
    "CaffeSigmoid",
    "CaffeStep",
    "Constant",
    "Cosine",
    "Cyclic",
    "Exponential",
    "InverseTime",
    "Linear",
    "MultiStep",
    "OneCycle",
    "PerEpoch",
    "PerStep",
    "Polynomial",
    "Step",
    "SutskeverMomentum",
    "Warmup",
    "momentum_schedule_for",
]

Quantity = Literal["lr", "momentum"]


# --------------------------------------------------------------------------- validation
def _set(schedule: object, name: str, value: object) -> None:
    object.__setattr__(schedule, name, value)


def _whole(kind: str, name: str, value: object, minimum: int) -> int:
    """Check a count (``name`` empty when the key is the kind itself, as for ``every``)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        label = f"{kind} {name}" if name else kind
        raise ScheduleSpecError(f"{label} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def _number(
    kind: str,
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float:
    """Check one real-valued field and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ScheduleSpecError(f"{kind} {name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise ScheduleSpecError(f"{kind} {name} must be a finite number, got {value!r}.")
    if positive and number <= 0:
        raise ScheduleSpecError(f"{kind} {name} must be a number > 0, got {value!r}.")
    if minimum is not None and number < minimum:
        raise ScheduleSpecError(f"{kind} {name} must be a number >= {minimum:g}, got {value!r}.")
    if maximum is not None and number > maximum:
        raise ScheduleSpecError(f"{kind} {name} must be a number <= {maximum:g}, got {value!r}.")
    return number


def _choice(kind: str, name: str, value: object, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ScheduleSpecError(
            f"{kind} {name} must be one of {', '.join(accepted)}, got {value!r}."
        )
    return str(value)


def _flag(kind: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ScheduleSpecError(f"{kind} {name} must be true or false, got {value!r}.")
    return value


def _boundaries(kind: str, name: str, value: Iterable[object]) -> tuple[int, ...]:
    """Check a list of step boundaries: whole numbers >= 0, at least one, non-decreasing."""
    try:
        items = tuple(value)
    except TypeError:
        raise ScheduleSpecError(
            f"{kind} {name} must be a list of whole numbers, got {value!r}."
        ) from None
    if not items:
        raise ScheduleSpecError(
            f"{kind} {name} is empty; give at least one step, such as 30/60/90."
        )
    numbers = tuple(_whole(kind, f"{name} entry", item, 0) for item in items)
    for earlier, later in itertools.pairwise(numbers):
        if later < earlier:
            raise ScheduleSpecError(
                f"{kind} {name} must be in increasing order, got {later} after {earlier}."
            )
    return numbers


def _steps(kind: str, steps: int) -> int:
    return _whole(f"{kind}.values()", "steps", steps, 0)


# --------------------------------------------------------------------------- SPEC output
def _format(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, tuple):
        return "/".join(_format(item) for item in value)
    return str(value)


def _describe(
    kind: str,
    schedule: object,
    *,
    lead: dict[str, object] | None = None,
    skip: tuple[str, ...] = (),
) -> str:
    """``kind:key=value,...`` listing the fields that differ from their defaults.

    Fields without a default are always listed; ``absolute`` (not a constructor argument)
    and the names in ``skip`` never are. ``lead`` pairs come first (``policy=`` for Caffe).
    """
    pairs = [f"{key}={_format(value)}" for key, value in (lead or {}).items()]
    for spec_field in dataclasses.fields(schedule):  # type: ignore[arg-type]
        if not spec_field.init or spec_field.name in skip:
            continue
        value = getattr(schedule, spec_field.name)
        if spec_field.default is not dataclasses.MISSING and value == spec_field.default:
            continue
        pairs.append(f"{spec_field.name}={_format(value)}")
    return kind + (":" + ",".join(pairs) if pairs else "")


def _index(steps: int) -> FloatArray:
    return np.arange(steps, dtype=np.float64)


_POWER_BLOCK = 1024


def _powers(gamma: float, count: int) -> FloatArray:
    """``gamma ** i`` for ``i = 0..count-1``, with about ``2 sqrt(count)`` calls to ``pow``.

    ``gamma ** (B q + r) = gamma ** (B q) * gamma ** r``: one rounding more than ``pow``
    (relative error ~2e-16), and many times faster than a million ``pow`` calls.
    """
    if count <= _POWER_BLOCK:
        return np.power(gamma, _index(count))
    blocks = -(-count // _POWER_BLOCK)
    coarse = np.power(gamma, _POWER_BLOCK * _index(blocks))
    fine = np.power(gamma, _index(_POWER_BLOCK))
    with np.errstate(invalid="ignore", over="ignore"):
        return np.outer(coarse, fine).ravel()[:count]


def _piecewise(levels: FloatArray, starts: npt.ArrayLike, steps: int) -> FloatArray:
    """``levels[k]`` from index ``starts[k]`` on (``starts[0] == 0``, non-decreasing)."""
    edges = np.clip(np.append(np.asarray(starts, dtype=np.int64), steps), 0, steps)
    return np.repeat(levels, np.diff(edges))


# --------------------------------------------------------------------------- PyTorch
@dataclass(frozen=True)
class Step:
    """``base * gamma ** floor(i / step_size)``: torch ``StepLR``."""

    step_size: int
    gamma: float = 0.1
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "step_size", _whole("step", "step_size", self.step_size, 1))
        _set(self, "gamma", _number("step", "gamma", self.gamma, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("step", steps)
        count = -(-steps // self.step_size)
        levels = float(base) * _powers(self.gamma, count)
        return _piecewise(levels, np.arange(count) * self.step_size, steps)

    def describe(self) -> str:
        return _describe("step", self)


@dataclass(frozen=True)
class MultiStep:
    """``base * gamma ** k(i)``, ``k(i)`` = milestones ``<= i``: torch ``MultiStepLR``.

    A milestone given twice decays twice at once (torch counts milestones with a
    ``Counter``); Caffe's ``multistep`` differs (:class:`CaffeMultiStep`).
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "milestones", _boundaries("multistep", "milestones", self.milestones))
        _set(self, "gamma", _number("multistep", "gamma", self.gamma, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        # A milestone m decays from index m on; a repeated one decays twice there.
        levels = float(base) * _powers(self.gamma, len(self.milestones) + 1)
        return _piecewise(levels, (0, *self.milestones), _steps("multistep", steps))

    def describe(self) -> str:
        return _describe("multistep", self)


@dataclass(frozen=True)
class Exponential:
    """``base * gamma ** i``: torch ``ExponentialLR``."""

    gamma: float
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("exponential", "gamma", self.gamma, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        return float(base) * _powers(self.gamma, _steps("exponential", steps))

    def describe(self) -> str:
        return _describe("exponential", self)


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing, torch ``CosineAnnealingLR`` in its closed form.

    .. math:: \\eta_i = \\eta_{min} + (\\eta_{base} - \\eta_{min})
              \\frac{1 + \\cos(\\pi i / T_{max})}{2}

    ``eta_min`` is a learning rate (not a fraction of the base), as in torch. Past
    ``t_max`` the cosine goes on periodically (back up to the base at ``2 t_max``), which
    is what torch's ``_get_closed_form_lr`` and its recursive ``get_lr`` both do; use
    ``t_max`` = the run length to anneal once.
    """

    t_max: int
    eta_min: float = 0.0
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "t_max", _whole("cosine", "t_max", self.t_max, 1))
        _set(self, "eta_min", _number("cosine", "eta_min", self.eta_min, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        # eta_min + (base - eta_min) * (1 + cos(pi * i / t_max)) / 2, in torch's order of
        # operations, computed in place (one array instead of six).
        values = _index(_steps("cosine", steps))
        values *= np.pi
        values /= self.t_max
        np.cos(values, out=values)
        values += 1
        values *= float(base) - self.eta_min
        values /= 2
        values += self.eta_min
        return values

    def describe(self) -> str:
        return _describe("cosine", self)


@dataclass(frozen=True)
class Polynomial:
    """``base * (1 - min(i, total_iters) / total_iters) ** power``: torch ``PolynomialLR``.

    Reaches 0 at ``i = total_iters`` and stays there.
    """

    total_iters: int
    power: float = 1.0
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "total_iters", _whole("poly", "total_iters", self.total_iters, 1))
        _set(self, "power", _number("poly", "power", self.power, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        index = np.minimum(_index(_steps("poly", steps)), self.total_iters)
        return float(base) * (1.0 - index / self.total_iters) ** self.power

    def describe(self) -> str:
        return _describe("poly", self)


@dataclass(frozen=True)
class Linear:
    """A linear change of the factor, then constant: torch ``LinearLR``.

    ``base * (start_factor + (end_factor - start_factor) * min(i, total_iters) / total_iters)``.
    Defaults are torch's. Torch requires ``0 < start_factor <= 1`` and
    ``0 <= end_factor <= 1``; here any factors ``>= 0`` are accepted.
    """

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "start_factor", _number("linear", "start_factor", self.start_factor, minimum=0))
        _set(self, "end_factor", _number("linear", "end_factor", self.end_factor, minimum=0))
        _set(self, "total_iters", _whole("linear", "total_iters", self.total_iters, 1))

    def values(self, base: float, steps: int) -> FloatArray:
        index = np.minimum(_index(_steps("linear", steps)), self.total_iters)
        change = self.end_factor - self.start_factor
        return float(base) * (self.start_factor + change * index / self.total_iters)

    def describe(self) -> str:
        return _describe("linear", self)


@dataclass(frozen=True)
class Warmup:
    """A linear warmup over ``steps`` steps, then ``then`` with its index shifted by ``steps``.

    .. math:: \\eta_i = \\eta_{target} \\, (f + (1 - f)\\, i / W) \\quad (i < W), \\qquad
              \\eta_i = \\mathrm{then}_{i - W} \\quad (i \\ge W)

    with ``f = start_factor`` and ``W = steps``: the first step uses ``f * target``, the
    last warmup step ``(f + (1 - f)(W - 1)/W) * target``, and step ``W + 1`` the first value of
    ``then``. This is torch's ``SequentialLR([LinearLR(start_factor=f, total_iters=W), X],
    milestones=[W])``; torch itself refuses ``f = 0``, which is allowed here and is the
    default. With ``f = 0`` the first step has learning rate exactly 0: the converter's edge
    case 1 (docs/reference.md), where no finite Form-S momentum reproduces the PyTorch buffer.

    The target is the base value when ``then`` is relative, and the first value of
    ``then`` when it is absolute (``warmup:steps=100+onecycle:...``).
    """

    steps: int
    then: Schedule = field(default_factory=Constant)
    start_factor: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "steps", _whole("warmup", "steps", self.steps, 0))
        _set(self, "start_factor", _number("warmup", "start_factor", self.start_factor, minimum=0))
        if not isinstance(self.then, Schedule):
            raise ScheduleSpecError(f"warmup then must be a schedule, got {self.then!r}.")

    @property
    def absolute(self) -> bool:  # type: ignore[override]
        return self.then.absolute

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("warmup", steps)
        ramp_steps = min(self.steps, steps)
        target = float(self.then.values(base, 1)[0]) if self.then.absolute else float(base)
        index = _index(ramp_steps)
        ramp = target * (self.start_factor + (1.0 - self.start_factor) * index / self.steps)
        return np.concatenate([ramp, self.then.values(base, steps - ramp_steps)])

    def describe(self) -> str:
        return f"{_describe('warmup', self, skip=('then',))}+{self.then.describe()}"


def _anneal(start: float, end: float, pct: FloatArray, strategy: str) -> FloatArray:
    """torch ``OneCycleLR._annealing_cos`` / ``_annealing_linear``, element-wise."""
    values = pct * np.pi if strategy == "cos" else pct * (end - start)
    if strategy == "cos":
        # end + (start - end) / 2 * (cos(pi * pct) + 1), in torch's order, in place.
        np.cos(values, out=values)
        values += 1
        values *= (start - end) / 2.0
        values += end
    else:
        values += start
    return values


@dataclass(frozen=True)
class OneCycle:
    """The 1cycle policy (Smith & Topin 2017) exactly as torch ``OneCycleLR`` computes it.

    Absolute: the learning rate starts at ``max_lr / div_factor``, rises to ``max_lr`` over
    ``pct_start * total_steps`` steps, then falls to ``max_lr / div_factor /
    final_div_factor`` at step ``total_steps`` (``three_phase`` returns to the start first, as
    in fastai). Momentum moves the other way between ``max_momentum`` and ``base_momentum``.

    ``quantity="lr"`` gives the learning rate, ``quantity="momentum"`` the momentum that torch
    writes into ``group["momentum"]`` (see :attr:`momentum_schedule`). Torch raises if stepped
    more than ``total_steps`` times; here the values after step ``total_steps`` hold the final
    value.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: Literal["cos", "linear"] = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    cycle_momentum: bool = True
    quantity: Quantity = "lr"
    absolute: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        kind = "onecycle"
        _set(self, "max_lr", _number(kind, "max_lr", self.max_lr, positive=True))
        _set(self, "total_steps", _whole(kind, "total_steps", self.total_steps, 1))
        pct = _number(kind, "pct_start", self.pct_start, minimum=0, maximum=1)
        _set(self, "pct_start", pct)
        _choice(kind, "anneal_strategy", self.anneal_strategy, ("cos", "linear"))
        _set(self, "div_factor", _number(kind, "div_factor", self.div_factor, positive=True))
        final = _number(kind, "final_div_factor", self.final_div_factor, positive=True)
        _set(self, "final_div_factor", final)
        _flag(kind, "three_phase", self.three_phase)
        _set(self, "base_momentum", _number(kind, "base_momentum", self.base_momentum, minimum=0))
        _set(self, "max_momentum", _number(kind, "max_momentum", self.max_momentum, minimum=0))
        _flag(kind, "cycle_momentum", self.cycle_momentum)
        _choice(kind, "quantity", self.quantity, ("lr", "momentum"))
        if self.quantity == "momentum" and not self.cycle_momentum:
            raise ScheduleSpecError(
                "onecycle quantity=momentum needs cycle_momentum=true; with cycle_momentum=false"
                " torch leaves the momentum alone."
            )
        if float(pct * self.total_steps) - 1 == 0:
            raise ScheduleSpecError(
                f"onecycle pct_start * total_steps must not be exactly 1 (the warmup phase would"
                f" last zero steps and torch divides by zero), got pct_start={self.pct_start!r}"
                f" and total_steps={self.total_steps!r}."
            )

    @property
    def momentum_schedule(self) -> OneCycle | None:
        """The momentum torch's ``OneCycleLR`` sets with these settings (None if not cycled)."""
        return dataclasses.replace(self, quantity="momentum") if self.cycle_momentum else None

    def _phases(self) -> list[tuple[float, str, str]]:
        """torch's ``_schedule_phases``: (end_step, start key, end key) per phase."""
        total, pct = self.total_steps, self.pct_start
        momentum = self.quantity == "momentum"
        if self.three_phase:
            return [
                (float(pct * total) - 1, *(("max_m", "base_m") if momentum else ("init", "max"))),
                (
                    float(2 * pct * total) - 2,
                    *(("base_m", "max_m") if momentum else ("max", "init")),
                ),
                (total - 1, *(("max_m", "max_m") if momentum else ("init", "min"))),
            ]
        return [
            (float(pct * total) - 1, *(("max_m", "base_m") if momentum else ("init", "max"))),
            (total - 1, *(("base_m", "max_m") if momentum else ("max", "min"))),
        ]

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("onecycle", steps)
        initial = self.max_lr / self.div_factor
        levels = {
            "init": initial,
            "max": self.max_lr,
            "min": initial / self.final_div_factor,
            "max_m": self.max_momentum,
            "base_m": self.base_momentum,
        }
        # torch's step i goes to the first phase with i <= end_step (the last phase takes the
        # rest); phases are contiguous runs of i, so each is a slice.
        index = _index(min(steps, self.total_steps))
        result = np.empty(steps, dtype=np.float64)
        start_step, first = 0.0, 0
        phases = self._phases()
        for number, (end_step, start_key, end_key) in enumerate(phases):
            if number == len(phases) - 1:
                stop = index.size
            else:
                stop = max(first, int(np.searchsorted(index, end_step, side="right")))
            pct = (index[first:stop] - start_step) / (end_step - start_step)
            result[first:stop] = _anneal(
                levels[start_key], levels[end_key], pct, self.anneal_strategy
            )
            start_step, first = end_step, stop
        result[index.size :] = result[index.size - 1] if index.size else 0.0
        return result

    def describe(self) -> str:
        return _describe("onecycle", self)


@dataclass(frozen=True)
class Cyclic:
    """Cyclical learning rates (Smith 2017) exactly as torch ``CyclicLR`` computes them.

    Absolute. With ``c = floor(1 + i / (up + down))`` and ``x = 1 + i/(up + down) - c``,
    the scale is ``x / r`` on the way up (``x <= r``, ``r = up / (up + down)``) and
    ``(x - 1) / (r - 1)`` on the way down; ``lr = base_lr + (max_lr - base_lr) * scale * f`` and
    ``momentum = max_momentum - (max_momentum - base_momentum) * scale * f`` with
    ``f = 1`` (``triangular``), ``1 / 2**(c - 1)`` (``triangular2``) or ``gamma**i``
    (``exp_range``). ``quantity`` chooses which of the two ``values`` returns.
    """

    base_lr: float
    max_lr: float
    step_size_up: int
    step_size_down: int | None = None
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: float = 1.0
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    cycle_momentum: bool = True
    quantity: Quantity = "lr"
    absolute: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        kind = "cyclic"
        _set(self, "base_lr", _number(kind, "base_lr", self.base_lr, minimum=0))
        _set(self, "max_lr", _number(kind, "max_lr", self.max_lr, minimum=0))
        _set(self, "step_size_up", _whole(kind, "step_size_up", self.step_size_up, 1))
        if self.step_size_down is not None:
            down = _whole(kind, "step_size_down", self.step_size_down, 1)
            _set(self, "step_size_down", down)
        _choice(kind, "mode", self.mode, ("triangular", "triangular2", "exp_range"))
        _set(self, "gamma", _number(kind, "gamma", self.gamma, minimum=0))
        _set(self, "base_momentum", _number(kind, "base_momentum", self.base_momentum, minimum=0))
        _set(self, "max_momentum", _number(kind, "max_momentum", self.max_momentum, minimum=0))
        _flag(kind, "cycle_momentum", self.cycle_momentum)
        _choice(kind, "quantity", self.quantity, ("lr", "momentum"))
        if self.quantity == "momentum" and not self.cycle_momentum:
            raise ScheduleSpecError(
                "cyclic quantity=momentum needs cycle_momentum=true; with cycle_momentum=false"
                " torch leaves the momentum alone."
            )

    @property
    def momentum_schedule(self) -> Cyclic | None:
        """The momentum torch's ``CyclicLR`` sets with these settings (None if not cycled)."""
        return dataclasses.replace(self, quantity="momentum") if self.cycle_momentum else None

    def values(self, base: float, steps: int) -> FloatArray:
        index = _index(_steps("cyclic", steps))
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total = up + down
        ratio = up / total
        cycle = np.floor(1 + index / total)
        x = 1.0 + index / total - cycle
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if self.mode == "triangular":
            factor = np.ones_like(index)
        elif self.mode == "triangular2":
            factor = 1 / (2.0 ** (cycle - 1))
        else:
            factor = _powers(self.gamma, index.size)
        if self.quantity == "momentum":
            return self.max_momentum - (self.max_momentum - self.base_momentum) * scale * factor
        return self.base_lr + (self.max_lr - self.base_lr) * scale * factor

    def describe(self) -> str:
        return _describe("cyclic", self)


# --------------------------------------------------------------------------- Keras, Torch7
@dataclass(frozen=True)
class InverseTime:
    """``base / (1 + decay * i)``: Keras' legacy ``decay`` and Torch7's ``learningRateDecay``.

    Both count the updates already made (``iterations`` / ``evalCounter``), so ``i`` is the
    0-based index and the first step uses the base value.
    """

    decay: float
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "decay", _number("inverse_time", "decay", self.decay, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        return float(base) / (1.0 + self.decay * _index(_steps("inverse_time", steps)))

    def describe(self) -> str:
        return _describe("inverse_time", self)


# --------------------------------------------------------------------------- Caffe
# Caffe's SGDSolver::GetLearningRate, with ``iter`` = index i (the 0-based iteration being
# taken). Caffe computes in the net's Dtype (usually float32); these are float64.


@dataclass(frozen=True)
class CaffeFixed:
    """Caffe ``lr_policy: "fixed"``: ``base_lr``."""

    absolute: bool = field(default=False, init=False)

    def values(self, base: float, steps: int) -> FloatArray:
        return np.full(_steps("caffe", steps), float(base), dtype=np.float64)

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "fixed"})


@dataclass(frozen=True)
class CaffeStep:
    """Caffe ``lr_policy: "step"``: ``base_lr * gamma ^ floor(iter / stepsize)``."""

    gamma: float
    stepsize: int
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("caffe step", "gamma", self.gamma, minimum=0))
        _set(self, "stepsize", _whole("caffe step", "stepsize", self.stepsize, 1))

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("caffe", steps)
        count = -(-steps // self.stepsize)
        levels = float(base) * _powers(self.gamma, count)
        return _piecewise(levels, np.arange(count) * self.stepsize, steps)

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "step"})


@dataclass(frozen=True)
class CaffeExp:
    """Caffe ``lr_policy: "exp"``: ``base_lr * gamma ^ iter``."""

    gamma: float
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("caffe exp", "gamma", self.gamma, minimum=0))

    def values(self, base: float, steps: int) -> FloatArray:
        return float(base) * _powers(self.gamma, _steps("caffe", steps))

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "exp"})


@dataclass(frozen=True)
class CaffeInv:
    """Caffe ``lr_policy: "inv"``: ``base_lr * (1 + gamma * iter) ^ (-power)``."""

    gamma: float
    power: float
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("caffe inv", "gamma", self.gamma, minimum=0))
        _set(self, "power", _number("caffe inv", "power", self.power))

    def values(self, base: float, steps: int) -> FloatArray:
        index = _index(_steps("caffe", steps))
        return float(base) * np.power(1.0 + self.gamma * index, -self.power)

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "inv"})


@dataclass(frozen=True)
class CaffeMultiStep:
    """Caffe ``lr_policy: "multistep"``: ``base_lr * gamma ^ current_step``.

    Caffe advances ``current_step`` by at most one per iteration, when ``iter >=
    stepvalue[current_step]``. So the ``j``-th decay happens at iteration
    ``a_j = max(stepvalue_j, a_{j-1} + 1)``: a stepvalue listed twice decays on two
    consecutive iterations, unlike torch's ``MultiStepLR`` which decays twice at once.
    """

    gamma: float
    stepvalue: tuple[int, ...]
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("caffe multistep", "gamma", self.gamma, minimum=0))
        _set(self, "stepvalue", _boundaries("caffe multistep", "stepvalue", self.stepvalue))

    def decay_iterations(self) -> np.ndarray:
        """The iteration at which each decay takes effect (``a_j`` above)."""
        offsets = np.arange(len(self.stepvalue))
        # a_j - j = max(s_j - j, a_{j-1} - (j - 1)): a running maximum.
        return offsets + np.maximum.accumulate(np.asarray(self.stepvalue) - offsets)

    def values(self, base: float, steps: int) -> FloatArray:
        levels = float(base) * _powers(self.gamma, len(self.stepvalue) + 1)
        return _piecewise(levels, (0, *self.decay_iterations()), _steps("caffe", steps))

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "multistep"})


@dataclass(frozen=True)
class CaffePoly:
    """Caffe ``lr_policy: "poly"``: ``base_lr * (1 - iter / max_iter) ^ power``.

    Caffe stops training at ``max_iter``; past it these values stay 0 (Caffe's formula
    would take a power of a negative number).
    """

    power: float
    max_iter: int
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "power", _number("caffe poly", "power", self.power, minimum=0))
        _set(self, "max_iter", _whole("caffe poly", "max_iter", self.max_iter, 1))

    def values(self, base: float, steps: int) -> FloatArray:
        index = np.minimum(_index(_steps("caffe", steps)), self.max_iter)
        return float(base) * np.power(1.0 - index / self.max_iter, self.power)

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "poly"})


@dataclass(frozen=True)
class CaffeSigmoid:
    """Caffe ``lr_policy: "sigmoid"``: ``base_lr / (1 + exp(-gamma * (iter - stepsize)))``.

    A negative ``gamma`` decays (the usual use), a positive one ramps up.
    """

    gamma: float
    stepsize: int
    absolute: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _set(self, "gamma", _number("caffe sigmoid", "gamma", self.gamma))
        _set(self, "stepsize", _whole("caffe sigmoid", "stepsize", self.stepsize, 1))

    def values(self, base: float, steps: int) -> FloatArray:
        index = _index(_steps("caffe", steps))
        with np.errstate(over="ignore"):
            return float(base) / (1.0 + np.exp(-self.gamma * (index - self.stepsize)))

    def describe(self) -> str:
        return _describe("caffe", self, lead={"policy": "sigmoid"})


# --------------------------------------------------------------------------- momentum
@dataclass(frozen=True)
class SutskeverMomentum:
    """The momentum schedule of Sutskever et al. (2013), eq. (5):

    .. math:: \\mu_t = \\min(1 - 2^{-1 - \\log_2(\\lfloor t / 250 \\rfloor + 1)}, \\mu_{max})
              = \\min\\left(1 - \\frac{1}{2(\\lfloor t / 250 \\rfloor + 1)}, \\mu_{max}\\right)

    ``t`` is the number of updates already made, i.e. the 0-based index ``i`` (the same
    ``iter`` as Caffe's policies): steps 1..250 use 0.5, steps 251..500 use 0.75, then
    0.8333..., 0.875, and 0.9 from step 1001 (index 1000) on, capped at ``mu_max``
    (the paper tries 0.999, 0.995, 0.99, 0.9 and 0). ``period`` is the paper's 250.
    Absolute: the base momentum is ignored.
    """

    mu_max: float = 0.999
    period: int = 250
    absolute: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        mu_max = _number("sutskever", "mu_max", self.mu_max, minimum=0)
        if mu_max >= 1:
            raise ScheduleSpecError(f"sutskever mu_max must be in [0, 1), got {self.mu_max!r}.")
        _set(self, "mu_max", mu_max)
        _set(self, "period", _whole("sutskever", "period", self.period, 1))

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("sutskever", steps)
        count = -(-steps // self.period)
        levels = np.minimum(1.0 - 1.0 / (2.0 * (_index(count) + 1)), self.mu_max)
        return _piecewise(levels, np.arange(count) * self.period, steps)

    def describe(self) -> str:
        return _describe("sutskever", self)


# --------------------------------------------------------------------------- units
@dataclass(frozen=True)
class PerEpoch:
    """A schedule counted in epochs of ``every`` optimizer steps.

    The value at step index ``i`` is ``schedule``'s value at index ``floor(i / every)``:
    a torch scheduler stepped once per epoch of ``every`` batches. Written ``every=N`` in
    a SPEC (``multistep:milestones=30/60/90,every=391``). Nested units multiply:
    ``PerEpoch(PerEpoch(s, a), b) == PerEpoch(s, a * b)``.
    """

    schedule: Schedule
    every: int

    def __post_init__(self) -> None:
        _set(self, "every", _whole("every", "", self.every, 1))
        if not isinstance(self.schedule, Schedule):
            raise ScheduleSpecError(f"every needs a schedule, got {self.schedule!r}.")
        if isinstance(self.schedule, PerEpoch):
            # Epochs of epochs: floor(floor(i / a) / b) = floor(i / (a * b)).
            _set(self, "every", self.every * self.schedule.every)
            _set(self, "schedule", self.schedule.schedule)

    @property
    def absolute(self) -> bool:
        return self.schedule.absolute

    def values(self, base: float, steps: int) -> FloatArray:
        steps = _steps("every", steps)
        epochs = -(-steps // self.every)
        per_epoch = self.schedule.values(base, epochs)
        return _piecewise(per_epoch, np.arange(epochs) * self.every, steps)

    def describe(self) -> str:
        head, plus, tail = self.schedule.describe().partition("+")
        if head.startswith("file:"):
            return f"{head},every={self.every}"
        return f"{head}{',' if ':' in head else ':'}every={self.every}{plus}{tail}"


def momentum_schedule_for(schedule: Schedule) -> Schedule | None:
    """The momentum schedule that ``schedule`` imposes, or None if it leaves momentum alone.

    torch's ``OneCycleLR`` and ``CyclicLR`` (with ``cycle_momentum=True``, the default)
    overwrite ``group["momentum"]`` on every step; a recipe that uses them has this
    absolute momentum schedule whatever momentum it states. Wrappers pass it through:
    :class:`PerEpoch` repeats it per epoch, and :class:`Warmup` holds its first value
    during the warmup (what ``SequentialLR([LinearLR, OneCycleLR])`` leaves in the
    optimizer) and then shifts it like the learning rate.
    """
    if isinstance(schedule, OneCycle | Cyclic):
        return schedule.momentum_schedule
    if isinstance(schedule, PerEpoch):
        inner = momentum_schedule_for(schedule.schedule)
        return None if inner is None else PerEpoch(inner, schedule.every)
    if isinstance(schedule, Warmup):
        inner = momentum_schedule_for(schedule.then)
        return None if inner is None else Warmup(schedule.steps, inner, start_factor=1.0)
    return None
