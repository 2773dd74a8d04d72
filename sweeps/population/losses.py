"""Every member's minibatch loss at once, ``[K]``, from the task's ``loss_fn``.

The general way is ``vmap(loss_fn)``: the task's loss applied to each member's output and
targets. ``torch.nn.functional.cross_entropy`` and ``mse_loss`` (the built-in tasks'
losses, with their default mean reduction) are computed directly instead, over the
flattened ``[K·B, ...]`` batch with ``reduction="none"`` and a mean per member: the same
numbers without ``vmap``'s decomposition of the loss, which costs more than the model's
forward pass for small models.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.func import vmap
from torch.nn import functional

LossFn = Callable[[Tensor, Tensor], Tensor]


def population_loss(loss_fn: LossFn) -> Callable[[Tensor, Tensor, bool], Tensor]:
    """``loss(outputs [K, B, ...], targets, shared) -> [K]``: each member's mean loss.

    ``shared`` says that ``targets`` has no member axis (one batch for every member).
    """
    member = vmap(loss_fn)
    shared_targets = vmap(loss_fn, in_dims=(0, None))

    def general(outputs: Tensor, targets: Tensor, shared: bool) -> Tensor:
        return (shared_targets if shared else member)(outputs, targets)  # type: ignore[no-any-return]

    if loss_fn is functional.cross_entropy:

        def cross_entropy(outputs: Tensor, targets: Tensor, shared: bool) -> Tensor:
            if outputs.dim() != 3:
                return general(outputs, targets, shared)
            k, b, classes = outputs.shape
            targets = targets.expand(k, b) if shared else targets
            losses = functional.cross_entropy(
                outputs.reshape(k * b, classes), targets.reshape(k * b), reduction="none"
            )
            return losses.view(k, b).mean(dim=1)

        return cross_entropy
    if loss_fn is functional.mse_loss:

        def mean_squared_error(outputs: Tensor, targets: Tensor, shared: bool) -> Tensor:
            targets = targets.expand_as(outputs) if shared else targets
            if targets.shape != outputs.shape:
                return general(outputs, targets, shared)
            return functional.mse_loss(outputs, targets, reduction="none").flatten(1).mean(dim=1)

        return mean_squared_error
    return general
