"""The registry of momentum conventions: two families and the frameworks that use them.

A :class:`Convention` is data read from one framework's optimizer source (docs/reference.md,
"Framework table"): which family it belongs to, what it calls its hyperparameters and
their defaults, how its buffer starts, which Nesterov form it implements, what its
weight-decay argument means, and the limits it puts on the momentum.

The two families (docs/reference.md, "The two families"):

.. math::

    \\text{pytorch (lr outside):}\\quad b_t = \\mu b_{t-1} + (1-\\tau)\\hat g_t,
        \\qquad \\theta_t = \\theta_{t-1} - \\eta_t b_t

    \\text{sutskever (lr inside):}\\quad v_t = \\mu v_{t-1} - \\eta_t \\hat g_t,
        \\qquad \\theta_t = \\theta_{t-1} + v_t

They give identical iterates while the learning rate is constant (``v = -η b``) and
differ whenever it changes, on the first step when ``τ ≠ 0``, and for Nesterov.

References:
    Sutskever, Martens, Dahl & Hinton (2013), "On the importance of initialization and
    momentum in deep learning", ICML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from momentum_convert.errors import ConventionError


class Family(StrEnum):
    """Where the learning rate sits relative to the momentum buffer."""

    #: Form P: ``θ -= η_t b_t`` with ``b_t = μ b_{t-1} + (1-τ) ĝ_t``.
    PYTORCH = "pytorch"
    #: Form S: ``θ += v_t`` with ``v_t = μ v_{t-1} - η_t ĝ_t``.
    SUTSKEVER = "sutskever"


class FirstStep(StrEnum):
    """How the buffer is initialised on step 1."""

    #: PyTorch and Torch7: ``b_1 = ĝ_1`` (dampening is not applied on step 1). Their buffer
    #: is lazy: created as ``ĝ`` at the first step with ``μ ≠ 0``, skipped at steps with ``μ = 0``.
    GRADIENT = "b_1 = g_1"
    #: Everyone else: the buffer starts at zero, so step 1 is ``μ·0 + (1-τ) ĝ_1``.
    ZERO = "zero"


class NesterovForm(StrEnum):
    """Which Nesterov update a convention implements (docs/reference.md, "Nesterov")."""

    #: ``θ_t = θ_{t-1} - η_t (ĝ_t + μ b_t)`` (PyTorch, Torch7, TF1, optax, Paddle).
    LR_OUTSIDE = "lr-outside"
    #: ``θ_t = θ_{t-1} + μ v_t - η_t ĝ_t`` (Keras, Caffe, Lasagne, MXNet, Sutskever).
    LR_INSIDE = "lr-inside"
    #: Chainer ``NesterovAG``: ``θ_t = θ_{t-1} + μ² v_t - (1+μ) η ĝ_t``; matches neither.
    NESTEROV_AG = "nesterov-ag"
    #: The convention has no Nesterov variant.
    NONE = "none"


class WeightDecayRule(StrEnum):
    """What the convention's weight-decay value ``w`` means."""

    #: ``ĝ = g + w·θ`` added to the gradient before the momentum (PyTorch ``weight_decay``).
    COUPLED = "coupled"
    #: A loss term whose gradient is ``factor·w·θ``: coupled with ``λ = factor·w``.
    L2_LOSS = "l2-loss"
    #: Keras 3: ``θ ← θ(1 - η_t w)`` before the momentum update; not in the velocity.
    DECOUPLED = "decoupled"


