"""The sweep's Optuna study: settings, the exact trial quota, stale trials, disconnects."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from storage.errors import StorageUnavailableError
from sweeps import lifecycle
from sweeps.errors import SweepUsageError
from sweeps.lifecycle import attempt_of, retry_history
from sweeps.outage import retry_on_disconnect
from sweeps.samplers import make_pruner
from sweeps.spec import parse_spec
from sweeps.stale import fail_stale_trials, requeue_lost_retries
from sweeps.sweep_study import StudySettings, open_study
from sweeps.trial_gate import Admission, TrialGate, count_trials

SPEC = """
name = "quota"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = 5
[search_space]
lr = { low = 0.01, high = 0.3, log = true }
momentum = { low = 0.5, high = 0.9 }
epochs = 1
"""


@pytest.fixture
def spec():
    return parse_spec(SPEC)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


def test_settings_come_from_the_spec_and_the_environment_overrides_them(monkeypatch):
    spec = parse_spec(
        SPEC.replace("n_trials = 5", "n_trials = 5\nheartbeat_interval = 7\nmax_retries = 2")
    )
    monkeypatch.delenv("SWEEPS_HEARTBEAT_INTERVAL", raising=False)
    monkeypatch.delenv("SWEEPS_GRACE_PERIOD", raising=False)
    monkeypatch.delenv("SWEEPS_MAX_RETRY", raising=False)
    settings = StudySettings.for_spec(spec)
    assert (settings.heartbeat_interval, settings.max_retry) == (7, 2)
    assert settings.grace_period > settings.heartbeat_interval
    monkeypatch.setenv("SWEEPS_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SWEEPS_GRACE_PERIOD", "2")
    monkeypatch.setenv("SWEEPS_MAX_RETRY", "0")
    assert StudySettings.for_spec(spec) == StudySettings(1, 2, 0)


@pytest.mark.parametrize(("heartbeat", "grace"), [("5", "5"), ("abc", "9"), ("2", "-1")])
def test_settings_refuse_bad_environment_values(monkeypatch, spec, heartbeat, grace):
    monkeypatch.setenv("SWEEPS_HEARTBEAT_INTERVAL", heartbeat)
    monkeypatch.setenv("SWEEPS_GRACE_PERIOD", grace)
    with pytest.raises(SweepUsageError, match=r"SWEEPS_|grace period"):
        StudySettings.for_spec(spec)


def test_unknown_pruner_is_refused_with_the_accepted_names():
    with pytest.raises(SweepUsageError, match="median"):
        make_pruner("asha")


def test_open_study_twice_gives_the_same_study_and_sweep_row(spec, sqlite_url):
    first = open_study(spec, sqlite_url)
    second = open_study(spec, sqlite_url, n_trials=9)
    try:
        assert first.study._study_id == second.study._study_id
        assert first.sweep_id == second.sweep_id
        assert second.study.user_attrs["sweeps:n_trials"] == 9
    finally:
        first.close()
        second.close()


def test_gate_waits_while_running_trials_fill_the_quota_and_reopens_when_one_fails(
    spec, sqlite_url
):
    sweep = open_study(spec, sqlite_url, n_trials=2)
    gate = TrialGate(sweep, 2)
    try:
        first = gate.ask()[1]
        second = gate.ask()[1]
        assert first is not None
        assert second is not None
        assert gate.ask() == (Admission.WAIT, None)
        sweep.study.tell(first, state=TrialState.FAIL)
        admission, third = gate.ask()
        assert admission is Admission.START
        assert third is not None
        sweep.study.tell(second, 1.0)
        sweep.study.tell(third, 2.0)
        assert gate.ask() == (Admission.DONE, None)
        assert count_trials(sweep.study)[TrialState.COMPLETE] == 2
    finally:
        sweep.close()


def _racing_workers(spec, url: str, n_trials: int, workers: int) -> None:
    """Workers (threads, each with its own storage) that take trials as fast as they can."""
    errors: list[BaseException] = []
    open_study(spec, url, n_trials=n_trials).close()  # as `sweeps run` does before its workers

    def work() -> None:
        sweep = open_study(spec, url, n_trials=n_trials)
        gate = TrialGate(sweep, n_trials)
        try:
            while True:
                admission, trial = gate.ask()
                if admission is Admission.DONE:
                    return
                if trial is None:
                    time.sleep(0.01)
                    continue
                sweep.study.tell(trial, float(trial.number))
        except BaseException as exc:
            errors.append(exc)
        finally:
            sweep.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_racing_workers_finish_exactly_n_trials_on_sqlite(spec, sqlite_url):
    """Protection: the gate's lock; without it, workers finishing together overshoot."""
    _racing_workers(spec, sqlite_url, n_trials=12, workers=4)
    study = optuna.load_study(study_name="quota", storage=sqlite_url)
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 12
    assert len(states) == 12


