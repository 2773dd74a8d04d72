"""The worker loop, in this process: quota, graceful stop on signals, broken tasks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import trials_frame
from sweeps.errors import SweepError
from sweeps.spec import parse_spec
from sweeps.study import StudySettings
from sweeps.training import RunOutcome, train_run
from sweeps.worker import run_worker

SPEC = """
name = "work"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
{limit}
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
epochs = 2
"""
FAST = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=3)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


def states(url: str) -> list[TrialState]:
    return [t.state for t in optuna.load_study(study_name="work", storage=url).get_trials()]


def test_worker_finishes_exactly_n_trials_and_leaves_nothing_running(url):
    summary = run_worker(parse_spec(SPEC.format(limit="n_trials = 3")), url, settings=FAST)
    assert (summary.complete, summary.failed, summary.exit_code) == (3, 0, 0)
    assert states(url) == [TrialState.COMPLETE] * 3
    runs = trials_frame(url)
    assert len(runs) == 3
    assert set(runs["state"]) == {"COMPLETE"}


def test_second_worker_on_a_finished_sweep_does_nothing(url):
    spec = parse_spec(SPEC.format(limit="n_trials = 2"))
    run_worker(spec, url, settings=FAST)
    again = run_worker(spec, url, settings=FAST)
    assert (again.complete, again.failed) == (0, 0)
    assert len(states(url)) == 2


def test_sigterm_in_a_trial_fails_and_requeues_it_and_the_sweep_resumes_to_its_total(url):
    """Protection: the worker's signal handler (trial told FAIL, configuration re-queued)."""
    spec = parse_spec(SPEC.format(limit="n_trials = 3"))
    trials_seen: list[int] = []

    def interrupted_in_second_trial(task, run, *, on_epoch, **kwargs) -> RunOutcome:
        trials_seen.append(1)

        def epoch(result) -> None:
            on_epoch(result)
            if len(trials_seen) == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        return train_run(task, run, on_epoch=epoch, **kwargs)

    stopped = run_worker(spec, url, settings=FAST, train=interrupted_in_second_trial)
    assert stopped.exit_code == 143
    assert states(url) == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    runs = trials_frame(url)
    killed = runs[runs["trial"] == 1]
    assert list(killed["state"]) == ["FAIL"]
    assert list(killed["failure_reason"]) == ["interrupted"]

    resumed = run_worker(spec, url, settings=FAST)
    assert resumed.exit_code == 0
    study = optuna.load_study(study_name="work", storage=url)
    finished = [t for t in study.get_trials() if t.state is TrialState.COMPLETE]
    assert len(finished) == 3
    assert not [t for t in study.get_trials() if t.state is TrialState.RUNNING]
    retry = study.get_trials()[2]
    assert retry.params == study.get_trials()[1].params
    runs = trials_frame(url)
    assert list(runs[runs["trial"] == 2]["attempt"]) == [2]
    assert list(runs[runs["trial"] == 1]["state"]) == ["FAIL"]


def test_worker_whose_trials_all_fail_stops_with_the_reason(url):
    def broken(task, run, **kwargs) -> RunOutcome:
        raise ValueError("the task's data loader is empty")

    spec = parse_spec(SPEC.format(limit="n_trials = 20"))
    with pytest.raises(SweepError, match=r"in a row failed.*data loader is empty"):
        run_worker(spec, url, settings=FAST, train=broken)
    assert TrialState.RUNNING not in states(url)


def test_timeout_only_sweep_stops_after_its_timeout(url):
    summary = run_worker(parse_spec(SPEC.format(limit="timeout = 1.5")), url, settings=FAST)
    assert summary.complete >= 1
    assert TrialState.RUNNING not in states(url)


def test_grid_sweep_ends_when_every_grid_point_is_taken(url):
    grid = SPEC.format(limit='n_trials = 10\nsampler = "grid"').replace(
        "lr = { low = 0.01, high = 0.1, log = true }\nmomentum = { low = 0.5, high = 0.9 }",
        "lr = [0.01, 0.05]\nmomentum = [0.5, 0.9]",
    )
    summary = run_worker(parse_spec(grid), url, settings=FAST)
    assert summary.complete == 4
    study = optuna.load_study(study_name="work", storage=url)
    assert {(t.params["lr"], t.params["momentum"]) for t in study.get_trials()} == {
        (0.01, 0.5),
        (0.01, 0.9),
        (0.05, 0.5),
        (0.05, 0.9),
    }
