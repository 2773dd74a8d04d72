r"""The figures of a ``plateau`` schedule family: where the runs cut, and what a cut does.

ReduceLROnPlateau (:mod:`sweeps.plateau`) cuts each run's learning rate when its own
metric stalls, so the runs of one configuration may cut at different epochs. Two figures
answer the question the formulations raise:

- *Cut epochs*: for the best source configuration, the epochs after which each run
  (source, naive port, converted; every seed) cut its lr, read from the ``lr_cut``
  metric the training loop records. The converted run must cut where the source does; the
  naive port reacts to its own, different metrics.
- *Around each cut*: the best source configuration's first seed is trained again, its
  source, naive and converted runs, recording every step: the lr, the momentum, the
  effective step :math:`\eta/(1-\mu)` and the norm of the displacement
  :math:`\lVert\theta_t-\theta_{t-1}\rVert` (the velocity's norm, lr included, for
  classical momentum). A reader of PyTorch's SGD who thinks in Sutskever et al.'s terms
  expects a cut to let the velocity keep more of its history; in PyTorch (Form P) the
  momentum does not change and the displacement shrinks by the cut factor at once, while
  in Form S it decays over about :math:`1/(1-\mu)` steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from momentum_convert.plotting import save_figure
from sweeps.report.data import OPTIMIZER_NAMES, Configuration, FamilyResult
from sweeps.report.figures import FigureFile
from sweeps.report.roles import ROLE_LINESTYLES, role_colour, role_word

DPI = 100
MAX_CUTS_SHOWN = 3


@dataclass
class StepTrace:
    """One run's per-step lr, momentum and displacement norm, and its cut epochs."""

    role: str
    optimizer: str
    lr: list[float] = field(default_factory=list)
    momentum: list[float] = field(default_factory=list)
    displacement: list[float] = field(default_factory=list)
    cut_epochs: list[int] = field(default_factory=list)


def _label(optimizer: str) -> str:
    return OPTIMIZER_NAMES.get(optimizer, optimizer)


def _origin(family: FamilyResult) -> Configuration | None:
    return next((t.origin for t in family.transfers if t.origin.role == "source"), None)


def cut_epochs(metrics: pd.DataFrame, trial: int) -> dict[tuple[str, str, int], list[int]]:
    """``(role, optimizer, seed) -> epochs after which the lr was cut`` for one trial.

    Of several attempts of a run (Optuna retries), the last one counts, as in the report.
    """
    keys = ["role", "optimizer", "seed"]
    every = metrics[(metrics["trial"] == trial) & (metrics["metric"] == "lr_cut")]
    if "attempt" in every:
        last = every.groupby(keys)["attempt"].transform("max")
        every = every[every["attempt"] == last]
    out: dict[tuple[str, str, int], list[int]] = {}
    for (role, optimizer, seed), group in every.groupby(keys):
        cut = group[group["value"] == 1.0]["epoch"]
        out[(str(role), str(optimizer), int(seed))] = sorted(int(e) for e in cut)
    return out


def draw_cut_epochs(family: FamilyResult, metrics: pd.DataFrame, path: Path) -> FigureFile | None:
    """The cut epochs of the best source configuration's runs, one row per run."""
    origin = _origin(family)
    if origin is None:
        return None
    cuts = cut_epochs(metrics, origin.trial)
    if not cuts:
        return None
    order = {"source": 0, "naive": 1, "converted": 2}
    keys = sorted(cuts, key=lambda k: (order.get(k[0], 3), k[2]))
    epochs = int(metrics[metrics["trial"] == origin.trial]["epoch"].max())
    figure, ax = plt.subplots(figsize=(8, 0.45 * len(keys) + 1.6), layout="constrained")
    labelled: set[str] = set()
    for row, (role, optimizer, seed) in enumerate(keys):
        ax.axhline(row, c="0.9", lw=0.8, zorder=0)
        x = cuts[(role, optimizer, seed)]
        ax.scatter(
            x, [row] * len(x), marker="v", s=70, c=role_colour(role),
            label=None if role in labelled else role_word(role),
        )  # fmt: skip
        labelled.add(role)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([f"{role_word(r)}: {_label(o)}, seed {s}" for r, o, s in keys])
    ax.invert_yaxis()
    ax.set_xlim(0.5, epochs + 0.5)
    ax.set_xticks(range(1, epochs + 1))
    ax.set_xlabel("epoch after which the lr was cut (the cut applies from the next epoch)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(
        f"{family.schedule_family}: lr cuts, best source configuration (trial {origin.trial})"
    )
    out = save_figure(figure, path, dpi=DPI)
    return FigureFile(
        out,
        f"{family.schedule_family}: cut epochs",
        "Each triangle is an lr cut by ReduceLROnPlateau, per run (role, optimizer, seed) of"
        " the best source configuration. The converted run follows the source exactly, so"
        " it cuts at the same epochs; the naive port reacts to its own metrics.",
    )


