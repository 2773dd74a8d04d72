"""``pairing = "independent"``: tune each optimizer in its own study, then confirm its best.

A paired sweep samples in one convention and ports every configuration to the other family,
so the other family's "best" is the best naive port of points chosen for the source. A fair
comparison of optimizers tunes each with the same budget under the same protocol (Choi et al.
2019, "On Empirical Comparisons of Optimizers for Deep Learning"; Sivaprasad et al. 2020,
"Optimizer Benchmarking Needs to Account for Hyperparameter Tuning"). Here each optimizer of
the spec is an *arm*:

* an arm is an ordinary sweep, named ``<sweep>.<optimizer>`` (:func:`arm_spec`): one
  optimizer, its own Optuna study and sampler (seeded apart, so the arms do not draw the
  same points), the spec's search space read in the arm's own convention, the same
  ``n_trials``. The worker loop (:func:`sweeps.worker.run_worker`) serves it unchanged, and
  its trial gate counts the budget in the database. A tuner arm (``yellowfin``) has no lr or
  momentum to search: its first step uses the search space's lowest lr, and when nothing
  else is searched its budget is one trial;
* once an arm's budget is spent, its best trial per schedule family is *confirmed*
  (:func:`confirm_arm`): trained again on ``confirm_seeds`` fresh seeds, stored as runs of
  that trial with role ``confirm``, and transferred to the other momentum family on the same
  seeds as ``naive`` (the same numbers) and ``converted`` (``momentum_convert.convert``)
  runs of that trial. One worker confirms an arm: it claims the arm in the study's user
  attributes under the sweep lock, and a claim whose worker died is taken over;
* the parent sweep (``<sweep>``) is a ``Sweep`` row holding the whole spec, which the
  report (:mod:`sweeps.report.tuned`) reads to find its arms.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from sweeps.search_space import Fixed
from sweeps.spec import OPTIMIZERS, TUNERS, SweepSpec

if TYPE_CHECKING:
    from sweeps.launcher import LaunchResult
    from sweeps.objective import DatabaseRecorder
    from sweeps.pairing import PlannedRun
    from sweeps.sweep_study import StudySettings
    from sweeps.tasks import Task
    from sweeps.worker import WorkerSummary


CONFIRMATION_ATTR: Final = "sweeps:confirmation"
"""Study user attribute of an arm: who confirms it (``owner``, ``at``) and whether it is done."""
CONFIRM_ROLE: Final = "confirm"
STALE_CLAIM_S: Final = 3600.0
"""A claim by a worker on another host is taken over when it is this old (its pid cannot be
checked from here); on this host a claim is taken over as soon as its process is gone."""
TUNER_CONVENTION: Final = "sutskever"
"""The convention of a tuner arm: YellowFin's analysis is the heavy ball, lr inside."""


def arm_name(sweep: str, optimizer: str) -> str:
    """The name of one arm's sweep and study: ``<sweep>.<optimizer>``."""
    return f"{sweep}.{optimizer}"


def arm_spec(spec: SweepSpec, optimizer: str) -> SweepSpec:
    """The ordinary one-optimizer sweep that tunes ``optimizer`` for the independent ``spec``.

    Its search space is the spec's, read in the arm's convention (the spec's own convention
    for the family it belongs to, else the family's name); its sampler seed is the spec's
    mixed with the optimizer's name, so every arm draws its own points.
    """
    if not spec.independent:
        raise ValueError(f"the sweep {spec.name!r} is not an independent sweep.")
    if optimizer not in spec.optimizers:
        raise ValueError(f"{optimizer!r} is not an optimizer of the sweep {spec.name!r}.")
    seed = spec.sampler_seed
    if seed is not None:
        seed = zlib.crc32(f"{seed}:{optimizer}".encode()) % 2**31
    space, n_trials = spec.search_space, spec.n_trials
    if optimizer in TUNERS:
        convention = family = TUNER_CONVENTION
        first_lr = float(space.lr.bounds()[0])
        space = dataclasses.replace(
            space,
            lr=Fixed(first_lr),
            momentum=Fixed(0.0),
            nesterov=Fixed(False),
            schedules={"constant": {}},
        )
        searched = [
            name
            for name in ("weight_decay", "batch_size", "epochs")
            if not isinstance(getattr(space, name), Fixed)
        ]
        if not searched and n_trials is not None:
            n_trials = 1  # nothing to tune: every trial would repeat the first
    else:
        family = optimizer
        convention = spec.convention if spec.family == optimizer else optimizer
    return dataclasses.replace(
        spec,
        name=arm_name(spec.name, optimizer),
        optimizers=(optimizer,),
        convention=convention,
        family=family,
        search_space=space,
        pairing=False,
        independent=False,
        confirm_seeds=(),
        sampler_seed=seed,
        n_trials=n_trials,
        recipe=None,
        recipe_spread=None,
    )


