"""The storage contract: writes and reads behave the same on every backend.

Each test takes ``storage_url`` and so runs on SQLite, PostgreSQL and (when present)
MariaDB; expected values are the numbers the test itself wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage import metrics_frame, queries, sweeps_frame, trials_frame
from storage.engine import create_engine, session_factory
from storage.errors import StorageUsageError, SweepNotFoundError, TrialRunNotFoundError
from storage.models import EpochMetric, ReportArtifact, TrialRun
from storage.records import (
    add_report_artifact,
    add_trial_run,
    finish_trial_run,
    get_or_create_sweep,
    mark_runs_failed,
    record_epoch,
)
from storage.schema import ensure_current


@pytest.fixture
def engine(storage_url: str) -> Iterator[Engine]:
    engine = create_engine(storage_url)
    ensure_current(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _run_fields(sweep_id: int, trial: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "study_name": "study-a",
        "trial_number": trial,
        "trial_id": 100 + trial,
        "role": "source",
        "optimizer": "pytorch",
        "seed": 7,
        "schedule": "step:size=30,gamma=0.1",
        "hyperparameters": {"lr": 0.1, "momentum": 0.9},
        "optimizer_hyperparameters": {"lr": 0.1, "momentum": 0.9},
        "device": "cpu",
        "host": "worker-1",
        "pid": 4242,
    }
    fields.update(overrides)
    return fields


def _sweep(session: Session, name: str = "sweep-a") -> int:
    sweep = get_or_create_sweep(
        session, name, study_name="study-a", spec={"trials": 4}, convention="pytorch"
    )
    return sweep.id


def test_get_or_create_sweep_returns_the_stored_row_the_second_time(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        first = _sweep(session)
    with sessions.begin() as session:
        again = get_or_create_sweep(
            session, "sweep-a", study_name="study-a", spec={"other": 1}, convention="sutskever"
        )
        assert again.id == first
        assert again.spec == {"trials": 4}
        assert again.convention == "pytorch"


def test_get_or_create_sweep_refuses_a_name_bound_to_another_study(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _sweep(session)
    with sessions.begin() as session, pytest.raises(StorageUsageError, match="study-a"):
        get_or_create_sweep(session, "sweep-a", study_name="study-b", spec={}, convention="pytorch")


def test_recorded_epochs_come_back_in_long_format(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    written = {
        (0, "train_loss"): 2.5,
        (0, "lr"): 0.1,
        (0, "momentum"): 0.9,
        (1, "train_loss"): 1.25,
        (1, "lr"): 0.01,
        (1, "momentum"): 0.95,
    }
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 3, role="converted"))
    for epoch in (0, 1):
        with sessions.begin() as session:
            metrics = {name: value for (e, name), value in written.items() if e == epoch}
            record_epoch(session, run.id, epoch, metrics, wall_time=10.0 * (epoch + 1))

    frame = metrics_frame(engine, sweep="sweep-a")
    assert list(frame.columns) == [
        "sweep", "trial", "optimizer", "role", "seed", "attempt",
        "epoch", "metric", "value", "wall_time",
    ]  # fmt: skip
    got = {(int(r.epoch), str(r.metric)): r.value for r in frame.itertuples()}
    assert got == written
    assert set(frame["trial"]) == {3}
    assert set(frame["role"].astype(str)) == {"converted"}
    assert sorted(set(frame["wall_time"])) == [10.0, 20.0]
    assert isinstance(frame["metric"].dtype, pd.CategoricalDtype)
    assert frame["epoch"].dtype == "int64"


def test_non_finite_metric_values_are_stored(
    engine: Engine, sessions: sessionmaker[Session], storage_url: str
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
    with sessions.begin() as session:
        record_epoch(
            session, run.id, 0, {"a_nan": math.nan, "b_inf": math.inf, "c_ninf": -math.inf}, 1.0
        )
        record_epoch(session, run.id, 1, {"a_nan": 1.0, "b_inf": 2.0, "c_ninf": 3.0}, 2.0)
    frame = metrics_frame(engine)
    first = frame[frame["epoch"] == 0].set_index(frame[frame["epoch"] == 0]["metric"].astype(str))
    assert math.isnan(first.loc["a_nan", "value"])
    # Every backend alike, MySQL/MariaDB included (which has no infinities).
    assert first.loc["b_inf", "value"] == math.inf
    assert first.loc["c_ninf", "value"] == -math.inf
    with sessions() as session:
        orm_values = {
            m.metric: m.value
            for m in session.scalars(sa.select(EpochMetric).where(EpochMetric.epoch == 0))
        }
    assert math.isnan(orm_values["a_nan"])


def test_record_epoch_sends_one_insert_statement(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
    statements: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        with sessions.begin() as session:
            record_epoch(session, run.id, 0, {"train_loss": 1.0, "val_loss": 2.0, "lr": 0.1}, 3.0)
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1
    assert "ms_epoch_metrics" in inserts[0]


def test_recording_a_stored_epoch_metric_with_another_value_fails_and_keeps_the_first(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
    with sessions.begin() as session:
        record_epoch(session, run.id, 0, {"train_loss": 1.0}, 1.0)
    with pytest.raises(sa.exc.IntegrityError), sessions.begin() as session:
        record_epoch(session, run.id, 0, {"val_loss": 5.0, "train_loss": 9.0}, 2.0)
    frame = metrics_frame(engine)
    assert frame[["metric", "value"]].astype({"metric": str}).values.tolist() == [
        ["train_loss", 1.0]
    ]


def test_record_epoch_rejects_a_value_that_is_not_a_number(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
        with pytest.raises(StorageUsageError, match="'train_loss' of epoch 4"):
            record_epoch(session, run.id, 4, {"train_loss": "low"}, 1.0)  # type: ignore[dict-item]


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_a_diverged_runs_infinite_value_reads_back_the_same_on_every_backend(
    engine: Engine, sessions: sessionmaker[Session], value: float
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
    with sessions.begin() as session:
        finish_trial_run(session, run.id, state="COMPLETE", value=value, diverged_at_step=9)
    frame = trials_frame(engine, sweep="sweep-a")
    assert frame["value"].tolist() == [value]
    assert frame["diverged_at_step"].tolist() == [9]
    with sessions() as session:
        assert session.get(TrialRun, run.id).value == value
    # What is in the table, for SQL users: the documented sentinel, with the sign.
    with engine.connect() as connection:
        raw = connection.scalar(sa.text("SELECT value FROM ms_trial_runs"))
    assert float(raw) == math.copysign(1.7976931348623157e308, value)


def test_add_trial_run_rejects_an_unknown_role_and_field(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        with pytest.raises(StorageUsageError, match="role 'teacher' is not one of"):
            add_trial_run(session, **_run_fields(sweep_id, 0, role="teacher"))
        with pytest.raises(StorageUsageError, match="unknown field"):
            add_trial_run(session, **_run_fields(sweep_id, 0, colour="red"))


def test_finish_trial_run_records_the_outcome(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        ok = add_trial_run(session, **_run_fields(sweep_id, 0))
        diverged = add_trial_run(session, **_run_fields(sweep_id, 1, optimizer="sutskever"))
    with sessions.begin() as session:
        finish_trial_run(session, ok.id, state="COMPLETE", value=0.125)
        finish_trial_run(
            session,
            diverged.id,
            state="FAIL",
            value=math.nan,
            failure_reason="loss became inf",
            diverged_at_step=77,
        )
    frame = trials_frame(engine, sweep="sweep-a").set_index("trial")
    assert frame.loc[0, "state"] == "COMPLETE"
    assert frame.loc[0, "value"] == 0.125
    assert frame.loc[1, "state"] == "FAIL"
    assert math.isnan(frame.loc[1, "value"])
    assert frame.loc[1, "failure_reason"] == "loss became inf"
    assert frame.loc[1, "diverged_at_step"] == 77
    assert pd.isna(frame.loc[0, "diverged_at_step"])
    assert frame["finished_at"].notna().all()
    with sessions.begin() as session, pytest.raises(TrialRunNotFoundError, match="99999"):
        finish_trial_run(session, 99999, state="COMPLETE")


def test_mark_runs_failed_fails_every_run_of_those_trials_and_no_other(
    sessions: sessionmaker[Session],
) -> None:
    """A failed trial is retried as a new attempt, so none of its runs may stay COMPLETE
    beside the retry's; runs already FAIL keep their own reason; other trials are untouched."""
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        running = add_trial_run(session, **_run_fields(sweep_id, 0))
        finished = add_trial_run(session, **_run_fields(sweep_id, 0, role="naive"))
        failed = add_trial_run(session, **_run_fields(sweep_id, 0, role="converted"))
        other_trial = add_trial_run(session, **_run_fields(sweep_id, 1))
        finish_trial_run(session, finished.id, state="COMPLETE", value=1.0)
        finish_trial_run(session, failed.id, state="FAIL", failure_reason="diverged early")
    with sessions.begin() as session:
        assert mark_runs_failed(session, "study-a", [0], "heartbeat lost") == 2
    with sessions() as session:

        def stored(run: TrialRun) -> tuple[str, str | None]:
            row = session.get(TrialRun, run.id)
            assert row is not None
            return row.state, row.failure_reason

        assert stored(running) == ("FAIL", "heartbeat lost")
        assert stored(finished) == ("FAIL", "heartbeat lost")
        assert stored(failed) == ("FAIL", "diverged early")
        assert stored(other_trial) == ("RUNNING", None)


