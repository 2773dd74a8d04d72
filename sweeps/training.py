"""The training loop: one planned run of one task, epoch by epoch, on one device.

Every run, native or converted, goes through the same code: the optimizer of its family
(``torch.optim.SGD`` for ``pytorch``, :class:`~momentum_convert.optim.SutskeverSGD` for
``sutskever``) is built once, and before every optimizer step ``t`` the run's per-step
arrays are written into its param groups::

    group["lr"] = planned_run.lr[t - 1]; group["momentum"] = planned_run.momentum[t - 1]

so every schedule and every conversion is a pair of arrays (:mod:`sweeps.pairing`). A run
planned with ``correct_like`` attaches ``correct_momentum(optimizer, like=...)``. The one
reactive schedule, ``plateau`` (:mod:`sweeps.plateau`), writes its own lr instead, which
it cuts after an epoch whose objective stalled.

A NaN or infinite loss ends the run as a *result*: :class:`RunOutcome` carries the step
at which it appeared (``diverged_at_step``) and the worst possible objective value
(``inf`` when minimising, ``-inf`` when maximising). Two checks run at the end of every
epoch (one device synchronisation per epoch, not per step), in this order:

1. *The epoch's minibatch losses.* The loss of step ``t`` is computed before that step's
   update, on the weights left by step ``t - 1``. If one is not finite, the run ends at
   the first such step: ``diverged_at_step = t``, the first step whose training loss was
   not finite (steps are numbered from 1 over the whole run).
2. *The validation loss after the epoch.* When every minibatch loss of the epoch was finite
   but ``val_loss`` is not, the epoch's last steps left weights whose loss is not finite
   (a huge update at the epoch's last step, or losses that grow past the float range
   between the last minibatch and the evaluation). The run ends with
   ``diverged_at_step = s``, the epoch's last step, after which ``val_loss`` was measured.

Both name the step at which the first non-finite loss was *seen*, on the same step axis as
the stored metrics (a minibatch loss at the step that computed it, an epoch's ``val_loss``
at the epoch's last step). Either way the run's ``epochs`` and ``final_metrics`` are those
of the last epoch whose checks passed.

Determinism: the task builds the same initial weights and batch order for the same seed,
and the loop seeds torch's global generator with the run's seed before training, so the
same seed on the same device gives the same metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from sweeps.errors import SweepUsageError
from sweeps.pairing import PlannedRun
from sweeps.plateau import plateau_schedule
from sweeps.stop import check_stop
from sweeps.tasks import Task, TaskSetup
from sweeps.threads import refresh_claimed_share

#: The metrics reported after every epoch (``val_accuracy`` only for classification).
METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "momentum")


@dataclass(frozen=True)
class EpochResult:
    """The metrics at the end of epoch ``epoch`` (1-based), after ``step`` optimizer steps.

    ``metrics`` holds ``train_loss`` (mean minibatch loss of the epoch), ``val_loss``,
    ``val_accuracy`` (classification tasks), and the ``lr`` and ``momentum`` used at the
    epoch's last step; ``wall_time`` is seconds since the run started.
    """

    epoch: int
    step: int
    metrics: dict[str, float]
    wall_time: float


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: its objective value, where it diverged, how many epochs it trained.

    ``value`` is the final epoch's objective metric, or ``±inf`` for a diverged run, whose
    ``diverged_at_step`` is the step of its first non-finite loss (module docstring).
    ``epochs`` and ``final_metrics`` describe the last epoch that passed both checks
    (``0`` and ``{}`` when the first epoch diverged).
    """

    value: float
    diverged_at_step: int | None
    epochs: int
    final_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def failure_reason(self) -> str | None:
        """``"diverged at step k"`` for a diverged run, else ``None``."""
        if self.diverged_at_step is None:
            return None
        return f"diverged at step {self.diverged_at_step}"


