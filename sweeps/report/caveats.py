r"""Warnings the report prints before its conclusion: what its numbers cannot say.

- *Optimum at the edge of the search space.* When a best configuration's value of a
  searched range lies within 5% of one of its bounds (in the log scale for a ``log = true``
  range), the true optimum may lie beyond it; the report says which parameter and which
  bound, and advises to widen the range.
- *Intervals from two seeds.* A 95% Student-t interval from two seeds is
  :math:`\bar x \pm t_{0.975,1}\, s/\sqrt 2` with :math:`t_{0.975,1} = 12.71`: too wide to
  conclude anything; the report says so wherever the best configurations rest on two seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pandas as pd
from scipy import stats

from sweeps.report.data import CONFIDENCE, OPTIMIZER_NAMES, Configuration, ReportData

#: An optimum within this fraction of a range's width from a bound sits "at the edge".
EDGE_FRACTION = 0.05


def with_caveats(data: ReportData, spec: Mapping[str, Any]) -> ReportData:
    """``data`` with the caveats put in front of its conclusion."""
    lines = [*two_seed_warnings(data), *edge_warnings(data, spec)]
    return replace(data, conclusion=(*lines, *data.conclusion))


def two_seed_warnings(data: ReportData) -> list[str]:
    """One sentence when any best configuration's interval comes from two seeds."""
    two = [
        f"{family.schedule_family} ({OPTIMIZER_NAMES.get(o, o)})"
        for family in data.families
        for o, best in sorted(family.comparison.best.items())
        if best.estimate.n == 2
    ]
    if not two:
        return []
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=1))
    return [
        f"Warning: the intervals of {', '.join(two)} come from two seeds, where the 95%"
        f" interval is ± {t:.1f} standard errors: too wide to conclude anything; run at least"
        " 3 seeds (5 is better) before drawing a conclusion."
    ]


def edge_position(distribution: object, value: object) -> tuple[str, float] | None:
    """``("lower"|"upper", bound)`` when ``value`` is within 5% of a range's bound."""
    if not isinstance(distribution, Mapping) or not {"low", "high"} <= distribution.keys():
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    low, high = float(distribution["low"]), float(distribution["high"])
    log = bool(distribution.get("log", False))
    if high <= low or (log and (low <= 0 or value <= 0)):
        return None
    if log:
        position = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    else:
        position = (float(value) - low) / (high - low)
    if position <= EDGE_FRACTION:
        return "lower", low
    if position >= 1 - EDGE_FRACTION:
        return "upper", high
    return None


def edge_warnings(data: ReportData, spec: Mapping[str, Any]) -> list[str]:
    """One sentence per searched parameter whose best value sits at a bound of its range."""
    space = spec.get("search_space") or {}
    out = []
    for family in data.families:
        for optimizer, best in sorted(family.comparison.best.items()):
            row = _row(data.runs, best)
            if row is None:
                continue
            checks: list[tuple[str, object, object]] = [
                (f"search_space.{name}", distribution, row.get(f"hp_{name}"))
                for name, distribution in space.items()
                if name != "schedule"
            ]
            schedule_space = (space.get("schedule") or {}).get(family.schedule_family) or {}
            params = row.get("hp_schedule_params")
            params = params if isinstance(params, Mapping) else {}
            checks += [
                (f"search_space.schedule.{family.schedule_family}.{key}", d, params.get(key))
                for key, d in schedule_space.items()
            ]
            for path, distribution, value in checks:
                edge = edge_position(distribution, value)
                if edge is None:
                    continue
                side, bound = edge
                scale = "log" if distribution.get("log") else "linear"  # type: ignore[union-attr]
                name = OPTIMIZER_NAMES.get(optimizer, optimizer)
                out.append(
                    f"{family.schedule_family}: the best {name}"
                    f" configuration (trial {best.trial}) has {path.split('.')[-1]} = {value:.4g},"
                    f" within 5% ({scale} scale) of the {side} bound {bound:g} of the search"
                    f" space: the optimum may lie beyond it; widen {path}."
                )
    return out


def _row(runs: pd.DataFrame, best: Configuration) -> dict[str, Any] | None:
    rows = runs[
        (runs["trial"] == best.trial)
        & (runs["role"] == best.role)
        & (runs["optimizer"] == best.optimizer)
    ]
    return None if rows.empty else dict(rows.iloc[0])
