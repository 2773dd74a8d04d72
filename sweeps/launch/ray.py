"""``sweeps launch ray``: one ``sweeps worker`` per GPU (or CPU share) as a Ray task.

Ray does the placing and the restarting; this module only asks. Each worker is one Ray
task (:func:`run_worker_task`) that reserves ``num_gpus`` / ``num_cpus`` (Ray's scheduler
puts it on a node with them free, and sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it
reserved, so the worker trains on ``cuda:0``) and runs the ordinary ``sweeps worker``
command as its child (:mod:`sweeps.launch.supervision`).

Restarts are Ray's own task retries (``max_retries``; Ray's ``remote_function.py``
``_task_launch_hook`` / ``RemoteFunction.options``): a node or Ray worker process that dies
is a *system failure*, which Ray retries by itself; a ``sweeps worker`` child killed by a
signal raises :class:`~sweeps.launch.supervision.WorkerLostError`, which the task is declared
to retry on (``retry_exceptions=[WorkerLostError]``). Either way the new attempt is an ordinary
worker joining the sweep; the dead one's trial is failed and re-queued by the heartbeat
rules (``docs/sweeps.md``). A worker that exits with an error (a broken task, a database
gone for good) is not retried: a restart would fail the same way.

While the tasks run, the launcher draws the sweep's progress from the database, as
``sweeps run`` does (:class:`sweeps.progress.LiveProgress`). Ctrl-C (or SIGTERM) cancels
the tasks with ``ray.cancel(force=False)``, which raises ``KeyboardInterrupt`` inside each
task; the task passes SIGTERM to its worker (trial failed and re-queued) and waits for it,
and the launcher waits for the tasks, then exits 130 (143).

Addresses: ``auto`` (default) joins the cluster this machine belongs to (``ray start``,
``RAY_ADDRESS``) and, when there is none, starts a local one for the launch;
``local`` always starts a local one; ``HOST:PORT`` or ``ray://HOST:PORT`` must be
reachable, or the launch stops with one sentence before Ray tries for a minute.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sweeps.errors import SweepError, SweepUsageError
from sweeps.launch.supervision import STOP_GRACE_S, WorkerLostError, WorkerOutcome, WorkerProcess
from sweeps.stop import StopRequest, stop_requests

if TYPE_CHECKING:
    from sweeps.launch.request import SweepLaunch
    from sweeps.progress import SweepSnapshot

AUTO: Final = "auto"
LOCAL: Final = "local"
CONNECT_TIMEOUT_S: Final = 5.0
"""How long the launcher tries to reach an explicit ``--address`` before giving up."""
LOCAL_OBJECT_STORE_BYTES: Final = 100 * 1024**2
"""A local cluster's object store: workers pass only small results, so 100 MB is plenty
(Ray's default, 30 % of the memory, would take a shared machine's memory for nothing)."""
WAIT_S: Final = 0.1
RECORD_START_S: Final = 30.0
INSTALL_HINT: Final = "pip install 'momentum-sweeps[launch]'"


@dataclass(frozen=True)
class RayPlacement:
    """What each worker task reserves, and how many there are."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    max_restarts: int

    @property
    def device(self) -> str:
        return "cuda:0" if self.gpus_per_worker > 0 else "cpu"

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus_per_worker))


@dataclass(frozen=True)
class RayLaunchResult:
    """How the launch ended: exit status, the sweep's last state, one line to print."""

    exit_code: int
    snapshot: SweepSnapshot | None
    message: str


class WorkerStarts:
    """A Ray actor every worker task tells when it starts a worker: how the launcher learns
    that Ray restarted one (Ray's public API does not give a task its attempt number)."""

    def __init__(self) -> None:
        self.starts: dict[int, list[str]] = {}

    def started(self, index: int, where: str) -> None:
        self.starts.setdefault(index, []).append(where)

    def restarts(self) -> dict[int, int]:
        """How often each restarted worker was started again, by worker index."""
        return {index: len(places) - 1 for index, places in self.starts.items() if len(places) > 1}


def run_worker_task(
    launch: SweepLaunch, index: int, device: str, threads: int, starts: Any = None
) -> WorkerOutcome:
    """The body of one worker's Ray task: run ``sweeps worker`` until it exits.

    ``starts`` is the launch's :class:`WorkerStarts` actor (a handle), told of the start.

    Raises:
        WorkerLostError: the worker process was killed (Ray retries the task).
    """
    worker = WorkerProcess(launch, index=index, device=device, threads=threads)
    if starts is not None:
        _record_start(starts, index, f"{socket.gethostname()}:{worker.pid}")
    try:
        try:
            code = worker.wait()
        except KeyboardInterrupt:  # ray.cancel(force=False): the launch is being stopped
            code = worker.stop(signal.SIGTERM)
        return worker.outcome(code)
    finally:
        if worker.process.poll() is None:  # an exception of Ray's own: stop, never orphan
            worker.stop(signal.SIGTERM)
        worker.close()


