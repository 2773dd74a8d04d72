"""The ``momentum-convert`` command line (click).

Subcommands are short and call the library; see ``momentum-convert --help``.
"""

from __future__ import annotations

import click

from momentum_convert.cli_errors import ErrorHandlingGroup


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="momentum-sweeps")
def cli(debug: bool) -> None:
    """Convert SGD-momentum recipes exactly between the lr-outside (PyTorch) and
    lr-inside (Sutskever, Caffe, Keras) conventions."""


def main() -> None:
    cli()
