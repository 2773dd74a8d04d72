"""The ``momentum-convert`` command line (click).

Commands are short and call the library: ``convert`` (:func:`momentum_convert.conversion.
convert`), ``schedule`` (:func:`momentum_convert.schedule_spec.parse_schedule`) and
``conventions`` (:mod:`momentum_convert.conventions`). Other parts of the package add
their commands from their own modules: each module named in ``_COMMAND_MODULES`` exposes
a module-level ``commands`` list, as in ``sweeps.cli``.

Data goes to stdout; messages to stderr. Bad input exits 2 with one sentence (the
:class:`~momentum_convert.cli_errors.ErrorHandlingGroup` policy); ``--debug`` before or
after the command shows the traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from momentum_convert.cli_errors import ErrorHandlingGroup
from momentum_convert.conventions import CONVENTIONS, resolve
from momentum_convert.conversion import Conversion, convert
from momentum_convert.errors import RecipeError
from momentum_convert.recipe import Recipe
from momentum_convert.runs import change_steps
from momentum_convert.schedule_base import Constant, FloatArray, PerStep, Schedule
from momentum_convert.simulation import verify

#: Modules that add subcommands (``plot``, ``import``, ``recipe``, ...) through ``commands``.
_COMMAND_MODULES: tuple[str, ...] = ("momentum_convert.cli_recipes", "momentum_convert.cli_plot")

#: Runs of equal values shown in a table before the middle is elided.
_HEAD_RUNS, _TAIL_RUNS = 20, 10

F = TypeVar("F", bound=Callable[..., Any])


def _debug_option(command: F) -> F:
    """Accept ``--debug`` after the subcommand too (the group reads it from argv)."""
    return click.option("--debug", is_flag=True, hidden=True, expose_value=False)(command)


def _console(width: int = 100) -> Console:
    return Console(width=max(width, Console().width), soft_wrap=False, highlight=False)


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="momentum-sweeps")
def cli(debug: bool) -> None:
    """Convert SGD-momentum recipes exactly between the lr-outside (PyTorch) and
    lr-inside (Sutskever, Caffe, Keras) conventions."""


# ---- convert -------------------------------------------------------------------------


def _parse_spec(spec: str | None) -> Schedule:
    if spec is None:
        return Constant()
    from momentum_convert.schedule_spec import parse_schedule

    return parse_schedule(spec)


def _imposed_momentum(schedule: Schedule) -> Schedule | None:
    from momentum_convert.schedule_spec import momentum_schedule_for

    return momentum_schedule_for(schedule)


@cli.command("convert")
@click.option("--from", "source", required=True, metavar="CONV", help="The recipe's convention.")
@click.option("--to", "target", required=True, metavar="CONV", help="The convention to convert to.")
@click.option("--lr", type=float, default=None, help="Base learning rate (omit for file: SPECs).")
@click.option("--momentum", type=float, required=True, help="Base momentum μ.")
@click.option(
    "--dampening",
    type=float,
    default=None,
    help="Dampening τ (pytorch, torch7; Torch7 defaults it to the momentum).",
)
@click.option("--nesterov", is_flag=True, help="Nesterov momentum, in the source's own form.")
@click.option(
    "--weight-decay", type=float, default=0.0, help="Weight decay in the source's own meaning."
)
@click.option("--schedule", "lr_spec", metavar="SPEC", help="Learning-rate schedule SPEC.")
@click.option("--momentum-schedule", "momentum_spec", metavar="SPEC", help="Momentum schedule.")
@click.option("--steps", type=int, default=None, help="Optimizer steps (default: 1000).")
@click.option(
    "--gradient-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Factor the source applies to the gradient (Gluon 1/batch_size, Caffe 1/iter_size).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "python"]),
    default="table",
    show_default=True,
)
@click.option("--verify", is_flag=True, help="Simulate both on a noisy quadratic and compare.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --verify.")
@_debug_option
def convert_command(
    source: str,
    target: str,
    lr: float | None,
    momentum: float,
    dampening: float | None,
    nesterov: bool,
    weight_decay: float,
    lr_spec: str | None,
    momentum_spec: str | None,
    steps: int | None,
    gradient_scale: float,
    output: str,
    verify: bool,
    seed: int,
) -> None:
    """Convert a recipe into another convention, exactly where possible.

    \b
    momentum-convert convert --from caffe --to pytorch --lr 0.01 --momentum 0.9 \\
        --schedule multistep:milestones=30/60,gamma=0.1 --steps 90
    """
    recipe = _recipe(
        source, lr, momentum, dampening, nesterov, weight_decay, lr_spec, momentum_spec, steps
    )
    if gradient_scale != 1:
        recipe = dataclasses.replace(recipe, gradient_scale=gradient_scale)
    conversion = convert(recipe, target)
    difference = _verify(conversion, seed) if verify else None
    if output == "json":
        data = conversion.to_json()
        if difference is not None:
            data["verification"] = difference
        click.echo(json.dumps(data, ensure_ascii=False))
    elif output == "python":
        from momentum_convert.snippets import pytorch_snippet

        click.echo(pytorch_snippet(conversion), nl=False)
        if difference is not None:
            click.echo(_verification_sentence(difference), err=True)
    else:
        _print_conversion(conversion, difference)


def _recipe(
    source: str,
    lr: float | None,
    momentum: float,
    dampening: float | None,
    nesterov: bool,
    weight_decay: float,
    lr_spec: str | None,
    momentum_spec: str | None,
    steps: int | None,
) -> Recipe:
    convention = resolve(source)
    if not math.isfinite(momentum):
        raise RecipeError(f"momentum must be a finite number, got {momentum!r}.")
    lr_schedule = _parse_spec(lr_spec)
    if momentum_spec is not None:
        momentum_schedule = _parse_spec(momentum_spec)
    else:
        momentum_schedule = _imposed_momentum(lr_schedule) or Constant()
    if steps is None:
        steps = len(lr_schedule.per_step) if isinstance(lr_schedule, PerStep) else 1000
    if dampening is None:
        dampening = convention.default_dampening(momentum, nesterov)
    return Recipe(
        convention=convention.name,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        momentum_schedule=momentum_schedule,
        steps=steps,
    )


def _verify(conversion: Conversion, seed: int) -> dict[str, Any]:
    n = min(conversion.lr.size, 10_000)
    difference = verify(conversion, steps=n, seed=seed)
    return {
        "max_relative_difference": difference if math.isfinite(difference) else None,
        "steps": n,
        "seed": seed,
    }


def _verification_sentence(result: dict[str, Any]) -> str:
    value = result["max_relative_difference"]
    shown = "not defined (the conversion is impossible)" if value is None else f"{value:.3e}"
    return (
        f"Verification: largest relative trajectory difference {shown} over {result['steps']}"
        f" steps of a float64 noisy quadratic (seed {result['seed']})."
    )


def _fmt(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{value:.6g}"


def _runs_rows(columns: dict[str, FloatArray]) -> list[tuple[str, ...]]:
    arrays = list(columns.values())
    n = arrays[0].size
    starts = change_steps(*arrays)
    ends = np.append(starts[1:] - 1, n)
    shown = list(range(starts.size))
    elided = 0
    if starts.size > _HEAD_RUNS + _TAIL_RUNS:
        elided = starts.size - _HEAD_RUNS - _TAIL_RUNS
        shown = [*range(_HEAD_RUNS), -1, *range(starts.size - _TAIL_RUNS, starts.size)]
    rows: list[tuple[str, ...]] = []
    for i in shown:
        if i < 0:
            rows.append((f"… {elided} more runs …", *("" for _ in arrays)))
            continue
        s, e = int(starts[i]), int(ends[i])
        label = f"step {s}" if s == e else f"steps {s}-{e}"
        rows.append((label, *(_fmt(float(a[s - 1])) for a in arrays)))
    return rows


def _print_conversion(conversion: Conversion, difference: dict[str, Any] | None) -> None:
    console = _console()
    style = {"exact": "green", "impossible": "red"}.get(conversion.verdict.value, "yellow")
    console.print(
        f"[bold]{conversion.source.name} → {conversion.target.name}[/bold]:"
        f" [{style}]{conversion.verdict.value}[/{style}]"
    )
    for note in conversion.notes:
        console.print(f"  • {note}", markup=False)
    if conversion.impossible_steps:
        steps = ", ".join(str(s) for s in conversion.impossible_steps[:10])
        more = "…" if len(conversion.impossible_steps) > 10 else ""
        console.print(f"  Impossible at step(s): {steps}{more}")
    console.print(f"\n{conversion.target.framework} hyperparameters:", markup=False)
    hp = Table()
    hp.add_column("name")
    hp.add_column("value")
    for name, value in conversion.hyperparameters.items():
        hp.add_row(name, _fmt(value) if isinstance(value, float) else repr(value))
    console.print(hp)
    columns = {"lr": conversion.lr, "momentum": conversion.momentum}
    if conversion.state_scale is not None:
        columns["state scale"] = conversion.state_scale
    console.print("\nPer step (what the target uses; runs of equal values):")
    per_step = Table()
    per_step.add_column("steps")
    for name in columns:
        per_step.add_column(name, justify="right")
    for row in _runs_rows(columns):
        per_step.add_row(*row)
    console.print(per_step)
    console.print(f"Checkpoints: {conversion.state.formula}", markup=False)
    if difference is not None:
        console.print(_verification_sentence(difference))


# ---- schedule ------------------------------------------------------------------------


@cli.command("schedule")
@click.argument("spec")
@click.option("--steps", type=int, required=True, help="Optimizer steps to evaluate.")
@click.option(
    "--base", type=float, default=1.0, show_default=True, help="Base value (e.g. the lr)."
)
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG here.")
@_debug_option
def schedule_command(
    spec: str, steps: int, base: float, output: str, plot_path: str | None
) -> None:
    """Show a schedule SPEC's value at each step (index i is step i+1)."""
    schedule = _parse_spec(spec)
    if steps < 1:
        raise RecipeError(f"steps must be a whole number >= 1, got {steps!r}.")
    if not math.isfinite(base):
        raise RecipeError(f"--base must be a finite number, got {base!r}.")
    values = schedule.values(base, steps)
    imposed = _imposed_momentum(schedule)
    momentum = imposed.values(0.0, steps) if imposed is not None else None
    if output == "json":
        data: dict[str, Any] = {
            "schedule": schedule.describe(),
            "base": base,
            "absolute": schedule.absolute,
            "steps": steps,
            "values": values.tolist(),
        }
        if momentum is not None:
            data["momentum"] = momentum.tolist()
        click.echo(json.dumps(data))
    else:
        columns = {"value": values}
        if momentum is not None:
            columns["momentum"] = momentum
        _console().print(schedule.describe(), markup=False)
        table = Table()
        table.add_column("steps")
        for name in columns:
            table.add_column(name, justify="right")
        for row in _runs_rows(columns):
            table.add_row(*row)
        _console().print(table)
    if plot_path is not None:
        _plot_schedule(schedule.describe(), values, momentum, Path(plot_path))
        click.echo(f"Wrote {plot_path}", err=True)