def _record_start(starts: Any, index: int, where: str) -> None:
    """Tell the launch's :class:`WorkerStarts` of a start, and wait until it is recorded (a
    call left in flight is lost if this task's attempt fails before it is delivered)."""
    import ray

    try:
        ray.get(starts.started.remote(index, where), timeout=RECORD_START_S)
    except Exception:  # only the launcher's report depends on it, never the sweep
        return


def check_shares(gpus_per_worker: float | None, cpus_per_worker: float, max_restarts: int) -> None:
    """Refuse shares and restart counts Ray would refuse (or that make no sense).

    Raises:
        SweepUsageError: naming the option and what it accepts.
    """
    if cpus_per_worker <= 0:
        raise SweepUsageError(f"--cpus-per-worker must be above 0, got {cpus_per_worker:g}.")
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise SweepUsageError(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker:g}.")
    if max_restarts < -1:
        raise SweepUsageError(
            f"--max-restarts must be -1 (no limit) or 0 or more, got {max_restarts}."
        )


def plan_placement(
    launch: SweepLaunch,
    resources: dict[str, float],
    *,
    gpus_per_worker: float | None,
    cpus_per_worker: float,
    max_restarts: int,
) -> RayPlacement:
    """How many workers, each reserving what, for a cluster with ``resources`` in total.

    One worker per GPU when the cluster has GPUs, else one per ``cpus_per_worker`` CPUs;
    ``launch.workers`` overrides the count (Ray queues the workers that do not fit yet,
    and an autoscaling cluster adds nodes for them).

    Raises:
        SweepUsageError: a negative or zero share.
        SweepError: GPUs were asked for and the cluster has none.
    """
    check_shares(gpus_per_worker, cpus_per_worker, max_restarts)
    cluster_gpus = resources.get("GPU", 0.0)
    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if cluster_gpus else 0.0)
    if gpus > 0 and cluster_gpus == 0:
        raise SweepError(
            f"The Ray cluster has no GPUs, and each worker asks for {gpus:g}; pass"
            " --gpus-per-worker 0 to run CPU workers."
        )
    if launch.workers is not None:
        workers = launch.workers
    elif gpus > 0:
        workers = max(1, math.floor(cluster_gpus / gpus))
    else:
        workers = max(1, math.floor(resources.get("CPU", 1.0) / cpus_per_worker))
    return RayPlacement(workers, gpus, cpus_per_worker, max_restarts)


def launch_on_ray(
    launch: SweepLaunch,
    *,
    address: str = AUTO,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1.0,
    max_restarts: int = 3,
    console: Any = None,
    show_progress: bool = True,
) -> RayLaunchResult:
    """Run the sweep's workers as Ray tasks until the sweep is done, stopped, or they fail.

    Raises:
        SweepUsageError: bad shares, or a sweep that would never end.
        SweepError: Ray is missing or unreachable, or workers failed before the end.
        StorageUnavailableError: the database cannot be reached (checked before Ray starts).
    """
    from sweeps.progress import LiveProgress, describe, snapshot
    from sweeps.spec import parse_spec
    from sweeps.sweep_study import open_study

    ray = _import_ray()
    check_shares(gpus_per_worker, cpus_per_worker, max_restarts)
    check_address(address)  # before anything is written to the database
    spec = parse_spec(
        launch.spec_text, default_name=launch.name, name=launch.name, n_trials=launch.n_trials
    )
    sweep = open_study(spec, launch.storage_url, n_trials=launch.n_trials)
    try:
        if sweep.n_trials is None and spec.timeout is None:
            raise SweepUsageError(
                f"The sweep {launch.name!r} has neither n_trials nor a timeout; pass --n-trials."
            )
        first = snapshot(sweep.study)
        if first.done:
            return RayLaunchResult(
                0, first, f"The sweep {launch.name!r} is already done: {describe(first)}."
            )
        with _connected(ray, address):
            placement = plan_placement(
                launch,
                ray.cluster_resources(),
                gpus_per_worker=gpus_per_worker,
                cpus_per_worker=cpus_per_worker,
                max_restarts=max_restarts,
            )
            task = ray.remote(run_worker_task)
            starts = ray.remote(WorkerStarts).options(num_cpus=0).remote()
            progress = LiveProgress(sweep.study, console=console)
            with stop_requests() as stop:
                refs = [
                    task.options(
                        name=f"sweeps-worker-{index}",
                        num_cpus=placement.cpus_per_worker,
                        num_gpus=placement.gpus_per_worker,
                        max_retries=placement.max_restarts,
                        retry_exceptions=[WorkerLostError],
                    ).remote(launch, index, placement.device, placement.threads, starts)
                    for index in range(placement.workers)
                ]
                outcomes, errors = _watch(ray, refs, progress, show_progress, stop)
            snap = snapshot(sweep.study)
            restarted = _restarts_note(ray, starts)
            if stop.signum is not None:
                code = 130 if stop.signum == signal.SIGINT else 143
                return RayLaunchResult(code, snap, f"Interrupted: {describe(snap)}.{restarted}")
            failed = [o for o in outcomes if o.failed]
            if (failed or errors) and not snap.done:
                first_error = errors[0] if errors else f"{failed[0].message}"
                raise SweepError(
                    f"{len(failed) + len(errors)} of {placement.workers} workers failed;"
                    f" the first said: {first_error}"
                )
            return RayLaunchResult(0, snap, f"Done: {describe(snap)}.{restarted}")
    finally:
        sweep.close()


