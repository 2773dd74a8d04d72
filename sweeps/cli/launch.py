"""``sweeps launch ray|slurm|kubernetes SPEC``: the sweep's workers on a cluster engine.

Every launcher takes the spec and the options of ``sweeps run`` that make sense on a
cluster (``--storage``, ``--name``, ``--n-trials``, ``--workers``) and ``--dry-run``
(print what would be submitted, submit nothing); the engine-specific options follow.
The work is in :mod:`sweeps.launch`; these commands parse, call and print.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sweeps.errors import SweepUsageError
from sweeps.launch.slurm import DEFAULT_TIME_MIN

SPEC_PATH = click.Path(dir_okay=False, path_type=Path)
STORAGE_HELP = (
    "Database URL every worker reaches (default: $SWEEPS_STORAGE, the spec's storage,"
    " sqlite:///sweeps.db)."
)
F = TypeVar("F", bound=Callable[..., Any])


def _sweep_options(function: F) -> F:
    """The options every launcher shares, in the order ``--help`` lists them."""
    decorators = [
        click.argument("spec_path", metavar="SPEC", type=SPEC_PATH),
        click.option("--storage", metavar="URL", help=STORAGE_HELP),
        click.option("--name", help="The sweep's name (default: the spec's, else the file name)."),
        click.option("--n-trials", type=int, help="The sweep's total number of trials."),
        click.option("--workers", type=int, help="How many `sweeps worker` processes to start."),
        click.option(
            "--dry-run", is_flag=True, help="Print what would be submitted; submit nothing."
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _prepare(
    spec_path: Path,
    storage: str | None,
    name: str | None,
    n_trials: int | None,
    workers: int | None,
) -> Any:
    from sweeps.launch.request import prepare_launch

    return prepare_launch(spec_path, storage=storage, name=name, n_trials=n_trials, workers=workers)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@click.group("launch")
def launch_group() -> None:
    """Start a sweep's workers on a cluster engine: Ray, Slurm or Kubernetes.

    Each engine places the workers, gives them their GPUs and restarts the lost ones; every
    worker is an ordinary `sweeps worker` on the sweep's one database.
    """


@launch_group.command("ray")
@_sweep_options
@click.option(
    "--address",
    default="auto",
    show_default=True,
    metavar="auto|local|HOST:PORT",
    help="The Ray cluster: auto joins this machine's (else starts a local one), local starts one.",
)
@click.option(
    "--gpus-per-worker",
    type=float,
    help="GPUs each worker reserves (default: 1 if the cluster has GPUs, else 0).",
)
@click.option(
    "--cpus-per-worker", type=float, default=1.0, show_default=True, help="CPUs each reserves."
)
@click.option(
    "--max-restarts",
    type=int,
    default=3,
    show_default=True,
    help="How often Ray restarts a lost worker (-1: no limit).",
)
@click.option("--no-progress", is_flag=True, help="No live progress bar.")
def ray_command(
    spec_path: Path,
    storage: str | None,
    name: str | None,
    n_trials: int | None,
    workers: int | None,
    dry_run: bool,
    address: str,
    gpus_per_worker: float | None,
    cpus_per_worker: float,
    max_restarts: int,
    no_progress: bool,
) -> None:
    """Run the sweep SPEC's workers as Ray tasks, one per GPU (or per CPU share).

    Ray places them across its nodes and restarts one whose process or node is lost; the
    sweep's progress is drawn from the database. Ctrl-C stops every worker cleanly (their
    trials are re-queued) and exits 130.
    """
    from sweeps.launch.ray import AUTO, LOCAL, check_reachable, check_shares, launch_on_ray

    check_shares(gpus_per_worker, cpus_per_worker, max_restarts)
    launch = _prepare(spec_path, storage, name, n_trials, workers)
    if dry_run:
        if address not in (AUTO, LOCAL):
            check_reachable(address)
        gpus = f"{gpus_per_worker:g}" if gpus_per_worker is not None else "1 if it has GPUs"
        count = launch.workers or f"one per GPU (else per {cpus_per_worker:g} CPUs)"
        device = "cpu" if gpus_per_worker == 0 else "cuda:0"
        command = " ".join(launch.worker_arguments(f"{launch.name}.toml", device))
        click.echo(f"Ray cluster: {address}")
        click.echo(f"Workers: {count}, each a Ray task with num_gpus={gpus},")
        click.echo(
            f"  num_cpus={cpus_per_worker:g}, max_retries={max_restarts},"
            " retry_exceptions=[WorkerLostError], running:"
        )
        click.echo(f"  SWEEPS_STORAGE={launch.shown_url} sweeps {command}")
        return
    from storage.engine import hide_password

    result = launch_on_ray(
        launch,
        address=address,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker,
        max_restarts=max_restarts,
        console=_stderr_console(),
        show_progress=not no_progress,
    )
    click.echo(result.message, err=True)
    click.echo(f"Results: {hide_password(launch.storage_url)} (sweep {launch.name!r}).", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


@launch_group.command("slurm")
@_sweep_options
@click.option("--partition", help="The Slurm partition (default: the cluster's).")
@click.option(
    "--gpus-per-task", type=int, default=0, show_default=True, help="GPUs each worker gets."
)
@click.option(
    "--cpus-per-task", type=int, default=1, show_default=True, help="CPUs each worker gets."
)
@click.option(
    "--time",
    "time_limit",
    metavar="[D-]HH:MM:SS|MIN",
    default=str(DEFAULT_TIME_MIN),
    show_default=True,
    help="Each array task's time limit; a task that reaches it is requeued.",
)
@click.option(
    "--sbatch",
    "sbatch_options",
    metavar="NAME=VALUE",
    multiple=True,
    help="Any other sbatch option, passed through (repeatable): account=lab, qos=high.",
)
@click.option(
    "--setup",
    metavar="COMMAND",
    multiple=True,
    help="A shell line run before the worker (repeatable): 'module load cuda'.",
)
@click.option(
    "--log-folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sweeps-slurm/%j"),
    show_default=True,
    help="Where submitit keeps the job's files and logs (%j: the job id).",
)
@click.option(
    "--cluster",
    type=click.Choice(["slurm", "local"]),
    default="slurm",
    show_default=True,
    help="local runs the same array here with submitit's LocalExecutor (CPU), to try it.",
)
@click.option("--follow", is_flag=True, help="Wait for the array and show the sweep's progress.")
@click.option("--no-progress", is_flag=True, help="No live progress bar while following.")
def slurm_command(
    spec_path: Path,
    storage: str | None,
    name: str | None,
    n_trials: int | None,
    workers: int | None,
    dry_run: bool,
    partition: str | None,
    gpus_per_task: int,
    cpus_per_task: int,
    time_limit: str,
    sbatch_options: tuple[str, ...],
    setup: tuple[str, ...],
    log_folder: Path,
    cluster: str,
    follow: bool,
    no_progress: bool,
) -> None:
    """Submit the sweep SPEC's workers as one Slurm job array (through submitit).

    Each array task runs one `sweeps worker`; a task that is preempted or reaches its time
    limit stops its worker cleanly (the trial is re-queued) and is requeued. --dry-run
    prints the sbatch script. Prints the job id, or with --follow waits and shows progress.
    """
    from sweeps.launch.slurm import (
        SlurmOptions,
        parse_sbatch_options,
        parse_time,
        sbatch_script,
        submit,
    )

    for option, value in (("--gpus-per-task", gpus_per_task), ("--cpus-per-task", cpus_per_task)):
        if value < (1 if option == "--cpus-per-task" else 0):
            lowest = 1 if option == "--cpus-per-task" else 0
            raise SweepUsageError(f"{option} must be at least {lowest}, got {value}.")
    launch = _prepare(spec_path, storage, name, n_trials, workers)
    options = SlurmOptions(
        workers=launch.workers or 1,
        partition=partition,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        time_min=parse_time(time_limit),
        sbatch=parse_sbatch_options(sbatch_options),
        setup=setup,
    )
    folder = log_folder.absolute()
    if dry_run:
        click.echo(sbatch_script(launch, options, folder), nl=False)
        click.echo(
            f"# {options.workers} array tasks, each: SWEEPS_STORAGE={launch.shown_url} sweeps "
            + " ".join(launch.worker_arguments(f"{launch.name}.toml", _slurm_device(options)))
        )
        return
    result = submit(
        launch,
        options,
        folder=folder,
        cluster=cluster,
        follow=follow,
        console=_stderr_console(),
        show_progress=not no_progress,
    )
    if result.job_id and not (follow or cluster == "local"):
        click.echo(result.job_id)
        click.echo(
            f"Submitted job array {result.job_id}: {options.workers} workers on sweep"
            f" {launch.name!r}; see it with `sweeps status {launch.name}`.",
            err=True,
        )
    else:
        click.echo(result.message, err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


def _slurm_device(options: Any) -> str:
    return "cuda:0" if options.gpus_per_task else "cpu"


@launch_group.command("kubernetes")
@_sweep_options
@click.option(
    "--image",
    default="momentum-sweeps:latest",
    show_default=True,
    help="The worker image (the Dockerfile here), in a registry the cluster pulls from.",
)
@click.option(
    "--gpus-per-worker", type=int, default=1, show_default=True, help="nvidia.com/gpu per pod."
)
@click.option("--namespace", help="The namespace of every object (default: kubectl's).")
@click.option(
    "--storage-size", default="10Gi", show_default=True, help="PostgreSQL's volume claim."
)
def kubernetes_command(
    spec_path: Path,
    storage: str | None,
    name: str | None,
    n_trials: int | None,
    workers: int | None,
    dry_run: bool,
    image: str,
    gpus_per_worker: int,
    namespace: str | None,
    storage_size: str,
) -> None:
    """Run the sweep SPEC on Kubernetes: PostgreSQL, an Indexed Job of workers, a dashboard.

    --dry-run prints the manifests (YAML) instead of `kubectl apply`-ing them. The database
    is the cluster's own PostgreSQL (its password: $SWEEPS_POSTGRES_PASSWORD, else a new
    random one), so --storage is not used.
    """
    from sweeps.launch.kubernetes import (
        KubernetesOptions,
        apply,
        manifests_yaml,
        render_manifests,
    )

    if storage is not None:
        raise SweepUsageError(
            "--storage is not used on Kubernetes: the workers use the PostgreSQL the"
            " manifests create."
        )
    launch = _prepare(spec_path, None, name, n_trials, workers)
    options = KubernetesOptions(
        workers=launch.workers or 1,
        image=image,
        gpus_per_worker=gpus_per_worker,
        namespace=namespace,
        storage_size=storage_size,
    )
    objects = render_manifests(launch, options)
    if dry_run:
        click.echo(manifests_yaml(objects), nl=False)
        return
    click.echo(apply(objects), nl=False)


commands: list[click.Command] = [launch_group]