def arm_specs(spec: SweepSpec) -> tuple[SweepSpec, ...]:
    """Every arm of ``spec``, in the order of its ``optimizers``."""
    return tuple(arm_spec(spec, optimizer) for optimizer in spec.optimizers)


def link_parent(spec: SweepSpec, url: str) -> int:
    """Store the parent ``Sweep`` row (the whole spec), once; return its id."""
    from storage import records
    from storage.engine import create_engine, session_factory
    from storage.schema import ensure_current

    engine = create_engine(url)
    try:
        ensure_current(engine)
        with session_factory(engine).begin() as session:
            sweep = records.get_or_create_sweep(
                session,
                name=spec.name,
                study_name=spec.name,
                spec=spec.to_json(),
                convention=spec.family,
            )
            return int(sweep.id)
    finally:
        engine.dispose()


def run_independent_worker(
    spec: SweepSpec,
    url: str,
    *,
    arms: tuple[str, ...] | None = None,
    device: str = "cpu",
    settings: StudySettings | None = None,
    train: Callable[..., Any] | None = None,
    handle_signals: bool = True,
) -> WorkerSummary:
    """Work on the arms of ``spec`` (all, or those named in ``arms``), one after the other.

    For each arm: the worker loop until its budget is spent, then its confirmation (unless
    another worker holds it). Stops at the first arm interrupted by a signal.
    """
    from sweeps.worker import WorkerSummary, run_worker

    link_parent(spec, url)
    total = WorkerSummary()
    for optimizer in arms or spec.optimizers:
        arm = arm_spec(spec, optimizer)
        summary = run_worker(
            arm, url, device=device, settings=settings, train=train, handle_signals=handle_signals
        )
        total.complete += summary.complete
        total.pruned += summary.pruned
        total.failed += summary.failed
        total.failures += summary.failures
        if summary.stopped_by is not None:
            total.stopped_by = summary.stopped_by
            break
        confirm_arm(spec, optimizer, url, device=device, settings=settings, train=train)
    return total


def launch_independent(
    spec: SweepSpec,
    spec_path: str | Path,
    url: str,
    *,
    workers: int | None = None,
    devices: str | None = None,
    n_trials: int | None = None,
    name: str | None = None,
    console: Any = None,
    show_progress: bool = True,
    population: str | None = None,
    extend: bool = False,
) -> LaunchResult:
    """``sweeps run`` for an independent spec: each arm with local workers, then confirmed.

    Each arm is one :func:`sweeps.launcher.launch` (its progress drawn from its own study)
    whose workers tune it and confirm it; an arm found already tuned is only confirmed
    (nothing is trained when that is done too). Stops at the first arm that does not end
    with exit status 0. ``n_trials``, ``name``, ``population``: as given on the command line
    (already applied to ``spec``).
    """
    from sweeps.launcher import LaunchResult, launch

    link_parent(spec, url)
    messages: list[str] = []
    result = LaunchResult(0, None, "")
    for optimizer in spec.optimizers:
        arm = arm_spec(spec, optimizer)
        result = launch(
            arm,
            spec_path,
            url,
            workers=workers,
            devices=devices,
            n_trials=arm.n_trials,
            name=name,
            console=console,
            show_progress=show_progress,
            extend=extend,
            arm=optimizer,
        )
        messages.append(f"{arm.name}: {result.message}")
        if result.exit_code:
            return LaunchResult(result.exit_code, result.snapshot, "\n".join(messages))
        confirm_arm(spec, optimizer, url, device=_confirm_device(devices or spec.devices))
    return LaunchResult(0, result.snapshot, "\n".join(messages))


