"""Writes retried after a lost acknowledgement are stored once, on every backend.

The fault: the server commits a write, then the connection drops before the client hears
the COMMIT succeed (a PostgreSQL restart at the wrong instant). The client sees a
disconnect, :func:`sweeps.outage.retry_on_disconnect` runs the write again, and the repeat
meets the rows the first attempt already committed. :func:`lost_acknowledgement` makes
that happen on demand: the next commit really commits, then raises the disconnect error a
dropped connection raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage import metrics_frame
from storage.engine import create_engine, session_factory
from storage.errors import StorageUsageError
from storage.models import TrialRun
from storage.records import add_trial_run, get_or_add_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current
from sweeps.outage import retry_on_disconnect


class LostAcknowledgements:
    """Session hook: each armed commit is committed, then answered with a disconnect."""

    def __init__(self) -> None:
        self.armed = 0
        self.fired = 0

    def after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a SAVEPOINT released inside the transaction; the COMMIT comes later
        if self.armed:
            self.armed -= 1
            self.fired += 1
            raise sa.exc.OperationalError(
                "COMMIT",
                None,
                ConnectionError("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )


@contextmanager
def lost_acknowledgement() -> Iterator[LostAcknowledgements]:
    """While the block runs, every Session commit that is armed loses its acknowledgement."""
    faults = LostAcknowledgements()
    sa.event.listen(Session, "after_commit", faults.after_commit)
    try:
        yield faults
    finally:
        sa.event.remove(Session, "after_commit", faults.after_commit)


@pytest.fixture
def engine(storage_url: str) -> Iterator[Engine]:
    engine = create_engine(storage_url)
    ensure_current(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _sweep_id(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        sweep = get_or_create_sweep(
            session, "sweep-r", study_name="study-r", spec={}, convention="pytorch"
        )
        return int(sweep.id)


def _run_fields(sweep_id: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "study_name": "study-r",
        "trial_number": 5,
        "trial_id": 6,
        "role": "source",
        "optimizer": "pytorch",
        "seed": 3,
        "schedule": "constant",
        "hyperparameters": {"lr": 0.1},
        "optimizer_hyperparameters": {"lr": 0.1},
        "device": "cpu",
        "host": "worker-1",
        "pid": 4242,
        "attempt": 2,
    }
    fields.update(overrides)
    return fields


def _stored_epochs(engine: Engine) -> list[tuple[int, str, float | None, float]]:
    """The stored (epoch, metric, value, wall_time) rows, sorted; NaN read as None so that
    rows compare equal with ``==``."""
    frame = metrics_frame(engine)
    return sorted(
        (
            int(row.epoch),
            str(row.metric),
            None if math.isnan(row.value) else float(row.value),
            float(row.wall_time),
        )
        for row in frame.itertuples()
    )


@pytest.mark.parametrize("names_known", [False, True], ids=["new-names", "known-names"])
def test_an_epoch_retried_after_a_lost_acknowledgement_is_stored_once(
    engine: Engine, sessions: sessionmaker[Session], storage_url: str, names_known: bool
) -> None:
    """Protection: ``record_epoch`` skips a row already stored with the same value and wall
    time. Without it the retry's INSERT hits the primary key, ``IntegrityError`` is no
    disconnect, and the trial fails although its epoch was stored."""
    with sessions.begin() as session:
        run_id = int(add_trial_run(session, **_run_fields(_sweep_id(sessions))).id)
    if names_known:
        with sessions.begin() as session:
            record_epoch(session, run_id, 1, {"train_loss": 4.0, "val_loss": 5.0, "ghost": 0.0}, 1)
    metrics = {"train_loss": 0.75, "val_loss": math.nan, "ghost": 2.5e-300}
    expected = _stored_epochs(engine) + sorted(
        (2, name, None if math.isnan(value) else value, 12.25) for name, value in metrics.items()
    )

    rows_before_attempt: list[int] = []

    def write() -> None:
        rows_before_attempt.append(len(_stored_epochs(engine)))
        with sessions.begin() as session:
            record_epoch(session, run_id, 2, metrics, wall_time=12.25)

    with lost_acknowledgement() as faults:
        faults.armed = 1
        retry_on_disconnect(write, storage_url, budget_s=10)

    assert faults.fired == 1
    before = len(expected) - len(metrics)
    assert rows_before_attempt == [before, len(expected)], "the first attempt did not commit"
    assert _stored_epochs(engine) == sorted(expected)


def test_a_repeat_with_another_value_is_still_refused(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """A repeat is skipped only when it is the same row: another value for a stored epoch
    metric still fails and keeps the first (the guard is not ``ON CONFLICT DO NOTHING``)."""
    with sessions.begin() as session:
        run_id = int(add_trial_run(session, **_run_fields(_sweep_id(sessions))).id)
    with sessions.begin() as session:
        record_epoch(session, run_id, 1, {"train_loss": 1.0}, wall_time=1.0)
    for metrics, wall_time in (({"train_loss": 1.5}, 1.0), ({"train_loss": 1.0}, 9.0)):
        with pytest.raises(sa.exc.IntegrityError), sessions.begin() as session:
            record_epoch(session, run_id, 1, metrics, wall_time=wall_time)
    assert _stored_epochs(engine) == [(1, "train_loss", 1.0, 1.0)]


def test_a_run_start_retried_after_a_lost_acknowledgement_adds_one_run(
    sessions: sessionmaker[Session], storage_url: str
) -> None:
    """Protection: ``get_or_add_trial_run`` returns the run the lost attempt committed.
    With ``add_trial_run`` the retry adds a second copy that is never finished."""
    fields = _run_fields(_sweep_id(sessions))

    runs_before_attempt: list[int] = []

    def write() -> int:
        with sessions.begin() as session:
            runs_before_attempt.append(len(session.scalars(sa.select(TrialRun.id)).all()))
            return int(get_or_add_trial_run(session, **fields).id)

    with lost_acknowledgement() as faults:
        faults.armed = 1
        run_id = retry_on_disconnect(write, storage_url, budget_s=10)

    assert faults.fired == 1
    assert runs_before_attempt == [0, 1], "the first attempt did not commit"
    with sessions() as session:
        stored = session.scalars(sa.select(TrialRun)).all()
    assert [(run.id, run.trial_number, run.attempt) for run in stored] == [(run_id, 5, 2)]


def test_get_or_add_trial_run_keeps_runs_apart_that_differ_in_one_identity_field(
    sessions: sessionmaker[Session],
) -> None:
    sweep_id = _sweep_id(sessions)
    first = _run_fields(sweep_id)
    variants = [
        first,
        {**first, "trial_number": 6},
        {**first, "attempt": 3},
        {**first, "role": "naive"},
        {**first, "optimizer": "sutskever"},
        {**first, "seed": 4},
        {**first, "study_name": "study-s"},
    ]
    with sessions.begin() as session:
        ids = [get_or_add_trial_run(session, **fields).id for fields in variants]
    with sessions.begin() as session:
        again = [get_or_add_trial_run(session, **fields).id for fields in variants]
    assert len(set(ids)) == len(variants)
    assert again == ids


def test_get_or_add_trial_run_names_a_missing_identity_field(
    sessions: sessionmaker[Session],
) -> None:
    fields = _run_fields(_sweep_id(sessions))
    del fields["seed"]
    with sessions.begin() as session, pytest.raises(StorageUsageError, match="needs seed"):
        get_or_add_trial_run(session, **fields)


def test_the_recorder_survives_a_lost_acknowledgement_of_each_write(
    engine: Engine, sessions: sessionmaker[Session], storage_url: str
) -> None:
    """The worker's ``DatabaseRecorder``: its run start, an epoch (written by its writer
    thread) and its finish each lose one acknowledgement; the run is stored once, COMPLETE,
    with each epoch once. Fails if the run start or the epoch write is not idempotent."""
    from sweeps.objective import DatabaseRecorder
    from sweeps.training import EpochResult

    recorder = DatabaseRecorder(
        engine=engine, url=storage_url, sweep_id=_sweep_id(sessions), study_name="study-r",
        device="cpu",
    )  # fmt: skip
    trial: Any = SimpleNamespace(number=7, _trial_id=8)
    run: Any = SimpleNamespace(
        trainable=True, role="source", optimizer="pytorch", seed=0, verdict=None,
        hyperparameters={"lr": 0.1}, optimizer_hyperparameters={"lr": 0.1},
    )  # fmt: skip
    epochs = [
        EpochResult(epoch=e, step=4 * e, metrics={"val_loss": 1 / e}, wall_time=e) for e in (1, 2)
    ]
    try:
        with lost_acknowledgement() as faults:
            faults.armed = 1
            run_id = recorder.start(trial, run, schedule="constant", attempt=1, steps_per_epoch=4)
            for result in epochs:
                faults.armed = 1
                recorder.epoch(run_id, result)
                recorder.flush()
            faults.armed = 1
            recorder.finish(run_id, state="COMPLETE", value=0.5)
    finally:
        recorder.close()

    assert faults.fired == 4
    with sessions() as session:
        stored = session.scalars(sa.select(TrialRun)).all()
    assert [(r.id, r.state, r.value) for r in stored] == [(run_id, "COMPLETE", 0.5)]
    assert _stored_epochs(engine) == [(1, "val_loss", 1.0, 1.0), (2, "val_loss", 0.5, 2.0)]