@pytest.mark.postgres
def test_racing_workers_finish_exactly_n_trials_on_postgres(spec, postgres_url):
    _racing_workers(spec, postgres_url, n_trials=12, workers=4)
    study = optuna.load_study(study_name="quota", storage=postgres_url)
    assert [t.state for t in study.get_trials()].count(TrialState.COMPLETE) == 12
    assert len(study.get_trials()) == 12


def test_stale_trial_is_failed_requeued_and_its_runs_marked_failed(spec, sqlite_url):
    from storage import records
    from storage.engine import session_factory
    from storage.models import TrialRun

    settings = StudySettings(heartbeat_interval=1, grace_period=2, max_retry=3)
    sweep = open_study(spec, sqlite_url, settings=settings)
    try:
        gate = TrialGate(sweep, 5)
        _, trial = gate.ask()
        assert trial is not None
        trial.suggest_float("lr", 0.01, 0.3, log=True)
        sweep.study._storage.record_heartbeat(trial._trial_id)
        with session_factory(sweep.engine).begin() as session:
            run = records.add_trial_run(
                session,
                sweep_id=sweep.sweep_id,
                study_name="quota",
                trial_number=trial.number,
                role="source",
                optimizer="pytorch",
                seed=0,
                schedule="constant",
                hyperparameters={},
                optimizer_hyperparameters={},
                device="cpu",
                host="h",
                pid=1,
            )
        time.sleep(3.2)
        fail_stale_trials(sweep)
        trials = sweep.study.get_trials()
        assert trials[0].state is TrialState.FAIL
        assert trials[1].state is TrialState.WAITING
        assert trials[1].params == trials[0].params
        _, retry = gate.ask()
        assert retry is not None
        assert retry.number == 1
        assert attempt_of(retry) == 2
        with session_factory(sweep.engine)() as session:
            stored = session.get(TrialRun, run.id)
            assert stored.state == "FAIL"
            assert "heartbeat" in stored.failure_reason
    finally:
        sweep.close()


def test_retry_on_disconnect_retries_until_the_database_answers():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        return "ok"

    assert retry_on_disconnect(flaky, "sqlite://") == "ok"
    assert len(calls) == 3


def test_retry_on_disconnect_gives_up_with_one_sentence_and_no_password():
    def down() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    url = "postgresql://alice:s3cret@db.example:5432/sweeps"
    with pytest.raises(StorageUnavailableError) as caught:
        retry_on_disconnect(down, url, budget_s=0.3)
    assert "s3cret" not in str(caught.value)
    assert "db.example" in str(caught.value)


def test_retry_on_disconnect_does_not_retry_a_bad_statement():
    calls = []

    def bad() -> None:
        calls.append(1)
        raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sa.exc.IntegrityError):
        retry_on_disconnect(bad, "sqlite://")
    assert len(calls) == 1


def test_retry_on_disconnect_retries_a_sqlite_lock_held_past_the_busy_timeout(tmp_path: Path):
    """A "database is locked" from SQLite is transient: the holder will commit."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    calls = []

    def write() -> str:
        calls.append(1)
        if len(calls) == 2:
            holder.execute("COMMIT")
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
        return "written"

    try:
        assert retry_on_disconnect(write, f"sqlite:///{path}", budget_s=10) == "written"
    finally:
        holder.close()
        engine.dispose()
    assert len(calls) >= 2


def test_retry_on_disconnect_raises_a_missing_table_at_once(tmp_path: Path):
    """SQLite's "no such table" is an OperationalError too, but trying again cannot help:
    it is raised unchanged on the first call, not retried for two minutes."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    calls = []

    def read() -> None:
        calls.append(1)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT * FROM ms_sweeps"))

    try:
        with pytest.raises(sa.exc.OperationalError, match="no such table"):
            retry_on_disconnect(read, "sqlite://", budget_s=30)
    finally:
        engine.dispose()
    assert len(calls) == 1