def _confirm_device(devices: str) -> str:
    """Where the launcher trains a confirmation it has to finish itself: the first device."""
    from sweeps.devices import parse_devices

    first = parse_devices(devices)[0]
    return "cpu" if first.kind == "cpu" else f"cuda:{first.index}"


def best_trials(study: optuna.Study, spec: SweepSpec) -> dict[str, FrozenTrial]:
    """The best COMPLETE trial of ``study`` per schedule family (lowest number on ties)."""
    families = list(spec.search_space.schedules)
    sign = -1.0 if spec.direction == "maximize" else 1.0
    best: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.value is None:
            continue
        family = str(trial.params.get("schedule", families[0]))
        current = best.get(family)
        if current is None or sign * trial.value < sign * float(current.value):  # type: ignore[arg-type]
            best[family] = trial
    return dict(sorted(best.items()))


def confirmation_plan(
    spec: SweepSpec, optimizer: str, trial: FrozenTrial, steps_per_epoch: int
) -> list[PlannedRun]:
    """The confirmation runs of one arm's best ``trial``, on the spec's ``confirm_seeds``.

    ``confirm``: the arm's optimizer with the trial's numbers; for a momentum family whose
    other family is in the spec, also ``naive`` and ``converted`` runs in that family (as a
    paired sweep plans them, :func:`sweeps.pairing.plan_runs`).
    """
    from sweeps.pairing import other_family, plan_runs
    from sweeps.search_space import sample_configuration

    arm = arm_spec(spec, optimizer)
    configuration = sample_configuration(arm, trial)  # a FrozenTrial answers with its params
    planning = dataclasses.replace(arm, seeds=spec.confirm_seeds)
    if optimizer in OPTIMIZERS and other_family(optimizer) in spec.optimizers:
        planning = dataclasses.replace(
            planning, optimizers=(optimizer, other_family(optimizer)), pairing=True
        )
    return [
        dataclasses.replace(run, role=CONFIRM_ROLE) if run.role == "source" else run
        for run in plan_runs(planning, configuration, steps_per_epoch)
    ]


def confirm_arm(
    spec: SweepSpec,
    optimizer: str,
    url: str,
    *,
    device: str = "cpu",
    settings: StudySettings | None = None,
    train: Callable[..., Any] | None = None,
) -> bool:
    """Confirm one arm's best trials (module docstring); False when another worker does it.

    Runs already stored COMPLETE are kept (a resumed confirmation trains only what is
    missing); an unfinished earlier attempt of a run is marked FAIL and trained again as the
    next attempt.
    """
    from sweeps.objective import DatabaseRecorder
    from sweeps.sweep_study import open_study
    from sweeps.tasks import task_for_spec

    arm = arm_spec(spec, optimizer)
    sweep = open_study(arm, url, settings=settings)
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        with sweep.lock():
            claim = sweep.study.user_attrs.get(CONFIRMATION_ATTR) or {}
            if claim.get("done") or (claim.get("owner") not in (None, me) and _live(claim)):
                return False
            sweep.study.set_user_attr(CONFIRMATION_ATTR, {"owner": me, "at": time.time()})
        recorder = DatabaseRecorder(
            engine=sweep.engine,
            url=sweep.url,
            sweep_id=sweep.sweep_id,
            study_name=sweep.name,
            device=device,
        )
        task = task_for_spec(arm)
        if train is None:
            from sweeps.training import train_run

            train = train_run
        try:
            for trial in best_trials(sweep.study, arm).values():
                batch_size = int(trial.params.get("batch_size", _fixed(arm, "batch_size")))
                setup = task.build(seed=spec.confirm_seeds[0], batch_size=batch_size, device=device)
                planned = confirmation_plan(spec, optimizer, trial, setup.steps_per_epoch)
                stored = _stored_runs(sweep.engine, sweep.name, trial.number)
                for run in planned:
                    key = (run.role, run.optimizer, run.seed)
                    attempts = stored.get(key, {})
                    if "COMPLETE" in attempts.values():
                        continue
                    if attempts:
                        _fail_unfinished(sweep.engine, sweep.name, trial.number, key)
                    _train_and_record(
                        recorder,
                        trial,
                        run,
                        attempt=max(attempts, default=0) + 1,
                        steps_per_epoch=setup.steps_per_epoch,
                        task=task,
                        train=train,
                        spec=arm,
                        device=device,
                    )
        finally:
            recorder.close()
        sweep.study.set_user_attr(CONFIRMATION_ATTR, {"owner": me, "at": time.time(), "done": True})
        return True
    finally:
        sweep.close()


