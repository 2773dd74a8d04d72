"""The report's figures, one set per schedule family, drawn with matplotlib (Agg) as PNG.

- *Landscape*: the mean objective over (lr, momentum) for each optimizer, side by side on
  one colour scale, the optimum starred and the line ``lr / (1 - μ) = const`` drawn through
  it. Configurations on that line share the effective step size, so an optimum that moves
  *along* the line moved only in how the step is split between lr and momentum; one that
  moves *across* it needs a different step size in the other formulation.
- *Learning curves*: the objective per epoch of each optimizer's best configuration (mean
  over seeds, each seed faint) and of the best configuration moved naively and converted.
- *Per-step values*: the lr, momentum and effective step size the best configuration's
  optimizers used, from :func:`momentum_convert.convert` when the number of steps is known
  (``hp_steps_per_epoch``), otherwise the per-epoch ``lr``/``momentum`` metrics the runs
  recorded (the values used at each epoch's last step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from momentum_convert.plotting import PerStepSeries, draw_per_step, save_figure
from sweeps.report.data import (
    OPTIMIZER_NAMES,
    OWN_SWEEP_ROLES,
    Configuration,
    FamilyResult,
    ReportData,
    learning_curves,
)
from sweeps.report.roles import ROLE_LINESTYLES, role_colour, role_word

DPI = 100
ROLE_STYLES = {**ROLE_LINESTYLES, "origin": "-"}
#: Markers tell the two optimizers apart where colours tell the roles apart.
OPTIMIZER_MARKERS = {"pytorch": "o", "sutskever": "s"}


@dataclass(frozen=True)
class FigureFile:
    """A PNG the report embeds: its path, a title and a caption saying how to read it."""

    path: Path
    title: str
    caption: str


def _label(optimizer: str) -> str:
    return OPTIMIZER_NAMES.get(optimizer, optimizer)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "family"


def draw_landscape(family: FamilyResult, data: ReportData, path: Path) -> FigureFile:
    """Mean objective over (lr, momentum) per optimizer, optimum and its iso-step line."""
    table = family.configurations
    own = table[table["role"].isin(OWN_SWEEP_ROLES)]
    optimizers = sorted(own["optimizer"].unique()) or ["pytorch"]
    finite = own["mean"][np.isfinite(own["mean"])]
    norm = Normalize(
        vmin=float(finite.min()) if len(finite) else 0.0,
        vmax=float(finite.max()) if len(finite) else 1.0,
    )
    cmap = "viridis_r" if data.direction == "minimize" else "viridis"
    figure, axes = plt.subplots(
        1,
        len(optimizers),
        figsize=(5.5 * len(optimizers), 4.4),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    lr_all = own["lr"][own["lr"] > 0]
    lr_span = (float(lr_all.min()) / 1.5, float(lr_all.max()) * 1.5) if len(lr_all) else (1e-3, 1.0)
    momentum_all = own["momentum"]
    momentum_span = (
        (float(momentum_all.min()) - 0.05, min(1.0, float(momentum_all.max()) + 0.05))
        if len(momentum_all)
        else (0.0, 1.0)
    )
    scatter = None
    for ax, optimizer in zip(axes[0], optimizers, strict=True):
        points = own[own["optimizer"] == optimizer]
        good = points[np.isfinite(points["mean"])]
        bad = points[~np.isfinite(points["mean"])]
        scatter = ax.scatter(
            good["lr"],
            good["momentum"],
            c=good["mean"],
            cmap=cmap,
            norm=norm,
            s=36,
            edgecolors="k",
            linewidths=0.3,
        )
        if len(bad):
            ax.scatter(bad["lr"], bad["momentum"], marker="x", c="0.5", label="diverged")
        best = family.comparison.best.get(optimizer)
        if best is not None:
            _draw_optimum(ax, best, lr_span, "red", "optimum")
        for other, other_best in family.comparison.best.items():
            if other != optimizer:
                ax.scatter(
                    [other_best.lr],
                    [other_best.momentum],
                    marker="*",
                    s=180,
                    facecolors="none",
                    edgecolors="red",
                    linewidths=1.2,
                    label=f"optimum of {_label(other)}",
                )
        ax.set_xscale("log")
        ax.set_xlim(*lr_span)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(*momentum_span)
        ax.set_xlabel("lr (sweep's convention)")
        ax.set_title(_label(optimizer), fontsize="medium")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    axes[0][0].set_ylabel("momentum μ")
    if scatter is not None:
        figure.colorbar(scatter, ax=axes[0].tolist(), label=f"mean {data.objective} over seeds")
    figure.suptitle(f"{family.schedule_family}: {data.objective} over (lr, momentum)")
    out = save_figure(figure, path, dpi=DPI)
    return FigureFile(
        out,
        f"{family.schedule_family}: landscape",
        "Each point is one configuration, coloured by its mean over seeds (× diverged). The"
        " filled star is the optimizer's optimum, the hollow star the other optimizer's; the"
        " dashed line is lr/(1-μ) = const through the optimum (the same effective step).",
    )


def _draw_optimum(
    ax: Axes, best: Configuration, lr_span: tuple[float, float], colour: str, label: str
) -> None:
    ax.scatter([best.lr], [best.momentum], marker="*", s=220, c=colour, label=label, zorder=3)
    if not math.isfinite(best.effective_lr) or best.effective_lr <= 0:
        return
    lr = np.geomspace(lr_span[0], min(lr_span[1], best.effective_lr), 200)
    momentum = 1.0 - lr / best.effective_lr
    ax.plot(lr, momentum, "--", c=colour, lw=1, label=f"lr/(1-μ) = {best.effective_lr:.3g}")


def draw_learning_curves(
    family: FamilyResult, data: ReportData, metrics: pd.DataFrame, path: Path
) -> FigureFile:
    """The objective per epoch of the bests and of the transfers of the best."""
    figure, ax = plt.subplots(figsize=(8, 4.4), layout="constrained")
    shown: list[tuple[str, Configuration]] = [
        (f"{role_word(c.role)}: {_label(o)} best (trial {c.trial})", c)
        for o, c in sorted(family.comparison.best.items())
    ]
    for transfer in family.transfers:
        for run in (transfer.naive, transfer.converted):
            already = (
                any(
                    (c.optimizer, c.role, c.trial) == (run.optimizer, run.role, run.trial)
                    for _, c in shown
                )
                if run is not None
                else True
            )
            if run is not None and not already:
                shown.append(
                    (
                        f"{role_word(run.role)}: {_label(transfer.origin.optimizer)} best in"
                        f" {_label(run.optimizer)}",
                        run,
                    )
                )
    for label, config in shown:
        curves = learning_curves(metrics, config, data.objective)
        if curves.empty:
            continue
        colour = role_colour(config.role)
        for _, seed_curve in curves.groupby("seed"):
            ax.plot(seed_curve["epoch"], seed_curve["value"], c=colour, alpha=0.25, lw=0.8)
        mean = curves.groupby("epoch")["value"].mean()
        ax.plot(
            mean.index,
            mean.to_numpy(),
            ROLE_STYLES.get(config.role, "-"),
            c=colour,
            marker=OPTIMIZER_MARKERS.get(config.optimizer),
            markersize=4,
            lw=2,
            label=label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(data.objective)
    if data.objective.endswith("loss"):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{family.schedule_family}: learning curves (thick: mean over seeds)")
    out = save_figure(figure, path, dpi=DPI)
    return FigureFile(
        out,
        f"{family.schedule_family}: learning curves",
        f"{data.objective} per epoch. Thick lines are means over seeds, thin lines single"
        " seeds. Colours are roles (blue: source, orange, dotted: naive port, green, dashed:"
        " converted); circles mark PyTorch SGD, squares Sutskever SGD.",
    )


def _hp(row: pd.Series, name: str) -> object:
    value = row.get(f"hp_{name}")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _recipe_series(config: Configuration, runs: pd.DataFrame) -> list[PerStepSeries] | None:
    """Per-step series from ``momentum_convert.convert`` when the steps are known.

    The recipe is the configuration as sampled (``hp_*``: in the spec's convention, with
    ``hp_total_steps`` or ``hp_steps_per_epoch × hp_epochs`` optimizer steps); None when the
    runs do not record the number of steps or the converter is not installed.
    """
    rows = runs[(runs["trial"] == config.trial) & (runs["role"] == config.role)]
    if rows.empty:
        return None
    first = rows.iloc[0]
    steps = _hp(first, "total_steps")
    if steps is None and _hp(first, "steps_per_epoch") and _hp(first, "epochs"):
        steps = int(_hp(first, "steps_per_epoch")) * int(_hp(first, "epochs"))  # type: ignore[call-overload]
    if steps is None:
        return None
    try:
        from momentum_convert.conversion import convert
        from momentum_convert.recipe import Recipe
        from momentum_convert.schedule_spec import parse_schedule
    except ImportError:
        return None
    convention = str(_hp(first, "convention") or config.optimizer)
    recipe = Recipe(
        convention=convention,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=bool(_hp(first, "nesterov") or False),
        weight_decay=float(_hp(first, "weight_decay") or 0.0),  # type: ignore[arg-type]
        lr_schedule=parse_schedule(str(_hp(first, "schedule_spec") or config.schedule)),
        steps=int(steps),  # type: ignore[call-overload]
    )
    other = next(o for o in OPTIMIZER_NAMES if o != config.optimizer)
    conversion = convert(recipe, to=other)
    return [
        PerStepSeries(
            f"{role_word('source')}: {_label(config.optimizer)} (the naive port uses the same"
            " numbers)",
            recipe.lr_per_step(),
            recipe.momentum_per_step(),
            colour=role_colour("source"),
        ),
        PerStepSeries(
            f"{role_word('converted')}: {_label(other)} ({conversion.verdict})",
            np.asarray(conversion.lr, dtype=np.float64),
            np.asarray(conversion.momentum, dtype=np.float64),
            "--",
            colour=role_colour("converted"),
        ),
    ]


def _metric_series(configs: list[Configuration], metrics: pd.DataFrame) -> list[PerStepSeries]:
    """Per-epoch ``lr``/``momentum`` metrics (the values used at each epoch's last step)."""
    series = []
    for config in configs:
        lr = learning_curves(metrics, config, "lr")
        momentum = learning_curves(metrics, config, "momentum")
        if lr.empty or momentum.empty:
            continue
        first_seed = lr["seed"].iloc[0]
        lr_values = lr[lr["seed"] == first_seed]["value"].to_numpy(dtype=np.float64)
        momentum_values = momentum[momentum["seed"] == first_seed]["value"].to_numpy(
            dtype=np.float64
        )
        n = min(len(lr_values), len(momentum_values))
        series.append(
            PerStepSeries(
                f"{role_word(config.role)}: {_label(config.optimizer)}",
                lr_values[:n],
                momentum_values[:n],
                ROLE_STYLES.get(config.role, "-"),
                colour=role_colour(config.role),
            )
        )
    return series


def draw_per_step_values(
    family: FamilyResult, data: ReportData, metrics: pd.DataFrame, path: Path
) -> FigureFile | None:
    """lr, momentum and lr/(1-μ) of the best source configuration and its transfers."""
    transfer = next((t for t in family.transfers if t.origin.role == "source"), None)
    if transfer is None:
        if not family.comparison.best:
            return None
        origin = min(family.comparison.best.values(), key=lambda c: c.optimizer)
        related = [origin]
    else:
        origin = transfer.origin
        related = [c for c in (origin, transfer.naive, transfer.converted) if c is not None]
    # A plateau schedule's lr is known only from what the runs recorded.
    reactive = family.schedule_family == "plateau"
    series = None if reactive else _recipe_series(origin, data.runs)
    unit = "optimizer step t"
    if series is None:
        series = _metric_series(related, metrics)
        unit = "epoch (value used at the epoch's last step)"
    if not series:
        return None
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 7.5), layout="constrained")
    draw_per_step(axes, series)
    axes[-1].set_xlabel(unit)
    figure.suptitle(
        f"{family.schedule_family}: what each optimizer was given (best {_label(origin.optimizer)}"
        f" configuration, trial {origin.trial})"
    )
    out = save_figure(figure, path, dpi=DPI)
    return FigureFile(
        out,
        f"{family.schedule_family}: per-step lr, momentum, effective step",
        "The learning rate, momentum and effective step size lr/(1-μ) the optimizers used."
        + (
            " With a plateau schedule these are what each run recorded per epoch (constant"
            " within an epoch): every run cuts its own lr, and the converted run keeps the"
            " source's values while correct_momentum rescales its state at each cut."
            if reactive
            else " The naive port runs the source's numbers in the other family; the converted"
            " run follows the exact conversion, whose momentum jumps where the lr changes."
        ),
    )


