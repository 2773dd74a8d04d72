"""The report's caveats: an optimum at the edge of the search space, and two-seed intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from sweeps.report.caveats import edge_position, with_caveats
from sweeps.report.data import build_report_data
from tests.sweeps.report.test_data import run


@pytest.mark.parametrize(
    ("distribution", "value", "expected"),
    [
        # log scale: log(0.48/0.02)/log(0.5/0.02) = 0.987 -> upper; 0.3: 0.841 -> not
        ({"low": 0.02, "high": 0.5, "log": True}, 0.48, ("upper", 0.5)),
        ({"low": 0.02, "high": 0.5, "log": True}, 0.3, None),
        # log(0.023/0.02)/log(25) = 0.043 -> lower, although linearly it is 0.6% of the width
        ({"low": 0.02, "high": 0.5, "log": True}, 0.023, ("lower", 0.02)),
        # linear: (0.9445-0.8)/0.15 = 0.963 -> upper; (0.94-0.8)/0.15 = 0.933 -> not
        ({"low": 0.8, "high": 0.95}, 0.9445, ("upper", 0.95)),
        ({"low": 0.8, "high": 0.95}, 0.94, None),
        # linear, where log would say otherwise: (0.1-0.02)/0.48 = 0.167 -> not at the edge
        ({"low": 0.02, "high": 0.5}, 0.1, None),
        (0.1, 0.1, None),  # a fixed value is no range
        ({"choices": [1, 2]}, 2, None),
    ],
)
def test_edge_of_the_search_space_is_5_percent_in_the_parameters_scale(
    distribution: object, value: float, expected: tuple[str, float] | None
) -> None:
    assert edge_position(distribution, value) == expected


def sweep(seeds: int, lr: float) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        rows.append(run(0, "source", "pytorch", seed, 1.0 + seed, hp_lr=lr,
                        hp_schedule="plateau", hp_schedule_params={"factor": 0.5}))  # fmt: skip
        rows.append(run(0, "naive", "sutskever", seed, 2.0 + seed, hp_lr=lr,
                        hp_schedule="plateau", hp_schedule_params={"factor": 0.5}))  # fmt: skip
    return pd.DataFrame(rows)


SPEC = {
    "search_space": {
        "lr": {"low": 0.02, "high": 0.5, "log": True},
        "momentum": 0.9,
        "schedule": {"plateau": {"factor": {"low": 0.1, "high": 0.52, "log": False}}},
    }
}


def test_an_optimum_at_a_bound_is_flagged_with_advice_to_widen_the_range() -> None:
    data = with_caveats(build_report_data(sweep(3, lr=0.49), sweep="s"), SPEC)
    lines = [line for line in data.conclusion if "widen" in line]
    assert any(
        "has lr = 0.49, within 5% (log scale) of the upper bound 0.5" in line
        and line.endswith("widen search_space.lr.")
        for line in lines
    )
    # factor 0.5 in [0.1, 0.52]: (0.5-0.1)/0.42 = 0.952 -> the upper edge of the family range
    assert any(line.endswith("widen search_space.schedule.plateau.factor.") for line in lines)
    inside = with_caveats(build_report_data(sweep(3, lr=0.1), sweep="s"), {"search_space": {
        "lr": {"low": 0.02, "high": 0.5, "log": True}}})  # fmt: skip
    assert not [line for line in inside.conclusion if "widen" in line]


def test_intervals_from_two_seeds_carry_a_warning_and_three_seeds_do_not() -> None:
    two = with_caveats(build_report_data(sweep(2, lr=0.1), sweep="s"), {})
    assert two.conclusion[0].startswith("Warning: the intervals of plateau (PyTorch SGD")
    assert "± 12.7 standard errors: too wide to conclude" in two.conclusion[0]
    three = with_caveats(build_report_data(sweep(3, lr=0.1), sweep="s"), {})
    assert not any(line.startswith("Warning") for line in three.conclusion)