def test_retry_on_disconnect_retries_an_unreachable_postgres_server():
    """psycopg's error for a server that does not answer has no SQLSTATE: transient."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    calls = []

    def connect() -> None:
        calls.append(1)
        with engine.connect():
            pass

    try:
        with pytest.raises(StorageUnavailableError):
            retry_on_disconnect(connect, url, budget_s=0.6)
    finally:
        engine.dispose()
    assert len(calls) >= 2


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [("57P01", True), ("08006", True), ("40P01", True), ("28P01", False), ("3D000", False)],
)
def test_retry_on_disconnect_judges_postgres_errors_by_their_sqlstate(
    sqlstate: str, transient: bool
):
    """Admin shutdown, connection failure and deadlock are retried; a refused password or a
    missing database is raised at once (each is psycopg's own exception class)."""
    import psycopg.errors

    calls = []

    def fail() -> None:
        calls.append(1)
        raise sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.lookup(sqlstate)("x"))

    raised = StorageUnavailableError if transient else sa.exc.OperationalError
    with pytest.raises(raised):
        retry_on_disconnect(fail, "postgresql://db.example/sweeps", budget_s=0.6)
    assert (len(calls) > 1) is transient


def _fail_like_a_stale_check_whose_requeue_was_lost(sweep, gate) -> optuna.Trial:  # type: ignore[no-untyped-def]
    """A started trial set FAIL exactly as Optuna's stale check does, with no callback after:
    what the database holds when the FAIL committed but the re-queue never happened."""
    _, trial = gate.ask()
    assert trial is not None
    trial.suggest_float("lr", 0.01, 0.3, log=True)
    assert sweep.study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return trial


def test_a_failed_trial_whose_requeue_was_lost_is_retried_one_grace_period_later(spec, sqlite_url):
    """Protection: ``requeue_lost_retries`` in ``TrialGate.ask``. Without it the trial stays
    FAIL with no retry and the sweep ends one configuration short (the CI restart failure)."""
    settings = StudySettings(heartbeat_interval=1, grace_period=2, max_retry=3)
    sweep = open_study(spec, sqlite_url, settings=settings)
    try:
        gate = TrialGate(sweep, 5)
        lost = _fail_like_a_stale_check_whose_requeue_was_lost(sweep, gate)
        _, fresh = gate.ask()  # within the grace period: a new configuration, no retry yet
        assert fresh is not None
        assert retry_history(fresh) == []
        time.sleep(2.5)
        gate = TrialGate(sweep, 5)  # a worker that has not looked yet
        _, retry = gate.ask()
        assert retry is not None
        assert retry_history(retry) == [lost.number]
        assert retry.params == {"lr": lost.params["lr"]}
        assert requeue_lost_retries(sweep.study) == []  # once only
    finally:
        sweep.close()


def test_failures_of_the_task_and_exhausted_retries_are_not_requeued(spec, sqlite_url):
    settings = StudySettings(heartbeat_interval=1, grace_period=1, max_retry=0)
    sweep = open_study(spec, sqlite_url, settings=settings)
    try:
        gate = TrialGate(sweep, 5)
        _, task_failure = gate.ask()
        assert task_failure is not None
        storage = sweep.study._storage
        storage.set_trial_system_attr(task_failure._trial_id, "fail_reason", "ValueError: x")
        sweep.study.tell(task_failure, state=TrialState.FAIL)
        _fail_like_a_stale_check_whose_requeue_was_lost(sweep, gate)  # max_retry = 0
        time.sleep(1.5)
        assert requeue_lost_retries(sweep.study) == []
        assert [t.state for t in sweep.study.get_trials()] == [TrialState.FAIL] * 2
    finally:
        sweep.close()


def _fail_as_stale(sweep, trial: optuna.Trial) -> None:  # type: ignore[no-untyped-def]
    """What a live worker's stale check does to a dead worker's trial."""
    time.sleep(2.5)  # past the test's 1 s grace period (SQLite's clock has whole seconds)
    fail_stale_trials(sweep)


def _fail_as_interrupted(sweep, trial: optuna.Trial) -> None:  # type: ignore[no-untyped-def]
    """What a worker stopped by SIGTERM or Ctrl-C does to its own trial."""
    from sweeps.lifecycle import interrupt

    assert interrupt(sweep, trial, max_retry=3)


