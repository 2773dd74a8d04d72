"""The worker loop, in this process: quota, graceful stop on signals, broken tasks, the
heartbeat thread's stale checks, the failure limit over rounds, trials failed as stale."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from storage import trials_frame
from sweeps import heartbeat
from sweeps.errors import SweepError
from sweeps.lifecycle import mark_trial_runs_failed, retry_history
from sweeps.spec import parse_spec
from sweeps.sweep_study import StudySettings, SweepStudy, open_study
from sweeps.training import RunOutcome, train_run
from sweeps.trial_gate import TrialGate
from sweeps.worker import TrialEnd, run_rounds, run_worker

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
SLOW_EPOCH_S = 3.5
"""A slow trial's pause per epoch: its 2 epochs outlast a stale check's bound below."""
SQLITE_CLOCK_S = 1.0
"""SQLite's ``CURRENT_TIMESTAMP`` (Optuna's heartbeat clock there) has whole seconds."""
SLACK_S = 1.0
"""Queries, commits and thread scheduling on a loaded 2-core machine."""


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


def test_a_dead_workers_trial_is_failed_and_requeued_while_the_live_worker_is_mid_trial(url):
    """Protection: the heartbeat thread (``sweeps.heartbeat``) looks for stale trials every
    beat. Without it a worker looks only between trials, so a dead worker's trial would
    stay RUNNING until the live worker's long trial ended."""
    settings = StudySettings(heartbeat_interval=1, grace_period=2, max_retry=3)
    spec = parse_spec(SPEC.format(limit="n_trials = 2"))
    dead = open_study(spec, url, settings=settings)
    orphan = dead.study.ask()  # a worker that took a trial, beat once and died
    dead.study._storage.record_heartbeat(orphan._trial_id)
    last_beat = time.time()
    dead.close()

    def slow(task, run, *, on_epoch, **kwargs) -> RunOutcome:
        def epoch(result) -> None:
            time.sleep(SLOW_EPOCH_S)
            on_epoch(result)

        return train_run(task, run, on_epoch=epoch, **kwargs)

    summary = run_worker(spec, url, settings=settings, train=slow, handle_signals=False)

    assert (summary.complete, summary.failed) == (2, 0)
    orphan_end, live, retry = optuna.load_study(study_name="work", storage=url).get_trials()
    assert (orphan_end.state, live.state, retry.state) == (TrialState.FAIL,) + (
        TrialState.COMPLETE,
    ) * 2
    assert retry.system_attrs["retry_history"] == [orphan.number]
    assert orphan_end.datetime_complete is not None
    assert live.datetime_complete is not None
    assert orphan_end.datetime_complete < live.datetime_complete  # failed during that trial
    failed_after = orphan_end.datetime_complete.timestamp() - last_beat
    limit = settings.grace_period + settings.heartbeat_interval + SQLITE_CLOCK_S + SLACK_S
    assert failed_after <= limit


def test_a_stale_check_that_fails_now_only_logs_and_the_next_beat_looks_again(url, caplog):
    """Protection: the heartbeat thread's stale check is wrapped (``_tolerate``): a lost
    connection is logged and the next beat looks again, instead of ending the thread."""
    spec = parse_spec(SPEC.format(limit="n_trials = 2"))
    sweep = open_study(spec, url, settings=FAST)
    trial = sweep.study.ask()
    looks: list[float] = []

    def flaky_look(sweep: SweepStudy) -> None:
        looks.append(time.monotonic())
        if len(looks) <= 2:
            raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(heartbeat, "fail_stale_trials", flaky_look)
            with (
                caplog.at_level(logging.WARNING, logger="sweeps.heartbeat"),
                heartbeat.heartbeats(sweep, [trial], interval=0.2),
            ):
                time.sleep(1.5)
    finally:
        sweep.close()
    assert len(looks) >= 4  # beats at 0, 0.2, 0.4, ... s: the thread outlived two failures
    assert caplog.text.count("server closed the connection") == 2


class ScriptedRounds:
    """Rounds of two trials that end as the script says, without training anything.

    ``"stale"`` plays another worker's stale check: the trial is set FAIL and re-queued
    (Optuna's ``fail_stale_trials`` on that one trial) while the round runs, and the round
    still reports it COMPLETE.
    """

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = iter(script)

    def room(self, study: optuna.Study) -> int:
        return 2

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        ends = []
        for trial, outcome in zip(trials, next(self.script), strict=True):
            if outcome == "fail":
                ends.append(TrialEnd(trial, TrialState.FAIL, failure=f"boom {trial.number}"))
                continue
            if outcome == "stale":
                storage = trial.study._storage
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                callback = storage.get_heartbeat_stale_trial_callback()
                callback(trial.study, storage.get_trial(trial._trial_id))
            ends.append(TrialEnd(trial, TrialState.COMPLETE, value=1.0))
        return ends


