"""Caffe's ``solver.prototxt``: read it, and evaluate its ``lr_policy`` as Caffe does.

Caffe's SGD solver (``sgd_solver.cpp``) is Form S with the history ``h = -v``
(docs/reference.md)::

    h_t = μ h_{t-1} + η_t (g_t + λ w_{t-1})        w_t = w_{t-1} - h_t

and ``nesterov_solver.cpp`` updates ``w_t = w_{t-1} - ((1 + μ) h_t - μ h_{t-1})``, the
Form S Nesterov rule. The learning rate of the step taken at Caffe's ``iter_`` (0 for
the first update) is ``GetLearningRate()`` evaluated at that ``iter``, so optimizer step
``t`` uses the policy at ``iter = t - 1``; training stops after ``max_iter`` steps.

Reading happens in two steps: :func:`parse_solver` turns text into a
:class:`CaffeSolver` holding Caffe's own fields, and :func:`to_recipe` maps those to a
:class:`~momentum_convert.recipe.Recipe` in the ``caffe`` convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from momentum_convert import schedules
from momentum_convert.errors import RecipeError, ScheduleSpecError
from momentum_convert.importers import fields
from momentum_convert.importers.imported import ImportedRecipe
from momentum_convert.importers.textproto import Message, Scalar, parse
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import Schedule

#: The learning-rate policies of ``SGDSolver::GetLearningRate`` and the fields each needs.
POLICIES: dict[str, tuple[str, ...]] = {
    "fixed": (),
    "step": ("gamma", "stepsize"),
    "exp": ("gamma",),
    "inv": ("gamma", "power"),
    "multistep": ("gamma", "stepvalue"),
    "poly": ("power", "max_iter"),
    "sigmoid": ("gamma", "stepsize"),
}

#: Solver types with a momentum rule this package converts (``type`` and legacy ``solver_type``).
_MOMENTUM_TYPES = {"sgd": False, "nesterov": True}
_OTHER_TYPES = ("adagrad", "rmsprop", "adadelta", "adam")

#: SolverParameter fields that do not change the optimizer's arithmetic.
_HARMLESS = frozenset(
    {
        "net", "net_param", "train_net", "test_net", "train_net_param", "test_net_param",
        "train_state", "test_state", "test_iter", "test_interval", "test_compute_loss",
        "test_initialization", "display", "average_loss", "snapshot", "snapshot_prefix",
        "snapshot_diff", "snapshot_format", "snapshot_after_train", "solver_mode", "device_id",
        "random_seed", "debug_info", "layer_wise_reduce", "weights",
    }
)  # fmt: skip
_OPTIMIZER = frozenset(
    {
        "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue", "max_iter",
        "momentum", "weight_decay", "regularization_type", "type", "solver_type", "iter_size",
        "clip_gradients", "momentum2", "delta", "rms_decay",
    }
)  # fmt: skip


@dataclass(frozen=True)
class CaffeSolver:
    """The optimizer fields of a Caffe ``SolverParameter``, as Caffe names them."""

    base_lr: float
    lr_policy: str
    gamma: float | None = None
    power: float | None = None
    stepsize: int | None = None
    stepvalue: tuple[int, ...] = ()
    max_iter: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    type: str = "SGD"
    iter_size: int = 1
    clip_gradients: float | None = None
    ignored: tuple[str, ...] = ()

    def policy(self) -> Schedule:
        """The ``lr_policy`` as a schedule of :mod:`momentum_convert.schedules`.

        Those classes evaluate Caffe's formula at index ``i`` = Caffe's ``iter``, the
        0-based iteration of the update, which is the step indexing of this solver.
        """
        gamma, power = _given(self.gamma), _given(self.power)
        stepsize, max_iter = int(_given(self.stepsize)), int(_given(self.max_iter))
        build: dict[str, Callable[[], Schedule]] = {
            "fixed": lambda: schedules.CaffeFixed(),
            "step": lambda: schedules.CaffeStep(gamma=gamma, stepsize=stepsize),
            "exp": lambda: schedules.CaffeExp(gamma=gamma),
            "inv": lambda: schedules.CaffeInv(gamma=gamma, power=power),
            "multistep": lambda: schedules.CaffeMultiStep(gamma=gamma, stepvalue=self.stepvalue),
            "poly": lambda: schedules.CaffePoly(power=power, max_iter=max_iter),
            "sigmoid": lambda: schedules.CaffeSigmoid(gamma=gamma, stepsize=stepsize),
        }
        return build[self.lr_policy]()


def _given(value: float | None) -> float:
    """A policy parameter (``parse_solver`` has checked that the policy's own are present)."""
    return 0.0 if value is None else value


def _scalar(message: Message, name: str, source: str) -> Scalar | None:
    values = message.all(name)
    if not values:
        return None
    last = values[-1]  # protobuf: the last occurrence of a singular field wins
    if isinstance(last, Message):
        raise RecipeError(f"{source} line {last.line}: {name} must be a value, not a message.")
    return last


def _where(source: str, scalar: Scalar) -> str:
    return f"{source} line {scalar.line}"


def _number(message: Message, name: str, source: str) -> float | None:
    scalar = _scalar(message, name, source)
    if scalar is None:
        return None
    if scalar.quoted:
        raise RecipeError(
            f"{_where(source, scalar)}: {name} must be a number, got {scalar.text!r}."
        )
    return fields.number(scalar.text, name, _where(source, scalar))


def _integer(message: Message, name: str, source: str) -> int | None:
    scalar = _scalar(message, name, source)
    if scalar is None:
        return None
    if scalar.quoted:
        raise RecipeError(
            f"{_where(source, scalar)}: {name} must be a whole number, got {scalar.text!r}."
        )
    return fields.integer(scalar.text, name, _where(source, scalar))


def _text(message: Message, name: str, source: str) -> str | None:
    scalar = _scalar(message, name, source)
    return None if scalar is None else scalar.text


def parse_solver(text: str, source: str = "solver.prototxt") -> CaffeSolver:
    """Read a ``solver.prototxt`` into :class:`CaffeSolver`, checking every optimizer field.

    Raises:
        RecipeError: a syntax error, a missing ``base_lr``, an unknown ``lr_policy``, a
            policy parameter it needs that is missing, a value of the wrong type or out of
            range, or a solver type without SGD momentum (Adam, RMSProp, ...).
    """
    message = parse(text, source)
    base_lr = _number(message, "base_lr", source)
    if base_lr is None:
        raise RecipeError(
            f"{source}: base_lr is missing; a Caffe solver needs one (base_lr: 0.01)."
        )
    if base_lr < 0:
        raise RecipeError(f"{source}: base_lr must be >= 0, got {base_lr!r}.")

    policy = _text(message, "lr_policy", source)
    if policy is None:
        raise RecipeError(
            f"{source}: lr_policy is missing; Caffe requires one of {', '.join(POLICIES)}."
        )
    if policy not in POLICIES:
        raise RecipeError(
            f"{source}: lr_policy {policy!r} is not a Caffe policy; expected one of"
            f" {', '.join(POLICIES)}."
        )

    solver_type = _solver_type(message, source)
    momentum_scalar = _scalar(message, "momentum", source)
    momentum = 0.0
    if momentum_scalar is not None:
        momentum = fields.momentum(
            _number(message, "momentum", source), "momentum", _where(source, momentum_scalar)
        )
    weight_decay = _number(message, "weight_decay", source) or 0.0
    if weight_decay < 0:
        raise RecipeError(f"{source}: weight_decay must be >= 0, got {weight_decay!r}.")
    regularization = _text(message, "regularization_type", source) or "L2"
    if regularization not in ("L1", "L2"):
        raise RecipeError(
            f"{source}: regularization_type {regularization!r} is not Caffe's; expected L2 or L1."
        )
    if regularization == "L1" and weight_decay > 0:
        raise RecipeError(
            f"{source}: regularization_type 'L1' (λ·sign(w)) has no equivalent in the other"
            " conventions; only L2 weight decay converts."
        )

    stepvalue: list[int] = []
    for value in message.all("stepvalue"):
        if not isinstance(value, Scalar) or value.quoted:
            raise RecipeError(f"{source}: stepvalue must be a whole number, got {value!r}.")
        stepvalue.append(fields.integer(value.text, "stepvalue", _where(source, value)))

    solver = CaffeSolver(
        base_lr=base_lr,
        lr_policy=policy,
        gamma=_number(message, "gamma", source),
        power=_number(message, "power", source),
        stepsize=_integer(message, "stepsize", source),
        stepvalue=tuple(stepvalue),
        max_iter=_integer(message, "max_iter", source),
        momentum=momentum,
        weight_decay=weight_decay,
        regularization_type=regularization,
        type=solver_type,
        iter_size=_integer(message, "iter_size", source) or 1,
        clip_gradients=_number(message, "clip_gradients", source),
        ignored=tuple(dict.fromkeys(n for n in message.names() if n not in _OPTIMIZER | _HARMLESS)),
    )
    _check_policy(solver, source)
    try:
        solver.policy()
    except ScheduleSpecError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    return solver


def _solver_type(message: Message, source: str) -> str:
    written = _text(message, "type", source)
    legacy = _text(message, "solver_type", source)
    name = written if written is not None else legacy if legacy is not None else "SGD"
    if name.lower() in _MOMENTUM_TYPES:
        return "Nesterov" if _MOMENTUM_TYPES[name.lower()] else "SGD"
    if name.lower() in _OTHER_TYPES:
        raise RecipeError(
            f"{source}: solver type {name!r} is not SGD with momentum; only SGD and Nesterov"
            " solvers convert."
        )
    raise RecipeError(f"{source}: solver type {name!r} is unknown; expected SGD or Nesterov.")


def _check_policy(solver: CaffeSolver, source: str) -> None:
    for needed in POLICIES[solver.lr_policy]:
        value = getattr(solver, needed)
        if value is None or value == ():
            raise RecipeError(
                f"{source}: lr_policy {solver.lr_policy!r} needs {needed}, which is missing."
            )
    if solver.lr_policy in ("step",) and (solver.stepsize or 0) < 1:
        raise RecipeError(f"{source}: stepsize must be >= 1, got {solver.stepsize!r}.")
    if solver.lr_policy == "poly" and (solver.max_iter or 0) < 1:
        raise RecipeError(f"{source}: max_iter must be >= 1, got {solver.max_iter!r}.")
    if solver.max_iter is not None and solver.max_iter < 1:
        raise RecipeError(f"{source}: max_iter must be >= 1, got {solver.max_iter!r}.")
    if solver.iter_size < 1:
        raise RecipeError(f"{source}: iter_size must be >= 1, got {solver.iter_size!r}.")
    if any(value < 0 for value in solver.stepvalue):
        raise RecipeError(f"{source}: stepvalue must be >= 0, got {list(solver.stepvalue)}.")


def to_recipe(
    solver: CaffeSolver, steps: int | None = None, source: str = "solver"
) -> ImportedRecipe:
    """Map a :class:`CaffeSolver` to a recipe in the ``caffe`` convention.

    Args:
        steps: how many updates to cover; defaults to the solver's ``max_iter``.
    """
    if steps is None:
        if solver.max_iter is None:
            raise RecipeError(
                f"{source}: max_iter is missing, so the number of steps is unknown; give --steps."
            )
        steps = solver.max_iter
    steps = fields.step_count(steps, source)
    recipe = Recipe(
        convention="caffe",
        lr=solver.base_lr,
        momentum=solver.momentum,
        nesterov=solver.type == "Nesterov",
        weight_decay=solver.weight_decay,
        lr_schedule=solver.policy(),
        steps=steps,
    )
    notes: list[str] = []
    if solver.iter_size > 1:
        notes.append(
            f"iter_size {solver.iter_size}: Caffe accumulates {solver.iter_size} batches per"
            f" update and divides the gradient by {solver.iter_size}; use a batch"
            f" {solver.iter_size} times larger (or accumulate and average) in the target."
        )
    if solver.clip_gradients is not None and solver.clip_gradients >= 0:
        # sgd_solver.cpp ApplyUpdate: ClipGradients() on the diff that Solver::Step summed
        # over iter_size forward/backward passes, then Normalize() divides it by iter_size.
        clip, n = solver.clip_gradients, solver.iter_size
        if n > 1:
            notes.append(
                f"clip_gradients {clip:g} with iter_size {n}: Caffe clips the global L2 norm of"
                f" the sum of the {n} accumulated gradients to {clip:g} and then divides by {n};"
                f" with a batch {n} times larger (the mean gradient) that is"
                f" torch.nn.utils.clip_grad_norm_(params, {clip / n:g}), i.e. clip_gradients /"
                " iter_size, before optimizer.step()."
            )
        else:
            notes.append(
                f"clip_gradients {clip:g}: Caffe rescales the gradient to this global L2 norm"
                f" before weight decay and the update; use"
                f" torch.nn.utils.clip_grad_norm_(params, {clip:g}) before optimizer.step()."
            )
    if solver.ignored:
        notes.append(
            f"ignored fields that are not Caffe solver fields: {', '.join(solver.ignored)}."
        )
    return ImportedRecipe(recipe, source, tuple(notes))


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    """Read a ``solver.prototxt`` file and map it to a recipe (see :func:`to_recipe`)."""
    path = Path(path)
    solver = parse_solver(path.read_text(encoding="utf-8"), source=path.name)
    return to_recipe(solver, steps=steps, source=path.name)
