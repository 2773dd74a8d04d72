"""``momentum-convert import`` and ``momentum-convert recipe``: recipes from files and papers.

``import KIND FILE --to CONV`` reads a framework's own file (:mod:`momentum_convert.
importers`) and converts it; ``recipe list`` and ``recipe show NAME --to CONV`` do the same
for the published recipes of :mod:`momentum_convert.catalog`. Output follows ``convert``:
``--format table`` (the same table), ``json`` (the same contract: ``exact, verdict,
notes, hyperparameters, per_step, ...`` plus ``imported`` or ``recipe``), ``python``
(runnable PyTorch code for ``--to pytorch``, optax code for ``--to optax``) and ``keras``
(a Keras 3 SGD config for ``--to keras3``).

Registered by :mod:`momentum_convert.cli` through the module-level :data:`commands` list.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from momentum_convert import catalog, importers
from momentum_convert.conversion import Conversion, convert
from momentum_convert.errors import RecipeError
from momentum_convert.exporters import export_keras3, export_optax, export_pytorch

FORMATS = ("table", "json", "python", "keras")


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise RecipeError(f"{name} must be a whole number >= 1, got {value!r}.")
    return value


def _emit(conversion: Conversion, output: str, extra: dict[str, Any]) -> None:
    """Print ``conversion`` in ``output`` format; ``extra`` joins the JSON."""
    if output == "json":
        click.echo(json.dumps({**conversion.to_json(), **extra}))
    elif output == "python":
        if conversion.target.name == "optax":
            click.echo(export_optax(conversion), nl=False)
        else:
            click.echo(export_pytorch(conversion), nl=False)
    elif output == "keras":
        click.echo(export_keras3(conversion), nl=False)
    else:
        from momentum_convert.cli import _print_conversion

        _print_conversion(conversion, None)


def _with_notes(conversion: Conversion, notes: tuple[str, ...]) -> Conversion:
    return dataclasses.replace(conversion, notes=(*notes, *conversion.notes))


@click.command("import")
@click.argument("kind", type=click.Choice(list(importers.KINDS)))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "target", required=True, metavar="CONV", help="The convention to convert to.")
@click.option("--steps", type=int, default=None, help="Optimizer steps (default: the file's).")
@click.option(
    "--steps-per-epoch",
    type=int,
    default=None,
    help="Steps per epoch: for argument files that give 'epochs', and the data loader length"
    " that mmengine and timm schedules count in.",
)
@click.option("--format", "output", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--debug", is_flag=True, hidden=True, expose_value=False)
def import_command(
    kind: str,
    file: Path,
    target: str,
    steps: int | None,
    steps_per_epoch: int | None,
    output: str,
) -> None:
    """Read a recipe from a framework's file and convert it.

    \b
    KIND: caffe (solver.prototxt), keras (SGD get_config()/serialize() JSON or YAML),
          tf1, optax, torch7 (the optimizer's arguments as JSON or YAML),
          mxnet (train_*.py set_defaults or fit.py arguments), gluoncv (training
          command), detectron, detectron2 (YAML configs), mmengine (Python config,
          not executed), timm (args.yaml or train.py command).
    \b
    momentum-convert import caffe solver.prototxt --to pytorch --format python
    """
    _positive("--steps", steps)
    _positive("--steps-per-epoch", steps_per_epoch)
    if not file.is_file():
        raise RecipeError(
            f"{file} is not a file (missing, or a directory or device);"
            f" give the path of a {kind} file."
        )
    imported = importers.load(kind, file, steps=steps, steps_per_epoch=steps_per_epoch)
    conversion = _with_notes(convert(imported.recipe, target), imported.all_notes())
    recipe = imported.recipe
    _emit(
        conversion,
        output,
        {
            "imported": {
                "kind": kind,
                "file": str(file),
                "convention": recipe.convention,
                "lr_schedule": recipe.lr_schedule.describe(),
                "momentum_schedule": recipe.momentum_schedule.describe(),
                "groups": [group.to_json() for group in imported.groups],
            }
        },
    )


@click.group("recipe")
def recipe_group() -> None:
    """Published SGD-momentum recipes, with their sources (list, show)."""


@recipe_group.command("list")
@click.option("--framework", help="Only recipes run with this code (caffe, gluoncv, timm, ...).")
@click.option("--convention", help="Only recipes written in this convention (caffe, pytorch, ...).")
@click.option("--dataset", help="Only recipes trained on this data set (imagenet, cifar10, ...).")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--debug", is_flag=True, hidden=True, expose_value=False)
def recipe_list(
    framework: str | None, convention: str | None, dataset: str | None, output: str
) -> None:
    """List the catalog: name, what was trained, framework, convention, data set, batch, epochs.

    \b
    momentum-convert recipe list --framework detectron2
    momentum-convert recipe list --convention caffe --dataset cifar10
    """
    entries = catalog.select(framework=framework, convention=convention, dataset=dataset)
    if output == "json":
        click.echo(json.dumps([entry.describe() for entry in entries], indent=2))
        return
    from momentum_convert.cli import _console

    table = Table(title="Published recipes", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("recipe", overflow="fold")
    for column in ("framework", "convention", "data set", "lr", "momentum", "batch", "epochs"):
        table.add_column(column, no_wrap=True)
    for entry in entries:
        epochs = "—" if entry.epochs is None else f"{entry.epochs:.4g}"
        table.add_row(
            entry.name,
            entry.title,
            entry.framework,
            entry.convention + (" (Nesterov)" if entry.nesterov else ""),
            entry.dataset,
            f"{entry.lr:g}",
            f"{entry.momentum:g}",
            str(entry.batch_size),
            epochs,
        )
    _console(150).print(table)


@recipe_group.command("show")
@click.argument("name")
@click.option("--to", "target", required=True, metavar="CONV", help="The convention to convert to.")
@click.option(
    "--steps-per-epoch",
    type=int,
    default=None,
    help="Optimizer steps per epoch (default: the source's data loader).",
)
@click.option("--format", "output", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--debug", is_flag=True, hidden=True, expose_value=False)
def recipe_show(name: str, target: str, steps_per_epoch: int | None, output: str) -> None:
    """Show a published recipe and its exact equivalent in another convention.

    \b
    momentum-convert recipe show goyal2017 --to pytorch --steps-per-epoch 156
    """
    _positive("--steps-per-epoch", steps_per_epoch)
    entry = catalog.get(name)
    conversion = convert(entry.recipe(steps_per_epoch), target)
    if output == "table":
        from momentum_convert.cli import _console

        console = _console()
        console.print(f"[bold]{entry.name}[/bold]: {entry.title}")
        console.print(f"  Source: {entry.citation}")
        console.print(
            f"  Written in: {entry.convention}; batch {entry.batch_size}; {entry.schedule}."
        )
        console.print(f"  Verified: {entry.verified}")
        console.print(f"  Uncertain: {entry.uncertain}")
    _emit(conversion, output, {"recipe": entry.describe()})


#: The subcommands ``momentum_convert.cli`` registers (see its ``_COMMAND_MODULES``).
commands: list[click.Command] = [import_command, recipe_group]