def _restarts_note(ray: Any, starts: Any) -> str:
    """`` Ray restarted worker 2 (once).`` or nothing."""
    try:
        restarts: dict[int, int] = ray.get(starts.restarts.remote(), timeout=10)
    except Exception:  # the report only: the sweep itself is in the database
        return ""
    if not restarts:
        return ""
    listed = ", ".join(
        f"{index} ({'once' if count == 1 else f'{count} times'})"
        for index, count in sorted(restarts.items())
    )
    noun = "worker" if len(restarts) == 1 else "workers"
    return f" Ray restarted {noun} {listed}."


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(f"Ray is not installed; install it with {INSTALL_HINT}.") from None
    return ray


@contextmanager
def _connected(ray: Any, address: str) -> Iterator[None]:
    """Connected to the cluster at ``address`` (or a new local one) for the block."""
    import logging

    options: dict[str, Any] = {
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address not in (AUTO, LOCAL):
        _init(ray, address=address, **options)
    elif address == LOCAL or not _joined_running_cluster(ray, options):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        _init(
            ray,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            **options,
        )
    try:
        yield
    finally:
        ray.shutdown()


def _init(ray: Any, **options: Any) -> None:
    try:
        ray.init(**options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = options.get("address") or "a local Ray cluster"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"Ray could not connect to {where}: {first}") from None


def _joined_running_cluster(ray: Any, options: dict[str, Any]) -> bool:
    """Join the cluster ``address="auto"`` finds (``RAY_ADDRESS``, or the one ``ray start``
    started on this machine); False when there is none (Ray raises ``ConnectionError``)."""
    try:
        ray.init(address=AUTO, **options)
    except ConnectionError:
        return False
    return True


def check_address(address: str) -> None:
    """Check the cluster that ``--address`` names before anything is written.

    ``local`` starts a cluster and needs nothing. ``auto`` joins the cluster that
    ``RAY_ADDRESS`` names when it is set: a named cluster that does not answer is an error
    (exit 1), not a reason to start a local one in its place; with no ``RAY_ADDRESS``,
    ``auto`` looks for a cluster on this machine and starts one when there is none.
    """
    if address == LOCAL:
        return
    if address == AUTO:
        named = os.environ.get("RAY_ADDRESS", "").strip()
        if named and named not in (AUTO, LOCAL):
            check_reachable(named, source="RAY_ADDRESS")
        return
    check_reachable(address)


def check_reachable(address: str, *, source: str = "--address") -> None:
    """One sentence, exit 1, when nothing listens at ``HOST:PORT`` (or ``ray://HOST:PORT``).

    Raises:
        SweepUsageError: the address is not ``HOST:PORT``.
        SweepError: nothing answers there within :data:`CONNECT_TIMEOUT_S`.
    """
    hostport = address.removeprefix("ray://")
    host, _, port_text = hostport.rpartition(":")
    if not host or not port_text.isdigit():
        raise SweepUsageError(
            f"{source} must be auto, local, HOST:PORT or ray://HOST:PORT, got {address!r}."
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SweepError(
            f"No Ray cluster answers at {address} (from {source}: {reason}); start one there"
            " with `ray start --head`, or pass --address local to start a local one."
        ) from None


def _watch(
    ray: Any, refs: list[Any], progress: Any, show: bool, stop: StopRequest
) -> tuple[list[WorkerOutcome], list[str]]:
    """Wait for every task, refreshing the progress; on a stop request cancel them all
    and wait (at most the stop grace) for their workers to record their trials."""
    pending = list(refs)
    outcomes: list[WorkerOutcome] = []
    errors: list[str] = []
    cancelled_at: float | None = None

    def collect(done: list[Any]) -> None:
        for ref in done:
            try:
                outcomes.append(ray.get(ref))
            except Exception as exc:
                if cancelled_at is None:
                    errors.append(_one_line(exc))

    def loop(refresh: Any) -> None:
        nonlocal pending, cancelled_at
        while pending:
            if stop.signum is not None and cancelled_at is None:
                cancelled_at = time.monotonic()
                for ref in pending:
                    ray.cancel(ref, force=False)
            if cancelled_at is not None and time.monotonic() - cancelled_at > STOP_GRACE_S:
                for ref in pending:
                    ray.cancel(ref, force=True)
                break
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=WAIT_S)
            collect(done)
            refresh()

    if show:
        with progress.running() as refresh:
            loop(refresh)
    else:
        loop(lambda: None)
    return outcomes, errors


def _one_line(exc: BaseException) -> str:
    """The cause's message of a Ray task error (Ray wraps it with a traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
