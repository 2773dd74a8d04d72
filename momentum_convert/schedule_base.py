"""The one type every schedule shares: a rule ``step -> value``.

A schedule maps the optimizer step ``t = 1, 2, ...`` to the value (learning rate or
momentum) that the optimizer *uses* at that step. ``values(base, steps)`` returns the
whole sequence as a float64 array, where index ``i`` holds the value used at step
``i + 1``; this is the array every conversion works on.

Most schedules are *relative*: they scale or move a base value that the recipe gives
(``--lr 0.1`` with ``multistep:milestones=30/60,gamma=0.1``). A schedule whose values do
not depend on the base (``file:lrs.json``, OneCycle's ``max_lr``) says so with
``absolute = True``; a recipe may then omit its base learning rate.

Index conventions (docs/reference.md, "Scheduler timing"): index ``i`` is PyTorch's
``scheduler.last_epoch`` after ``i`` calls to ``scheduler.step()`` and Caffe's / Keras'
0-based ``iter``. A PyTorch scheduler stepped once per epoch corresponds to a schedule
whose unit is an epoch; :class:`PerStep` and the ``every=`` option of the SPEC grammar
map epochs to optimizer steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from momentum_convert.errors import ScheduleSpecError

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class Schedule(Protocol):
    """A ``step -> value`` rule, evaluated for many steps at once."""

    @property
    def absolute(self) -> bool:
        """True when ``values`` ignores ``base`` (the schedule carries absolute values)."""
        ...

    def values(self, base: float, steps: int) -> FloatArray:
        """Return the values used at steps ``1..steps`` (index ``i`` is step ``i + 1``)."""
        ...

    def describe(self) -> str:
        """Return the schedule as a SPEC string that parses back to an equal schedule."""
        ...


@dataclass(frozen=True)
class Constant:
    """The base value at every step: ``value[t] = base``."""

    absolute: bool = field(default=False, init=False)

    def values(self, base: float, steps: int) -> FloatArray:
        return np.full(steps, float(base), dtype=np.float64)

    def describe(self) -> str:
        return "constant"


@dataclass(frozen=True)
class PerStep:
    """Absolute values given step by step (a recorded run, or ``file:PATH``).

    Asking for more steps than were given repeats the last value, which is what an
    optimizer does when nobody changes its learning rate any more.
    """

    per_step: tuple[float, ...]
    source: str = "values"
    absolute: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if len(self.per_step) == 0:
            raise ScheduleSpecError(f"{self.source} holds no values; give at least one number.")
        array = np.asarray(self.per_step, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise ScheduleSpecError(
                f"{self.source} has the non-finite value {array[bad[0]]!r} at step {bad[0] + 1};"
                " every value must be a finite number."
            )

    @classmethod
    def of(cls, values: Sequence[float] | FloatArray, source: str = "values") -> PerStep:
        return cls(tuple(float(v) for v in np.asarray(values, dtype=np.float64).ravel()), source)

    def values(self, base: float, steps: int) -> FloatArray:
        given = np.asarray(self.per_step, dtype=np.float64)
        if steps <= given.size:
            return given[:steps].copy()
        return np.concatenate([given, np.full(steps - given.size, given[-1])])

    def describe(self) -> str:
        return f"file:{self.source}" if self.source != "values" else "per-step values"
