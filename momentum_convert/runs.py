"""Per-step arrays as runs of equal values: how a million steps are shown to a person.

``runs(lr, momentum)`` returns ``(first_step, last_step, values)`` for every stretch of
steps where all the arrays keep the same values, so "steps 1-29: lr 0.01, momentum 0.9;
step 30: lr 0.001, momentum 9.0" replaces thirty lines (or a million).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from momentum_convert.schedule_base import FloatArray


class Run(NamedTuple):
    """Steps ``first..last`` (1-based, inclusive) all use ``values``."""

    first: int
    last: int
    values: tuple[float, ...]


def change_steps(*arrays: FloatArray) -> np.ndarray:
    """The 1-based steps where any array takes a new value (always including step 1)."""
    n = arrays[0].size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    changed = np.zeros(n - 1, dtype=bool)
    for array in arrays:
        a, b = array[1:], array[:-1]
        changed |= (a != b) & ~(np.isnan(a) & np.isnan(b))
    return np.concatenate([[1], np.flatnonzero(changed) + 2])


def runs(*arrays: FloatArray) -> list[Run]:
    """The arrays (index ``i`` is step ``i + 1``) as runs of steps with equal values."""
    n = arrays[0].size
    starts = change_steps(*arrays)
    ends = np.append(starts[1:] - 1, n)
    return [
        Run(int(s), int(e), tuple(float(a[s - 1]) for a in arrays))
        for s, e in zip(starts, ends, strict=True)
    ]
