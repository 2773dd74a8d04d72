"""A worker in population mode: ask Optuna for K trials, train them together, tell K results.

:func:`run_population_worker` is :func:`sweeps.worker.run_worker` with a population: the
same study, trial quota (:class:`~sweeps.study.TrialGate`), retries of dead workers'
trials, stop signals and failure limit, but each round asks for up to ``population``
trials at once (fewer when the quota has less room) and trains them with
:class:`~sweeps.population.trials.PopulationObjective`. One heartbeat thread keeps all of
the round's trials alive. Every epoch's metrics for the whole population are written in
one transaction.

``population = "auto"`` picks :func:`auto_population`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from sweeps.errors import SweepError, SweepUsageError
from sweeps.population.stacked import require_stackable
from sweeps.population.trials import EpochsWriter, PopulationObjective, TrialEnd
from sweeps.study import (
    Admission,
    StudySettings,
    TrialGate,
    fail_stale_trials,
    open_study,
    retry_on_disconnect,
)
from sweeps.tasks import Task, get_task
from sweeps.training import EpochResult
from sweeps.worker import (
    MAX_CONSECUTIVE_FAILURES,
    WAIT_POLL_S,
    WorkerSummary,
    _configure_threads,
    _nothing,
    _requeue,
    _StopSignals,
    _tell,
    run_worker,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.spec import SweepSpec

_log = logging.getLogger(__name__)

#: The population ``auto`` gives on a CPU: the speed-up per trial levels off by K = 64
#: (``benchmarks/RESULTS.md``).
CPU_POPULATION = 64
#: The most members ``auto`` puts in one population on a GPU.
MAX_POPULATION = 1024


def auto_population(task: Task, device: str, batch_size: int = 128) -> int:
    """The population size ``auto`` means for ``task`` on ``device``.

    On a CPU: :data:`CPU_POPULATION`, or 1 (train trials one at a time) for a model with
    convolutions, which stacked run no faster there (grouped convolutions: digits-cnn
    measured 0.9-1.0×, ``benchmarks/RESULTS.md``). On a CUDA device: as many
    members as fit in half of the free memory, each counted as eight copies of its
    parameters (weights, gradient, momentum state, the autograd graph's saved tensors) plus
    its activations for one batch, measured with one forward and backward pass; at most
    :data:`MAX_POPULATION`.
    """
    import torch
    from torch import nn

    setup = task.build(seed=0, batch_size=batch_size, device=device)
    if not device.startswith("cuda"):
        convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in setup.model.modules())
        return 1 if convolutional else CPU_POPULATION
    parameters = sum(p.numel() * p.element_size() for p in setup.model.parameters())
    inputs, targets = next(iter(setup.train_loader))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    setup.loss_fn(setup.model(inputs), targets).backward()
    activations = max(torch.cuda.max_memory_allocated(device) - before, 0)
    free, _total = torch.cuda.mem_get_info(device)
    member = 8 * parameters + activations + 1
    return max(1, min(MAX_POPULATION, int(0.5 * free // member)))


def resolve_population(population: int | str, task: Task, device: str) -> int:
    """``population`` as a whole number of members (``"auto"`` resolved for ``device``)."""
    if population == "auto":
        return auto_population(task, device)
    if isinstance(population, bool) or not isinstance(population, int) or population < 1:
        raise SweepUsageError(
            f"population must be a whole number >= 1 or 'auto', got {population!r}."
        )
    return population


def database_epochs_writer(engine: Engine, url: str) -> EpochsWriter:
    """A writer that stores every member's epoch in one transaction (retried on disconnect)."""
    from storage import records
    from storage.engine import session_factory

    sessions = session_factory(engine)

    def write_epochs(items: Sequence[tuple[int, EpochResult]]) -> None:
        def write() -> None:
            with sessions.begin() as session:
                for run_id, result in items:
                    records.record_epoch(
                        session, run_id, result.epoch, result.metrics, result.wall_time
                    )

        retry_on_disconnect(write, url)

    return write_epochs


@contextmanager
def _heartbeats(
    study: optuna.Study, trials: Sequence[optuna.Trial], interval: float
) -> Iterator[None]:
    """Record a heartbeat for every trial of the round every ``interval`` seconds."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage
    if not is_heartbeat_enabled(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial in trials:
                try:
                    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                except Exception as exc:  # a lost connection: try again next beat
                    _log.warning("heartbeat of trial %d failed: %s", trial.number, exc)

    thread = threading.Thread(target=beat, name="sweeps-population-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_population_worker(
    spec: SweepSpec,
    url: str,
    *,
    population: int | str,
    n_trials: int | None = None,
    device: str = "cpu",
    settings: StudySettings | None = None,
    handle_signals: bool = True,
) -> WorkerSummary:
    """Work on the sweep ``spec`` in the database ``url``, ``population`` trials at a time.

    Raises:
        SweepUsageError: the task has not declared a stackable model, or a bad population.
        StorageUnavailableError: the database stayed unreachable for the retry budget.
        SweepError: the worker's trials kept failing (the message gives the last reason).
    """
    from sweeps.objective import DatabaseRecorder

    task = get_task(spec.task)
    require_stackable(task)
    size = resolve_population(population, task, device)
    if size == 1:  # nothing to stack ("auto" for a convolutional model on a CPU)
        return run_worker(
            spec, url, n_trials=n_trials, device=device, settings=settings,
            handle_signals=handle_signals,
        )  # fmt: skip
    _configure_threads()
    settings = settings or StudySettings.for_spec(spec)
    sweep = open_study(spec, url, settings=settings, n_trials=n_trials)
    total = sweep.n_trials
    if total is None and spec.timeout is None:
        sweep.close()
        raise SweepError(
            f"The sweep {spec.name!r} has neither n_trials nor a timeout, so it would never"
            " end; set one in the spec or pass --n-trials."
        )
    recorder = DatabaseRecorder(
        engine=sweep.engine,
        url=sweep.url,
        sweep_id=sweep.sweep_id,
        study_name=sweep.name,
        device=device,
    )
    objective = PopulationObjective(
        spec,
        recorder,
        device=device,
        task=task,
        write_epochs=database_epochs_writer(sweep.engine, sweep.url),
    )
    gate = TrialGate(sweep, total)
    signals = _StopSignals()
    summary = WorkerSummary()
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else math.inf
    guard = signals.installed() if handle_signals else _nothing()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # As in run_worker: samplers that end the search (the grid) call study.stop(), which
    # Optuna allows only inside its optimize loop; this loop is one.
    sweep.study._thread_local.in_optimize_loop = True
    try:
        with guard:
            next_stale_check = 0.0
            while signals.received is None and time.monotonic() < deadline:
                if sweep.study._stop_flag:
                    break
                if time.monotonic() >= next_stale_check:
                    retry_on_disconnect(lambda: fail_stale_trials(sweep.study), sweep.url)
                    next_stale_check = time.monotonic() + settings.heartbeat_interval
                trials: list[optuna.Trial] = []
                admission = Admission.START
                room = min(size, _grid_room(sweep.study))
                while len(trials) < room:
                    admission, trial = retry_on_disconnect(gate.ask, sweep.url)
                    if trial is None:
                        break
                    trials.append(trial)
                if not trials:
                    if admission is Admission.DONE:
                        break
                    time.sleep(WAIT_POLL_S)
                    next_stale_check = 0.0
                    continue
                ends = _run_round(sweep.study, trials, objective, signals, settings)
                for end in ends:
                    if end.state is TrialState.COMPLETE:
                        summary.complete += 1
                    elif end.state is TrialState.PRUNED:
                        summary.pruned += 1
                    else:
                        summary.failed += 1
                failures = [end.failure for end in ends if end.failure]
                if signals.received is not None or len(failures) < len(ends):
                    summary.failures.clear()
                    continue
                # Every trial of the round failed: the task itself is probably broken.
                summary.failures.extend(failures)
                if len(summary.failures) >= MAX_CONSECUTIVE_FAILURES:
                    raise SweepError(
                        f"{len(summary.failures)} trials in a row failed; the last with"
                        f" {failures[-1]}."
                    )
    finally:
        close = getattr(recorder, "close", None)
        if callable(close):
            close()
        sweep.close()
    summary.stopped_by = signals.received
    return summary


def _run_round(
    study: optuna.Study,
    trials: list[optuna.Trial],
    objective: PopulationObjective,
    signals: _StopSignals,
    settings: StudySettings,
) -> list[TrialEnd]:
    """Train one population of trials and tell Optuna how each ended."""
    interrupted = False
    with _heartbeats(study, trials, settings.heartbeat_interval):
        try:
            with signals.allowed():
                ends = objective(trials)
        except KeyboardInterrupt:
            interrupted = True
            ends = [TrialEnd(t, TrialState.FAIL, failure="interrupted") for t in trials]
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            _log.warning("A population of %d trials failed: %s", len(trials), reason)
            ends = [TrialEnd(t, TrialState.FAIL, failure=reason) for t in trials]
    for end in ends:
        if end.failure is not None:
            _set_fail_reason(study, end.trial, end.failure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _tell(study, end.trial, end.state, end.value)
        if interrupted:
            _requeue(study, end.trial, settings)
    return ends


def _grid_room(study: optuna.Study) -> int:
    """How many trials a round may ask: a grid's unvisited points (else no limit).

    A grid sampler hands out already-visited points again once every point is taken by a
    running trial; asking a whole population at once would train those twice.
    """
    sampler = study.sampler
    if isinstance(sampler, optuna.samplers.GridSampler):
        return max(1, len(sampler._get_unvisited_grid_ids(study)))
    return MAX_POPULATION


def _set_fail_reason(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    storage = study._storage
    retry_on_disconnect(
        lambda: storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason),
        getattr(storage, "url", ""),
    )