def trace_best_configuration(
    spec: Mapping[str, Any], runs: pd.DataFrame, origin: Configuration, device: str = "cpu"
) -> list[StepTrace]:
    """Train the origin's source, naive and converted runs again (first seed), per step."""
    import torch

    from sweeps.pairing import plan_runs
    from sweeps.report.missing import _configuration, _SwappedSpec
    from sweeps.tasks import configure_task, get_task

    rows = runs[(runs["trial"] == origin.trial) & (runs["role"] == "source")]
    if rows.empty:
        return []
    first = rows.sort_values("seed").iloc[0]
    hyperparameters = {
        str(k)[3:]: v for k, v in first.items() if str(k).startswith("hp_") and _present(v)
    }
    convention = str(hyperparameters.get("convention") or origin.optimizer)
    plan_spec = _SwappedSpec(convention, origin.optimizer, (int(first["seed"]),))
    configuration = _configuration(hyperparameters)
    plan = plan_runs(plan_spec, configuration, int(hyperparameters["steps_per_epoch"]))
    task = configure_task(
        get_task(str(spec["task"])), spec.get("data_dir"), spec.get("task_options") or {}
    )
    objective = str(spec.get("objective") or "val_loss")
    default_direction = "maximize" if "accuracy" in objective else "minimize"
    direction = str(spec.get("direction") or default_direction)
    traces = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are small: one thread is fastest on a shared box
    try:
        for run in plan:
            if run.trainable:
                traces.append(_trace(task, run, device, objective, direction))
    finally:
        torch.set_num_threads(threads)
    return traces


def _trace(task: Any, run: Any, device: str, objective: str, direction: str) -> StepTrace:
    """Train ``run`` once, recording every step and every cut."""
    import torch

    from sweeps.training import EpochResult, train_run

    trace = StepTrace(run.role, run.optimizer)
    previous: list[torch.Tensor] = []

    def on_step(step: int, optimizer: torch.optim.Optimizer) -> None:
        group = optimizer.param_groups[0]
        flat = torch.cat(
            [p.detach().flatten().double() for g in optimizer.param_groups for p in g["params"]]
        )
        trace.lr.append(float(group["lr"]))
        trace.momentum.append(float(group["momentum"]))
        trace.displacement.append(
            float(torch.linalg.vector_norm(flat - previous[0])) if previous else math.nan
        )
        previous[:] = [flat]

    def on_epoch(result: EpochResult) -> None:
        if result.metrics.get("lr_cut") == 1.0:
            trace.cut_epochs.append(result.epoch)

    train_run(task, run, device=device, on_epoch=on_epoch, on_step=on_step,
              objective=objective, direction=direction)  # fmt: skip
    return trace


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def draw_around_cuts(
    family: FamilyResult, traces: list[StepTrace], steps_per_epoch: int, path: Path
) -> FigureFile | None:
    """lr, μ, η/(1-μ) and ‖Δθ‖ per step around the source run's first cuts, every role."""
    source = next((t for t in traces if t.role == "source"), None)
    if source is None or not source.cut_epochs:
        return None
    # A cut after the last epoch changes no step: nothing to show around it.
    cuts = [c for c in source.cut_epochs if c * steps_per_epoch < len(source.lr)]
    cuts = cuts[:MAX_CUTS_SHOWN]
    if not cuts:
        return None
    momentum = float(np.nanmax(source.momentum)) if source.momentum else 0.9
    half = int(min(2 * steps_per_epoch, max(8, round(3 / max(1e-3, 1 - momentum)))))
    rows = ("lr η", "momentum μ", "effective step η/(1-μ)", "‖θ_t − θ_{t−1}‖ per step")
    figure, axes = plt.subplots(
        len(rows), len(cuts), figsize=(max(8.0, 4.2 * len(cuts) + 3.0), 8.5), sharex="col",
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for column, cut in enumerate(cuts):
        first_new = cut * steps_per_epoch  # 0-based index of the first step with the new lr
        for trace in traces:
            start, stop = max(0, first_new - half), min(len(trace.lr), first_new + half)
            x = np.arange(start, stop) - first_new
            lr = np.asarray(trace.lr[start:stop])
            mu = np.asarray(trace.momentum[start:stop])
            values = (lr, mu, lr / np.where(mu < 1, 1 - mu, np.nan),
                      np.asarray(trace.displacement[start:stop]))  # fmt: skip
            for ax, y in zip(axes[:, column], values, strict=True):
                ax.plot(
                    x, y, ROLE_LINESTYLES.get(trace.role, "-"), c=role_colour(trace.role),
                    drawstyle="steps-mid", lw=1.6,
                    label=f"{role_word(trace.role)}: {_label(trace.optimizer)}",
                )  # fmt: skip
        for ax in axes[:, column]:
            ax.axvline(-0.5, c="0.5", lw=0.8, ls="-.")
            ax.grid(True, alpha=0.3)
        axes[0, column].set_title(f"cut after epoch {cut}")
        axes[-1, column].set_xlabel("steps from the cut (0: first with the new lr)")
        axes[-1, column].set_yscale("log")
    for ax, name in zip(axes[:, 0], rows, strict=True):
        ax.set_ylabel(name)
    axes[0, -1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(
        f"{family.schedule_family}: around the source run's lr cuts\n(best"
        f" {_label(source.optimizer)} configuration, first seed)"
    )
    out = save_figure(figure, path, dpi=DPI)
    return FigureFile(
        out,
        f"{family.schedule_family}: around each cut",
        "Per step around the source run's cuts: the lr, the momentum, the effective step"
        " η/(1-μ) and the displacement ‖θ_t − θ_{t−1}‖ (the velocity's norm). In PyTorch's"
        " formulation the momentum stays and the displacement shrinks by the cut factor at"
        " once; in Sutskever's (the naive port, same numbers) the velocity built with the old"
        " lr decays over about 1/(1-μ) steps. The converted run lies on top of the source.",
    )
