"""Stacked models: the weights of ``K`` copies of one architecture side by side.

A :class:`StackedModel` holds the parameters of ``K`` members as the rows of ONE leaf
tensor ``weights`` of shape ``[K, N]`` (each row is a member's parameters flattened in
``named_parameters()`` order) and runs all members in one call with
``torch.func.vmap`` over ``torch.func.functional_call``: each ``nn.Linear`` becomes one
batched matmul, each ``nn.Conv2d`` one grouped convolution. A single backward pass of
the summed member losses leaves every member's gradient in its own row of
``weights.grad`` (the members share no computation, so the sum's gradient with respect
to a row is exactly that member's gradient), and the optimizer
(:mod:`sweeps.population.optimizer`) updates all rows with a few tensor operations.

Models that are an ``nn.Sequential`` of ``nn.Linear`` layers and element-wise activations
take a direct path instead: each layer is one ``torch.baddbmm`` over
the ``K`` weight matrices, without ``vmap``'s per-call tracing (``benchmarks/
RESULTS.md`` has both measured).

A model can be stacked when its forward pass is a function of its parameters, buffers
and inputs only: no random numbers (dropout), no ``.item()`` or data-dependent Python
control flow (``vmap`` cannot see through them). Batch norm in training mode qualifies: the
buffers are stacked ``[K, ...]`` and passed to ``vmap`` as batched inputs, so each member
normalises with its own batch's statistics and its running statistics update in place, per
member (the CIFAR-10 ResNets rely on it). The built-in tasks qualify; a user task says so
with :func:`stackable`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from sweeps.errors import SweepUsageError

#: The built-in tasks whose models stack (``sweeps.tasks``).
STACKABLE_BUILTINS = frozenset({"digits-mlp", "digits-cnn", "nqm", "regression"})

#: The attribute :func:`stackable` sets on a user task's function.
STACKABLE_ATTRIBUTE = "stackable"

F = TypeVar("F", bound=Callable[..., Any])


def stackable(function: F) -> F:
    """Declare that a user task's model can be trained in population mode.

    Example::

        from sweeps.population import stackable

        @stackable
        def my_task(*, seed, batch_size, device):
            ...
    """
    setattr(function, STACKABLE_ATTRIBUTE, True)
    return function


def is_stackable(task: object) -> bool:
    """Whether ``task`` (built-in or user :class:`~sweeps.tasks.Task`) has a stackable model."""
    if getattr(task, "name", None) in STACKABLE_BUILTINS:
        return True
    if getattr(task, STACKABLE_ATTRIBUTE, False) is True:
        return True
    return getattr(getattr(task, "function", None), STACKABLE_ATTRIBUTE, False) is True


def require_stackable(task: object) -> None:
    """Raise :class:`SweepUsageError` unless ``task`` declares a stackable model."""
    if not is_stackable(task):
        name = getattr(task, "name", type(task).__name__)
        raise SweepUsageError(
            f"task {name!r} has not declared that its model can be stacked, so it cannot run"
            " with population > 1; decorate its function with @sweeps.population.stackable if"
            " its forward pass uses no randomness, no in-place buffer updates and no .item(),"
            " or set population = 1."
        )


#: Layers that act element-wise, so that they apply to ``[K, B, ...]`` as to ``[B, ...]``.
ELEMENTWISE = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Identity,
)  # fmt: skip


def direct_layers(model: nn.Module) -> bool:
    """Whether ``model`` is an ``nn.Sequential`` of ``nn.Linear`` and element-wise layers,
    which :class:`StackedModel` runs as batched matmuls instead of through ``vmap``."""
    if type(model) is not nn.Sequential or any(True for _ in model.buffers()):
        return False
    return all(
        type(layer) is nn.Linear or isinstance(layer, ELEMENTWISE) for layer in model.children()
    )


class StackedModel:
    """``K`` members of one architecture, trained as one model.

    Args:
        models: the members' freshly initialised modules (same parameter names, shapes
            and dtypes); the first serves as the architecture for ``functional_call``.

    Attributes:
        weights: the ``[K, N]`` leaf tensor of all members' parameters.
        buffers: each buffer stacked to ``[K, *shape]``.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise SweepUsageError("a population needs at least one member.")
        self.template = models[0]
        named = list(self.template.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        signature = [(name, p.shape, p.dtype) for name, p in named]
        rows = []
        for number, model in enumerate(models):
            theirs = list(model.named_parameters())
            if [(name, p.shape, p.dtype) for name, p in theirs] != signature:
                raise SweepUsageError(
                    f"population member {number} has a different architecture from member 0"
                    " (parameter names, shapes or dtypes); a population stacks one architecture."
                )
            rows.append(torch.cat([p.detach().reshape(-1) for _, p in theirs]))
        self.weights = torch.stack(rows).requires_grad_(True)
        self.direct = direct_layers(self.template)
        self.buffers = {
            name: torch.stack([dict(m.named_buffers())[name].detach() for m in models])
            for name, _ in self.template.named_buffers()
        }

    @property
    def size(self) -> int:
        """The number of members ``K``."""
        return int(self.weights.shape[0])

    def parameters(self) -> dict[str, Tensor]:
        """Each parameter as a ``[K, *shape]`` view of :attr:`weights`."""
        views = torch.split(self.weights, self.sizes, dim=1)
        k = self.size
        return {
            name: view.view(k, *shape)
            for name, view, shape in zip(self.names, views, self.shapes, strict=True)
        }

    def member_state(self, member: int) -> dict[str, Tensor]:
        """Member ``member``'s parameters and buffers, named as in its module (a copy)."""
        state = {name: p[member].detach().clone() for name, p in self.parameters().items()}
        state.update({name: b[member].clone() for name, b in self.buffers.items()})
        return state

    def __call__(self, inputs: Tensor, *, shared_inputs: bool = False) -> Tensor:
        """Every member's output, ``[K, ...]``; ``inputs`` is ``[K, ...]`` or shared by all."""
        if self.direct and inputs.dim() == (2 if shared_inputs else 3):
            return self._direct(inputs)
        template = self.template

        def member(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (x,))  # type: ignore[no-any-return]

        batched = vmap(member, in_dims=(0, 0, None if shared_inputs else 0))
        return batched(self.parameters(), self.buffers, inputs)  # type: ignore[no-any-return]

    def _direct(self, inputs: Tensor) -> Tensor:
        """The batched-matmul forward pass of a sequential MLP (see :func:`direct_layers`)."""
        params = self.parameters()
        x = inputs
        for name, layer in self.template.named_children():
            if not isinstance(layer, nn.Linear):
                x = layer(x)  # element-wise
                continue
            weight = params[f"{name}.weight"].transpose(1, 2)  # [K, in, out]
            bias = params.get(f"{name}.bias")
            if x.dim() == 2:  # shared inputs: [B, in] @ [K, in, out] -> [K, B, out]
                x = torch.matmul(x, weight)
                x = x if bias is None else x + bias.unsqueeze(1)
            elif bias is None:
                x = torch.bmm(x, weight)
            else:
                x = torch.baddbmm(bias.unsqueeze(1), x, weight)
        return x

    def train(self, mode: bool = True) -> None:
        """Put the architecture in training (or evaluation) mode."""
        self.template.train(mode)

    def keep(self, rows: Tensor) -> None:
        """Keep only the members in ``rows`` (indices into the current rows), in that order."""
        with torch.no_grad():
            self.weights = self.weights.index_select(0, rows).requires_grad_(True)
        self.buffers = {name: b.index_select(0, rows) for name, b in self.buffers.items()}
