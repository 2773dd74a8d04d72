"""The sweep service's commands: ``run``, ``worker``, ``status``, ``demo``.

Storage URLs: ``--storage`` wins, then ``$SWEEPS_STORAGE``, then the spec's ``storage``,
then ``sqlite:///sweeps.db``. URLs are only ever printed with the password hidden.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sweeps.errors import SweepUsageError

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

STORAGE_HELP = "Database URL (default: $SWEEPS_STORAGE, the spec's storage, sqlite:///sweeps.db)."
SPEC_PATH = click.Path(dir_okay=False, path_type=Path)


def _at_least_one(option: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise SweepUsageError(f"{option} must be at least 1, got {value}.")
    return value


def _population(value: str | None) -> int | str | None:
    """``--population``: a whole number or ``auto`` (the spec checks the range)."""
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise SweepUsageError(
            f"--population must be a whole number >= 1 or 'auto', got {value!r}."
        ) from None


POPULATION_HELP = (
    "Trials each worker trains together as one stacked model, or auto (default: the spec's,"
    " else 1); see docs/population.md."
)


DOWNLOAD_HELP = "Download the task's data set if it is missing (CIFAR-10: 163 MiB, MD5-checked)."


def _prepare_data(spec: SweepSpec, download: bool) -> None:
    """The task's data must be on disk before any worker starts (``sweeps.tasks``)."""
    from sweeps.tasks import prepare_task, task_for_spec

    prepare_task(task_for_spec(spec), download=download)


def _storage_url(option: str | None, spec_storage: str | None) -> str:
    import os

    from storage.engine import DEFAULT_URL, STORAGE_ENV_VAR

    return option or os.environ.get(STORAGE_ENV_VAR) or spec_storage or DEFAULT_URL


def _check_task(spec: SweepSpec) -> None:
    """A user task's contract, checked by building it once before any sweep is stored."""
    from sweeps.tasks import check_task

    smallest_batch = int(spec.search_space.batch_size.bounds()[0])  # type: ignore[arg-type]
    check_task(spec.task, seed=spec.seeds[0], batch_size=smallest_batch)


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


