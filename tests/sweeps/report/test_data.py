"""The report's statistics on small hand-written frames whose answers are known.

The reference numbers come from published tables and definitions, not from the code:
Student's t quantile t_{0.975, 2} = 4.302653 (any t table), the sample standard deviation
with n - 1, and the rules written in the module docstring of ``sweeps.report.data``.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sweeps.report.data import (
    Estimate,
    build_report_data,
    finished_runs,
    summary_frame,
    within_seed_noise,
)

T_975_DF2 = 4.302653  # Student's t, two-sided 95%, 2 degrees of freedom (t tables)


def run(trial: int, role: str, optimizer: str, seed: int, value: float, **extra: object) -> dict:
    row = {
        "sweep": "s",
        "trial": trial,
        "optimizer": optimizer,
        "role": role,
        "seed": seed,
        "attempt": 1,
        "state": "COMPLETE",
        "value": value,
        "schedule": "constant",
        "verdict": "exact" if role == "converted" else None,
        "hp_lr": 0.1,
        "hp_momentum": 0.9,
        "hp_schedule": "constant",
    }
    row.update(extra)
    return row


def test_estimate_is_mean_with_student_t_interval() -> None:
    estimate = Estimate(values=(1.0, 2.0, 3.0), seeds=(0, 1, 2))
    assert estimate.mean == pytest.approx(2.0)
    # s = 1, n = 3: half width = t_{0.975,2} * 1 / sqrt(3)
    assert estimate.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-6)
    assert (estimate.low, estimate.high) == pytest.approx(
        (2 - T_975_DF2 / math.sqrt(3), 2 + T_975_DF2 / math.sqrt(3)), rel=1e-6
    )


def test_estimate_of_one_seed_or_a_diverged_seed_has_no_interval() -> None:
    assert math.isnan(Estimate(values=(0.5,), seeds=(0,)).half_width)
    diverged = Estimate(values=(0.5, math.inf), seeds=(0, 1))
    assert diverged.mean == math.inf
    assert math.isnan(diverged.half_width)


def test_only_the_last_complete_attempt_of_a_run_counts() -> None:
    trials = pd.DataFrame(
        [
            run(0, "source", "pytorch", 0, 9.0, attempt=1),
            run(0, "source", "pytorch", 0, 1.0, attempt=2),
            run(0, "source", "pytorch", 1, 5.0, state="FAIL"),
            run(0, "source", "pytorch", 2, math.nan, state="PRUNED"),
        ]
    )
    runs = finished_runs(trials)
    assert runs[["seed", "attempt", "value"]].values.tolist() == [[0, 2, 1.0]]


def test_best_needs_the_most_seeds_so_one_lucky_seed_cannot_win() -> None:
    trials = pd.DataFrame(
        [
            run(0, "source", "pytorch", 0, 0.30),
            run(0, "source", "pytorch", 1, 0.34),
            run(1, "source", "pytorch", 0, 0.01),  # one seed only: the other was pruned
            run(1, "source", "pytorch", 1, math.nan, state="PRUNED"),
        ]
    )
    data = build_report_data(trials, sweep="s")
    best = data.families[0].comparison.best["pytorch"]
    assert (best.trial, best.estimate.mean) == (0, pytest.approx(0.32))


def test_maximize_picks_the_highest_mean_and_diverged_runs_never_win() -> None:
    trials = pd.DataFrame(
        [
            run(0, "source", "pytorch", 0, 0.80),
            run(1, "source", "pytorch", 0, 0.95),
            run(2, "source", "pytorch", 0, -math.inf),
        ]
    )
    data = build_report_data(trials, sweep="s", objective="val_accuracy", direction="maximize")
    assert data.families[0].comparison.best["pytorch"].trial == 1


def test_transfer_gaps_are_target_mean_minus_origin_mean() -> None:
    rows = []
    for seed, (src, naive, conv) in enumerate([(0.30, 0.50, 0.30), (0.32, 0.54, 0.32)]):
        rows += [
            run(4, "source", "pytorch", seed, src),
            run(4, "naive", "sutskever", seed, naive),
            run(4, "converted", "sutskever", seed, conv),
        ]
    data = build_report_data(pd.DataFrame(rows), sweep="s")
    summary = summary_frame(data)
    forward = summary[
        (summary["table"] == "transfer") & (summary["direction"] == "pytorch->sutskever")
    ]
    gaps = dict(zip(forward["role"], forward["gap"], strict=True))
    assert gaps == {"origin": 0.0, "naive": pytest.approx(0.21), "converted": pytest.approx(0.0)}
    assert bool(forward.set_index("role").loc["converted", "within_seed_noise"])
    # the other direction: the best naive (sutskever) config moved back unchanged is the source
    backward = summary[
        (summary["table"] == "transfer") & (summary["direction"] == "sutskever->pytorch")
    ]
    assert dict(zip(backward["role"], backward["gap"], strict=True)) == {
        "origin": 0.0,
        "naive": pytest.approx(-0.21),
    }


@pytest.mark.parametrize(
    ("origin", "other", "expected"),
    [
        ((1.0, 2.0, 3.0), (2.5, 2.5, 2.5), True),  # gap 0.5 < half width 2.48
        ((1.0, 1.1, 0.9), (2.0, 2.1, 1.9), False),  # gap 1.0 > half width 0.248
        ((0.5,), (0.5 + 1e-9,), True),  # one seed: float tolerance
        ((0.5,), (0.51,), False),
    ],
    ids=["inside-interval", "outside-interval", "one-seed-equal", "one-seed-different"],
)
def test_within_seed_noise_uses_the_origin_interval(
    origin: tuple[float, ...], other: tuple[float, ...], expected: bool
) -> None:
    seeds = tuple(range(len(origin)))
    assert within_seed_noise(Estimate(origin, seeds), Estimate(other, seeds)) is expected


def test_conclusion_names_the_flagged_conversion() -> None:
    rows = []
    for seed, (src, conv) in enumerate([(0.30, 0.90), (0.31, 0.91), (0.29, 0.89)]):
        rows += [
            run(0, "source", "pytorch", seed, src),
            run(0, "converted", "sutskever", seed, conv),
        ]
    data = build_report_data(pd.DataFrame(rows), sweep="s")
    assert any("does NOT reproduce the source" in line for line in data.conclusion)


def test_pairing_off_compares_both_sources_and_has_no_transfer() -> None:
    trials = pd.DataFrame(
        [
            run(0, "source", "pytorch", 0, 0.40),
            run(0, "source", "pytorch", 1, 0.42),
            run(1, "source", "sutskever", 0, 0.30),
            run(1, "source", "sutskever", 1, 0.31),
        ]
    )
    family = build_report_data(trials, sweep="s").families[0]
    assert {o: c.trial for o, c in family.comparison.best.items()} == {
        "pytorch": 0,
        "sutskever": 1,
    }
    assert family.transfers == ()


def test_a_sweep_without_finished_runs_says_so() -> None:
    trials = pd.DataFrame([run(0, "source", "pytorch", 0, math.nan, state="RUNNING")])
    data = build_report_data(trials, sweep="s")
    assert data.families == ()
    assert data.counts == {"RUNNING": 1}
    assert summary_frame(data).empty
    assert "nothing to compare" in data.conclusion[0]
