"""The ``sweeps`` command line (click).

The root group owns the shared options and the error policy; each module below adds
its commands through a module-level ``commands`` list, so the parts of the service
stay in their own files:

- ``sweeps.cli.results``: ``results``, ``list``, ``db upgrade`` (the results database)
- ``sweeps.cli.run``: ``run``, ``worker``, ``status``, ``demo`` (the sweep service)
- ``sweeps.cli.report``: ``report`` (the transfer report)
"""

from __future__ import annotations

import importlib

import click

from momentum_convert.cli_errors import ErrorHandlingGroup
from momentum_convert.errors import MomentumConvertError
from storage.errors import StorageError, StorageUsageError
from sweeps.errors import SweepError, SweepUsageError

_COMMAND_MODULES = (
    "sweeps.cli.results",
    "sweeps.cli.run",
    "sweeps.cli.report",
    "sweeps.cli.launch",
)


class SweepsGroup(ErrorHandlingGroup):
    """The error policy of ``sweeps``: bad input exits 2, runtime failures exit 1.

    A database error that escaped the storage's own mapping (a damaged SQLite file found
    in the middle of a command) still becomes one sentence, exit 1: the driver's first
    line, with any ``user:password@`` masked.
    """

    usage_errors = (MomentumConvertError, SweepUsageError, StorageUsageError)
    runtime_errors = (SweepError, StorageError, OSError)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TypeError as exc:
            if not _raised_by_driver_connect(exc):
                raise
            raise StorageUsageError(
                f"The storage URL passes a query argument the database driver does not"
                f" accept ({exc}); remove it from the URL's query string."
            ) from exc
        except Exception as exc:
            if not type(exc).__module__.startswith("sqlalchemy"):
                raise
            raise _database_failure(exc) from exc


def _raised_by_driver_connect(exc: TypeError) -> bool:
    """Whether the driver's ``connect`` refused a keyword from the URL's query string (an
    engine Optuna made itself, which ``storage.engine`` cannot watch)."""
    traceback = exc.__traceback__
    last = None
    while traceback is not None:
        last, traceback = traceback.tb_frame, traceback.tb_next
    return (
        last is not None
        and "unexpected keyword argument" in str(exc)
        and (
            last.f_code.co_filename.endswith("sqlalchemy/engine/default.py")
            or "site-packages/pymysql" in last.f_code.co_filename
        )
    )


def _database_failure(exc: Exception) -> StorageError:
    from storage.engine import hide_password

    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = hide_password(reason[0].rstrip(".")) if reason else type(exc).__name__
    return StorageError(f"The results database failed: {text}.")


@click.group(cls=SweepsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="momentum-sweeps")
def cli(debug: bool) -> None:
    """Run Optuna sweeps that train with PyTorch's SGD and the lr-inside SutskeverSGD,
    side by side, and report how hyperparameters transfer between them."""


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    cli()
