"""What an importer returns: the recipe, its parameter groups, and what the source said that a
recipe cannot hold; and :class:`Evaluated`, a learning rate evaluated step by step by a
framework's own rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from momentum_convert.errors import ScheduleSpecError
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters that a framework trains with their own factors on the recipe's values.

    The momentum map is per group (docs/converter.md, edge cases): a group whose learning rate
    is ``lr_factor`` times the recipe's keeps the recipe's ratios ``η_t/η_(t-1)``, so the
    converted momentum is the same and only the learning rate is scaled.

    Attributes:
        name: what the framework calls the parameters (``bias``, ``norm``, ``1-D``).
        lr_factor: the group's learning rate divided by the recipe's, at every step.
        weight_decay: the group's weight decay, in the recipe's convention's meaning.
        source: the setting that creates the group (``SOLVER.BIAS_LR_FACTOR: 2.0``).
    """

    name: str
    lr_factor: float
    weight_decay: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lr_factor": self.lr_factor,
            "weight_decay": self.weight_decay,
            "source": self.source,
        }

    def sentence(self) -> str:
        return (
            f"parameter group {self.name!r} ({self.source}): learning rate ×{self.lr_factor:g},"
            f" weight decay {self.weight_decay:g}; convert it with the same momentum and"
            " its own learning rate and weight decay."
        )


@dataclass(frozen=True)
class ImportedRecipe:
    """A recipe read from a framework's file.

    Attributes:
        recipe: the optimizer settings in the source framework's convention (``caffe``,
            ``keras``, ``keras3``, ``tf1``, ``optax``, ``torch7``, ``mxnet``, ``pytorch``),
            with the schedule evaluated at the framework's own step index.
        source: where it came from (a path, or ``"text"``).
        notes: facts the conversion cannot act on but a user must know (``iter_size``,
            per-layer multipliers, ignored fields), one sentence each.
        groups: parameter groups the framework trains with other factors (bias learning
            rate factor, no weight decay on norm layers); the recipe is the default group.
    """

    recipe: Recipe
    source: str
    notes: tuple[str, ...] = field(default=())
    groups: tuple[ParameterGroup, ...] = field(default=())

    def all_notes(self) -> tuple[str, ...]:
        """The notes, then one sentence per parameter group."""
        return (*self.notes, *(group.sentence() for group in self.groups))


@dataclass(frozen=True, eq=False)
class Evaluated:
    """Absolute learning rates per step, computed by a framework's rule (index ``i`` = step
    ``i + 1``), labelled with the rule that made them. Past the end the last value holds."""

    label: str
    per_step: FloatArray
    absolute: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        array = np.asarray(self.per_step, dtype=np.float64)
        if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
            raise ScheduleSpecError(
                f"{self.label}: the learning rate must be finite at every step."
            )
        array.setflags(write=False)
        object.__setattr__(self, "per_step", array)

    def values(self, base: float, steps: int) -> FloatArray:
        given = self.per_step
        if steps <= given.size:
            return given[:steps].copy()
        return np.concatenate([given, np.full(steps - given.size, given[-1])])

    def describe(self) -> str:
        return self.label
