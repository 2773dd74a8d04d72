"""A member trained inside a population gives the metrics of the same run trained alone.

The reference is :func:`sweeps.training.train_run` on the same planned run (same seed, so
the same initial weights and batch order). The runs come from the real pairing plan, so a
population mixes ``torch.optim.SGD`` and ``SutskeverSGD`` members, exact conversions and
``correct_momentum`` ones, several schedules, weight decay, Nesterov and zero momentum,
with one member that diverges and one that is pruned. Float64 models make the comparison
tight: the stacked model and the single one differ only in the order of rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from sweeps.errors import SweepUsageError
from sweeps.pairing import PlannedRun, plan_runs
from sweeps.population import MemberResult, stackable, train_population
from sweeps.search_space import Configuration
from sweeps.spec import parse_spec
from sweeps.tasks import TaskSetup, UserTask, get_task
from sweeps.training import EpochResult, train_run

RTOL = 1e-9


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Float64Task:
    """A built-in task built in float64 (same name, so it is stackable as the built-in)."""

    inner: Any

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def build(self, *, seed: int, batch_size: int, device: str) -> TaskSetup:
        return self.inner.build(  # type: ignore[no-any-return]
            seed=seed, batch_size=batch_size, device=device, dtype=torch.float64
        )


PAIRED = """
name = "population-equivalence"
task = "{task}"
optimizers = ["pytorch", "sutskever"]
convention = "{convention}"
pairing = true
seeds = [3, 4]
n_trials = 1
[search_space]
lr = 0.1
momentum = 0.9
batch_size = {batch_size}
epochs = 3
"""

SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"milestones_epochs": (1, 2), "gamma": 0.1},
    "cosine": {"eta_min": 0.0},
    "warmup_cosine": {"warmup_epochs": 1, "start_factor": 0.01, "eta_min": 0.0},
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
}


def configuration(
    schedule: str,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    epochs: int = 3,
) -> Configuration:
    return Configuration(
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        schedule=schedule,
        batch_size=batch_size,
        epochs=epochs,
        schedule_params=SCHEDULES[schedule],
    )


def planned(
    task: Any, configurations: list[Configuration], convention: str = "pytorch"
) -> list[PlannedRun]:
    """Every trainable run the pairing plan makes of ``configurations``, seeds 3 and 4."""
    batch_size = configurations[0].batch_size
    spec = parse_spec(PAIRED.format(task=task.name, convention=convention, batch_size=batch_size))
    steps = task.build(seed=0, batch_size=batch_size, device="cpu").steps_per_epoch
    return [r for c in configurations for r in plan_runs(spec, c, steps) if r.trainable]


def alone(task: Any, run: PlannedRun, prune_after: int | None = None) -> tuple[list[dict], Any]:
    """The per-epoch metrics and outcome (or exception) of ``run`` trained by itself."""
    metrics: list[dict[str, float]] = []

    def on_epoch(result: EpochResult) -> None:
        metrics.append(result.metrics)
        if prune_after is not None and result.epoch == prune_after:
            raise optuna.TrialPruned

    try:
        return metrics, train_run(task, run, on_epoch=on_epoch)
    except optuna.TrialPruned as exc:
        return metrics, exc


def together(
    task: Any, runs: list[PlannedRun], prune: Mapping[int, int] | None = None
) -> tuple[dict[int, list[dict]], list[MemberResult]]:
    """Per-member metrics and results of ``runs`` trained as one population."""
    prune = prune or {}
    metrics: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(runs))}

    def on_epoch(member: int, result: EpochResult) -> None:
        metrics[member].append(result.metrics)
        if prune.get(member) == result.epoch:
            raise optuna.TrialPruned

    return metrics, train_population(task, runs, on_epoch=on_epoch)


def assert_same_metrics(expected: list[dict], got: list[dict], rtol: float = RTOL) -> None:
    assert len(got) == len(expected)
    for epoch, (want, have) in enumerate(zip(expected, got, strict=True), start=1):
        assert have.keys() == want.keys()
        for key, value in want.items():
            assert have[key] == pytest.approx(value, rel=rtol, abs=1e-12), (epoch, key)


def check_against_runs_alone(
    task: Any, runs: list[PlannedRun], pruned_member: int | None, pruned_epoch: int
) -> list[MemberResult]:
    """Train ``runs`` together (pruning one member) and compare each with it trained alone."""
    prune = {pruned_member: pruned_epoch} if pruned_member is not None else {}
    metrics, results = together(task, runs, prune=prune)
    for i, run in enumerate(runs):
        prune_after = pruned_epoch if i == pruned_member else None
        expected, outcome = alone(task, run, prune_after)
        assert_same_metrics(expected, metrics[i])
        result = results[i]
        assert result.run is run
        if isinstance(outcome, optuna.TrialPruned):
            assert isinstance(result.error, optuna.TrialPruned)
            assert result.outcome is None
            assert result.epochs == pruned_epoch
            continue
        assert result.error is None
        assert result.outcome is not None
        assert result.outcome.diverged_at_step == outcome.diverged_at_step
        assert result.outcome.epochs == outcome.epochs
        if outcome.diverged_at_step is None:
            assert result.outcome.value == pytest.approx(outcome.value, rel=RTOL)
        else:
            assert result.outcome.value == math.inf
    return results


def test_digits_mlp_members_match_runs_trained_alone_with_a_pruned_member() -> None:
    task = Float64Task(get_task("digits-mlp"))
    runs = planned(
        task,
        [
            configuration("step", weight_decay=1e-3),
            configuration("cosine", lr=0.05, momentum=0.8, nesterov=True),
            configuration("warmup_cosine", nesterov=True),
            configuration("onecycle", lr=0.3, momentum=0.0),
        ],
    )
    families = {(r.optimizer, r.correct_like) for r in runs}
    assert families == {("pytorch", None), ("sutskever", None), ("sutskever", "pytorch")}
    check_against_runs_alone(task, runs, pruned_member=4, pruned_epoch=2)


@pytest.mark.parametrize("name", ["nqm", "regression"])
def test_nqm_and_regression_members_match_runs_alone_with_a_diverged_and_a_pruned_member(
    name: str,
) -> None:
    task = Float64Task(get_task(name))
    runs = planned(
        task,
        [
            configuration("step", lr=0.1, momentum=0.9, batch_size=64),
            configuration("cosine", lr=0.2, momentum=0.5, nesterov=True, batch_size=64),
            configuration("constant", lr=0.1, momentum=0.0, weight_decay=1e-2, batch_size=64),
        ],
        convention="sutskever",
    )
    assert {r.optimizer for r in runs} == {"pytorch", "sutskever"}
    diverging = planned(task, [configuration("constant", lr=1e9, batch_size=64)], "sutskever")
    runs.insert(2, diverging[0])
    results = check_against_runs_alone(task, runs, pruned_member=4, pruned_epoch=1)
    diverged = results[2].outcome
    assert diverged is not None
    assert diverged.diverged_at_step is not None
    assert all(r.outcome is not None for i, r in enumerate(results) if i != 4)


def test_digits_cnn_members_match_runs_trained_alone() -> None:
    task = Float64Task(get_task("digits-cnn"))
    config = configuration("step", lr=0.05, batch_size=512, epochs=2)
    spec = parse_spec(PAIRED.format(task=task.name, convention="pytorch", batch_size=512))
    runs = [r for r in plan_runs(spec, config, 3) if r.seed == 3]
    metrics, _ = together(task, runs, {})
    for i, run in enumerate(runs):
        expected, _ = alone(task, run)
        assert_same_metrics(expected, metrics[i])


def test_float32_members_match_runs_trained_alone_to_float32_tolerance() -> None:
    task = get_task("digits-mlp")
    runs = planned(task, [configuration("step", epochs=2), configuration("cosine", epochs=2)])
    metrics, _ = together(task, runs)
    for i, run in enumerate(runs):
        expected, _ = alone(task, run)
        assert_same_metrics(expected, metrics[i], rtol=1e-4)


def test_members_with_fewer_epochs_finish_early_and_the_others_continue() -> None:
    task = Float64Task(get_task("regression"))
    runs = planned(task, [configuration("constant", batch_size=256)])[:2]
    results = train_population(task, runs, epochs=[1, 3])
    assert [r.epochs for r in results] == [1, 3]
    _, outcome = alone(task, runs[1])
    assert results[1].outcome is not None
    assert results[1].outcome.value == pytest.approx(outcome.value, rel=RTOL)


def test_population_epoch_callback_gets_every_reporting_member_at_once() -> None:
    task = Float64Task(get_task("regression"))
    runs = planned(task, [configuration("constant", batch_size=256)])
    batches: list[list[int]] = []
    train_population(
        task, runs, epochs=2, on_population_epoch=lambda results: batches.append(sorted(results))
    )
    assert batches == [list(range(len(runs)))] * 2


def test_a_user_task_that_does_not_declare_a_stackable_model_is_refused() -> None:
    def user_task(*, seed: int, batch_size: int, device: str) -> TaskSetup:
        return get_task("regression").build(seed=seed, batch_size=batch_size, device=device)

    run = planned(get_task("regression"), [configuration("constant", batch_size=256)])[0]
    with pytest.raises(SweepUsageError, match=r"declared that its model can be stacked"):
        train_population(UserTask("mine:user_task", user_task), [run], epochs=1)
    result = train_population(UserTask("mine:user_task", stackable(user_task)), [run], epochs=1)
    assert result[0].outcome is not None
    assert math.isfinite(result[0].outcome.value)


def test_runs_with_different_batch_sizes_are_refused() -> None:
    task = get_task("regression")
    runs = planned(task, [configuration("constant", batch_size=256)])[:1]
    runs += planned(task, [configuration("constant", batch_size=128)])[:1]
    with pytest.raises(SweepUsageError, match=r"one batch size, got \[128, 256\]"):
        train_population(task, runs, epochs=1)


def test_an_untrainable_run_is_refused() -> None:
    run = planned(get_task("regression"), [configuration("constant", batch_size=256)])[0]
    impossible = PlannedRun(
        **{**run.__dict__, "verdict": "impossible", "notes": ("lr reaches zero",)}
    )
    with pytest.raises(SweepUsageError, match="conversion impossible: lr reaches zero"):
        train_population(get_task("regression"), [impossible], epochs=1)


def test_member_order_and_count_do_not_change_a_members_metrics() -> None:
    task = Float64Task(get_task("digits-mlp"))
    runs = planned(task, [configuration("step", epochs=1)])
    forward, _ = together(task, runs)
    backward, _ = together(task, runs[::-1])
    single, _ = together(task, runs[:1])
    last = len(runs) - 1
    assert_same_metrics(forward[0], backward[last])
    assert_same_metrics(forward[0], single[0])
    assert np.isfinite(forward[0][0]["val_loss"])