def _plot_schedule(title: str, values: FloatArray, momentum: FloatArray | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 if momentum is None else 2
    figure, axes = plt.subplots(panels, 1, figsize=(7, 2.6 * panels), sharex=True, squeeze=False)
    steps = np.arange(1, values.size + 1)
    axes[0, 0].plot(steps, values, lw=1.2)
    axes[0, 0].set_ylabel("value")
    axes[0, 0].set_title(title, fontsize=10)
    if momentum is not None:
        axes[1, 0].plot(steps, momentum, lw=1.2, color="tab:orange")
        axes[1, 0].set_ylabel("momentum")
    axes[-1, 0].set_xlabel("optimizer step")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)


# ---- conventions ---------------------------------------------------------------------


@cli.command("conventions")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@_debug_option
def conventions_command(output: str) -> None:
    """List the conventions: family, first step, Nesterov, weight decay, names, source."""
    if output == "json":
        click.echo(json.dumps([c.to_dict() for c in CONVENTIONS.values()], indent=2))
        return
    table = Table(show_lines=True)
    for column in ("name", "family", "step 1", "Nesterov"):
        table.add_column(column, no_wrap=True)
    for column in ("weight decay", "names (defaults)"):
        table.add_column(column, overflow="fold")
    table.add_column("source", overflow="fold")
    for c in CONVENTIONS.values():
        decay = c.weight_decay_rule.value
        if c.weight_decay_rule.value == "l2-loss":
            decay += f" (×{c.weight_decay_factor:g})"
        defaults = ", ".join(f"{k}={v}" for k, v in c.defaults)
        table.add_row(
            c.name,
            c.family.value,
            c.first_step.value,
            c.nesterov_form.value,
            f"{decay}: {c.weight_decay_name}",
            defaults,
            c.source_file,
        )
    _console(170).print(table)


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    cli()
