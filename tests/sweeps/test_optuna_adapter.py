"""The contract of ``sweeps.optuna_adapter``: what the sweep service needs from Optuna
beyond its public API, checked against the installed Optuna.

CI runs this file on the oldest and the newest Optuna that ``pyproject.toml`` allows
(``.ci/run``); a refactor of Optuna's internals fails here, by name, instead of in a sweep.
Also checked: the public behaviour the lifecycle builds on (a WAITING trial added with
``add_trial`` is the next ``ask``; ``fail_stale_trials`` calls the storage's callback).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from sweeps import optuna_adapter as adapter

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

GRACE_S = 1
PAST_GRACE_S = 2.5
"""Past the grace period on SQLite, whose clock has whole seconds."""


@pytest.fixture
def storage(tmp_path: Path) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        built = RDBStorage(
            f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=GRACE_S
        )
    yield built
    built.engine.dispose()


@pytest.fixture
def study(storage: RDBStorage) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name="contract")


def test_ids_address_the_trial_in_its_storage(study):
    trial = study.ask()
    storage = adapter.storage_of(study)
    assert storage.get_trial(adapter.trial_id(trial)).number == trial.number
    assert storage.get_study_name_from_id(adapter.study_id(study)) == "contract"


def test_the_rdb_storage_is_found_under_optunas_cache(study, storage):
    assert adapter.rdb_backend(study) is storage
    assert adapter.rdb_backend(optuna.create_study()) is None  # in-memory


def test_heartbeats_are_recorded_and_stale_trials_found(study, storage):
    assert adapter.heartbeat_enabled(storage)
    assert not adapter.heartbeat_enabled(optuna.storages.InMemoryStorage())
    trial = study.ask()
    adapter.record_heartbeat(study, trial)
    assert adapter.stale_trial_ids(study) == []
    time.sleep(PAST_GRACE_S)
    assert adapter.stale_trial_ids(study) == [adapter.trial_id(trial)]


def test_the_orm_tables_have_the_columns_the_queries_use(study, storage):
    trial = study.ask()
    adapter.record_heartbeat(study, trial)
    study._storage.set_trial_system_attr(adapter.trial_id(trial), "fail_reason", "x")
    study.tell(trial, state=TrialState.FAIL)
    trials, beats, attributes = adapter.trial_tables()
    rows = adapter.read(
        storage,
        sa.select(
            trials.trial_id,
            trials.number,
            trials.state,
            trials.__table__.c.datetime_complete,
            beats.heartbeat,
            attributes.key,
            attributes.value_json,
        )
        .join(beats, beats.trial_id == trials.trial_id)
        .join(attributes, attributes.trial_id == trials.trial_id)
        .where(trials.study_id == adapter.study_id(study)),
    )
    [(trial_id, number, state, completed, beat, key, value)] = rows
    assert (trial_id, number, key, value) == (adapter.trial_id(trial), 0, "fail_reason", '"x"')
    assert (state if isinstance(state, TrialState) else TrialState(state)) is TrialState.FAIL
    assert completed is not None
    assert beat is not None


def test_a_running_trial_asked_elsewhere_can_be_continued(storage):
    asker = optuna.create_study(storage=storage, study_name="contract")
    orphan = asker.ask()
    taker = optuna.load_study(study_name="contract", storage=storage)
    resumed = adapter.resume_running_trial(taker, adapter.trial_id(orphan))
    assert resumed.number == orphan.number
    value = resumed.suggest_float("x", 0.0, 1.0)
    taker.tell(resumed, value)
    [frozen] = taker.get_trials()
    assert frozen.state is TrialState.COMPLETE
    assert frozen.params == {"x": value}


def test_study_stop_is_allowed_outside_optimize_and_seen(study):
    assert not adapter.study_stop_requested(study)
    adapter.allow_study_stop(study)
    study.stop()
    assert adapter.study_stop_requested(study)


def test_a_grid_counts_its_unvisited_points(storage):
    grid = optuna.samplers.GridSampler({"x": [1, 2, 3]}, seed=0)
    study = optuna.create_study(storage=storage, study_name="grid", sampler=grid)
    assert adapter.unvisited_grid_points(grid, study) == 3
    trial = study.ask()
    trial.suggest_categorical("x", [1, 2, 3])
    study.tell(trial, 1.0)
    assert adapter.unvisited_grid_points(grid, study) == 2


def test_many_reports_in_one_transaction_are_what_trial_report_stores(study, storage):
    trials = [study.ask() for _ in range(3)]
    reports = [(trial, 1, float(i)) for i, trial in enumerate(trials)]
    adapter.report_in_one_transaction(storage, reports)
    adapter.remember_reports(reports)
    for i, trial in enumerate(trials):
        assert storage.get_trial(adapter.trial_id(trial)).intermediate_values == {1: float(i)}
        assert trial._cached_frozen_trial.intermediate_values == {1: float(i)}
    trials[0].should_prune()  # reads the remembered values without error


def test_public_fail_stale_trials_fails_them_and_calls_the_storages_callback(tmp_path):
    seen: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            f"sqlite:///{tmp_path / 'stale.db'}",
            heartbeat_interval=1,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=lambda study, trial: seen.append(trial.number),
        )
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    adapter.record_heartbeat(study, trial)
    time.sleep(PAST_GRACE_S)
    adapter.fail_stale_trials(study)
    assert seen == [trial.number]
    assert study.get_trials()[0].state is TrialState.FAIL
    storage.engine.dispose()


def test_an_added_waiting_trial_is_the_next_ask_with_its_parameters(study):
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params={"x": 0.25},
            distributions={"x": distribution},
            system_attrs={"retry_history": [7]},
        )
    )
    trial = study.ask()
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    assert adapter.storage_of(study).get_trial_system_attrs(adapter.trial_id(trial)) == {
        "retry_history": [7]
    }