def test_a_round_of_failures_extends_the_count_and_any_success_clears_it(url):
    """Protection: the loop's failure limit counts whole failed rounds and any success
    resets it: here 2 + (cleared) + 2 + 2 + 2 failures stop the worker at the 5th round."""
    spec = parse_spec(SPEC.format(limit="n_trials = 40"))
    script = [("fail", "fail"), ("ok", "fail")] + [("fail", "fail")] * 3 + [("ok", "ok")] * 20

    with pytest.raises(SweepError, match=r"^6 trials in a row failed; the last with boom 9\.$"):
        run_rounds(spec, url, lambda sweep, recorder: ScriptedRounds(script), settings=FAST)

    assert states(url) == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] + [TrialState.FAIL] * 7


def test_trials_failed_as_stale_during_a_round_are_retried_elsewhere_not_told(url, caplog):
    """Protection: ``_finish`` does not tell Optuna a trial that a stale check finished
    first (Optuna would raise), does not re-queue it a second time, and counts it neither
    as a success nor as a failure of the task."""
    spec = parse_spec(SPEC.format(limit="n_trials = 2"))
    script = [("stale", "stale"), ("ok", "ok")]

    with caplog.at_level(logging.WARNING, logger="sweeps.worker"):
        summary = run_rounds(
            spec, url, lambda sweep, recorder: ScriptedRounds(script), settings=FAST
        )

    assert (summary.complete, summary.failed, summary.failures) == (2, 2, [])
    trials = optuna.load_study(study_name="work", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    assert [t.system_attrs.get("retry_history") for t in trials] == [None, None, [0], [1]]
    assert caplog.text.count("was failed as stale and retried elsewhere") == 2


def test_a_nan_objective_value_fails_the_trial_with_the_reason_and_it_is_not_retried(url):
    """Optuna fails a trial told NaN without saying why; the worker records the reason, so
    the trial reads as a failure of the task (never re-queued), not as a lost re-queue."""

    def nan_run(task, run, **kwargs) -> RunOutcome:
        return RunOutcome(float("nan"), None, 2, {"val_loss": float("nan")})

    spec = parse_spec(SPEC.format(limit="n_trials = 2"))
    with pytest.raises(SweepError, match="in a row failed; the last with the objective value"):
        run_worker(spec, url, settings=FAST, train=nan_run)
    study = optuna.load_study(study_name="work", storage=url)
    trials = study.get_trials()
    assert {t.state for t in trials} == {TrialState.FAIL}
    assert all(t.system_attrs["fail_reason"] == "the objective value is nan" for t in trials)
    assert all("retry_history" not in t.system_attrs for t in trials)


PAIRED_SPEC = """
name = "work"
task = "nqm"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = true
n_trials = 1
[search_space]
lr = { low = 0.01, high = 0.1, log = true }
momentum = { low = 0.5, high = 0.9 }
epochs = 1
"""


def test_runs_finished_after_their_trial_was_retried_elsewhere_are_marked_failed(
    url: str,
) -> None:
    """Protection: ``sweeps.lifecycle.retried_elsewhere`` marks a trial's runs FAIL when the
    worker learns that the trial was failed as stale and retried elsewhere. Here, just
    before the first paired run of the trial (as after a SIGSTOP past the grace period),
    another worker's stale check fails the trial and re-queues it, and that other worker
    takes the retry, marks the earlier attempt's runs FAIL (as a retry does when it starts)
    and completes it. The paired runs report nothing to Optuna, so they train to the end and
    finish COMPLETE; only the trial's next write tells this worker. Without the protection
    those runs stay COMPLETE under the FAIL trial, beside the retry of their configuration."""
    spec = parse_spec(PAIRED_SPEC)
    played: list[int] = []

    def train_after_another_worker_took_over(setup, run, **kwargs):  # type: ignore[no-untyped-def]
        if run.role != "source" and not played:
            other = open_study(spec, url, settings=FAST)
            try:
                [trial] = other.study.get_trials(states=(TrialState.RUNNING,))
                storage = other.study._storage
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                callback = storage.get_heartbeat_stale_trial_callback()
                callback(other.study, storage.get_trial(trial._trial_id))
                _, retry = TrialGate(other, 1).ask()
                assert retry is not None
                assert retry_history(retry) == [trial.number]
                mark_trial_runs_failed(other.engine, "work", trial.number, "superseded")
                other.study.tell(retry, 1.0)
                played.append(trial.number)
            finally:
                other.close()
        return train_run(setup, run, **kwargs)

    summary = run_worker(
        spec, url, settings=FAST, train=train_after_another_worker_took_over, handle_signals=False
    )

    assert played == [0]
    assert (summary.complete, summary.failed) == (0, 1)
    assert states(url) == [TrialState.FAIL, TrialState.COMPLETE]
    dead = trials_frame(url, "work").query("trial == 0")
    assert {"naive", "converted"} <= set(dead["role"])  # the paired runs did train
    assert set(dead["state"]) == {"FAIL"}
