"""The lifecycle's transitions (``sweeps.lifecycle``'s table, T1-T9), one test each, on a
real Optuna study in SQLite: the trial's state, its retry, its runs' states and reasons."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from storage import records, trials_frame
from storage.engine import session_factory
from sweeps import lifecycle
from sweeps.lifecycle import (
    INTERRUPTED_ATTR,
    LOST_WORKER,
    TrialEnd,
    failed_attempts,
    retry_history,
)
from sweeps.spec import parse_spec
from sweeps.stale import fail_stale_trials, requeue_lost_retries
from sweeps.stop import INTERRUPTED, STOP
from sweeps.sweep_study import StudySettings, SweepStudy, open_study
from sweeps.trial_gate import Admission, TrialGate

SPEC = """
name = "life"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = 3
[search_space]
lr = { low = 0.01, high = 0.1, log = true }
momentum = 0.9
batch_size = 16
epochs = 2
"""
GRACE_S = 1
PAST_GRACE_S = 2.5
"""Past the 1 s grace period on SQLite, whose clock (CURRENT_TIMESTAMP) has whole seconds."""


@pytest.fixture
def sweep(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = open_study(
        parse_spec(SPEC),
        f"sqlite:///{tmp_path / 'sweeps.db'}",
        settings=StudySettings(heartbeat_interval=1, grace_period=GRACE_S, max_retry=1),
    )
    yield opened
    opened.close()


def started(sweep: SweepStudy) -> optuna.Trial:
    admission, trial = TrialGate(sweep, 3).ask()
    assert admission is Admission.START
    assert trial is not None
    trial.suggest_float("lr", 0.01, 0.1, log=True)
    return trial


def add_run(sweep: SweepStudy, trial: optuna.Trial, state: str = "RUNNING") -> None:
    """A ``trial_runs`` row of ``trial`` in ``state``, as the objective writes it."""
    with session_factory(sweep.engine).begin() as session:
        records.get_or_add_trial_run(
            session,
            sweep_id=sweep.sweep_id,
            study_name=sweep.name,
            trial_number=trial.number,
            role="source",
            optimizer="pytorch",
            seed=0,
            schedule="constant",
            hyperparameters={},
            optimizer_hyperparameters={},
            device="cpu",
            host="here",
            pid=1,
            state=state,
            attempt=len(retry_history(trial)) + 1,
        )


def runs_of(sweep: SweepStudy, number: int) -> list[tuple[str, str | None]]:
    runs = trials_frame(sweep.url, sweep.name)
    chosen = runs[runs["trial"] == number]
    return list(zip(chosen["state"], chosen["failure_reason"], strict=True))


def trials(sweep: SweepStudy) -> list[optuna.trial.FrozenTrial]:
    return sweep.study.get_trials(deepcopy=False)


def has_heartbeat(sweep: SweepStudy, trial: optuna.Trial) -> bool:
    engine = sa.create_engine(sweep.url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :t"),
                {"t": trial._trial_id},
            ).scalar()
    finally:
        engine.dispose()
    return bool(found)


def test_t1_a_gate_starts_a_waiting_retry_first_with_a_heartbeat(sweep):
    dead = started(sweep)
    lifecycle.interrupt(sweep, dead, max_retry=1)
    retry = started(sweep)
    assert retry_history(retry) == [dead.number]
    assert retry.params == dead.params
    assert has_heartbeat(sweep, retry)


def test_t2_killed_before_its_first_heartbeat_the_trial_is_taken_over_not_failed(sweep):
    orphan = sweep.study.ask()  # its worker died before the heartbeat write
    assert not has_heartbeat(sweep, orphan)
    admission, taken = TrialGate(sweep, 3).ask()
    assert admission is Admission.START
    assert taken is not None
    assert taken._trial_id == orphan._trial_id
    assert has_heartbeat(sweep, taken)
    assert [t.state for t in trials(sweep)] == [TrialState.RUNNING]


def test_t3_a_finished_trial_is_complete_even_when_the_tells_reply_was_lost(sweep, monkeypatch):
    trial = started(sweep)
    tell = optuna.Study.tell
    replies = []

    def tell_then_lose_the_reply(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = tell(self, *args, **kwargs)
        if not replies:
            replies.append("lost")
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return result

    monkeypatch.setattr(optuna.Study, "tell", tell_then_lose_the_reply)
    assert lifecycle.finish(sweep.study, TrialEnd(trial, TrialState.COMPLETE, 0.5))
    assert replies == ["lost"]
    [frozen] = trials(sweep)
    assert (frozen.state, frozen.value) == (TrialState.COMPLETE, 0.5)


def test_t4_a_task_failure_keeps_its_reason_and_is_never_retried(sweep):
    trial = started(sweep)
    end = TrialEnd(trial, TrialState.FAIL, failure="ValueError: empty loader")
    assert lifecycle.finish(sweep.study, end)
    time.sleep(PAST_GRACE_S)
    assert requeue_lost_retries(sweep.study) == []
    [frozen] = trials(sweep)
    assert frozen.state is TrialState.FAIL
    assert frozen.system_attrs["fail_reason"] == "ValueError: empty loader"


def test_t5_killed_mid_epoch_the_stale_trial_is_failed_retried_and_its_runs_failed(sweep):
    trial = started(sweep)
    add_run(sweep, trial)  # mid-epoch: a RUNNING run, then no more heartbeats
    time.sleep(PAST_GRACE_S)
    fail_stale_trials(sweep)
    dead, retry = trials(sweep)
    assert dead.state is TrialState.FAIL
    assert retry.state is TrialState.WAITING
    assert retry_history(retry) == [dead.number]
    assert failed_attempts(dead) == 1
    assert runs_of(sweep, dead.number) == [("FAIL", LOST_WORKER)]


def test_t6_an_interrupted_trial_is_requeued_without_using_its_retry_budget(sweep):
    """max_retry is 1, yet four interruptions in a row each get a retry: an interruption
    is not a failure."""
    for _ in range(4):
        trial = started(sweep)
        add_run(sweep, trial)
        assert lifecycle.interrupt(sweep, trial, max_retry=1)
        assert runs_of(sweep, trial.number) == [("FAIL", INTERRUPTED)]
    frozen = trials(sweep)
    assert [t.state for t in frozen] == [TrialState.FAIL] * 4 + [TrialState.WAITING]
    assert all(t.system_attrs["fail_reason"] == INTERRUPTED for t in frozen[:4])
    assert frozen[4].system_attrs[INTERRUPTED_ATTR] == [0, 1, 2, 3]
    assert "fail_reason" not in frozen[4].system_attrs
    assert len({t.params["lr"] for t in frozen}) == 1


def test_t6_a_signal_during_a_database_write_lets_the_write_finish(sweep, monkeypatch):
    """A SIGTERM raised inside the INSERT of the tell's FAIL only sets the stop flag: the
    write commits, nothing is half-done, and the trial is failed as interrupted (not as a
    task failure) and re-queued."""
    trial = started(sweep)
    engine = sweep.study._storage._backend.engine
    raised: list[str] = []

    def signal_inside(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE TRIALS") and not raised:
            raised.append(statement)
            signal.raise_signal(signal.SIGTERM)

    STOP.clear()
    sa.event.listen(engine, "before_cursor_execute", signal_inside)
    try:
        with STOP.installed():
            assert lifecycle.interrupt(sweep, trial, max_retry=0)
            assert STOP.is_set()
    finally:
        sa.event.remove(engine, "before_cursor_execute", signal_inside)
        STOP.clear()
    assert raised, "the signal was never raised inside a write"
    dead, retry = trials(sweep)
    assert (dead.state, dead.system_attrs["fail_reason"]) == (TrialState.FAIL, INTERRUPTED)
    assert retry.state is TrialState.WAITING


def test_t7_a_lost_requeue_of_a_fail_is_made_good_one_grace_period_later(sweep):
    """The FAIL committed but its re-queue was lost (the worker died between the two
    writes, or the FAIL's acknowledgement was lost in a restart)."""
    trial = started(sweep)
    assert sweep.study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    assert requeue_lost_retries(sweep.study) == []  # not settled yet: a worker may be at it
    time.sleep(PAST_GRACE_S)
    with sweep.lock():
        assert requeue_lost_retries(sweep.study) == [trial.number]
        assert requeue_lost_retries(sweep.study) == []
    dead, retry = trials(sweep)
    assert retry.state is TrialState.WAITING
    assert retry_history(retry) == [dead.number]


def test_t7_a_lost_requeue_of_an_interruption_is_made_good_free_of_budget(sweep):
    trial = started(sweep)
    end = TrialEnd(trial, TrialState.FAIL, failure=INTERRUPTED)
    assert lifecycle.finish(sweep.study, end)  # the re-queue after it was lost
    time.sleep(PAST_GRACE_S)
    assert lifecycle.requeue_lost(sweep.study, max_retry=0, grace_period=GRACE_S) == [0]
    _, retry = trials(sweep)
    assert retry.system_attrs[INTERRUPTED_ATTR] == [0]


def test_t8_a_configuration_whose_retries_are_exhausted_stays_failed(sweep):
    """max_retry is 1: the first stale failure is retried, the retry's is not."""
    first = started(sweep)
    time.sleep(PAST_GRACE_S)
    fail_stale_trials(sweep)
    retry = started(sweep)
    assert retry_history(retry) == [first.number]
    time.sleep(PAST_GRACE_S)
    fail_stale_trials(sweep)
    assert [t.state for t in trials(sweep)] == [TrialState.FAIL, TrialState.FAIL]
    assert failed_attempts(trials(sweep)[1]) == 2
    with sweep.lock():
        assert requeue_lost_retries(sweep.study) == []
    assert len(trials(sweep)) == 2


def test_t9_a_late_finish_of_a_trial_retried_elsewhere_fails_its_runs(sweep):
    """A paused worker finishes a run after another worker failed its trial as stale: the
    tell is refused and the run it finished late is marked FAIL, not left COMPLETE under
    a FAIL trial beside its retry."""
    trial = started(sweep)
    time.sleep(PAST_GRACE_S)
    fail_stale_trials(sweep)  # another worker's stale check
    add_run(sweep, trial, state="COMPLETE")  # this worker's run, finished late
    assert not lifecycle.finish(sweep.study, TrialEnd(trial, TrialState.COMPLETE, 1.0))
    lifecycle.retried_elsewhere(sweep, trial)
    assert runs_of(sweep, trial.number) == [("FAIL", LOST_WORKER)]
    dead, retry = trials(sweep)
    assert (dead.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
