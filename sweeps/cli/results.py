"""Commands of the `sweeps` CLI (filled in by its issue)."""

import click

commands: list[click.Command] = []
