"""Train the transfer runs a paired sweep does not contain (``sweeps report --run-missing``).

A paired sweep converts every configuration from the spec's family into the other one, so
the best configuration of the *other* optimizer (one of its ``naive`` runs) has no exact
conversion back into the spec's family. This module trains that conversion, seed by seed,
with the sweep's own training loop, and records the runs in the sweep as ``converted`` runs
of the same trial in the spec's family. The plan is :func:`sweeps.pairing.plan_runs` with
the families swapped: the naive runs' numbers are a recipe in the other family, and its
``converted`` run is the missing one.

The added runs keep the trial's sampled ``hyperparameters``; their
``optimizer_hyperparameters`` say ``"added_by": "sweeps report --run-missing"``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage import records
from storage.engine import session_factory
from storage.models import Sweep, TrialRun
from sweeps.report.data import ReportData

if TYPE_CHECKING:
    from sweeps.pairing import PlannedRun
    from sweeps.search_space import Configuration
    from sweeps.tasks import Task

ADDED_BY = "sweeps report --run-missing"


@dataclass(frozen=True)
class _SwappedSpec:
    """The paired-plan view of a sweep whose search space is read in ``family``."""

    convention: str
    family: str
    seeds: tuple[int, ...]
    optimizers: tuple[str, ...] = ("pytorch", "sutskever")
    pairing: bool = True
    search_space: Any = None


def _configuration(hyperparameters: Mapping[str, Any]) -> Configuration:
    from sweeps.search_space import Configuration

    params = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in dict(hyperparameters.get("schedule_params") or {}).items()
    }
    return Configuration(
        lr=float(hyperparameters["lr"]),
        momentum=float(hyperparameters["momentum"]),
        weight_decay=float(hyperparameters.get("weight_decay", 0.0)),
        nesterov=bool(hyperparameters.get("nesterov", False)),
        schedule=str(hyperparameters["schedule"]),
        batch_size=int(hyperparameters["batch_size"]),
        epochs=int(hyperparameters["epochs"]),
        schedule_params=params,
    )


@dataclass(frozen=True)
class _Trial:
    """Where the added runs go: the sweep, its study, the trial and its sampled numbers."""

    sweep_id: int
    study_name: str
    number: int
    hyperparameters: dict[str, Any]


def run_missing_pairs(engine: Engine, sweep: str, data: ReportData, *, device: str = "cpu") -> int:
    """Train and record the missing ``converted`` transfers of ``data``; return how many runs.

    Only transfers whose origin is a ``naive`` configuration are completed (the source
    configurations' conversions are part of the sweep). Impossible conversions are
    recorded as failed runs with the converter's first note, as the sweep itself does.
    """
    from sweeps.pairing import plan_runs
    from sweeps.tasks import configure_task, get_task

    sessions = session_factory(engine)
    added = 0
    for family in data.families:
        for transfer in family.transfers:
            origin = transfer.origin
            if transfer.converted is not None or origin.role != "naive":
                continue
            with sessions() as session:
                stored = session.scalars(sa.select(Sweep).where(Sweep.name == sweep)).one()
                row = session.scalars(
                    sa.select(TrialRun).where(
                        TrialRun.sweep_id == stored.id,
                        TrialRun.trial_number == origin.trial,
                        TrialRun.role == origin.role,
                        TrialRun.optimizer == origin.optimizer,
                    )
                ).first()
                if row is None:
                    continue
                trial = _Trial(
                    stored.id, stored.study_name, origin.trial, dict(row.hyperparameters)
                )
                task = configure_task(
                    get_task(str(stored.spec["task"])),
                    stored.spec.get("data_dir"),
                    stored.spec.get("task_options") or {},
                )
            spec = _SwappedSpec(origin.optimizer, origin.optimizer, origin.estimate.seeds)
            plan = plan_runs(
                spec,
                _configuration(trial.hyperparameters),
                int(trial.hyperparameters["steps_per_epoch"]),
            )
            for run in plan:
                if run.role == "converted":
                    _train_and_record(sessions, task, run, trial, data, device)
                    added += 1
    return added


def _train_and_record(
    sessions: sessionmaker[Session],
    task: Task,
    run: PlannedRun,
    trial: _Trial,
    data: ReportData,
    device: str,
) -> None:
    """Train one planned run with the sweep's loop, recording it as the sweep does."""
    from sweeps.training import EpochResult, train_run

    fields: dict[str, Any] = {
        "sweep_id": trial.sweep_id,
        "study_name": trial.study_name,
        "trial_number": trial.number,
        "role": "converted",
        "optimizer": run.optimizer,
        "seed": run.seed,
        "schedule": run.schedule,
        "hyperparameters": trial.hyperparameters,
        "optimizer_hyperparameters": {**run.optimizer_hyperparameters, "added_by": ADDED_BY},
        "verdict": run.verdict,
        "device": device,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if not run.trainable:
        fields.update(state="FAIL", failure_reason=run.failure_reason)
        with sessions.begin() as session:
            records.add_trial_run(session, **fields)
        return
    with sessions.begin() as session:
        run_id = int(records.add_trial_run(session, **fields).id)

    def on_epoch(result: EpochResult) -> None:
        with sessions.begin() as session:
            records.record_epoch(
                session, run_id, result.epoch, result.metrics, wall_time=result.wall_time
            )

    outcome = train_run(
        task, run, device=device, on_epoch=on_epoch, objective=data.objective,
        direction=data.direction,
    )  # fmt: skip
    with sessions.begin() as session:
        records.finish_trial_run(
            session,
            run_id,
            state="COMPLETE",
            value=outcome.value,
            failure_reason=outcome.failure_reason,
            diverged_at_step=outcome.diverged_at_step,
        )