def _fixed(spec: SweepSpec, name: str) -> Any:
    distribution = getattr(spec.search_space, name)
    return distribution.values()[0] if isinstance(distribution, Fixed) else None


def _live(claim: dict[str, Any]) -> bool:
    """Whether the worker that claimed a confirmation may still be working on it."""
    host, _, pid = str(claim.get("owner", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(claim.get("at", 0.0)) < STALE_CLAIM_S


def _stored_runs(
    engine: sa.engine.Engine, study_name: str, trial_number: int
) -> dict[tuple[str, str, int], dict[int, str]]:
    """The stored runs of one trial: (role, optimizer, seed) -> {attempt: state}."""
    from storage.engine import session_factory
    from storage.models import TrialRun

    with session_factory(engine)() as session:
        rows = session.execute(
            sa.select(
                TrialRun.role, TrialRun.optimizer, TrialRun.seed, TrialRun.attempt, TrialRun.state
            ).where(TrialRun.study_name == study_name, TrialRun.trial_number == trial_number)
        ).all()
    out: dict[tuple[str, str, int], dict[int, str]] = {}
    for role, optimizer, seed, attempt, state in rows:
        out.setdefault((role, optimizer, seed), {})[attempt] = state
    return out


def _fail_unfinished(
    engine: sa.engine.Engine, study_name: str, trial_number: int, key: tuple[str, str, int]
) -> None:
    """Mark the unfinished earlier attempts of one confirmation run FAIL (a dead worker's)."""
    from storage.engine import session_factory
    from storage.models import TrialRun, utc_now

    role, optimizer, seed = key
    with session_factory(engine).begin() as session:
        session.execute(
            sa.update(TrialRun)
            .where(
                TrialRun.study_name == study_name,
                TrialRun.trial_number == trial_number,
                TrialRun.role == role,
                TrialRun.optimizer == optimizer,
                TrialRun.seed == seed,
                TrialRun.state == "RUNNING",
            )
            .values(
                state="FAIL",
                failure_reason="superseded by a new confirmation",
                finished_at=utc_now(),
            )
        )


def _train_and_record(
    recorder: DatabaseRecorder,
    trial: FrozenTrial,
    run: PlannedRun,
    *,
    attempt: int,
    steps_per_epoch: int,
    task: Task,
    train: Callable[..., Any],
    spec: SweepSpec,
    device: str,
) -> None:
    """Train one confirmation run and write it, as the objective writes a trial's runs."""
    run_id = recorder.start(
        trial,  # type: ignore[arg-type]  # a FrozenTrial has the number and id it reads
        run,
        schedule=run.schedule,
        attempt=attempt,
        steps_per_epoch=steps_per_epoch,
    )
    if not run.trainable:
        return
    worst = -float("inf") if spec.direction == "maximize" else float("inf")
    try:
        outcome = train(
            task,
            run,
            epochs=run.configuration.epochs,
            device=device,
            on_epoch=lambda result: recorder.epoch(run_id, result),
            objective=spec.objective,
            direction=spec.direction,
        )
    except BaseException as exc:
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            reason = "interrupted"
        recorder.finish(run_id, state="FAIL", failure_reason=reason)
        raise
    diverged = outcome.diverged_at_step
    recorder.finish(
        run_id,
        state="COMPLETE",
        value=worst if diverged is not None else outcome.value,
        failure_reason=f"diverged at step {diverged}" if diverged is not None else None,
        diverged_at_step=diverged,
    )