def draw_report_figures(
    data: ReportData,
    metrics: pd.DataFrame,
    out_dir: Path,
    *,
    spec: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, list[FigureFile]]:
    """Draw every figure into ``out_dir``; returns them by schedule family, in order.

    A ``plateau`` family adds its cut epochs and, given the sweep's ``spec`` (its task),
    the dynamics around each cut of the best configuration, trained again on ``device``
    (:mod:`sweeps.report.plateau`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[FigureFile]] = {}
    for family in data.families:
        stem = _safe(family.schedule_family)
        drawn = [
            draw_landscape(family, data, out_dir / f"landscape_{stem}.png"),
            draw_learning_curves(family, data, metrics, out_dir / f"curves_{stem}.png"),
            draw_per_step_values(family, data, metrics, out_dir / f"per_step_{stem}.png"),
        ]
        if family.schedule_family == "plateau":
            drawn += _plateau_figures(family, data, metrics, out_dir, spec, device)
        figures[family.schedule_family] = [f for f in drawn if f is not None]
    return figures


def _plateau_figures(
    family: FamilyResult,
    data: ReportData,
    metrics: pd.DataFrame,
    out_dir: Path,
    spec: Mapping[str, Any] | None,
    device: str,
) -> list[FigureFile | None]:
    from sweeps.report import plateau

    drawn = [plateau.draw_cut_epochs(family, metrics, out_dir / "cuts_plateau.png")]
    origin = next((t.origin for t in family.transfers if t.origin.role == "source"), None)
    if spec is None or origin is None or "hp_steps_per_epoch" not in data.runs:
        return drawn
    traces = plateau.trace_best_configuration(spec, data.runs, origin, device)
    steps_per_epoch = data.runs[data.runs["trial"] == origin.trial]["hp_steps_per_epoch"].iloc[0]
    path = out_dir / "around_cuts_plateau.png"
    drawn.append(plateau.draw_around_cuts(family, traces, int(steps_per_epoch), path))
    return drawn
