r"""The arithmetic of one :class:`~momentum_convert.optim.SutskeverSGD` step, per param group.

Form S (docs/reference.md, "The two families") keeps a velocity with the learning rate inside::

    v_t = μ v_{t-1} − η_t (1 − τ) ĝ_t        θ_t = θ_{t-1} + v_t
    Nesterov (Keras/Caffe):                  θ_t = θ_{t-1} + μ v_t − η_t ĝ_t

This module stores that velocity *scaled*: a buffer ``b`` in PyTorch's lr-outside meaning and
one float per group, ``buffer_lr`` (written :math:`s`), with

.. math:: v = -s \, b .

When :math:`s = \eta_t` one Form S step is exactly one PyTorch (Form P) step on ``b`` with a
zero-initialised buffer, so the step runs on PyTorch's own kernels (``torch._fused_sgd_``,
``torch._foreach_*`` or the per-tensor loop) at PyTorch's speed. When a scheduler changes the
learning rate, the buffer is rescaled once, :math:`b \leftarrow (s/\eta_t)\,b`, and
:math:`s \leftarrow \eta_t`: this is the "state rescaling" of docs/reference.md (Goyal et al. 2017
call it momentum correction). For classical momentum the rescaling rides in the kernel's
momentum argument (``μ (r b) = (μ r) b``, the per-step momentum map of docs/reference.md), so a
changing learning rate costs nothing; Nesterov, whose look-ahead needs the plain μ, pays one
``_foreach_mul_`` on the steps where a group's learning rate changed.

Learning rates of exactly zero (docs/reference.md edge cases 1 and 2) keep the representation exact:

* :math:`\eta_t = 0 < s`: Form S coasts, :math:`v \leftarrow \mu v`, :math:`\theta \mathrel{+}= v`
  (Nesterov :math:`\mu v`); done directly on ``b`` with ``s`` kept, since ``b = -v/0`` does not
  exist.
* :math:`\eta_t = s = 0`: the velocity is zero (``v = -0 \cdot b``) and stays zero; the step does
  nothing.
* :math:`\mu_t = 0`: Form S restarts the velocity from the gradient (see
  :func:`_restart_velocity`); PyTorch would leave its buffer untouched.
* ``lr_outside=True`` (set by :func:`~momentum_convert.optim.correct_momentum` with
  ``like="pytorch"``): ``s`` follows the learning rate without rescaling, which turns the step
  into PyTorch's step on the unscaled buffer, exact for every learning rate including zero.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor
from torch.optim.sgd import sgd as lr_outside_sgd


def sutskever_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    *,
    buffer_lr: float,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    foreach: bool,
    fused: bool,
    lr_outside: bool = False,
    idle_buffers: list[Tensor] | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> float:
    """Take one Form S step for one param group in place and return the new ``buffer_lr``.

    ``buffers`` holds the scaled velocity ``b = -v / buffer_lr`` of each parameter; an entry of
    ``None`` is a parameter stepping for the first time. Without ``lr_outside`` such a buffer
    starts at zero (Form S's zero-initialised velocity, so dampening applies from the first
    step); with ``lr_outside`` it is left to PyTorch's first-step rule (``b_1 = ĝ_1``). Entries
    are replaced in place by the buffers the step created. ``idle_buffers`` are the buffers of
    the group's parameters without a gradient this step: they take no step, but are rescaled
    with the others so that their velocity is kept. ``foreach`` and ``fused`` pick
    the implementation (at most one is true; neither is the per-tensor loop). ``grad_scale``
    and ``found_inf`` are :class:`torch.amp.GradScaler`'s, for the fused path.
    """
    if momentum == 0 and lr_outside:
        # PyTorch's own rule at μ = 0: the buffer is neither used nor updated.
        _lr_outside_step(params, grads, [], lr, 0.0, dampening, weight_decay, nesterov, maximize,
                         foreach, fused, grad_scale, found_inf)  # fmt: skip
        return buffer_lr

    fresh = [i for i, buffer in enumerate(buffers) if buffer is None]
    if fresh and not lr_outside:
        for i in fresh:
            buffers[i] = torch.zeros_like(params[i], memory_format=torch.preserve_format)
        fresh = []
    existing = [b for b in buffers if b is not None] if fresh else cast(list[Tensor], buffers)

    if momentum == 0:
        return _restart_velocity(params, grads, existing, buffer_lr=buffer_lr, lr=lr,
                                 dampening=dampening, weight_decay=weight_decay,
                                 maximize=maximize, foreach=foreach, fused=fused,
                                 idle_buffers=idle_buffers, grad_scale=grad_scale,
                                 found_inf=found_inf)  # fmt: skip

    if lr_outside:
        buffer_lr = lr
    elif lr != buffer_lr and lr > 0:
        # State rescaling b <- (s / η_t) b keeps v = -s b; with s = 0 it zeroes b, which is
        # exact because the velocity was zero. Classical momentum folds the rescaling into the
        # kernel's momentum, μ b + ĝ with b <- r b being (μ r) b + ĝ: no extra pass over memory.
        # Nesterov's look-ahead needs the plain μ (docs/reference.md, "Nesterov"), and a step that
        # GradScaler may skip must not lose the rescaling, so those rescale explicitly. So
        # does a momentum whose product with the ratio underflows to 0: torch's kernel would
        # then skip the buffer altogether and drop the velocity.
        ratio = buffer_lr / lr
        folded_momentum_vanishes = momentum != 0 and momentum * ratio == 0
        if nesterov or buffer_lr == 0 or found_inf is not None or folded_momentum_vanishes:
            torch._foreach_mul_(existing, ratio)
        else:
            momentum = momentum * ratio
        if idle_buffers:
            torch._foreach_mul_(idle_buffers, ratio)
        buffer_lr = lr

    if lr == buffer_lr:
        if lr == 0 and not lr_outside:
            return buffer_lr  # v = 0 stays 0 and θ does not move
        if fused and fresh and existing:
            fused, foreach = False, True  # torch's fused kernel wants all or no new buffers
        _lr_outside_step(params, grads, buffers, lr, momentum, dampening, weight_decay, nesterov,
                         maximize, foreach, fused, grad_scale, found_inf)  # fmt: skip
        return buffer_lr

    # η_t = 0 < s: Form S coasts on its velocity, v <- μ v, θ += v (Nesterov: θ += μ v).
    if found_inf is not None and bool(found_inf.item()):
        return buffer_lr  # GradScaler skips steps whose gradients overflowed
    torch._foreach_mul_(existing, momentum)
    torch._foreach_add_(params, existing, alpha=-buffer_lr * (momentum if nesterov else 1.0))
    return buffer_lr


def _restart_velocity(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    *,
    buffer_lr: float,
    lr: float,
    dampening: float,
    weight_decay: float,
    maximize: bool,
    foreach: bool,
    fused: bool,
    idle_buffers: list[Tensor] | None,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
) -> float:
    r"""One Form S step at :math:`\mu_t = 0`: the velocity restarts from the gradient.

    Form S's rule holds at every step, :math:`\mu = 0` included:
    :math:`v_t = 0 \cdot v_{t-1} - \eta_t (1-\tau)\hat g_t`, :math:`\theta_t = \theta_{t-1} + v_t`
    (Nesterov: :math:`\theta_t = \theta_{t-1} + 0 \cdot v_t - \eta_t \hat g_t`, the same step since
    Nesterov has no dampening). PyTorch's kernels skip the buffer at momentum 0, which would
    leave a stale velocity for the next step; so the buffers are zeroed and the kernel runs
    with momentum 1 and no Nesterov: :math:`b = 1 \cdot 0 + (1-\tau)\hat g`,
    :math:`\theta \mathrel{-}= \eta b`, with :math:`s = \eta` (the trick
    :func:`momentum_convert.conversion` uses for lazy-buffer targets). With :math:`\eta_t = 0`
    the velocity is zero and the weights stay. Buffers of parameters without a gradient keep
    their velocity: they are rescaled by :math:`s/\eta_t` like on any lr change.
    """
    if found_inf is not None and bool(found_inf.item()):
        return buffer_lr  # GradScaler skips steps whose gradients overflowed
    torch._foreach_zero_(buffers)
    if lr == 0:
        return buffer_lr  # v = -s·0 = 0 and θ does not move
    if idle_buffers and buffer_lr != lr:
        torch._foreach_mul_(idle_buffers, buffer_lr / lr)
    _lr_outside_step(params, grads, list(buffers), lr, 1.0, dampening, weight_decay, False,
                     maximize, foreach, fused, grad_scale, found_inf)  # fmt: skip
    return lr


def _lr_outside_step(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    foreach: bool,
    fused: bool,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
) -> None:
    """PyTorch's own SGD step (Form P) on ``buffers``, by the chosen implementation."""
    if not fused and (grad_scale is not None or found_inf is not None):
        # Only the fused kernel unscales by itself; do what it would do.
        if found_inf is not None and bool(found_inf.item()):
            return
        if grad_scale is not None:
            grads = list(torch._foreach_div(grads, grad_scale))
        grad_scale = found_inf = None
    lr_outside_sgd(
        params,
        grads,
        buffers,
        foreach=foreach,
        fused=fused,
        grad_scale=grad_scale,
        found_inf=found_inf,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
    )