@click.command("run")
@click.argument("spec_path", metavar="SPEC", type=SPEC_PATH)
@click.option("--storage", "storage", metavar="URL", help=STORAGE_HELP)
@click.option("--workers", type=int, help="Local worker processes (default: one per device).")
@click.option(
    "--devices",
    metavar="auto|cpu|cuda:0,cuda:1",
    help="Devices for the workers, one worker each (default: the spec's, else auto).",
)
@click.option("--n-trials", type=int, help="The sweep's total number of trials, all workers.")
@click.option("--name", help="The sweep's name (default: the spec's, else the file name).")
@click.option("--population", metavar="K|auto", help=POPULATION_HELP)
@click.option(
    "--extend",
    is_flag=True,
    help="Raise the total of an existing sweep to --n-trials (same spec, more trials).",
)
@click.option("--download", is_flag=True, help=DOWNLOAD_HELP)
@click.option("--no-progress", is_flag=True, help="No live progress bar.")
def run_command(
    spec_path: Path,
    storage: str | None,
    workers: int | None,
    devices: str | None,
    n_trials: int | None,
    name: str | None,
    population: str | None,
    extend: bool,
    download: bool,
    no_progress: bool,
) -> None:
    """Run the sweep SPEC with local workers, one per device, until it has its trials.

    Prints a live progress bar (trials done, running, failed; the best value per optimizer).
    Running the same command again resumes the sweep; Ctrl-C stops every worker cleanly.
    A sweep that has trials keeps its spec: another spec under its name is refused.
    """
    from storage.engine import hide_password
    from sweeps.launcher import launch
    from sweeps.spec import load_spec

    _at_least_one("--workers", workers)
    _at_least_one("--n-trials", n_trials)
    spec = load_spec(spec_path, n_trials=n_trials, name=name, population=_population(population))
    _prepare_data(spec, download)
    url = _storage_url(storage, spec.storage)
    _check_task(spec)
    if spec.independent:
        from sweeps.independent import launch_independent

        launch = launch_independent  # one launch per optimizer's study, then its confirmation
    result = launch(
        spec,
        spec_path.resolve(),
        url,
        workers=workers,
        devices=devices,
        n_trials=n_trials,
        name=name,
        population=population,
        console=_stderr_console(),
        show_progress=not no_progress,
        extend=extend,
    )
    click.echo(result.message, err=True)
    click.echo(f"Results: {hide_password(url)} (sweep {spec.name!r}).", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


@click.command("worker")
@click.argument("spec_path", metavar="SPEC", type=SPEC_PATH)
@click.option(
    "--storage",
    "storage",
    metavar="URL",
    envvar="SWEEPS_STORAGE",
    required=True,
    help="The sweep's database, shared by every worker ($SWEEPS_STORAGE).",
)
@click.option("--n-trials", type=int, help="The sweep's total number of trials, all workers.")
@click.option("--name", help="The sweep's name (default: the spec's, else the file name).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@click.option("--population", metavar="K|auto", help=POPULATION_HELP)
@click.option(
    "--arm",
    metavar="OPTIMIZER",
    help='pairing = "independent" only: serve this optimizer\'s study (default: each in turn).',
)
@click.option(
    "--threads",
    type=int,
    help="torch threads for a CPU worker (default: the spec's, else its share of the cores).",
)
@click.option("--download", is_flag=True, help=DOWNLOAD_HELP)
def worker_command(
    spec_path: Path,
    storage: str,
    n_trials: int | None,
    name: str | None,
    device: str,
    population: str | None,
    arm: str | None,
    threads: int | None,
    download: bool,
) -> None:
    """Join the sweep SPEC as one worker, from any machine that reaches the database.

    Takes trials until the sweep has its total, then exits. SIGINT/SIGTERM fail and
    re-queue the current trial (without using its retries), then stop (exit 130/143).
    """
    from sweeps.stop import STOP

    with STOP.installed():  # first: a signal from now on stops the worker cleanly
        from sweeps.devices import parse_devices
        from sweeps.spec import load_spec
        from sweeps.worker import run_worker

        _at_least_one("--n-trials", n_trials)
        _at_least_one("--threads", threads)
        parse_devices(device)
        spec = load_spec(
            spec_path,
            n_trials=n_trials,
            name=name,
            population=_population(population),
            threads=threads,
        )
        _check_task(spec)
        _prepare_data(spec, download)
        if arm is not None and (not spec.independent or arm not in spec.optimizers):
            raise SweepUsageError(
                f"--arm {arm!r} names no optimizer of an independent sweep; the spec's"
                f" optimizers are {', '.join(spec.optimizers)} and its pairing is"
                f" {'independent' if spec.independent else spec.pairing!r}."
            )
        if spec.independent:
            from sweeps.independent import run_independent_worker

            summary = run_independent_worker(
                spec, storage, arms=(arm,) if arm else None, device=device
            )
        else:
            summary = run_worker(
                spec, storage, n_trials=n_trials, device=device, population=spec.population
            )
    click.echo(
        f"Worker done: {summary.complete} complete, {summary.pruned} pruned,"
        f" {summary.failed} failed.",
        err=True,
    )
    if summary.exit_code:
        sys.exit(summary.exit_code)


@click.command("status")
@click.argument("name", required=False)
@click.option("--storage", "storage", metavar="URL", help=STORAGE_HELP)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for scripts.",
)
def status_command(name: str | None, storage: str | None, output_format: str) -> None:
    """Show how far the sweep NAME is: trials by state, the best value per optimizer."""
    from sweeps.status import status_json, status_table, sweep_status

    if name is None:
        from sweeps.cli.results import name_required

        raise name_required("status", _storage_url(storage, None))

    snap = sweep_status(name, _storage_url(storage, None))
    if output_format == "json":
        click.echo(status_json(snap))
        return
    from rich.console import Console

    Console().print(status_table(snap))


@click.command("demo")
@click.option("--no-progress", is_flag=True, help="No live progress bar.")
def demo_command(no_progress: bool) -> None:
    """Run a small paired sweep on digits-mlp here, in ./sweeps.db (about a minute on CPU).

    Both optimizers, a step-decay and a cosine schedule; running it again resumes it.
    """
    from sweeps.demo import DEMO_WORKERS, closing_words, prepare
    from sweeps.launcher import launch
    from sweeps.spec import load_spec

    plan = prepare()
    spec = load_spec(plan.spec_path)
    result = launch(
        spec,
        plan.spec_path,
        plan.storage,
        workers=DEMO_WORKERS,
        devices="cpu",
        console=_stderr_console(),
        show_progress=not no_progress,
    )
    click.echo(result.message)
    if result.snapshot is not None and result.snapshot.finished:
        from sweeps.report import write_report

        html = write_report(
            plan.storage, spec.name, plan.folder / "sweeps-demo-report", run_missing=True
        )
        click.echo(f"Report: {html}")
    click.echo(closing_words(plan))
    if result.exit_code:
        sys.exit(result.exit_code)


commands: list[click.Command] = [run_command, worker_command, status_command, demo_command]
