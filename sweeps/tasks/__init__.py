"""Training tasks: what a sweep trains, built-in or the user's own ``module:function``.

A task builds, for one seed, batch size and device, a :class:`TaskSetup`: a freshly
initialised model, the training and validation batches, the loss, and how many optimizer
steps make an epoch. The first four built-in tasks need no download:

=================  =============================================================
``digits-mlp``     scikit-learn's bundled 8×8 digits, a 64-64-10 MLP
``digits-cnn``     the same digits, a two-layer CNN
``nqm``            the noisy quadratic model of Zhang et al. (2019)
``regression``     synthetic nonlinear regression, a small MLP, mean squared error
=================  =============================================================

and two that read CIFAR-10 from disk (:mod:`sweeps.tasks.cifar10`; ``data_dir`` /
``SWEEPS_DATA_DIR``, downloaded only with ``--download``):

=====================  ==========================================================
``cifar10-resnet20``   He et al. (2016)'s ResNet-20, 0.27M parameters
``cifar10-resnet56``   ResNet-56, 0.85M parameters
=====================  ==========================================================

A task with options (the CIFAR-10 tasks) has ``with_options(data_dir=..., **options)``;
:func:`task_for_spec` applies a spec's ``data_dir`` and ``[task_options]``.

A *user task* is any ``"package.module:function"``: :func:`get_task` imports the module
(running its code, so only name modules you trust) and calls
``function(seed=..., batch_size=..., device=...)``, which must return a
:class:`TaskSetup` or a dict with the same keys (``examples/user_task.py``).

Determinism: the same seed gives the same model initialisation (``torch.manual_seed``)
and the same shuffle order (a seeded ``torch.Generator``); the data and its train /
validation split do not depend on the seed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch

from sweeps.errors import SweepUsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TaskSetup:
    """Everything one training run needs, built fresh for every run.

    Attributes:
        model: the ``torch.nn.Module`` to train, on the run's device, freshly initialised.
        train_loader: an iterable of ``(inputs, targets)`` batches; one pass is one epoch.
        val_loader: the same for validation (not shuffled).
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar tensor`` (mean over the batch).
        steps_per_epoch: the number of optimizer steps (batches) in one epoch.
        has_accuracy: whether ``model(inputs)`` are class logits, so that ``val_accuracy``
            (the fraction of ``argmax == targets``) is reported.
    """

    model: torch.nn.Module
    train_loader: Iterable[Any]
    val_loader: Iterable[Any]
    loss_fn: LossFn
    steps_per_epoch: int
    has_accuracy: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, torch.nn.Module):
            raise SweepUsageError(
                f"the task's model must be a torch.nn.Module, got {type(self.model).__name__}."
            )
        if not callable(self.loss_fn):
            raise SweepUsageError("the task's loss_fn must be callable as loss_fn(output, target).")
        steps = self.steps_per_epoch
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise SweepUsageError(
                f"the task's steps_per_epoch must be a whole number >= 1, got {steps!r}."
            )


@runtime_checkable
class Task(Protocol):
    """A named recipe for a :class:`TaskSetup`."""

    @property
    def name(self) -> str:
        """The task's name in specs (``digits-mlp``, ``package.module:function``)."""
        ...

    def build(self, *, seed: int, batch_size: int, device: str) -> TaskSetup:
        """A fresh setup: same seed, same initial weights and batch order."""
        ...


@dataclass(frozen=True)
class UserTask:
    """A task given as ``"module:function"``; calling :meth:`build` runs the user's code."""

    name: str
    function: Callable[..., Any]
    has_accuracy: bool | None = None  # known only once built

    def build(self, *, seed: int, batch_size: int, device: str) -> TaskSetup:
        built = self.function(seed=seed, batch_size=batch_size, device=device)
        if isinstance(built, TaskSetup):
            return built
        if isinstance(built, Mapping):
            accepted = {f.name for f in fields(TaskSetup)}
            required = accepted - {"has_accuracy"}
            unknown = sorted(set(built) - accepted)
            missing = sorted(required - set(built))
            if unknown or missing:
                problem = f"the unknown keys {unknown}" if unknown else f"no {', '.join(missing)}"
                raise SweepUsageError(
                    f"task {self.name!r} returned a dict with {problem}; the keys are"
                    f" {', '.join(sorted(accepted))}."
                )
            return TaskSetup(**built)
        raise SweepUsageError(
            f"task {self.name!r} returned {type(built).__name__}; it must return a"
            " sweeps.tasks.TaskSetup or a dict with its keys."
        )


