"""One trial: which runs it records, what it tells Optuna, pruning, divergence, retries."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import optuna
import pytest

from sweeps.objective import RUNS_ATTR, SweepObjective
from sweeps.spec import parse_spec
from sweeps.training import RunOutcome, train_run

SPEC = """
name = "objective"
task = "nqm"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = {pairing}
seeds = [0, 1]
pruner = "{pruner}"
n_trials = 4
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
epochs = 3
"""


def make_spec(*, pairing: bool = True, pruner: str = "none"):
    return parse_spec(SPEC.format(pairing=str(pairing).lower(), pruner=pruner))


class ListRecorder:
    """Keeps what the objective records, in order."""

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Any]] = {}
        self.epochs: list[tuple[int, int, dict[str, float]]] = []
        self.failed_attempts: list[tuple[list[int], str]] = []

    def start(self, trial, run, *, schedule, attempt, steps_per_epoch) -> int:
        run_id = len(self.runs) + 1
        self.runs[run_id] = {
            "trial": trial.number,
            "role": run.role,
            "optimizer": run.optimizer,
            "seed": run.seed,
            "attempt": attempt,
            "state": "RUNNING" if run.trainable else "FAIL",
            "failure_reason": run.failure_reason,
            "steps_per_epoch": steps_per_epoch,
        }
        return run_id

    def epoch(self, run_id, result) -> None:
        self.epochs.append((run_id, result.epoch, dict(result.metrics)))

    def finish(self, run_id, *, state, value=None, failure_reason=None, diverged_at_step=None):
        self.runs[run_id].update(
            state=state, value=value, failure_reason=failure_reason, diverged=diverged_at_step
        )

    def fail_attempts(self, trial_numbers, reason) -> None:
        self.failed_attempts.append((list(trial_numbers), reason))


def test_paired_trial_records_source_naive_and_converted_runs_for_every_seed():
    recorder = ListRecorder()
    objective = SweepObjective(make_spec(), recorder)
    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    runs = list(recorder.runs.values())
    assert sorted((r["role"], r["optimizer"], r["seed"]) for r in runs) == [
        ("converted", "sutskever", 0),
        ("converted", "sutskever", 1),
        ("naive", "sutskever", 0),
        ("naive", "sutskever", 1),
        ("source", "pytorch", 0),
        ("source", "pytorch", 1),
    ]
    assert all(r["state"] == "COMPLETE" and r["attempt"] == 1 for r in runs)
    # Optuna sees the mean over seeds of the source runs' final val_loss.
    sources = [r["value"] for r in runs if r["role"] == "source"]
    assert study.trials[0].value == pytest.approx(sum(sources) / 2)
    # Every run has one metrics write per epoch, epochs 1..3.
    for run_id in recorder.runs:
        assert [e for rid, e, _ in recorder.epochs if rid == run_id] == [1, 2, 3]
    listed = study.trials[0].user_attrs[RUNS_ATTR]
    assert len(listed) == 6
    assert {run["optimizer"] for run in listed} == {"pytorch", "sutskever"}


def test_first_source_run_trains_first_so_the_pruner_sees_it():
    recorder = ListRecorder()
    objective = SweepObjective(make_spec(), recorder)
    optuna.create_study().optimize(objective, n_trials=1)
    assert recorder.runs[1]["role"] == "source"
    assert recorder.runs[1]["seed"] == 0


def test_pruned_trial_records_its_run_pruned_and_skips_the_rest():
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return True

    recorder = ListRecorder()
    objective = SweepObjective(make_spec(pruner="median"), recorder)
    study = optuna.create_study(pruner=AlwaysPrune())
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state is optuna.trial.TrialState.PRUNED
    # The last source run reports the mean over both seeds, so it is the one pruned.
    assert [(r["role"], r["seed"], r["state"]) for r in recorder.runs.values()] == [
        ("source", 0, "COMPLETE"),
        ("source", 1, "PRUNED"),
    ]
    assert recorder.runs[2]["value"] is not None


def test_diverged_run_is_a_complete_result_with_inf_and_the_step():
    def diverging(task, run, **kwargs) -> RunOutcome:
        if run.role == "naive":
            return RunOutcome(value=math.inf, diverged_at_step=7, epochs=1)
        return train_run(task, run, **kwargs)

    recorder = ListRecorder()
    objective = SweepObjective(make_spec(), recorder, train=diverging)
    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state is optuna.trial.TrialState.COMPLETE
    naive = [r for r in recorder.runs.values() if r["role"] == "naive"]
    assert all(r["state"] == "COMPLETE" for r in naive)
    assert all(r["value"] == math.inf and r["diverged"] == 7 for r in naive)
    assert all(r["failure_reason"] == "diverged at step 7" for r in naive)


def test_impossible_conversion_is_recorded_failed_and_not_trained(monkeypatch):
    import sweeps.pairing

    real_plan = sweeps.pairing.plan_runs

    def plan_with_impossible(spec, configuration, steps_per_epoch):
        runs = real_plan(spec, configuration, steps_per_epoch)
        return [
            dataclasses.replace(r, verdict="impossible", notes=("momentum would exceed 1",))
            if r.role == "converted"
            else r
            for r in runs
        ]

    trained: list[str] = []

    def train(task, run, **kwargs) -> RunOutcome:
        trained.append(run.role)
        return train_run(task, run, **kwargs)

    monkeypatch.setattr(sweeps.pairing, "plan_runs", plan_with_impossible)
    recorder = ListRecorder()
    optuna.create_study().optimize(SweepObjective(make_spec(), recorder, train=train), 1)
    converted = [r for r in recorder.runs.values() if r["role"] == "converted"]
    assert len(converted) == 2
    assert all(r["state"] == "FAIL" for r in converted)
    assert all(
        r["failure_reason"] == "conversion impossible: momentum would exceed 1" for r in converted
    )
    assert "converted" not in trained


def test_failing_run_is_recorded_fail_with_the_reason_and_the_trial_fails():
    def broken(task, run, **kwargs) -> RunOutcome:
        raise RuntimeError("CUDA out of memory")

    recorder = ListRecorder()
    study = optuna.create_study()
    study.optimize(SweepObjective(make_spec(), recorder, train=broken), 1, catch=(RuntimeError,))
    assert study.trials[0].state is optuna.trial.TrialState.FAIL
    assert recorder.runs[1]["state"] == "FAIL"
    assert recorder.runs[1]["failure_reason"] == "RuntimeError: CUDA out of memory"


def test_retried_trial_runs_as_the_next_attempt_and_fails_the_dead_attempts_runs():
    study = optuna.create_study()
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params={"lr": 0.05, "momentum": 0.7},
            distributions={
                "lr": optuna.distributions.FloatDistribution(0.01, 0.1, log=True),
                "momentum": optuna.distributions.FloatDistribution(0.5, 0.9),
            },
            system_attrs={"failed_trial": 3, "retry_history": [3, 5]},
        )
    )
    recorder = ListRecorder()
    study.optimize(SweepObjective(make_spec(pairing=False), recorder), n_trials=1)
    assert {r["attempt"] for r in recorder.runs.values()} == {3}
    assert recorder.failed_attempts[0][0] == [3, 5]
    params = study.trials[0].params
    assert (params["lr"], params["momentum"]) == (0.05, 0.7)