@dataclass(frozen=True)
class Convention:
    """One framework's SGD-with-momentum rule, as read from its source.

    Attributes:
        name: the registry name (``pytorch``, ``keras3``, ...).
        family: :class:`Family` of the update rule.
        framework: the framework and optimizer, for people.
        source_file: the file the rule was read from.
        lr_name, momentum_name: the framework's names for ``η`` and ``μ``.
        dampening_name: the name of ``τ``, or ``None`` where there is no dampening.
        nesterov_name: the flag (or class) that selects Nesterov, or ``None``.
        weight_decay_name: what the user writes for weight decay.
        weight_decay_key: the key of the weight-decay value in converted hyperparameters.
        defaults: the framework's defaults, by the framework's names.
        first_step: :class:`FirstStep` buffer rule.
        nesterov_form: :class:`NesterovForm` implemented.
        weight_decay_rule: :class:`WeightDecayRule` of ``weight_decay_name``.
        weight_decay_factor: for coupled and L2-loss rules, ``λ_coupled = factor · w``.
        dampening_defaults_to_momentum: Torch7's ``dampening = momentum`` default.
        momentum_max: the largest momentum the framework accepts (``inf``: no limit).
        state_name: what the optimizer state holds, in this convention's words.
    """

    name: str
    family: Family
    framework: str
    source_file: str
    lr_name: str
    momentum_name: str
    dampening_name: str | None
    nesterov_name: str | None
    weight_decay_name: str
    weight_decay_key: str
    defaults: tuple[tuple[str, Any], ...]
    first_step: FirstStep
    nesterov_form: NesterovForm
    weight_decay_rule: WeightDecayRule
    weight_decay_factor: float = 1.0
    dampening_defaults_to_momentum: bool = False
    momentum_max: float = float("inf")
    state_name: str = "buffer b"

    @property
    def supports_dampening(self) -> bool:
        """True where the optimizer has a dampening argument (PyTorch, Torch7)."""
        return self.dampening_name is not None

    @property
    def supports_nesterov(self) -> bool:
        return self.nesterov_form is not NesterovForm.NONE

    def coupled_weight_decay(self, value: float) -> float:
        """The coupled ``λ`` (``ĝ = g + λθ``) that this convention's weight decay means.

        Raises:
            ConventionError: for the decoupled rule, which has no coupled equivalent.
        """
        if self.weight_decay_rule is WeightDecayRule.DECOUPLED:
            raise ConventionError(
                f"{self.name}'s weight decay is decoupled and has no exact coupled value."
            )
        return self.weight_decay_factor * value

    def default_dampening(self, momentum: float, nesterov: bool) -> float:
        """The dampening a user gets by not setting it.

        Torch7 defaults ``dampening`` to the momentum; it refuses Nesterov unless
        dampening is 0, so a Torch7 Nesterov run necessarily had ``dampening = 0``.
        """
        if self.dampening_defaults_to_momentum and not nesterov:
            return momentum
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (enums as their values, defaults as a mapping)."""
        data = dataclasses.asdict(self)
        data["defaults"] = dict(self.defaults)
        data["supports_dampening"] = self.supports_dampening
        data["momentum_max"] = None if self.momentum_max == float("inf") else self.momentum_max
        for key, value in data.items():
            if isinstance(value, StrEnum):
                data[key] = value.value
        return data


_P, _S = Family.PYTORCH, Family.SUTSKEVER

CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            name="pytorch",
            family=_P,
            framework="PyTorch torch.optim.SGD",
            source_file="torch/optim/sgd.py",
            lr_name="lr",
            momentum_name="momentum",
            dampening_name="dampening",
            nesterov_name="nesterov",
            weight_decay_name="weight_decay",
            weight_decay_key="weight_decay",
            defaults=(
                ("lr", 1e-3),
                ("momentum", 0.0),
                ("dampening", 0.0),
                ("weight_decay", 0.0),
                ("nesterov", False),
            ),
            first_step=FirstStep.GRADIENT,
            nesterov_form=NesterovForm.LR_OUTSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
        ),
        Convention(
            name="sutskever",
            family=_S,
            framework="Sutskever et al. 2013 / Polyak heavy ball (lr inside)",
            source_file="Sutskever et al. 2013, eq. (1)-(4); docs/reference.md Form S",
            lr_name="lr",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="nesterov",
            weight_decay_name="weight_decay",
            weight_decay_key="weight_decay",
            defaults=(("lr", 0.01), ("momentum", 0.9), ("weight_decay", 0.0)),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
            state_name="velocity v",
        ),
        Convention(
            name="torch7",
            family=_P,
            framework="Torch7 optim.sgd",
            source_file="optim/sgd.lua",
            lr_name="learningRate",
            momentum_name="momentum",
            dampening_name="dampening",
            nesterov_name="nesterov",
            weight_decay_name="weightDecay",
            weight_decay_key="weightDecay",
            defaults=(
                ("learningRate", 1e-3),
                ("momentum", 0.0),
                ("dampening", "momentum"),
                ("weightDecay", 0.0),
                ("nesterov", False),
                ("learningRateDecay", 0.0),
            ),
            first_step=FirstStep.GRADIENT,
            nesterov_form=NesterovForm.LR_OUTSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
            dampening_defaults_to_momentum=True,
        ),
        Convention(
            name="tf1",
            family=_P,
            framework="TensorFlow 1 tf.train.MomentumOptimizer",
            source_file="tensorflow/python/training/momentum.py (kernel ApplyMomentum)",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="use_nesterov",
            weight_decay_name="λ in λ·tf.nn.l2_loss(w)",
            weight_decay_key="l2_loss_scale",
            defaults=(("use_nesterov", False),),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_OUTSIDE,
            weight_decay_rule=WeightDecayRule.L2_LOSS,
            weight_decay_factor=1.0,
        ),
        Convention(
            name="optax",
            family=_P,
            framework="optax.sgd (trace then scale_by_learning_rate)",
            source_file="optax/_src/alias.py",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="nesterov",
            weight_decay_name="add_decayed_weights(weight_decay) before sgd",
            weight_decay_key="weight_decay",
            defaults=(("momentum", None), ("nesterov", False)),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_OUTSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
        ),
        Convention(
            name="paddle",
            family=_P,
            framework="Paddle paddle.optimizer.Momentum",
            source_file="python/paddle/optimizer/momentum.py",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="use_nesterov",
            weight_decay_name="weight_decay",
            weight_decay_key="weight_decay",
            defaults=(
                ("learning_rate", 1e-3),
                ("momentum", 0.9),
                ("use_nesterov", False),
                ("weight_decay", None),
            ),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_OUTSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
        ),
        Convention(
            name="keras",
            family=_S,
            framework="Keras 2 / tf.keras legacy SGD",
            source_file="keras/optimizers/legacy/gradient_descent.py (kernel ApplyKerasMomentum)",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="nesterov",
            weight_decay_name="l in keras.regularizers.L2(l)",
            weight_decay_key="l2",
            defaults=(
                ("learning_rate", 0.01),
                ("momentum", 0.0),
                ("nesterov", False),
                ("decay", 0.0),
            ),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.L2_LOSS,
            weight_decay_factor=2.0,
            state_name="velocity v",
        ),
        Convention(
            name="keras3",
            family=_S,
            framework="Keras 3 keras.optimizers.SGD",
            source_file="keras/src/optimizers/sgd.py",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="nesterov",
            weight_decay_name="weight_decay",
            weight_decay_key="weight_decay",
            defaults=(
                ("learning_rate", 0.01),
                ("momentum", 0.0),
                ("nesterov", False),
                ("weight_decay", None),
            ),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.DECOUPLED,
            momentum_max=1.0,
            state_name="velocity v",
        ),
        Convention(
            name="caffe",
            family=_S,
            framework="Caffe SGDSolver / NesterovSolver",
            source_file="src/caffe/solvers/sgd_solver.cpp, nesterov_solver.cpp",
            lr_name="base_lr",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name='type: "Nesterov"',
            weight_decay_name="weight_decay",
            weight_decay_key="weight_decay",
            defaults=(("momentum", 0.0), ("weight_decay", 0.0), ("type", "SGD")),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
            state_name="history h = -v",
        ),
        Convention(
            name="mxnet",
            family=_S,
            framework="MXNet optimizer.SGD / NAG",
            source_file="python/mxnet/optimizer/sgd.py, nag.py",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="optimizer NAG",
            weight_decay_name="wd",
            weight_decay_key="wd",
            defaults=(
                ("learning_rate", 0.01),
                ("momentum", 0.0),
                ("wd", 0.0),
                ("rescale_grad", 1.0),
            ),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.COUPLED,
            state_name="history h = -v",
        ),
        Convention(
            name="chainer",
            family=_S,
            framework="Chainer MomentumSGD / NesterovAG",
            source_file="chainer/optimizers/momentum_sgd.py, nesterov_ag.py",
            lr_name="lr",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="optimizer NesterovAG",
            weight_decay_name="optimizer_hooks.WeightDecay(rate)",
            weight_decay_key="weight_decay_rate",
            defaults=(("lr", 0.01), ("momentum", 0.9)),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.NESTEROV_AG,
            weight_decay_rule=WeightDecayRule.COUPLED,
            state_name="velocity v",
        ),
        Convention(
            name="lasagne",
            family=_S,
            framework="Lasagne updates.momentum / nesterov_momentum",
            source_file="lasagne/updates.py",
            lr_name="learning_rate",
            momentum_name="momentum",
            dampening_name=None,
            nesterov_name="updates.nesterov_momentum",
            weight_decay_name="λ in λ·regularize_network_params(net, l2)",
            weight_decay_key="l2",
            defaults=(("momentum", 0.9),),
            first_step=FirstStep.ZERO,
            nesterov_form=NesterovForm.LR_INSIDE,
            weight_decay_rule=WeightDecayRule.L2_LOSS,
            weight_decay_factor=2.0,
            state_name="velocity v",
        ),
    )
}

#: The two family names; every other name is a framework alias.
FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)


def names() -> tuple[str, ...]:
    """Every accepted convention name, families first."""
    return tuple(CONVENTIONS)


def resolve(name: str | Convention) -> Convention:
    """Return the registered convention called ``name`` (case-insensitive).

    Raises:
        ConventionError: for an unknown name; the message lists the accepted ones.
    """
    if isinstance(name, Convention):
        return name
    key = str(name).strip().lower()
    try:
        return CONVENTIONS[key]
    except KeyError:
        raise ConventionError(
            f"unknown convention {name!r}; use one of {', '.join(CONVENTIONS)}."
        ) from None