def build_optimizer(
    planned_run: PlannedRun, parameters: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The run's optimizer, built with its first learning rate and first non-zero momentum.

    The training loop overwrites ``lr`` and ``momentum`` before every step; the values here
    only pass the constructors' checks (Nesterov needs a momentum > 0).
    """
    kwargs: dict[str, Any] = {
        "lr": float(planned_run.lr[0]),
        "momentum": planned_run.initial_momentum,
        "dampening": planned_run.dampening,
        "weight_decay": planned_run.weight_decay,
        "nesterov": planned_run.nesterov,
        "foreach": None,
    }
    if planned_run.optimizer == "pytorch":
        return torch.optim.SGD(parameters, **kwargs)
    if planned_run.optimizer == "sutskever":
        from momentum_convert.optim import SutskeverSGD

        return SutskeverSGD(parameters, **kwargs)
    if planned_run.optimizer == "yellowfin":
        from momentum_convert.optim import YellowFin

        # Its first step uses lr[0] and momentum 0; the tuner sets every later step's.
        return YellowFin(parameters, lr=kwargs["lr"], weight_decay=kwargs["weight_decay"])
    raise SweepUsageError(
        f"unknown optimizer {planned_run.optimizer!r}; use 'pytorch', 'sutskever' or 'yellowfin'."
    )


def _batch_size(targets: Any) -> int:
    if isinstance(targets, torch.Tensor) and targets.dim() > 0:
        return int(targets.shape[0])
    return 1


def _evaluate(setup: TaskSetup) -> dict[str, float]:
    """Validation loss (example-weighted mean) and, for classifiers, accuracy."""
    model = setup.model
    model.eval()
    total_loss: torch.Tensor | float = 0.0
    correct: torch.Tensor | float = 0.0
    count = 0
    with torch.no_grad():
        for inputs, targets in setup.val_loader:
            output = model(inputs)
            n = _batch_size(targets)
            # float64: a sum of finite float32 losses near 3.4e38 would overflow to inf.
            loss = setup.loss_fn(output, targets).detach().to(torch.float64)
            total_loss = total_loss + loss * n
            if setup.has_accuracy:
                correct = correct + (output.argmax(dim=1) == targets).sum()
            count += n
    metrics = {"val_loss": float(total_loss) / max(count, 1)}
    if setup.has_accuracy:
        metrics["val_accuracy"] = float(correct) / max(count, 1)
    return metrics


def train_run(
    task_setup_or_task: TaskSetup | Task,
    planned_run: PlannedRun,
    *,
    epochs: int | None = None,
    device: str = "cpu",
    on_epoch: Callable[[EpochResult], None] | None = None,
    objective: str = "val_loss",
    direction: str = "minimize",
    on_step: Callable[[int, torch.optim.Optimizer], None] | None = None,
) -> RunOutcome:
    """Train one planned run and return its outcome.

    Args:
        task_setup_or_task: a :class:`~sweeps.tasks.Task` (a fresh setup is built for the
            run's seed, batch size and ``device``: pass this) or a ready
            :class:`~sweeps.tasks.TaskSetup`, whose model is trained in place.
        planned_run: the run (:func:`sweeps.pairing.plan_runs`); it must be trainable.
        epochs: how many epochs to train (default: the configuration's ``epochs``). The
            per-step arrays must cover them.
        device: ``"cpu"`` or ``"cuda:N"``, where a Task builds the setup.
        on_epoch: called with every :class:`EpochResult`; it may raise
            ``optuna.TrialPruned``, which propagates to the caller.
        objective, direction: which metric of the last epoch is the run's value, and
            whether a diverged run gets ``inf`` (minimize) or ``-inf`` (maximize). A
            ``plateau`` schedule (:mod:`sweeps.plateau`) reacts to that metric, in that
            direction, after every epoch: it sets the lr of every step of the next epoch,
            and the epoch's metrics carry ``lr_cut`` (1 when the lr was cut after it).
        on_step: called after every optimizer step with the 1-based step and the
            optimizer (to trace the dynamics; the report uses it).
    """
    if not planned_run.trainable:
        raise SweepUsageError(
            f"the {planned_run.role} run cannot be trained: {planned_run.failure_reason}."
        )
    configuration = planned_run.configuration
    epochs = configuration.epochs if epochs is None else epochs
    if isinstance(task_setup_or_task, TaskSetup):
        setup = task_setup_or_task
    else:
        setup = task_setup_or_task.build(
            seed=planned_run.seed, batch_size=configuration.batch_size, device=device
        )
    if objective == "val_accuracy" and not setup.has_accuracy:
        raise SweepUsageError(
            "the objective 'val_accuracy' needs a task whose setup has has_accuracy = true;"
            " use val_loss or train_loss."
        )
    needed = epochs * setup.steps_per_epoch
    if len(planned_run.lr) < needed or len(planned_run.momentum) < needed:
        raise SweepUsageError(
            f"the run's per-step values cover {len(planned_run.lr)} steps, but {epochs} epochs"
            f" of {setup.steps_per_epoch} steps need {needed}."
        )
    worst = math.inf if direction == "minimize" else -math.inf
    lrs = planned_run.lr.tolist()
    momenta = planned_run.momentum.tolist()
    plateau = (
        plateau_schedule(lrs[0], configuration.schedule_params, direction)
        if configuration.schedule == "plateau"
        else None
    )

    torch.manual_seed(planned_run.seed)
    model = setup.model
    optimizer = build_optimizer(planned_run, model.parameters())
    correction = None
    if planned_run.correct_like is not None:
        from momentum_convert.optim import correct_momentum

        correction = correct_momentum(optimizer, like=planned_run.correct_like)
    groups = optimizer.param_groups
    started = time.perf_counter()
    step = 0
    metrics: dict[str, float] = {}
    try:
        for epoch in range(1, epochs + 1):
            refresh_claimed_share()  # a CPU worker's thread share follows workers that come and go
            model.train()
            first_step = step
            losses: list[torch.Tensor] = []
            for inputs, targets in setup.train_loader:
                if step >= needed:
                    break
                check_stop()  # SIGINT/SIGTERM stop the run here, between batches (sweeps.stop)
                lr = lrs[step] if plateau is None else plateau.lr
                momentum = momenta[step]
                for group in groups:
                    group["lr"] = lr
                    group["momentum"] = momentum
                optimizer.zero_grad(set_to_none=True)
                loss = setup.loss_fn(model(inputs), targets)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                step += 1
                if on_step is not None:
                    on_step(step, optimizer)
            if not losses:
                raise SweepUsageError("the task's train_loader yielded no batches in an epoch.")
            epoch_losses = torch.stack(losses)
            finite = torch.isfinite(epoch_losses)
            if not bool(finite.all()):
                # Check 1: the first step whose minibatch loss was not finite.
                first_bad = int((~finite).nonzero()[0, 0])
                return RunOutcome(worst, first_step + first_bad + 1, epoch - 1, metrics)
            # float64: the mean of finite float32 losses must not overflow (no divergence).
            epoch_metrics = {"train_loss": float(epoch_losses.to(torch.float64).mean())}
            epoch_metrics.update(_evaluate(setup))
            if not math.isfinite(epoch_metrics["val_loss"]):
                # Check 2: the epoch's last steps left weights whose loss is not finite.
                return RunOutcome(worst, step, epoch - 1, metrics)
            metrics = epoch_metrics
            metrics["lr"] = lrs[step - 1] if plateau is None else plateau.lr
            metrics["momentum"] = momenta[step - 1]
            if planned_run.optimizer == "yellowfin":  # the values its tuner chose
                metrics["lr"], metrics["momentum"] = groups[0]["lr"], groups[0]["momentum"]
            if plateau is not None:
                metrics["lr_cut"] = float(plateau.step(_plateau_metric(metrics, objective)))
            if on_epoch is not None:
                on_epoch(EpochResult(epoch, step, dict(metrics), time.perf_counter() - started))
    finally:
        if correction is not None:
            correction.remove()
    if objective not in metrics:
        raise SweepUsageError(
            f"the objective {objective!r} is not among the task's metrics ({', '.join(metrics)})."
        )
    return RunOutcome(metrics[objective], None, epochs, metrics)


def _plateau_metric(metrics: dict[str, float], objective: str) -> float:
    if objective not in metrics:
        raise SweepUsageError(
            f"the plateau schedule reacts to the objective {objective!r}, which is not among"
            f" the task's metrics ({', '.join(metrics)})."
        )
    return metrics[objective]
