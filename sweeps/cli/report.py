"""``sweeps report NAME [--out DIR]``: write a sweep's transfer report (docs/report.md)."""

from __future__ import annotations

import re
from pathlib import Path

import click


@click.command("report")
@click.argument("name")
@click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    default=None,
    help="Results database URL (default: $SWEEPS_STORAGE or sqlite:///sweeps.db).",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, dir_okay=True, writable=True, path_type=Path),
    help="Directory for report.html, report.md, summary.csv, diverged.csv and the PNG figures"
    " (default: NAME-report in the current directory).",
)
@click.option(
    "--run-missing",
    is_flag=True,
    help="First train the transfers the sweep lacks (the other optimizer's best, converted"
    " back exactly) and record them in the sweep.",
)
@click.option(
    "--device", default="cpu", show_default=True, help="Where --run-missing trains (cpu, cuda:N)."
)
def report(
    name: str, storage_url: str | None, out_dir: Path | None, run_missing: bool, device: str
) -> None:
    """Write the transfer report of the sweep NAME into a directory.

    The report compares the best configuration of each optimizer per schedule family
    (mean and 95% interval over seeds, significance test), shows what a naive port and an
    exact conversion of the best configuration cost, and draws the landscapes, learning
    curves and per-step lr/momentum. It reads the database and trains nothing, unless
    --run-missing asks it to complete the transfer table.
    """
    from storage.engine import default_url
    from sweeps.report import write_report

    if out_dir is None:
        out_dir = default_report_dir(name)
    path = write_report(
        storage_url or default_url(), name, out_dir, run_missing=run_missing, device=device
    )
    click.echo(str(path))
    click.echo(
        f"Wrote {path.name}, report.md, summary.csv, diverged.csv and the figures to {out_dir}.",
        err=True,
    )


def default_report_dir(name: str) -> Path:
    """``NAME-report`` in the working directory (path separators in NAME become ``_``)."""
    return Path(re.sub(r"[\\/]", "_", name) + "-report")


commands: list[click.Command] = [report]