@pytest.mark.parametrize("fail", [_fail_as_stale, _fail_as_interrupted])
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_gate_asking_between_a_fail_and_its_requeue_gets_the_retry_not_a_new_trial(
    spec, tmp_path: Path, request: pytest.FixtureRequest, backend: str, fail, monkeypatch
):
    """Protection: failing and re-queueing a trial happen under the sweep lock
    (``fail_stale_trials`` and ``sweeps.lifecycle.interrupt`` hold ``SweepStudy.lock``
    across both writes). Without it, another worker's gate asking between the two writes sees
    a free slot and no WAITING retry and starts a fresh configuration; the retry, queued a
    moment later, is then left WAITING when the sweep reaches its total (a CI failure of the
    SIGKILL end-to-end test). Here the re-queue is held back by 1 s after the FAIL committed,
    and a second worker asks in that second."""
    url = (
        f"sqlite:///{tmp_path / 'sweeps.db'}"
        if backend == "sqlite"
        else (request.getfixturevalue("postgres_url"))
    )
    settings = StudySettings(heartbeat_interval=1, grace_period=1, max_retry=3)
    failing = open_study(spec, url, settings=settings, n_trials=1)
    asking = open_study(spec, url, settings=settings, n_trials=1)
    between = threading.Event()
    requeue = lifecycle.requeue

    def slow_requeue(study, trial, **kwargs):  # type: ignore[no-untyped-def]
        between.set()  # the FAIL has committed; the retry is not queued yet
        time.sleep(1.0)
        return requeue(study, trial, **kwargs)

    monkeypatch.setattr(lifecycle, "requeue", slow_requeue)
    try:
        _, dead = TrialGate(failing, 1).ask()
        assert dead is not None
        dead.suggest_float("lr", 0.01, 0.3, log=True)
        failer = threading.Thread(target=fail, args=(failing, dead))
        failer.start()
        assert between.wait(timeout=30)
        admission, asked = TrialGate(asking, 1).ask()
        failer.join(timeout=30)
        assert admission is Admission.START
        assert asked is not None
        assert retry_history(asked) == [dead.number]
        assert asked.params == {"lr": dead.params["lr"]}
        states = [t.state for t in asking.study.get_trials()]
        assert states == [TrialState.FAIL, TrialState.RUNNING]
    finally:
        failing.close()
        asking.close()


def test_a_trial_whose_ask_reply_was_lost_is_taken_over_by_the_asks_retry(spec, sqlite_url):
    """Protection: ``TrialGate.ask`` takes over a RUNNING trial without a heartbeat. Here the
    first ask's trial was created but its heartbeat never written (the reply was lost, and
    ``retry_on_disconnect`` asks again): the retry gets that same trial, with a heartbeat,
    instead of a second one. With a quota of 1 it would otherwise wait for the orphan."""
    settings = StudySettings(heartbeat_interval=1, grace_period=2, max_retry=3)
    sweep = open_study(spec, sqlite_url, settings=settings, n_trials=1)
    try:
        lost = sweep.study.ask()  # committed; its reply, and so its heartbeat, never came
        admission, asked = TrialGate(sweep, 1).ask()
        assert admission is Admission.START
        assert asked is not None
        assert asked._trial_id == lost._trial_id
        assert len(sweep.study.get_trials()) == 1
        time.sleep(3.5)  # past the grace period (SQLite clock: whole seconds): the heartbeat
        # written on takeover makes the trial stale if this worker dies now
        assert sweep.study._storage._get_stale_trial_ids(sweep.study._study_id) == [lost._trial_id]
        sweep.study.tell(asked, 1.0)
        assert TrialGate(sweep, 1).ask() == (Admission.DONE, None)
    finally:
        sweep.close()


def test_an_orphaned_retry_is_taken_over_with_its_configuration_and_attempt(spec, sqlite_url):
    """A retry (WAITING, fixed parameters) started by a worker that died before its first
    heartbeat is taken over as that retry: same parameters, same attempt number."""
    settings = StudySettings(heartbeat_interval=1, grace_period=2, max_retry=3)
    sweep = open_study(spec, sqlite_url, settings=settings)
    try:
        gate = TrialGate(sweep, 5)
        failed = _fail_like_a_stale_check_whose_requeue_was_lost(sweep, gate)
        frozen = sweep.study._storage.get_trial(failed._trial_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RetryHeartbeatStaleTrialCallback(max_retry=3)(sweep.study, frozen)
        orphaned = sweep.study.ask()  # pops the WAITING retry, then its worker dies
        assert retry_history(orphaned) == [failed.number]
        _, asked = gate.ask()
        assert asked is not None
        assert asked._trial_id == orphaned._trial_id
        assert attempt_of(asked) == 2
        assert asked.suggest_float("lr", 0.01, 0.3, log=True) == failed.params["lr"]
    finally:
        sweep.close()
