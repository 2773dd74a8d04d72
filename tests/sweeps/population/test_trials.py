"""Optuna trials trained as a population: what is recorded, reported, pruned and told.

The reference is the sequential :class:`sweeps.objective.SweepObjective` on the same
configurations (enqueued, so both see the same numbers): each trial's value and each
run's per-epoch metrics must agree, and pruning one trial must leave the others alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from sweeps.errors import SweepUsageError
from sweeps.objective import RUNS_ATTR, SweepObjective
from sweeps.population.trials import PopulationObjective
from sweeps.spec import parse_spec

SPEC = """
name = "population-trials"
task = "{task}"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = true
seeds = [0, 1]
pruner = "median"  # the studies below bring their own pruner
n_trials = 4
[search_space]
lr = {{ low = 0.01, high = 1e9, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
batch_size = 128
epochs = 3
[search_space.schedule]
step = {{ milestones_epochs = [1, 2] }}
cosine = {{}}
"""
CONFIGURATIONS = [
    {"lr": 0.05, "momentum": 0.9, "schedule": "step"},
    {"lr": 0.1, "momentum": 0.5, "schedule": "cosine"},
    {"lr": 1e9, "momentum": 0.9, "schedule": "step"},  # diverges
    {"lr": 0.02, "momentum": 0.8, "schedule": "cosine"},
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ListRecorder:
    """Keeps what the objective records."""

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Any]] = {}
        self.epochs: dict[int, list[dict[str, float]]] = {}

    def start(self, trial, run, *, schedule, attempt, steps_per_epoch) -> int:
        run_id = len(self.runs) + 1
        key = (trial.number, run.role, run.seed)
        self.runs[run_id] = {"key": key, "state": "RUNNING", "attempt": attempt}
        self.epochs[run_id] = []
        return run_id

    def epoch(self, run_id, result) -> None:
        self.epochs[run_id].append(dict(result.metrics))

    def finish(self, run_id, *, state, value=None, failure_reason=None, diverged_at_step=None):
        self.runs[run_id].update(
            state=state, value=value, diverged=diverged_at_step, reason=failure_reason
        )

    def fail_attempts(self, trial_numbers, reason) -> None:
        raise AssertionError("no retries in these tests")

    def by_key(self) -> dict[tuple, tuple[dict[str, Any], list[dict[str, float]]]]:
        return {run["key"]: (run, self.epochs[i]) for i, run in self.runs.items()}


class PruneTrials(optuna.pruners.BasePruner):
    """Prune the listed trial numbers at their first report."""

    def __init__(self, numbers: set[int]) -> None:
        self.numbers = numbers

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number in self.numbers


def study_with_configurations(pruned: set[int]) -> optuna.Study:
    study = optuna.create_study(pruner=PruneTrials(pruned))
    for params in CONFIGURATIONS:
        study.enqueue_trial(params)
    return study


def test_population_of_trials_records_and_tells_what_sequential_trials_do() -> None:
    spec = parse_spec(SPEC.format(task="regression"))
    sequential, alone = ListRecorder(), study_with_configurations(pruned={1})
    alone.optimize(SweepObjective(spec, sequential), n_trials=len(CONFIGURATIONS))

    together, study = ListRecorder(), study_with_configurations(pruned={1})
    written: list[int] = []

    def write_epochs(items: list) -> None:
        written.append(len(items))
        for run_id, result in items:
            together.epoch(run_id, result)

    objective = PopulationObjective(spec, together, write_epochs=write_epochs)
    trials = [study.ask() for _ in CONFIGURATIONS]
    ends = objective(trials)

    reference = alone.get_trials()
    assert [end.state for end in ends] == [t.state for t in reference]
    assert [end.state for end in ends][1] is TrialState.PRUNED
    for end, want in zip(ends, reference, strict=True):
        if want.state is TrialState.COMPLETE:
            assert end.value == pytest.approx(want.value, rel=1e-5)
        assert end.trial.user_attrs[RUNS_ATTR] or end.state is TrialState.PRUNED
    assert ends[2].value == math.inf  # the diverged configuration

    expected, got = sequential.by_key(), together.by_key()
    for key, (run, epochs) in got.items():
        assert run["state"] != "RUNNING", key
        if key[0] == 1:
            # Pruned. Sequentially the last source run reports (the mean over seeds), so
            # seed 0 completes first and the later runs never start; together, every seed
            # trains in the same epoch and all the trial's runs leave at its first report.
            assert run["state"] == "PRUNED"
            continue
        want_run, want_epochs = expected[key]
        assert run["state"] == want_run["state"], key
        assert run["diverged"] == want_run["diverged"], key
        assert len(epochs) == len(want_epochs), key
        for have, want in zip(epochs, want_epochs, strict=True):
            assert have == pytest.approx(want, rel=1e-4, abs=1e-7), key
    # What optuna-dashboard shows (sweeps.dashboard): the intermediate values are the mean
    # over both seeds' source val_loss per epoch, and each arm's mean is a user attribute.
    stored = {t.number: t for t in study.get_trials()}
    for number in (0, 3):
        seed_curves = [got[(number, "source", seed)][1] for seed in (0, 1)]
        curve = {
            epoch: (a["val_loss"] + b["val_loss"]) / 2
            for epoch, (a, b) in enumerate(zip(*seed_curves, strict=True), start=1)
        }
        assert stored[number].intermediate_values == pytest.approx(curve, rel=1e-12)
        attrs = ends[number].trial.user_attrs
        assert attrs["value:source"] == pytest.approx(ends[number].value, rel=1e-12)
        for role in ("naive", "converted"):
            finals = [got[(number, role, seed)][1][-1]["val_loss"] for seed in (0, 1)]
            assert attrs[f"value:{role}"] == pytest.approx(sum(finals) / 2, rel=1e-12)
    # One write per epoch for the whole population (3 epochs; the pruned trial leaves at 1).
    assert len(written) == 3
    assert written[0] > written[1]


def test_a_task_without_a_stackable_model_is_refused_with_a_clear_message(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "plain_task.py"
    module.write_text(
        "from sweeps.tasks import get_task\n"
        "def build(*, seed, batch_size, device):\n"
        "    return get_task('regression').build(seed=seed, batch_size=batch_size, device=device)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_spec(SPEC.format(task="plain_task:build"))
    with pytest.raises(SweepUsageError, match=r"'plain_task:build' has not declared"):
        PopulationObjective(spec, ListRecorder())


def test_an_interrupted_population_leaves_no_run_running() -> None:
    spec = parse_spec(SPEC.format(task="regression"))

    class InterruptedRecorder(ListRecorder):
        def epoch(self, run_id, result) -> None:
            raise KeyboardInterrupt

    recorder, study = InterruptedRecorder(), study_with_configurations(pruned=set())
    objective = PopulationObjective(spec, recorder)
    with pytest.raises(KeyboardInterrupt):
        objective([study.ask() for _ in CONFIGURATIONS[:2]])
    ends = {(run["state"], run["reason"]) for run in recorder.runs.values()}
    assert ends == {("FAIL", "interrupted")}
    assert len(recorder.runs) == 2 * 3 * 2  # trials x roles x seeds
