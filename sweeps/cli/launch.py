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
    from sweeps.launch.ray import launch_on_ray, plan_placement

    launch = _prepare(spec_path, storage, name, n_trials, workers)
    if dry_run:
        placement = plan_placement(
            launch,
            {"GPU": 0.0, "CPU": float(workers or 1) * cpus_per_worker},
            gpus_per_worker=gpus_per_worker or 0.0,
            cpus_per_worker=cpus_per_worker,
            max_restarts=max_restarts,
        )
        gpus = gpus_per_worker if gpus_per_worker is not None else "1 if the cluster has GPUs"
        click.echo(f"Ray cluster: {address}")
        click.echo(
            f"{launch.workers or 'one per GPU (or CPU share)'} Ray tasks, each reserving"
            f" num_gpus={gpus}, num_cpus={placement.cpus_per_worker:g},"
            f" max_retries={placement.max_restarts}, each running:"
        )
        click.echo(
            "  SWEEPS_STORAGE="
            + launch.shown_url
            + " sweeps "
            + " ".join(launch.worker_arguments(f"{launch.name}.toml", "cuda:0|cpu"))
        )
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


commands: list[click.Command] = [launch_group]
