"""A population worker against a real SQLite database: quota, storage structure, values,
a round given up when one of its trials was failed as stale."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from storage import metrics_frame, trials_frame
from sweeps.errors import SweepUsageError
from sweeps.population import worker as population_worker
from sweeps.population.trials import EpochsWriter
from sweeps.population.worker import (
    database_epochs_writer,
    resolve_population,
    run_population_worker,
)
from sweeps.spec import parse_spec
from sweeps.sweep_study import StudySettings, open_study
from sweeps.tasks import get_task
from sweeps.training import EpochResult
from sweeps.worker import run_worker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SPEC = """
name = "{name}"
task = "regression"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = true
seeds = 1
sampler = "random"  # seeded: both sweeps sample the same configurations in the same order
n_trials = 6
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
batch_size = 256
epochs = 2
"""
FAST = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=3)


def finished(url: str, name: str) -> dict[tuple[float, float], float]:
    study = optuna.load_study(study_name=name, storage=url)
    assert {t.state for t in study.get_trials()} == {TrialState.COMPLETE}
    return {(t.params["lr"], t.params["momentum"]): t.value for t in study.get_trials()}


def test_population_worker_runs_the_sweep_with_the_sequential_results(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    summary = run_population_worker(
        parse_spec(SPEC.format(name="together")),
        url,
        population=4,
        settings=FAST,
        handle_signals=False,
    )
    assert (summary.complete, summary.failed) == (6, 0)
    run_worker(parse_spec(SPEC.format(name="alone")), url, settings=FAST, handle_signals=False)

    together, alone = finished(url, "together"), finished(url, "alone")
    assert together.keys() == alone.keys()
    for key, value in alone.items():
        assert together[key] == pytest.approx(value, rel=1e-4)

    runs = {name: trials_frame(url, sweep=name) for name in ("together", "alone")}
    assert len(runs["together"]) == len(runs["alone"]) == 18
    assert set(runs["together"]["state"]) == {"COMPLETE"}
    columns = ["role", "optimizer", "seed", "hp_lr", "hp_momentum", "hp_steps_per_epoch"]
    sort = ["hp_lr", "hp_momentum", "role"]
    assert (
        runs["together"][columns].sort_values(sort).reset_index(drop=True).to_dict()
        == runs["alone"][columns].sort_values(sort).reset_index(drop=True).to_dict()
    )
    metrics = {name: metrics_frame(url, sweep=name) for name in ("together", "alone")}
    assert len(metrics["together"]) == len(metrics["alone"])
    assert sorted(metrics["together"]["metric"].unique()) == sorted(
        metrics["alone"]["metric"].unique()
    )


def test_population_must_be_a_positive_whole_number_or_auto() -> None:
    task = get_task("regression")
    assert resolve_population("auto", task, "cpu") == 64
    assert resolve_population("auto", get_task("digits-cnn"), "cpu") == 1  # no faster stacked
    assert resolve_population(8, task, "cpu") == 8
    with pytest.raises(SweepUsageError, match=r"population must be a whole number >= 1"):
        resolve_population(0, task, "cpu")


def test_a_grid_sweep_ends_when_every_grid_point_is_taken(tmp_path: Path) -> None:
    grid = (
        SPEC.replace('sampler = "random"', 'sampler = "grid"')
        .replace("lr = {{ low = 0.01, high = 0.1, log = true }}", "lr = [0.02, 0.05, 0.1]")
        .replace("momentum = {{ low = 0.5, high = 0.9 }}", "momentum = [0.5, 0.9]")
    )
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = parse_spec(grid.format(name="grid").replace("n_trials = 6", "n_trials = 10"))
    summary = run_population_worker(spec, url, population=4, settings=FAST, handle_signals=False)
    assert summary.complete == 6
    assert len(finished(url, "grid")) == 6


def test_a_round_whose_trial_was_failed_as_stale_is_given_up_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Protection: the worker loop treats Optuna's UpdateFinishedTrialError in a round as
    "failed as stale and retried elsewhere": the round is given up, its other trials are told
    FAIL and re-queued, and nothing crashes. Here another worker's stale check is played
    after the first epoch of the first round, on one trial of it (as after a SIGSTOP past
    the grace period); the next report to Optuna then meets the finished trial."""
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = parse_spec(SPEC.format(name="paused"))
    played: list[int] = []

    def writer_with_a_stale_check(engine: Engine, url: str) -> EpochsWriter:
        write = database_epochs_writer(engine, url)

        def write_then_fail_one(items: Sequence[tuple[int, EpochResult]]) -> None:
            write(items)
            if not played:  # Optuna's fail_stale_trials, for one trial of this round
                sweep = open_study(spec, url, settings=FAST)
                try:
                    storage = sweep.study._storage
                    [first, *_] = sweep.study.get_trials(states=(TrialState.RUNNING,))
                    storage.set_trial_state_values(first._trial_id, state=TrialState.FAIL)
                    callback = storage.get_heartbeat_stale_trial_callback()
                    callback(sweep.study, storage.get_trial(first._trial_id))
                    played.append(first.number)
                finally:
                    sweep.close()

        return write_then_fail_one

    monkeypatch.setattr(population_worker, "database_epochs_writer", writer_with_a_stale_check)
    with caplog.at_level(logging.WARNING, logger="sweeps.worker"):
        summary = run_population_worker(
            spec, url, population=4, settings=FAST, handle_signals=False
        )

    trials = optuna.load_study(study_name="paused", storage=url).get_trials()
    states = [t.state for t in trials]
    assert states[:4] == [TrialState.FAIL] * 4  # the first round, given up
    assert states.count(TrialState.COMPLETE) == 6
    assert set(states) == {TrialState.FAIL, TrialState.COMPLETE}
    assert (summary.complete, summary.failed, summary.failures) == (6, 4, [])
    retried = sorted(
        t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")
    )
    assert retried == [0, 1, 2, 3]  # each trial of the round re-queued once, none twice
    assert caplog.text.count("was failed as stale and retried elsewhere") == 1
    assert caplog.text.count("was given up with its round and queued again") == 3
    runs = trials_frame(url, sweep="paused")
    assert set(runs[runs["trial"] < 4]["state"]) == {"FAIL"}
    assert played == [0]