def sutskever_sgd_tensor_lr(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    *,
    buffer_lr: Tensor,
    lr: Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    lr_outside: bool = False,
    idle_buffers: list[Tensor] | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    r"""One Form S step with a tensor lr, without a branch on its value (``torch.compile``).

    The same arithmetic as :func:`sutskever_sgd`, written so that ``torch.compile`` traces one
    graph for every lr: with :math:`p = [\eta_t > 0]`, the ratio
    :math:`r = s/\eta_t` where :math:`p` (else 1), the scale :math:`e = \eta_t` where :math:`p`
    (else :math:`s`, the coasting velocity) and the gradient weight :math:`c = p\,(1-\tau)`,

    .. math::
       b \leftarrow \mu r\, b + c\, \hat g, \qquad
       \theta \leftarrow \theta - e\, b \quad
       (\text{Nesterov: } \theta \leftarrow \theta - e \mu b - \eta_t \hat g), \qquad
       s \leftarrow e .

    For :math:`\eta_t > 0` this is the rescaled step (:math:`v = -s b` kept, then Form S);
    for :math:`\eta_t = 0 < s` it is the coasting :math:`v \leftarrow \mu v`; for
    :math:`\mu = 0` it restarts the velocity from the gradient. ``buffer_lr`` (``s``) is a
    tensor updated in place, so no Python float changes between steps. With ``lr_outside``
    the step is :func:`torch.optim.sgd.sgd` with the tensor lr, PyTorch's own compile-friendly
    path, and ``s`` follows ``lr``. ``buffers`` entries of ``None`` are created (at zero for
    Form S). GradScaler's ``grad_scale``/``found_inf`` are applied here, not in a kernel.
    """
    if grad_scale is not None or found_inf is not None:
        if found_inf is not None and bool(found_inf.item()):
            return
        if grad_scale is not None:
            grads = list(torch._foreach_div(grads, grad_scale))
    if lr_outside:
        lr_outside_sgd(params, grads, buffers, foreach=True, weight_decay=weight_decay,
                       momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov,
                       maximize=maximize)  # fmt: skip
        buffer_lr.copy_(lr)
        return
    for i, buffer in enumerate(buffers):
        if buffer is None:
            buffers[i] = torch.zeros_like(params[i], memory_format=torch.preserve_format)
    velocity = cast(list[Tensor], buffers)
    positive = lr > 0
    ratio = torch.where(positive, buffer_lr / torch.where(positive, lr, 1.0), 1.0)
    scale = torch.where(positive, lr, buffer_lr)
    weight = positive * (1.0 - dampening)
    ghat = list(torch._foreach_neg(grads)) if maximize else list(grads)
    if weight_decay != 0:
        ghat = list(torch._foreach_add(ghat, params, alpha=weight_decay))
    torch._foreach_mul_(velocity, momentum * ratio)
    torch._foreach_add_(velocity, torch._foreach_mul(ghat, weight))
    if nesterov:
        torch._foreach_add_(params, torch._foreach_mul(velocity, -momentum * scale))
        torch._foreach_add_(params, torch._foreach_mul(ghat, -lr))
    else:
        torch._foreach_add_(params, torch._foreach_mul(velocity, -scale))
    if idle_buffers:
        torch._foreach_mul_(idle_buffers, ratio)
    buffer_lr.copy_(scale)