def test_a_late_finish_does_not_overwrite_a_run_failed_as_stale(
    sessions: sessionmaker[Session],
) -> None:
    """Protection: ``finish_trial_run`` only changes RUNNING/WAITING runs.

    A worker that outlived its heartbeat finishes its run after another worker failed it
    (and retried the trial); the old attempt must stay FAIL, apart from the retry.
    """
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))
    with sessions.begin() as session:
        assert mark_runs_failed(session, "study-a", [0], "heartbeat lost") == 1
    with sessions.begin() as session:
        finish_trial_run(session, run.id, state="COMPLETE", value=0.5)
    with sessions() as session:
        stored = session.get(TrialRun, run.id)
        assert stored is not None
        assert (stored.state, stored.value, stored.failure_reason) == (
            "FAIL",
            None,
            "heartbeat lost",
        )


def test_trials_frame_spreads_hyperparameters_into_columns(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        add_trial_run(session, **_run_fields(sweep_id, 0))
        add_trial_run(
            session,
            **_run_fields(
                sweep_id,
                0,
                role="converted",
                optimizer="sutskever",
                verdict="exact",
                optimizer_hyperparameters={"lr": 0.01, "momentum": 0.9},
                attempt=2,
            ),
        )
    frame = trials_frame(engine)
    required = {"sweep", "trial", "optimizer", "role", "seed", "attempt", "state", "value"}
    required |= {"schedule", "verdict", "diverged_at_step", "device"}
    assert required <= set(frame.columns)
    converted = frame[frame["role"] == "converted"].iloc[0]
    assert converted["hp_lr"] == 0.1
    assert converted["opt_lr"] == 0.01
    assert converted["verdict"] == "exact"
    assert converted["attempt"] == 2
    assert frame["state"].astype(str).tolist() == ["RUNNING", "RUNNING"]


def test_sweeps_frame_counts_runs_by_state(engine: Engine, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        _sweep(session, "empty-sweep")
        for trial, state in enumerate(["COMPLETE", "COMPLETE", "PRUNED"]):
            run = add_trial_run(session, **_run_fields(sweep_id, trial))
            finish_trial_run(session, run.id, state=state, value=1.0)
        add_trial_run(session, **_run_fields(sweep_id, 3))
    frame = sweeps_frame(engine).set_index("name")
    assert frame.loc["sweep-a", ["trials", "runs", "complete", "pruned", "running"]].tolist() == [
        4, 4, 2, 1, 1,
    ]  # fmt: skip
    assert frame.loc["empty-sweep", ["trials", "runs", "complete"]].tolist() == [0, 0, 0]


def test_an_unknown_sweep_is_named_with_the_stored_ones(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        _sweep(session)
    with pytest.raises(SweepNotFoundError, match=r"'missing'.*stored sweeps: sweep-a"):
        metrics_frame(engine, sweep="missing")
    with pytest.raises(SweepNotFoundError, match="missing"):
        trials_frame(engine, sweep="missing")


def test_a_rolled_back_epoch_leaves_nothing(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        run = add_trial_run(session, **_run_fields(_sweep(session), 0))

    def crash_mid_epoch() -> None:
        with sessions.begin() as session:
            record_epoch(session, run.id, 0, {"train_loss": 1.0}, 1.0)
            raise RuntimeError("worker crashed mid-transaction")

    with pytest.raises(RuntimeError):
        crash_mid_epoch()
    assert metrics_frame(engine).empty


def test_report_artifacts_belong_to_their_sweep(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        add_report_artifact(session, sweep_id, kind="figure", path="out/lr.png", content=b"\x89PNG")
    with sessions() as session:
        artifact = session.scalars(sa.select(ReportArtifact)).one()
        assert (artifact.kind, artifact.path, artifact.content) == (
            "figure",
            "out/lr.png",
            b"\x89PNG",
        )


def test_metrics_frame_is_the_same_with_and_without_adbc(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        runs = [add_trial_run(session, **_run_fields(sweep_id, t)) for t in range(3)]
    with sessions.begin() as session:
        for run in runs:
            for epoch in range(4):
                record_epoch(
                    session, run.id, epoch, {"lr": 0.1 / (epoch + 1), "val_loss": math.nan}, epoch
                )
    fast = metrics_frame(engine)
    monkeypatch.setattr(queries, "_adbc_uri", lambda engine: None)
    plain = metrics_frame(engine)
    key = ["trial", "epoch", "metric"]
    pd.testing.assert_frame_equal(
        fast.astype({"metric": str}).sort_values(key).reset_index(drop=True),
        plain.astype({"metric": str}).sort_values(key).reset_index(drop=True),
        check_categorical=False,
    )


def test_metrics_frame_reads_a_long_stretch_of_nan_before_numbers(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # More NaN rows than one fetch batch, then numbers: a reader that types a column by its
    # first batch of values must still return floats.
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        diverged = add_trial_run(session, **_run_fields(sweep_id, 0))
        healthy = add_trial_run(session, **_run_fields(sweep_id, 1))
    with sessions.begin() as session:
        for epoch in range(1100):
            record_epoch(session, diverged.id, epoch, {"train_loss": math.nan}, float(epoch))
        for epoch in range(3):
            record_epoch(session, healthy.id, epoch, {"train_loss": 0.5 * epoch}, float(epoch))
    frame = metrics_frame(engine, sweep="sweep-a")
    assert frame["value"].dtype == "float64"
    assert frame[frame["trial"] == 0]["value"].isna().sum() == 1100
    assert sorted(frame[frame["trial"] == 1]["value"]) == [0.0, 0.5, 1.0]
    assert len(frame) == 1103


def test_metrics_frame_categories_are_only_the_values_that_occur(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        sweep_a = _sweep(session, "sweep-a")
        sweep_b = _sweep(session, "sweep-b")
        run_a = add_trial_run(session, **_run_fields(sweep_a, 0, role="naive"))
        add_trial_run(session, **_run_fields(sweep_a, 1, optimizer="sutskever"))  # no metrics
        run_b = add_trial_run(session, **_run_fields(sweep_b, 0, optimizer="sutskever"))
    with sessions.begin() as session:
        record_epoch(session, run_a.id, 0, {"val_loss": 1.0, "zeta": 2.0}, 1.0)
        record_epoch(session, run_b.id, 0, {"lr": 0.1}, 1.0)
    frame = metrics_frame(engine, sweep="sweep-a")
    assert list(frame["sweep"].cat.categories) == ["sweep-a"]
    assert list(frame["optimizer"].cat.categories) == ["pytorch"]
    assert list(frame["role"].cat.categories) == ["naive"]
    assert list(frame["metric"].cat.categories) == ["val_loss", "zeta"]
    assert sorted(frame["metric"].astype(str)) == ["val_loss", "zeta"]
    everything = metrics_frame(engine)
    assert sorted(everything["metric"].cat.categories) == ["lr", "val_loss", "zeta"]
    pairs = zip(everything["sweep"].astype(str), everything["optimizer"].astype(str), strict=True)
    assert sorted(pairs) == [
        ("sweep-a", "pytorch"),
        ("sweep-a", "pytorch"),
        ("sweep-b", "sutskever"),
    ]


def test_metrics_frame_drops_rows_of_a_run_deleted_after_the_rows_were_read(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions.begin() as session:
        sweep_id = _sweep(session)
        runs = [add_trial_run(session, **_run_fields(sweep_id, t)) for t in range(3)]
    with sessions.begin() as session:
        for run in runs:
            record_epoch(session, run.id, 0, {"lr": 0.1 * run.trial_number}, 1.0)
    read_run_keys = queries._run_keys

    def _middle_run_deleted(connection: Any, sweep_id: int | None) -> pd.DataFrame:
        keys = read_run_keys(connection, sweep_id)
        return keys.drop(index=runs[1].id)

    monkeypatch.setattr(queries, "_run_keys", _middle_run_deleted)
    frame = metrics_frame(engine, sweep="sweep-a")
    assert frame[["trial", "value"]].values.tolist() == [[0, 0.0], [2, 0.2]]
