"""``momentum-convert plot``: draw a recipe and its exact conversion, without training.

    momentum-convert plot --from caffe --to pytorch --lr 0.01 --momentum 0.9 \\
        --schedule multistep:milestones=30/60,gamma=0.1 --steps 90 --out recipe.png

The recipe options are ``momentum-convert convert``'s own (the same click parameters and
the same recipe builder), so both commands read a recipe identically. The figure is
:func:`momentum_convert.plotting.plot_conversion`: lr, momentum and the effective step size
``lr / (1 - μ)`` per step, as written and as converted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

commands: list[click.Command] = []  # before the import below: momentum_convert.cli reads it

from momentum_convert import cli as _cli  # noqa: E402 (see the line above)
from momentum_convert.conversion import convert  # noqa: E402
from momentum_convert.plotting import plot_conversion, save_figure  # noqa: E402

#: ``convert``'s options that do not describe the recipe (output and verification).
NOT_RECIPE_OPTIONS = frozenset({"output", "verify", "seed", "debug"})


def _recipe_params() -> list[click.Parameter]:
    """``convert``'s own recipe options (the same click objects, so help and checks match)."""
    return [p for p in _cli.convert_command.params if p.name not in NOT_RECIPE_OPTIONS]


def _plot(out: Path, **options: Any) -> None:
    """Draw a recipe's lr, momentum and lr/(1-μ) per step, as written and converted.

    \b
    momentum-convert plot --from caffe --to pytorch --lr 0.01 --momentum 0.9 \\
        --schedule multistep:milestones=30/60,gamma=0.1 --steps 90 --out recipe.png
    """
    source, target = options["source"], options["target"]
    recipe = _cli._recipe(  # the recipe builder of ``convert``, so both read options alike
        source,
        options["lr"],
        options["momentum"],
        options["dampening"],
        options["nesterov"],
        options["weight_decay"],
        options["lr_spec"],
        options["momentum_spec"],
        options["steps"],
    )
    gradient_scale = options.get("gradient_scale", 1.0)
    if gradient_scale != 1:
        recipe = dataclasses.replace(recipe, gradient_scale=gradient_scale)
    conversion = convert(recipe, target)
    figure = plot_conversion(recipe, conversion, source, target)
    path = save_figure(figure, out)
    click.echo(str(path))


plot = click.Command(
    "plot",
    callback=_plot,
    params=[
        *_recipe_params(),
        click.Option(
            ["--out"],
            required=True,
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            help="The PNG file to write.",
        ),
        click.Option(["--debug"], is_flag=True, hidden=True, expose_value=False),
    ],
    help=_plot.__doc__,
    short_help="Draw a recipe's lr, momentum and effective step in both conventions.",
)
commands.append(plot)
