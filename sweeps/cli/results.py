"""``sweeps results``, ``sweeps list`` and ``sweeps db upgrade``: the results database.

Data goes to stdout (or ``-o FILE``); messages go to stderr. Every URL shown is rendered
with its password hidden. Errors follow the CLI policy of :mod:`sweeps.cli`: an unknown
sweep or a bad option exits 2, an unreachable or outdated database exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import queries, schema
from storage.engine import (
    create_engine,
    default_url,
    hide_password,
    normalize_url,
    unavailable_as_storage_error,
)
from storage.errors import StorageUsageError
from storage.models import Sweep

_STORAGE_HELP = "Database URL (default: $SWEEPS_STORAGE or sqlite:///sweeps.db)."

storage_option = click.option(
    "--storage",
    "storage_url",
    default=None,
    metavar="URL",
    help=_STORAGE_HELP,
)


@click.command("results")
@click.argument("name", required=False)
@storage_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "json", "parquet"]),
    default="csv",
    show_default=True,
    help="Output format; parquet needs -o.",
)
@click.option("--metrics", is_flag=True, help="Per-epoch metrics (long format) instead of trials.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
def results_command(
    name: str | None,
    storage_url: str | None,
    output_format: str,
    metrics: bool,
    output: Path | None,
) -> None:
    """Export the trials (or, with --metrics, the per-epoch metrics) of sweep NAME."""
    if name is None:
        raise name_required("results", storage_url or default_url())
    if output_format == "parquet" and output is None:
        raise click.UsageError("--format parquet writes binary data; give a file with -o FILE.")
    engine = _open(storage_url)
    try:
        frame = (
            queries.metrics_frame(engine, sweep=name)
            if metrics
            else queries.trials_frame(engine, sweep=name)
        )
    finally:
        engine.dispose()
    _write(frame, output_format, output)
    if output is not None:
        click.echo(f"Wrote {len(frame)} rows to {output}.", err=True)


@click.command("list")
@storage_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def list_command(storage_url: str | None, output_format: str) -> None:
    """List the sweeps stored in the database, with their trial counts by state."""
    engine = _open(storage_url)
    try:
        frame = queries.sweeps_frame(engine)
    finally:
        engine.dispose()
    if output_format == "json":
        frame["created_at"] = frame["created_at"].map(lambda t: t.isoformat())
        click.echo(json.dumps(frame.to_dict(orient="records"), indent=2))
        return
    if frame.empty:
        click.echo(f"No sweeps in {hide_password(engine.url)}.", err=True)
        return
    _print_table(frame)


@click.group("db")
def db_group() -> None:
    """Manage the results database schema."""


@db_group.command("upgrade")
@storage_option
def upgrade_command(storage_url: str | None) -> None:
    """Upgrade the results database to the newest schema (safe to repeat)."""
    engine = create_engine(storage_url or default_url())
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    click.echo(
        f"The results database at {hide_password(engine.url)} is at schema revision"
        f" {schema.head_revision()}.",
        err=True,
    )


def name_required(command: str, url: str) -> StorageUsageError:
    """The usage error of ``sweeps COMMAND`` given no sweep NAME: it lists the stored sweeps.

    Reading the names creates nothing: a missing SQLite file or a database without the
    sweeps' tables holds no sweep.
    """
    names: list[str] = []
    database = _url_or_none(normalize_url(url))
    missing_file = (
        database is not None
        and database.get_backend_name() == "sqlite"
        and database.database not in (None, "", ":memory:")
        and not Path(str(database.database)).exists()
    )
    if not missing_file:
        engine = create_engine(url)
        try:
            with unavailable_as_storage_error(engine.url), engine.connect() as connection:
                has_sweeps = sa.inspect(connection).has_table(Sweep.__tablename__)
            names = queries.sweep_names(engine) if has_sweeps else []
        finally:
            engine.dispose()
    listed = ", ".join(names) if names else "none"
    return StorageUsageError(
        f"`sweeps {command}` needs the NAME of a sweep; the sweeps stored in"
        f" {hide_password(url)}: {listed}."
    )


def _url_or_none(url: str) -> sa.URL | None:
    try:
        return sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None


def _open(storage_url: str | None) -> Engine:
    engine = create_engine(storage_url or default_url())
    schema.ensure_current(engine)
    return engine


def _write(frame: pd.DataFrame, output_format: str, output: Path | None) -> None:
    if output_format == "parquet":
        try:
            frame.to_parquet(output, index=False)
        except ImportError:
            raise StorageUsageError(
                "--format parquet needs pyarrow; install it with `pip install pyarrow`."
            ) from None
        return
    if output_format == "csv":
        text = frame.to_csv(index=False)
    else:
        text = frame.to_json(orient="records", date_format="iso", indent=None, lines=False)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text)


def _print_table(frame: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    columns = ["name", "study_name", "convention", "created_at", "trials", "runs"]
    columns += ["complete", "pruned", "fail", "running", "waiting"]
    for column in columns:
        table.add_column(column, justify="right" if column not in columns[:4] else "left")
    for row in frame.itertuples(index=False):
        values = row._asdict()
        values["created_at"] = values["created_at"].strftime("%Y-%m-%d %H:%M")
        table.add_row(*(str(values[column]) for column in columns))
    Console(width=200).print(table)


commands: list[click.Command] = [results_command, list_command, db_group]
