"""Draw a recipe's learning rate, momentum and effective step size in both conventions.

One figure, three panels over the optimizer steps ``t = 1..T``:

1. the learning rate ``η_t`` each optimizer is given,
2. the momentum ``μ_t`` each optimizer is given,
3. the effective step size ``η_t / (1 - μ_t)``: the step a constant gradient settles at
   under either update rule (docs/reference.md, "The two families": with constant η the
   families coincide, ``v = -η b``, and ``Σ_k μ^k η = η / (1 - μ)``). Steps with
   ``μ_t ≥ 1`` have no steady state; they are marked instead of drawn.

The *source* lines are the recipe as written; the *converted* lines are what the target
convention must be given to reproduce it exactly (:func:`momentum_convert.convert`). A naive
port gives the target the source's numbers unchanged, so the naive lines are the source
lines: where they and the converted lines part, the naive port is a different optimizer.

Matplotlib runs headless (the Agg backend); nothing here needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from momentum_convert.schedule_base import FloatArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from momentum_convert.conversion import Conversion
    from momentum_convert.recipe import Recipe


@dataclass(frozen=True)
class PerStepSeries:
    """One optimizer's per-step values (index ``i`` is step ``i + 1``) and its label."""

    label: str
    lr: FloatArray
    momentum: FloatArray
    linestyle: str = "-"
    colour: str | None = None  # None: matplotlib's colour cycle

    @property
    def effective_step(self) -> FloatArray:
        """``η_t / (1 - μ_t)``, NaN where ``μ_t ≥ 1`` (no steady state)."""
        lr = np.asarray(self.lr, dtype=np.float64)
        momentum = np.asarray(self.momentum, dtype=np.float64)
        out = np.full(lr.shape, np.nan)
        settles = momentum < 1
        out[settles] = lr[settles] / (1.0 - momentum[settles])
        return out


def draw_per_step(axes: Sequence[Axes], series: Sequence[PerStepSeries]) -> None:
    """Draw lr, momentum and effective step size of each series into three axes."""
    lr_ax, momentum_ax, effective_ax = axes
    for one in series:
        steps = np.arange(1, len(one.lr) + 1)
        style = {"label": one.label, "drawstyle": "steps-post", "color": one.colour}
        (line,) = lr_ax.plot(steps, one.lr, one.linestyle, **style)
        momentum_ax.plot(steps, one.momentum, one.linestyle, **style)
        effective_ax.plot(steps, one.effective_step, one.linestyle, **style)
        unsettled = np.flatnonzero(np.asarray(one.momentum) >= 1)
        if unsettled.size:
            effective_ax.plot(
                steps[unsettled],
                np.full(unsettled.size, np.nanmax(one.effective_step, initial=0.0)),
                "v",
                color=line.get_color(),
                markersize=4,
                label=f"{one.label}: μ ≥ 1 (no steady state)",
            )
    positive = [np.asarray(one.lr)[np.asarray(one.lr) > 0] for one in series]
    if all(p.size for p in positive):
        low = min(float(p.min()) for p in positive)
        if max(float(p.max()) for p in positive) > 20 * low:
            lr_ax.set_yscale("log")  # decays over decades: equal ratios, equal heights
    lr_ax.set_ylabel("learning rate η")
    momentum_ax.set_ylabel("momentum μ")
    effective_ax.set_ylabel("effective step η/(1-μ)")
    effective_ax.set_xlabel("optimizer step t")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    lr_ax.legend(fontsize="small")
    effective_ax.legend(fontsize="small")


def conversion_series(
    recipe: Recipe, conversion: Conversion, source: str, target: str
) -> list[PerStepSeries]:
    """The recipe as written (``source``) and its exact conversion (``target``)."""
    return [
        PerStepSeries(
            f"{source} (as written; also the naive port to {target})",
            recipe.lr_per_step(),
            recipe.momentum_per_step(),
        ),
        PerStepSeries(
            f"{target}, converted ({conversion.verdict})",
            conversion.lr,
            conversion.momentum,
            linestyle="--",
        ),
    ]


def plot_conversion(
    recipe: Recipe, conversion: Conversion, source: str, target: str, *, title: str = ""
) -> Figure:
    """A three-panel figure of the recipe and its conversion (see the module docstring)."""
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 8), layout="constrained")
    draw_per_step(axes, conversion_series(recipe, conversion, source, target))
    figure.suptitle(title or f"{source} → {target}: {conversion.verdict}")
    return figure


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG to ``path`` and close it."""
    out = Path(path)
    figure.savefig(out, dpi=dpi, format="png")
    plt.close(figure)
    return out
