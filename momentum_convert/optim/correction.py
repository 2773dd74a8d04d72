r"""``correct_momentum``: make one momentum family follow the other's dynamics exactly.

Both families give the same iterates while the learning rate is constant; they part whenever it
changes (docs/reference.md, "Exact conversion under a changing learning rate"). The exact bridge is
*state rescaling*, which Goyal et al. (2017) call momentum correction: before a step whose
learning rate :math:`\eta_t` differs from the one the momentum state was built with,

* PyTorch emulates Form S with :math:`b \leftarrow (\eta_{t-1}/\eta_t)\, b`;
* Form S emulates PyTorch with :math:`v \leftarrow (\eta_t/\eta_{t-1})\, v`.

Both are exact for classical momentum and for Nesterov, per param group, whoever changed the
learning rate (a scheduler, ReduceLROnPlateau, a user's loop). The learning rate the state is
scaled to is kept in ``group["buffer_lr"]``, so it travels in ``state_dict()`` and a resumed run
stays exact.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import SGD, Optimizer
from torch.utils.hooks import RemovableHandle

from momentum_convert.errors import ConventionError, ConversionImpossibleError
from momentum_convert.optim.sutskever_sgd import BUFFER_LR, SutskeverSGD

__all__ = ["MomentumCorrection", "correct_momentum"]

Family = Literal["pytorch", "sutskever"]
_FAMILIES = ("pytorch", "sutskever")


class MomentumCorrection:
    """The handle :func:`correct_momentum` returns; :meth:`remove` undoes the correction."""

    def __init__(self, optimizer: Optimizer, like: Family, hook: RemovableHandle | None) -> None:
        self.optimizer = optimizer
        self.like = like
        self._hook = hook
        self._removed = False

    def remove(self) -> None:
        """Stop correcting; the optimizer continues in its own family from its current state.

        A ``torch.optim.SGD`` keeps its buffer ``b = -v/η`` (the checkpoint map of
        docs/reference.md) and forgets ``buffer_lr``; a ``SutskeverSGD`` keeps its velocity.
        """
        if self._removed:
            return
        self._removed = True
        if self._hook is not None:
            self._hook.remove()
            for group in self.optimizer.param_groups:
                group.pop(BUFFER_LR, None)
        if isinstance(self.optimizer, SutskeverSGD):
            self.optimizer._lr_outside = False
        del self.optimizer._momentum_correction  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        state = "removed" if self._removed else "active"
        return f"MomentumCorrection(like={self.like!r}, {state})"


def correct_momentum(optimizer: Optimizer, like: str) -> MomentumCorrection:
    r"""Make ``optimizer`` follow the other momentum family exactly, under any lr changes.

    * ``correct_momentum(torch.optim.SGD(...), like="sutskever")``: before each step whose
      learning rate differs from the one the buffers are scaled to, rescale the buffers by
      :math:`\eta_{t-1}/\eta_t`, which makes PyTorch's iterates those of Form S (Caffe, Keras,
      :class:`SutskeverSGD`). With dampening, buffers are created at zero so the first gradient
      is damped as in Form S.
    * ``correct_momentum(SutskeverSGD(...), like="pytorch")``: the velocity follows the learning
      rate, :math:`v \leftarrow (\eta_t/\eta_{t-1})\,v`, which makes the iterates those of
      :class:`torch.optim.SGD`, first-step rule and learning rates of zero included. It costs
      nothing: ``SutskeverSGD`` stores ``v = -s·b`` and simply stops rescaling ``b``.

    Learning rates of zero: a Form S step with :math:`\eta_t = 0` still moves the weights by
    :math:`\mu v` while PyTorch freezes them (docs/reference.md, edge case 2). ``torch.optim.SGD``
    with ``like="sutskever"`` is exact when the velocity is zero at that step (warmup from 0)
    and raises :class:`~momentum_convert.errors.ConversionImpossibleError` from ``step()``,
    before changing anything, otherwise. ``SutskeverSGD`` carries the unscaled buffer, so
    ``like="pytorch"`` is exact for every learning rate (edge case 1).

    Args:
        optimizer: a ``torch.optim.SGD`` (with ``like="sutskever"``) or a
            :class:`SutskeverSGD` (with ``like="pytorch"``).
        like: the family whose dynamics to follow, ``"pytorch"`` or ``"sutskever"``.

    Returns:
        A handle whose ``remove()`` undoes the correction.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        >>> handle = correct_momentum(optimizer, like="sutskever")
        >>> scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)

    References:
        Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017,
        section 2.1 (momentum correction).
    """
    if like not in _FAMILIES:
        raise ConventionError(
            f"correct_momentum accepts like='pytorch' or 'sutskever', got {like!r}."
        )
    if not isinstance(optimizer, SGD | SutskeverSGD):
        raise TypeError(
            "correct_momentum accepts a torch.optim.SGD or a SutskeverSGD, "
            f"got {type(optimizer).__name__}."
        )
    own = "sutskever" if isinstance(optimizer, SutskeverSGD) else "pytorch"
    if like == own:
        other = "pytorch" if own == "sutskever" else "sutskever"
        raise ConventionError(
            f"{type(optimizer).__name__} already follows the {own!r} family; "
            f"correct_momentum accepts like={other!r} for it."
        )
    if hasattr(optimizer, "_momentum_correction"):
        raise ConventionError(
            "this optimizer already has a momentum correction; remove() it before adding another."
        )
    optimizer._momentum_correction = like  # type: ignore[union-attr]
    if isinstance(optimizer, SutskeverSGD):
        optimizer._lr_outside = True
        return MomentumCorrection(optimizer, "pytorch", None)
    hook = optimizer.register_step_pre_hook(_rescale_pytorch_buffers)
    return MomentumCorrection(optimizer, "sutskever", hook)


def _rescale_pytorch_buffers(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """Step pre-hook: keep ``v = -buffer_lr · b`` the Form S velocity of a torch SGD.

    Every group is checked before any is changed, so a refused step leaves the whole
    optimizer as it was.
    """
    groups = list(enumerate(optimizer.param_groups))
    for number, group in groups:
        _refuse_impossible_step(optimizer, number, group)
    for _, group in groups:
        if group["momentum"] == 0:
            _restart_buffers(optimizer, group)
        else:
            _rescale_buffers(optimizer, group)


def _refuse_impossible_step(optimizer: Optimizer, number: int, group: dict[str, Any]) -> None:
    """Raise if torch's step on this group cannot be Form S's (docs/reference.md, edge case 2)."""
    lr = float(group["lr"])
    if group["momentum"] == 0:
        if group["dampening"] != 0 and lr > 0 and any(p.grad is not None for p in group["params"]):
            raise ConversionImpossibleError(
                f"param group {number} has momentum 0 with dampening={group['dampening']}: "
                "Form S then steps by lr*(1-dampening)*grad and torch.optim.SGD by lr*grad; "
                "use SutskeverSGD for a momentum schedule that reaches 0 with dampening."
            )
        return
    buffer_lr = group.get(BUFFER_LR)
    if lr > 0 or buffer_lr is None or buffer_lr == lr:
        return
    buffers = _buffers(optimizer, group)
    if buffers and bool(torch.stack([b.abs().max() for b in buffers]).max() > 0):
        raise ConversionImpossibleError(
            f"param group {number} has lr=0 while its velocity is not zero: Form S would "
            "still move the weights by momentum * velocity and torch.optim.SGD cannot; use "
            "SutskeverSGD for a schedule that reaches exactly zero."
        )


def _rescale_buffers(optimizer: Optimizer, group: dict[str, Any]) -> None:
    """``b <- (s/η) b`` before a step whose lr differs from ``s``; then ``s = η``."""
    lr = float(group["lr"])
    if group["dampening"] != 0:
        _create_zero_buffers(optimizer, group)
    buffer_lr = group.get(BUFFER_LR)
    if buffer_lr is not None and buffer_lr != lr and lr > 0:
        torch._foreach_mul_(_buffers(optimizer, group), buffer_lr / lr)
    group[BUFFER_LR] = lr  # with lr = 0 the checks above made the velocity zero


@torch.no_grad()
def _restart_buffers(optimizer: Optimizer, group: dict[str, Any]) -> None:
    r"""Form S at :math:`\mu = 0`: the velocity restarts, :math:`v = -\eta\,\hat g`.

    torch's SGD leaves its buffers alone at momentum 0 (and steps by :math:`\eta \hat g`,
    Form S's step without dampening), so the hook writes the buffer Form S leaves behind,
    :math:`b = \hat g = \pm g + \lambda \theta_{t-1}` (zero when :math:`\eta = 0`), with
    :math:`s = \eta`. Parameters without a gradient keep their velocity (rescaled by
    :math:`s/\eta`).
    """
    lr = float(group["lr"])
    state = optimizer.state
    buffer_lr = group.get(BUFFER_LR)
    stepping = [p for p in group["params"] if p.grad is not None]
    idle = [
        state[p]["momentum_buffer"]
        for p in group["params"]
        if p.grad is None and state.get(p, {}).get("momentum_buffer") is not None
    ]
    if lr > 0 and idle and buffer_lr is not None and buffer_lr != lr:
        torch._foreach_mul_(idle, buffer_lr / lr)
    for p in stepping:
        assert p.grad is not None
        if lr == 0:
            restart = torch.zeros_like(p)
        else:
            restart = -p.grad if group["maximize"] else p.grad.clone()
            if group["weight_decay"] != 0:
                restart.add_(p, alpha=group["weight_decay"])
        buffer = state[p].get("momentum_buffer")
        if buffer is None:
            state[p]["momentum_buffer"] = restart
        else:
            buffer.copy_(restart)
    if lr > 0 or buffer_lr is None:
        group[BUFFER_LR] = lr


def _buffers(optimizer: Optimizer, group: dict[str, Any]) -> list[Tensor]:
    state = optimizer.state
    return [
        state[p]["momentum_buffer"]
        for p in group["params"]
        if p in state and state[p].get("momentum_buffer") is not None
    ]


def _create_zero_buffers(optimizer: Optimizer, group: dict[str, Any]) -> None:
    """Give each parameter about to step a zero buffer, Form S's zero-initialised velocity."""
    for p in group["params"]:
        if p.grad is not None and optimizer.state[p].get("momentum_buffer") is None:
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
