"""Population mode's sizing and epoch writes; the worker loop is :mod:`sweeps.worker`'s.

A population worker is :func:`sweeps.worker.run_worker` with ``population = K``: the same
loop, lifecycle, heartbeats, stop signals and outage deadline, with rounds of up to K
trials trained together by :class:`~sweeps.population.trials.PopulationObjective`. This
module says how large K is (:func:`resolve_population`, ``"auto"``:
:func:`auto_population`) and writes every epoch's metrics for the whole population in one
transaction (:func:`database_epochs_writer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeps.errors import SweepUsageError
from sweeps.outage import retry_on_disconnect
from sweeps.population.stacked import require_stackable
from sweeps.population.trials import EpochsWriter
from sweeps.sweep_study import StudySettings
from sweeps.tasks import Task, task_for_spec
from sweeps.training import EpochResult
from sweeps.worker import WorkerSummary, run_worker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.spec import SweepSpec

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
        StorageUnavailableError: the database stayed unreachable for the outage deadline.
        SweepError: the worker's trials kept failing (the message gives the last reason).
    """
    require_stackable(task_for_spec(spec))
    return run_worker(
        spec,
        url,
        n_trials=n_trials,
        device=device,
        settings=settings,
        handle_signals=handle_signals,
        population=population,
    )
