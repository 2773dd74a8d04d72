"""The population trainer: ``K`` planned runs of one task trained together, epoch by epoch.

:func:`train_population` is :func:`sweeps.training.train_run` for many runs at once. Each
member keeps everything that makes it itself: its seed (initial weights and batch order,
built by the task exactly as for a run trained alone), its formulation (``pytorch`` or
``sutskever``, with ``correct_momentum`` semantics where planned), its per-step learning
rate and momentum, weight decay, dampening, Nesterov flag and number of epochs. What the
members share is the architecture and the batch size (so that their steps line up).

After every epoch each member's metrics are checked as :func:`~sweeps.training.train_run`
checks them: a member whose loss turned NaN or infinite ends with ``diverged_at_step``;
``on_population_epoch`` then receives every surviving member's
:class:`~sweeps.training.EpochResult` at once (one bulk write to storage), and
``on_epoch`` is called per member: when it raises (``optuna.TrialPruned``, for one) that
member stops with the exception as its result. A member that stops (diverged, pruned,
failed or finished) is removed from the stacked tensors, so the others continue
undisturbed and the population gets cheaper as it shrinks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sweeps.errors import SweepUsageError
from sweeps.pairing import PlannedRun
from sweeps.population.batches import PopulationLoader
from sweeps.population.losses import population_loss
from sweeps.population.optimizer import PopulationSGD
from sweeps.population.stacked import StackedModel, require_stackable
from sweeps.stop import check_stop
from sweeps.tasks import Task, TaskSetup
from sweeps.threads import refresh_claimed_share
from sweeps.training import EpochResult, RunOutcome


@dataclass(frozen=True)
class MemberResult:
    """How one member of a population ended.

    Exactly one of ``outcome`` (it trained to the end or diverged) and ``error`` (its
    ``on_epoch`` raised, e.g. ``optuna.TrialPruned``) is set. ``epochs`` is the number of
    epochs whose metrics were reported.
    """

    run: PlannedRun
    outcome: RunOutcome | None
    error: BaseException | None
    epochs: int


@dataclass
class _Member:
    index: int
    run: PlannedRun
    epochs: int
    lrs: list[float]
    momenta: list[float]
    metrics: dict[str, float]


def train_population(
    task: Task,
    runs: Sequence[PlannedRun],
    *,
    epochs: int | Sequence[int] | None = None,
    device: str = "cpu",
    on_epoch: Callable[[int, EpochResult], None] | None = None,
    on_population_epoch: Callable[[Mapping[int, EpochResult]], None] | None = None,
    objective: str = "val_loss",
    direction: str = "minimize",
) -> list[MemberResult]:
    """Train ``runs`` together as one population and return each member's result, in order.

    Args:
        task: the task of every run; it must declare a stackable model
            (:func:`~sweeps.population.stacked.require_stackable`).
        runs: trainable planned runs with the same batch size.
        epochs: for every member, or one per member (default: each run's configuration).
        device: where the task builds every member.
        on_epoch: ``on_epoch(i, result)`` for member ``runs[i]`` after each epoch; an
            exception it raises stops that member only.
        on_population_epoch: called once per epoch with ``{i: result}`` of every member
            that reports this epoch, before ``on_epoch``.
        objective, direction: as for :func:`~sweeps.training.train_run`.

    Raises:
        SweepUsageError: an untrainable run, mixed batch sizes, a task that is not
            stackable, or members whose models differ.
    """
    require_stackable(task)
    if not runs:
        return []
    counts = _epochs_per_member(runs, epochs)
    for run in runs:
        if not run.trainable:
            raise SweepUsageError(f"the {run.role} run cannot be trained: {run.failure_reason}.")
    batch_sizes = {run.configuration.batch_size for run in runs}
    if len(batch_sizes) > 1:
        raise SweepUsageError(
            f"a population trains one batch size, got {sorted(batch_sizes)}; group the runs by"
            " batch size."
        )
    setups = [
        task.build(seed=run.seed, batch_size=run.configuration.batch_size, device=device)
        for run in runs
    ]
    return _Population(setups, runs, counts, objective, direction).train(
        on_epoch, on_population_epoch
    )


def _epochs_per_member(runs: Sequence[PlannedRun], epochs: int | Sequence[int] | None) -> list[int]:
    if epochs is None:
        return [run.configuration.epochs for run in runs]
    if isinstance(epochs, int):
        return [epochs] * len(runs)
    counts = list(epochs)
    if len(counts) != len(runs):
        raise SweepUsageError(f"epochs has {len(counts)} entries for {len(runs)} runs.")
    return counts


class _Population:
    """The state of one population while it trains (members, model, optimizer, data)."""

    def __init__(
        self,
        setups: Sequence[TaskSetup],
        runs: Sequence[PlannedRun],
        epochs: Sequence[int],
        objective: str,
        direction: str,
    ) -> None:
        first = setups[0]
        steps_per_epoch = first.steps_per_epoch
        if any(s.steps_per_epoch != steps_per_epoch for s in setups):
            raise SweepUsageError("the population's members have different steps per epoch.")
        self.steps_per_epoch = steps_per_epoch
        self.loss = population_loss(first.loss_fn)
        self.has_accuracy = first.has_accuracy
        self.objective = objective
        self.worst = math.inf if direction == "minimize" else -math.inf
        steps = [n * steps_per_epoch for n in epochs]
        for run, needed in zip(runs, steps, strict=True):
            if len(run.lr) < needed or len(run.momentum) < needed:
                raise SweepUsageError(
                    f"the {run.role} run's per-step values cover {len(run.lr)} steps, but"
                    f" {needed // steps_per_epoch} epochs of {steps_per_epoch} steps need {needed}."
                )
        self.members = [
            _Member(i, run, n, run.lr.tolist(), run.momentum.tolist(), {})
            for i, (run, n) in enumerate(zip(runs, epochs, strict=True))
        ]
        self.results: dict[int, MemberResult] = {}
        self.model = StackedModel([s.model for s in setups])
        self.optimizer = PopulationSGD(runs, steps, self.model.weights)
        self.train_data = PopulationLoader([s.train_loader for s in setups])
        self.val_data = PopulationLoader([s.val_loader for s in setups])

    def train(
        self,
        on_epoch: Callable[[int, EpochResult], None] | None,
        on_population_epoch: Callable[[Mapping[int, EpochResult]], None] | None,
    ) -> list[MemberResult]:
        started = time.perf_counter()
        step = 0
        epoch = 0
        while self.members:
            refresh_claimed_share()  # a CPU worker's thread share follows workers that come and go
            epoch += 1
            first_step = step
            losses = self._train_epoch(step)
            step += losses.shape[0]
            reports = self._check_epoch(epoch, first_step, step, losses, started)
            if reports and on_population_epoch is not None:
                on_population_epoch(dict(reports))
            stopping: list[int] = []
            for row, member in enumerate(self.members):
                result = reports.get(member.index)
                if result is None:
                    stopping.append(row)  # diverged this epoch, already recorded
                    continue
                if on_epoch is not None:
                    try:
                        on_epoch(member.index, result)
                    except Exception as exc:  # the member's own stop (TrialPruned, ...)
                        self._stop(member, None, exc, epoch)
                        stopping.append(row)
                        continue
                if epoch == member.epochs:
                    self._finish(member, epoch)
                    stopping.append(row)
            self._remove(stopping)
        return [self.results[i] for i in sorted(self.results)]

    def _train_epoch(self, first_step: int) -> Tensor:
        """Every step of one epoch; the ``[steps, K]`` minibatch losses."""
        model, optimizer, loss = self.model, self.optimizer, self.loss
        model.train()
        losses: list[Tensor] = []
        step = first_step
        for inputs, targets, shared in self.train_data:
            check_stop()  # SIGINT/SIGTERM stop the population here, between batches
            model.weights.grad = None
            output = model(inputs, shared_inputs=shared)
            member_losses = loss(output, targets, shared)
            member_losses.sum().backward()
            gradients = model.weights.grad
            if gradients is None:
                raise SweepUsageError("the model's output does not depend on its parameters.")
            optimizer.step(model.weights.detach(), gradients, step)
            losses.append(member_losses.detach())
            step += 1
        if not losses:
            raise SweepUsageError("the task's train_loader yielded no batches in an epoch.")
        return torch.stack(losses)

    def _evaluate(self) -> tuple[Tensor, list[float] | None]:
        """Each member's validation loss (example-weighted mean) and accuracy, ``[K]``."""
        model = self.model
        model.train(False)
        total: Tensor | float = 0.0
        correct: Tensor | float = 0.0
        count = 0
        with torch.no_grad():
            for inputs, targets, shared in self.val_data:
                output = model(inputs, shared_inputs=shared)
                member_losses = self.loss(output, targets, shared)
                # Examples per member: a shared batch has no member axis in front.
                example_axis = 0 if shared else 1
                n = int(targets.shape[example_axis]) if targets.dim() > example_axis else 1
                total = total + member_losses * n
                if self.has_accuracy:
                    correct = correct + (output.argmax(dim=-1) == targets).sum(dim=-1)
                count += n
        count = max(count, 1)
        val_loss = torch.as_tensor(total) / count
        if not self.has_accuracy:
            return val_loss, None
        # Divided in Python (float64), as the single-run loop does.
        return val_loss, [float(c) / count for c in torch.as_tensor(correct).tolist()]

    def _check_epoch(
        self, epoch: int, first_step: int, step: int, losses: Tensor, started: float
    ) -> dict[int, EpochResult]:
        """Record diverged members; the epoch's results of the others."""
        finite = torch.isfinite(losses)
        train_loss = losses.mean(dim=0).tolist()
        val_loss, acc = self._evaluate()
        val = val_loss.tolist()
        bad_steps = (~finite).float().argmax(dim=0).tolist()
        all_finite = finite.all(dim=0).tolist()
        wall_time = time.perf_counter() - started
        reports: dict[int, EpochResult] = {}
        for row, member in enumerate(self.members):
            if not all_finite[row]:
                diverged = first_step + int(bad_steps[row]) + 1
                self._stop(member, RunOutcome(self.worst, diverged, epoch - 1, member.metrics))
                continue
            if not math.isfinite(val[row]):
                self._stop(member, RunOutcome(self.worst, step, epoch - 1, member.metrics))
                continue
            metrics = {"train_loss": float(train_loss[row]), "val_loss": float(val[row])}
            if acc is not None:
                metrics["val_accuracy"] = float(acc[row])
            metrics["lr"] = member.lrs[step - 1]
            metrics["momentum"] = member.momenta[step - 1]
            member.metrics = metrics
            reports[member.index] = EpochResult(epoch, step, dict(metrics), wall_time)
        return reports

    def _finish(self, member: _Member, epoch: int) -> None:
        if self.objective not in member.metrics:
            error = SweepUsageError(
                f"the objective {self.objective!r} is not among the task's metrics"
                f" ({', '.join(member.metrics)})."
            )
            self._stop(member, None, error, epoch)
            return
        value = member.metrics[self.objective]
        self._stop(member, RunOutcome(value, None, epoch, member.metrics), None, epoch)

    def _stop(
        self,
        member: _Member,
        outcome: RunOutcome | None,
        error: BaseException | None = None,
        epochs: int | None = None,
    ) -> None:
        reported = epochs if epochs is not None else (outcome.epochs if outcome else 0)
        self.results[member.index] = MemberResult(member.run, outcome, error, reported)

    def _remove(self, rows: list[int]) -> None:
        if not rows:
            return
        gone = set(rows)
        keep = [row for row in range(len(self.members)) if row not in gone]
        self.members = [self.members[row] for row in keep]
        if not keep:
            return
        index = torch.tensor(keep, device=self.model.weights.device)
        self.model.keep(index)
        self.optimizer.keep(index)
        self.train_data.keep(keep)
        self.val_data.keep(keep)