def check_task(name: str, *, seed: int, batch_size: int) -> None:
    """Build a user task once, on the CPU, before a sweep starts, to check its contract.

    A user task that returns the wrong type (or a setup :class:`TaskSetup` refuses) would
    otherwise fail every trial of the sweep; checked here, the sweep stops before Optuna
    stores anything. Built-in tasks are the package's own and are not built.

    Raises:
        SweepUsageError: the task cannot be found or breaks its contract.
    """
    task = get_task(name)
    if isinstance(task, UserTask):
        task.build(seed=seed, batch_size=batch_size, device="cpu")


def _builtin_tasks() -> dict[str, Any]:
    from sweeps.tasks.cifar10 import cifar10_tasks
    from sweeps.tasks.digits import DigitsCNN, DigitsMLP
    from sweeps.tasks.nqm import NoisyQuadratic
    from sweeps.tasks.regression import SyntheticRegression

    return {
        task.name: task
        for task in (
            DigitsMLP(),
            DigitsCNN(),
            NoisyQuadratic(),
            SyntheticRegression(),
            *cifar10_tasks(),
        )
    }


BUILTIN_TASKS: dict[str, Any] = _builtin_tasks()


def get_task(name: str) -> Task:
    """The built-in task ``name``, or the user task ``"module:function"``.

    Raises :class:`SweepUsageError` for an unknown name, a module that cannot be imported,
    a missing or non-callable function, or one whose signature cannot take
    ``seed``, ``batch_size`` and ``device``.
    """
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]  # type: ignore[no-any-return]
    if ":" not in name:
        raise SweepUsageError(
            f"unknown task {name!r}; built-in tasks are {', '.join(BUILTIN_TASKS)}, or give"
            " your own as 'module:function'."
        )
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise SweepUsageError(f"task {name!r} must be written 'module:function'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SweepUsageError(
            f"task {name!r}: the module {module_name!r} cannot be imported ({exc}); check the"
            " name and that it is on PYTHONPATH."
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise SweepUsageError(
            f"task {name!r}: the module {module_name!r} has no {function_name!r}."
        )
    if not callable(function):
        raise SweepUsageError(f"task {name!r}: {function_name!r} is not callable.")
    try:
        inspect.signature(function).bind(seed=0, batch_size=1, device="cpu")
    except TypeError:
        raise SweepUsageError(
            f"task {name!r}: {function_name} must accept the keyword arguments seed,"
            " batch_size and device."
        ) from None
    except ValueError:  # no signature available (a builtin): let the call decide
        pass
    return UserTask(name, function)


def configure_task(task: Task, data_dir: str | None, options: Mapping[str, Any]) -> Task:
    """``task`` with a spec's ``data_dir`` and ``[task_options]`` applied.

    Raises:
        SweepUsageError: options (or a ``data_dir``) for a task that takes none, or an
            option the task rejects.
    """
    if data_dir is None and not options:
        return task
    with_options = getattr(task, "with_options", None)
    if with_options is None:
        given = "data_dir" if data_dir is not None else f"task_options.{next(iter(options))}"
        raise SweepUsageError(
            f"{given} is given, but task {task.name!r} takes no options and reads no data"
            " files; remove it."
        )
    return with_options(data_dir=data_dir, **options)  # type: ignore[no-any-return]


def task_for_spec(spec: Any) -> Task:
    """The task a sweep spec names, with its ``data_dir`` and ``task_options`` applied."""
    task = get_task(spec.task)
    return configure_task(
        task, getattr(spec, "data_dir", None), getattr(spec, "task_options", None) or {}
    )


def prepare_task(task: Task, *, download: bool = False) -> None:
    """Make sure ``task``'s data is on disk (``--download`` fetches it); a no-op for tasks
    that read none.

    Raises:
        SweepUsageError: the data is missing (one sentence saying how to get it).
        SweepError: the download failed.
    """
    prepare = getattr(task, "prepare", None)
    if prepare is not None:
        prepare(download=download)
    elif download:
        raise SweepUsageError(f"--download is given, but task {task.name!r} reads no data files.")


__all__ = [
    "BUILTIN_TASKS",
    "Task",
    "TaskSetup",
    "UserTask",
    "check_task",
    "configure_task",
    "get_task",
    "prepare_task",
    "task_for_spec",
]
