"""``SutskeverSGD``: momentum SGD with the lr inside the velocity (Form S), as Caffe and Keras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import (
    Optimizer,
    ParamsT,
    _default_to_fused_or_foreach,
    _device_dtype_check_for_fused,
    _get_fused_kernels_supported_devices,
)

from momentum_convert.errors import ConventionError
from momentum_convert.optim.functional import sutskever_sgd, sutskever_sgd_tensor_lr

__all__ = ["SutskeverSGD"]

#: The per-group key holding ``s`` in ``v = -s·b`` (see :mod:`momentum_convert.optim.functional`).
BUFFER_LR = "buffer_lr"


class SutskeverSGD(Optimizer):
    r"""Stochastic gradient descent with momentum, learning rate inside the velocity.

    .. math::
       \begin{aligned}
            &\rule{110mm}{0.4pt}                                                          \\
            &\textbf{input}: \eta_t \text{ (lr)}, \: \theta_0 \text{ (params)}, \:
                f(\theta) \text{ (objective)}, \: \lambda \text{ (weight decay)},        \\
            &\hspace{13mm} \mu_t \text{ (momentum)}, \: \tau \text{ (dampening)}, \:
                \textit{nesterov}, \: \textit{maximize}                                   \\
            &\textbf{initialize}: v_0 \leftarrow 0 \text{ (velocity)}                     \\[-1.ex]
            &\rule{110mm}{0.4pt}                                                          \\
            &\textbf{for} \: t=1 \: \textbf{to} \: \ldots \: \textbf{do}                  \\
            &\hspace{5mm} g_t \leftarrow \pm \nabla_{\theta} f_t(\theta_{t-1})
                \quad (- \text{ if } \textit{maximize})                                   \\
            &\hspace{5mm} \hat g_t \leftarrow g_t + \lambda \theta_{t-1}                  \\
            &\hspace{5mm} v_t \leftarrow \mu_t v_{t-1} - \eta_t (1-\tau) \hat g_t         \\
            &\hspace{5mm}\textbf{if} \: \textit{nesterov}                                 \\
            &\hspace{10mm} \theta_t \leftarrow \theta_{t-1} + \mu_t v_t - \eta_t \hat g_t \\
            &\hspace{5mm}\textbf{else}                                                    \\
            &\hspace{10mm} \theta_t \leftarrow \theta_{t-1} + v_t                         \\
            &\rule{110mm}{0.4pt}                                                          \\[-1.ex]
       \end{aligned}

    This is Form S of docs/reference.md: Sutskever et al. (2013), AlexNet, Caffe, Keras, MXNet.
    ``lr`` and ``momentum`` are read from ``param_groups`` at every step, so every
    ``torch.optim.lr_scheduler`` works, OneCycleLR's and CyclicLR's momentum cycling
    included. Weight decay is coupled and inside the learning rate (Caffe, AlexNet: Keras 2's
    ``L2(l)`` regularizer is ``weight_decay=2*l``). The velocity starts at zero, so with
    dampening the first gradient is damped like every other one (there is no PyTorch-style
    first-step rule). The rule holds at momentum 0 too: the velocity restarts from the gradient,
    :math:`v_t = -\eta_t (1-\tau)\hat g_t` (:class:`torch.optim.SGD` instead leaves its buffer
    untouched at momentum 0 and resumes it at the next non-zero momentum).

    .. note::
        :class:`torch.optim.SGD` keeps the learning rate *outside* its buffer
        (``b = μ b + ĝ``, ``θ -= η b``). With a constant learning rate both give the same
        iterates (``v = -η b``). They differ whenever the learning rate changes: after a cut
        from 0.1 to 0.01, PyTorch applies the old buffer with the new, smaller learning rate
        at once, while Form S keeps the velocity built with the old rate and lets it decay
        over about ``1/(1-μ)`` steps. A naive port (same numbers in the other optimizer)
        therefore keeps ten times too much (or too little) velocity across every cut, and
        also over-weights the first gradient by ``1/(1-τ)`` when dampening is used, and
        changes Nesterov's look-ahead under a schedule. To run PyTorch's dynamics with this
        class, or this class's dynamics with ``torch.optim.SGD``, use
        :func:`~momentum_convert.optim.correct_momentum`.

    How it runs: the velocity is stored scaled, ``v = -s·b``, with ``b`` a PyTorch-style
    buffer (``state[p]["momentum_buffer"]``) and ``s`` one float per group
    (``group["buffer_lr"]``, the learning rate ``b`` is scaled to; after a step with a
    non-zero lr it is that lr). Each step is then PyTorch's own fused, foreach or per-tensor
    kernel; on the steps where the group's lr changed, ``b`` is rescaled by ``s/η_t``, folded
    into the kernel's momentum for classical momentum and one ``_foreach_mul_`` for Nesterov.
    :meth:`state_dict` stores exactly that pair: the velocity is
    ``-group["buffer_lr"] * state["momentum_buffer"]``;
    :func:`~momentum_convert.optim.convert_state` moves it to and from
    :class:`torch.optim.SGD` checkpoints.

    Args:
        params: iterable of parameters or named parameters, or dicts defining param groups.
        lr: learning rate η (default: 1e-3); a float, or a 1-element tensor that schedulers
            update in place: the step then branches on no lr value, so ``torch.compile``
            traces it once for every lr (as :class:`torch.optim.SGD` with a tensor lr).
        momentum: momentum factor μ ≥ 0 (default: 0).
        dampening: dampening τ for the velocity, in [0, 1] (default: 0).
        weight_decay: coupled L2 penalty λ ≥ 0, added to the gradient (default: 0).
        nesterov: Nesterov momentum in the Keras/Caffe form; needs momentum > 0 and no
            dampening (default: False).
        maximize: maximize the objective instead of minimizing it (default: False).
        foreach: use the multi-tensor ``torch._foreach_*`` implementation.
        fused: use PyTorch's fused SGD kernel (CPU and CUDA, floating-point parameters);
            devices and dtypes are checked at the first step, as in :class:`torch.optim.SGD`,
            so parameters may still be on the meta device when the optimizer is built.
            With neither ``foreach`` nor ``fused`` given (per param group), each group uses
            the fused kernel where all its parameters support it (the fastest on CPU and
            CUDA, see ``benchmarks/RESULTS.md``), otherwise the multi-tensor path; a group's
            own ``foreach``/``fused`` is kept. Old state dicts without ``maximize``,
            ``foreach``, ``differentiable`` or ``fused`` get torch's defaults on loading.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = SutskeverSGD(model.parameters(), lr=0.01, momentum=0.9)
        >>> scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)

    References:
        Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum
        in deep learning", ICML 2013. Goyal et al., "Accurate, Large Minibatch SGD: Training
        ImageNet in 1 Hour", 2017 (section 2.1, momentum correction).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ConventionError(
                f"SutskeverSGD needs a float lr or a 1-element tensor, got a tensor of shape "
                f"{tuple(lr.shape)}."
            )
        if not lr >= 0.0:
            raise ConventionError(f"SutskeverSGD needs lr >= 0, got {lr=}.")
        if not momentum >= 0.0:
            raise ConventionError(f"SutskeverSGD needs momentum >= 0, got {momentum=}.")
        if not 0.0 <= dampening <= 1.0:
            raise ConventionError(f"SutskeverSGD needs dampening in [0, 1], got {dampening=}.")
        if not weight_decay >= 0.0:
            raise ConventionError(f"SutskeverSGD needs weight_decay >= 0, got {weight_decay=}.")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ConventionError(
                "SutskeverSGD with nesterov=True needs momentum > 0 and dampening 0, "
                f"got {momentum=} and {dampening=}."
            )
        if fused and foreach:
            raise ConventionError("SutskeverSGD takes fused=True or foreach=True, not both.")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": False,
            "fused": fused,
        }
        # Devices and dtypes of fused groups are checked at the first step, as torch.optim.SGD
        # does, so parameters on the meta device (deferred initialisation) are accepted here.
        self._need_device_dtype_check_for_fused = True
        #: id(param group) -> (signature, (fused, foreach)): see _implementation.
        self._implementations: dict[int, tuple[tuple[Any, ...], tuple[bool, bool]]] = {}
        super().__init__(params, defaults)
        # GradScaler hands the fused kernel grad_scale/found_inf; other paths unscale here.
        self._step_supports_amp_scaling = True
        #: Set by correct_momentum(like="pytorch"): s follows lr, no rescaling (Form P).
        self._lr_outside = False
        self.register_load_state_dict_pre_hook(_require_buffer_lr)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fill in the keys older state dicts lack, as :meth:`torch.optim.SGD.__setstate__`."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)
        self.__dict__.setdefault("_lr_outside", False)
        self.__dict__.setdefault("_need_device_dtype_check_for_fused", True)
        self._implementations = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its fused devices and dtypes are checked at the next step."""
        super().add_param_group(param_group)
        self._need_device_dtype_check_for_fused = True

    def _implementation(self, group: dict[str, Any]) -> tuple[bool, bool]:
        """``(fused, foreach)`` for this group's step: its own choice, else the fastest.

        A group's explicit ``foreach``/``fused`` is kept. With both ``None`` (the default)
        the choice is made per group from its parameters, by
        :func:`torch.optim.optimizer._default_to_fused_or_foreach` with the fused kernel
        preferred (the fastest, ``benchmarks/RESULTS.md``): complex parameters or a device
        without a fused kernel get the multi-tensor path. ``torch.optim.SGD`` makes that
        choice at every step; here it is remembered per group until the group's number of
        parameters or its first parameter's device or dtype changes (a check in O(1)).
        """
        fused, foreach = group["fused"], group["foreach"]
        if fused is not None or foreach is not None:
            return bool(fused), bool(foreach)
        params = group["params"]
        signature = (len(params), params[0].device, params[0].dtype) if params else ()
        cached = self._implementations.get(id(group))
        if cached is not None and cached[0] == signature:
            return cached[1]
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=True)
        choice = (fused, foreach or not fused)
        self._implementations[id(group)] = (signature, choice)
        return choice

    def _check_fused_devices(self) -> None:
        """Refuse, at the first step, parameters the fused kernel cannot take."""
        for number, group in enumerate(self.param_groups):
            if not group["fused"]:
                continue
            for p in group["params"]:
                try:
                    _device_dtype_check_for_fused(p)
                except RuntimeError as error:
                    raise ConventionError(
                        f"param group {number} has fused=True but a {p.dtype} parameter on "
                        f"{p.device.type}: the fused kernel takes floating-point parameters on "
                        f"{', '.join(_get_fused_kernels_supported_devices())}; use fused=False."
                    ) from error
        self._need_device_dtype_check_for_fused = False

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: list[Tensor | None],
        idle_buffers: list[Tensor],
    ) -> None:
        # Form S updates its velocity at every step, μ = 0 included; PyTorch's rule
        # (lr_outside) leaves the buffers alone at μ = 0.
        keep_buffers = group["momentum"] != 0 or not self._lr_outside
        for p in group["params"]:
            if p.grad is None:
                idle = self.state[p].get("momentum_buffer") if p in self.state else None
                if idle is not None:
                    idle_buffers.append(idle)
                continue
            if p.grad.is_sparse:
                raise ConventionError(
                    "SutskeverSGD does not support sparse gradients (got one for a parameter "
                    f"of shape {tuple(p.shape)}); use dense gradients, e.g. "
                    "nn.Embedding(sparse=False)."
                )
            params.append(p)
            grads.append(p.grad)
            if keep_buffers:
                buffers.append(self.state[p].get("momentum_buffer"))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._need_device_dtype_check_for_fused:
            self._check_fused_devices()

        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            buffers: list[Tensor | None] = []
            idle_buffers: list[Tensor] = []
            self._init_group(group, params, grads, buffers, idle_buffers)
            if not params:
                continue
            fresh = [i for i, buffer in enumerate(buffers) if buffer is None]
            if isinstance(group["lr"], Tensor):
                self._tensor_lr_step(group, params, grads, buffers, idle_buffers)
            else:
                self._float_lr_step(group, params, grads, buffers, idle_buffers)
            for i in fresh:  # the buffers this step created
                self.state[params[i]]["momentum_buffer"] = buffers[i]
        return loss

    def _float_lr_step(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: list[Tensor | None],
        idle_buffers: list[Tensor],
    ) -> None:
        lr = float(group["lr"])
        fused, foreach = self._implementation(group)
        buffer_lr = group.get(BUFFER_LR, lr)
        group[BUFFER_LR] = sutskever_sgd(
            params,
            grads,
            buffers,
            buffer_lr=float(buffer_lr),
            lr=lr,
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            foreach=foreach,
            fused=fused,
            lr_outside=self._lr_outside,
            idle_buffers=idle_buffers,
            grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None),
        )

    def _tensor_lr_step(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: list[Tensor | None],
        idle_buffers: list[Tensor],
    ) -> None:
        """A tensor lr: ``s`` is a tensor too, and the step branches on no value (compile)."""
        lr: Tensor = group["lr"]
        buffer_lr = group.get(BUFFER_LR)
        if not isinstance(buffer_lr, Tensor):
            start = lr if buffer_lr is None else buffer_lr
            buffer_lr = torch.as_tensor(start, dtype=lr.dtype, device=lr.device).clone()
            group[BUFFER_LR] = buffer_lr
        sutskever_sgd_tensor_lr(
            params,
            grads,
            buffers,
            buffer_lr=buffer_lr,
            lr=lr,
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            lr_outside=self._lr_outside,
            idle_buffers=idle_buffers,
            grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None),
        )


def _require_buffer_lr(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    """Refuse a checkpoint whose momentum buffers carry no ``buffer_lr`` (a torch SGD one)."""
    buffered = {index for index, state in state_dict["state"].items() if "momentum_buffer" in state}
    for number, group in enumerate(state_dict["param_groups"]):
        if BUFFER_LR not in group and buffered.intersection(group["params"]):
            raise ConventionError(
                f"param group {number} of this checkpoint has momentum buffers but no "
                f"{BUFFER_LR!r} (a torch.optim.SGD checkpoint?); load "
                "convert_state(state_dict, src='pytorch', dst='sutskever') instead."
            )
