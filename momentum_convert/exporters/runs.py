"""Per-step values as runs ``(value, count)``: how exported code carries a schedule.

A step decay over 64,000 steps is three runs; every exporter writes the runs and
expands them back, so the exported schedule is exactly the converted one (``repr`` of a
float64 reads back bit for bit) and stays short whenever the schedule is piecewise
constant. A smooth schedule (cosine, polynomial) has one run per step.
"""

from __future__ import annotations

import numpy as np

from momentum_convert.schedule_base import FloatArray

Runs = list[tuple[float, int]]


def to_runs(values: FloatArray) -> Runs:
    """Split ``values`` into maximal runs of equal values, in order."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return []
    starts = np.flatnonzero(np.concatenate([[True], array[1:] != array[:-1]]))
    counts = np.diff(np.append(starts, array.size))
    return [(float(array[s]), int(c)) for s, c in zip(starts, counts, strict=True)]


def from_runs(runs: Runs) -> FloatArray:
    """The per-step values that :func:`to_runs` split."""
    if not runs:
        return np.empty(0, dtype=np.float64)
    values, counts = zip(*runs, strict=True)
    return np.repeat(np.asarray(values, dtype=np.float64), np.asarray(counts))


def format_runs(runs: Runs, indent: str = "    ") -> str:
    """A Python list literal of the runs, one per line when there are several."""
    if len(runs) <= 3:
        return "[" + ", ".join(f"({value!r}, {count})" for value, count in runs) + "]"
    body = "".join(f"{indent}({value!r}, {count}),\n" for value, count in runs)
    return "[\n" + body + "]"
