"""Exact conversion of a recipe from one momentum convention into another.

Every classical momentum rule in the registry is the linear recursion

.. math::

    b_t = \\mu_t b_{t-1} + k_t \\hat g_t, \\qquad \\theta_t = \\theta_{t-1} - \\eta_t b_t

with ``k_t = 1`` (no dampening), ``k_t = 1 - τ`` (dampened, zero-initialised) or
``k_1 = 1, k_t = 1 - τ`` (PyTorch's first-step rule). Writing the displacement
``d_t = η_t b_t`` gives the lr-inside form

.. math::

    d_t = a_t d_{t-1} + c_t \\hat g_t, \\qquad a_t = \\mu_t \\eta_t / \\eta_{t-1},
    \\quad c_t = \\eta_t k_t,

which *is* Form S with learning rate ``c_t`` and momentum ``a_t`` (``v = -d``). Form S is
Form P with ``η^P_t = c_t`` and ``μ^P_t = a_t c_{t-1} / c_t``. These two maps are
docs/reference.md's "Exact conversion under a changing learning rate" (P → S, S → P and the
dampening rule, with the momentum taken from the *original* η). They fail exactly where
a learning rate is 0: a lr-outside buffer that holds gradients while ``η_{t-1} = 0`` has
no lr-inside image, and a lr-inside velocity that keeps moving while ``η_t = 0`` has no
lr-outside image; :func:`convert` reports those steps as ``impossible``.

Nesterov cannot be mapped by a per-step momentum when η changes (the buffer recursion
needs ``μ η_t/η_{t-1}`` while the look-ahead needs ``μ``); rescaling the state before each
step is exact (Goyal et al. 2017, "momentum correction"). Chainer's ``NesterovAG`` matches
neither Nesterov form, and Keras 3's decoupled weight decay has no coupled equivalent when
``μ > 0``: those conversions are ``approximate``, with the error measured on the noisy
quadratic of :mod:`momentum_convert.simulation`.

References:
    Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", §2.
    Sutskever, Martens, Dahl & Hinton (2013), ICML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from momentum_convert.conventions import (
    Convention,
    Family,
    FirstStep,
    NesterovForm,
    WeightDecayRule,
    resolve,
)
from momentum_convert.errors import ConventionError, RecipeError
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray
from momentum_convert.simulation import UpdateRule, verify

#: Steps the ``approximate`` notes simulate to measure their error.
APPROXIMATION_TEST_STEPS = 2000


class Verdict(StrEnum):
    """How faithfully the target reproduces the source (strongest claim first)."""

    EXACT = "exact"
    EXACT_WITH_STATE_RESCALING = "exact-with-state-rescaling"
    APPROXIMATE = "approximate"
    IMPOSSIBLE = "impossible"


_ORDER = list(Verdict)


@dataclass(frozen=True)
class StateMapping:
    """How to carry a checkpoint's optimizer state from the source to the target.

    After step ``t`` the target's state is ``scale[t-1]`` times the source's state
    (NaN where no finite factor exists, i.e. at a zero learning rate).
    """

    source_state: str
    target_state: str
    formula: str
    scale: FloatArray = field(repr=False)

    def to_target(self, state: FloatArray, step: int) -> FloatArray:
        """The target's optimizer state equal to the source's ``state`` after ``step``."""
        factor = float(self.scale[step - 1])
        if not np.isfinite(factor):
            raise RecipeError(
                f"the state after step {step} has no image in the target (its lr is 0);"
                " carry the source buffer instead."
            )
        return factor * np.asarray(state, dtype=np.float64)


@dataclass(frozen=True)
class Conversion:
    """A recipe converted into another convention (see :func:`convert`).

    ``lr[i]`` and ``momentum[i]`` are what the TARGET optimizer uses at step ``i + 1``;
    ``state_scale[i]`` (when not ``None``) multiplies the target's state just before that
    step. ``target_rule`` is the complete target update (``None`` when impossible).
    """

    recipe: Recipe
    source: Convention
    target: Convention
    verdict: Verdict
    notes: tuple[str, ...]
    lr: FloatArray = field(repr=False)
    momentum: FloatArray = field(repr=False)
    hyperparameters: dict[str, Any]
    state: StateMapping
    target_rule: UpdateRule | None = field(repr=False)
    state_scale: FloatArray | None = field(default=None, repr=False)
    impossible_steps: tuple[int, ...] = ()

    @property
    def exact(self) -> bool:
        """True when setting ``lr`` and ``momentum`` per step alone reproduces the source."""
        return self.verdict is Verdict.EXACT

    def to_json(self) -> dict[str, Any]:
        """The stable JSON contract of ``momentum-convert convert --format json``.

        Keys: ``from``, ``to``, ``exact``, ``verdict``, ``notes``, ``hyperparameters``,
        ``per_step`` (``lr``, ``momentum`` and, only with state rescaling, ``state_scale``;
        ``null`` where no finite value exists), ``steps``, ``impossible_steps``, ``state``
        (``source``, ``target``, ``formula``). See docs/converter.md.
        """
        per_step: dict[str, list[float | None]] = {
            "lr": _json_floats(self.lr),
            "momentum": _json_floats(self.momentum),
        }
        if self.state_scale is not None:
            per_step["state_scale"] = _json_floats(self.state_scale)
        return {
            "from": self.source.name,
            "to": self.target.name,
            "exact": self.exact,
            "verdict": self.verdict.value,
            "notes": list(self.notes),
            "hyperparameters": dict(self.hyperparameters),
            "per_step": per_step,
            "steps": int(self.lr.size),
            "impossible_steps": list(self.impossible_steps),
            "state": {
                "source": self.state.source_state,
                "target": self.state.target_state,
                "formula": self.state.formula,
            },
        }


def _json_floats(array: FloatArray) -> list[float | None]:
    values: list[float | None] = array.tolist()
    if not np.all(np.isfinite(array)):
        values = [v if v is not None and np.isfinite(v) else None for v in values]
    return values


# --------------------------------------------------------------------------------------
# The algebra


def alive(decay: FloatArray, gain: FloatArray) -> np.ndarray:
    """Where the state of ``s_t = decay_t s_{t-1} + gain_t g_t`` (``s_0 = 0``) can be non-zero.

    The state after step ``t`` holds a gradient iff some step ``s ≤ t`` added one
    (``gain_s ≠ 0``) and no later step ``r ∈ (s, t]`` wiped it (``decay_r = 0``).
    """
    index = np.arange(decay.size)
    last_gain = np.maximum.accumulate(np.where(gain != 0, index, -1))
    last_wipe = np.maximum.accumulate(np.where(decay == 0, index, -1))
    return (last_gain >= 0) & (last_gain >= last_wipe)


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """``numerator / denominator`` with 0 where the denominator is 0."""
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def lazy_buffer(convention: Convention) -> bool:
    """PyTorch and Torch7 create the buffer lazily and skip it at momentum 0.

    Their code runs the buffer only ``if momentum != 0``: the buffer is created as a copy
    of ``ĝ`` (undampened) at the first step with ``μ ≠ 0``, and a step with ``μ = 0``
    applies ``ĝ`` and leaves the buffer as it was.
    """
    return convention.first_step is FirstStep.GRADIENT


def effective_momentum(convention: Convention, mu: FloatArray) -> FloatArray:
    """``μ`` with 0 at a lazy buffer's creation step (the new buffer carries nothing)."""
    if not lazy_buffer(convention):
        return mu
    eff = mu.copy()
    nonzero = np.flatnonzero(mu != 0)
    if nonzero.size:
        eff[nonzero[0]] = 0.0
    return eff


def buffer_gain(convention: Convention, dampening: float, mu: FloatArray) -> FloatArray:
    """``k_t``, the weight of ``ĝ_t`` in a lr-outside buffer.

    ``1 - τ``, except for a lazy buffer (PyTorch): 1 at the step that creates it and at
    steps with ``μ = 0`` (which apply ``ĝ`` directly).
    """
    gain = np.full(mu.size, 1.0 - dampening)
    if lazy_buffer(convention):
        gain[mu == 0] = 1.0
        nonzero = np.flatnonzero(mu != 0)
        if nonzero.size:
            gain[nonzero[0]] = 1.0
    return gain


def stale_buffer_steps(mu: FloatArray) -> np.ndarray:
    """Steps with ``μ = 0`` between steps with ``μ ≠ 0``: a lazy buffer sits out and resumes."""
    nonzero = mu != 0
    before = np.logical_or.accumulate(nonzero)
    after = np.logical_or.accumulate(nonzero[::-1])[::-1]
    return ~nonzero & np.concatenate([[False], before[:-1]]) & np.concatenate([after[1:], [False]])


def _zero_before_last_nonzero(mu: FloatArray) -> np.ndarray:
    nonzero = mu != 0
    after = np.logical_or.accumulate(nonzero[::-1])[::-1]
    return ~nonzero & np.concatenate([after[1:], [False]])


@dataclass
class _Target:
    """The target's per-step values while they are being worked out."""

    lr: FloatArray
    momentum: FloatArray
    dampening: float = 0.0
    state_scale: FloatArray | None = None
    impossible: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    verdict: Verdict = Verdict.EXACT
    copied: bool = False

    def downgrade(self, verdict: Verdict) -> None:
        if _ORDER.index(verdict) > _ORDER.index(self.verdict):
            self.verdict = verdict


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _lr_change_note(eta: FloatArray, momentum: FloatArray, target: str, rule: str) -> str:
    changed = eta[1:] != eta[:-1]
    example = ""
    finite = changed & (eta[:-1] != 0) & (eta[1:] != 0)
    if finite.any():
        t = _first(finite) + 2
        example = (
            f" (first at step {t}: lr {eta[t - 2]:g} -> {eta[t - 1]:g}, momentum"
            f" {momentum[t - 1]:g})"
        )
    return (
        f"The lr changes at {int(changed.sum())} step(s), so {target} uses momentum {rule} there"
        f"{example}; a naive port would carry the velocity across the change at the wrong scale."
    )


def _classical(
    src: Convention, dst: Convention, eta: FloatArray, mu: FloatArray, tau: float
) -> _Target:
    n = eta.size
    lr_changes = n > 1 and bool(np.any(eta[1:] != eta[:-1]))
    same_laziness = lazy_buffer(src) == lazy_buffer(dst) or not _zero_before_last_nonzero(mu).any()
    if src.family is Family.PYTORCH and dst.family is Family.PYTORCH:
        if same_laziness and (
            tau == 0 or (dst.supports_dampening and src.first_step is dst.first_step)
        ):
            out = _Target(eta.copy(), mu.copy(), dampening=tau, copied=True)
            out.notes.append(
                f"{src.name} and {dst.name} both keep the lr outside the buffer; the values carry"
                " over unchanged."
            )
            return out
        if tau < 1 and not (lazy_buffer(src) and stale_buffer_steps(mu).any()):
            k = buffer_gain(src, tau, mu)
            momentum = effective_momentum(src, mu).copy()
            momentum[0] = mu[0]
            momentum[1:] = momentum[1:] * k[:-1] / k[1:]
            out = _Target(eta * k, momentum)
            if tau != 0:
                out.notes.append(
                    f"{dst.name} has no dampening: its buffer is the source buffer divided by"
                    f" (1 - τ) = {1 - tau:g}, so it uses lr (1 - τ)·η_t"
                    + (
                        " after the step that creates the buffer (PyTorch does not dampen it)"
                        " and momentum μ/(1 - τ) on the step after."
                        if lazy_buffer(src)
                        else "."
                    )
                )
            return out

    # Source -> displacement form d_t = a_t d_{t-1} + c_t ĝ_t (= lr-inside with lr c, momentum a).
    impossible = np.zeros(n, dtype=bool)
    impossible_note = ""
    if src.family is Family.PYTORCH:
        k = buffer_gain(src, tau, mu)
        mu_eff = effective_momentum(src, mu)
        a = mu_eff.copy()
        a[0] = mu[0]  # the momentum of step 1 multiplies a zero state: show the source's
        a[1:] = mu_eff[1:] * _ratio(eta[1:], eta[:-1])
        c = eta * k
        hidden = (eta[:-1] == 0) & (eta[1:] != 0) & (mu_eff[1:] != 0) & alive(mu_eff, k)[:-1]
        impossible[1:] |= hidden
        if hidden.any():
            t = _first(hidden) + 2
            impossible_note = (
                f"The lr is 0 at step {t - 1} and {eta[t - 1]:g} at step {t}: {src.name}'s buffer"
                " still holds the gradients of the zero-lr steps, which no finite lr-inside"
                " momentum reproduces; only carrying the lr-outside buffer (state rescaling with"
                " the unscaled buffer) is exact."
            )
        if lazy_buffer(src) and stale_buffer_steps(mu).any():
            stale = stale_buffer_steps(mu)
            impossible |= stale
            t = _first(stale) + 1
            impossible_note = (
                f"The momentum is 0 at step {t} between non-zero momenta: {src.name} then leaves"
                " its buffer untouched and resumes it later, which no other rule reproduces."
            )
        if tau != 0 and src.first_step is FirstStep.GRADIENT:
            note_damp = (
                f"PyTorch does not dampen step 1 (b_1 = g_1), so step 1 keeps lr η_1 and later"
                f" steps use (1 - τ)·η_t = {1 - tau:g}·η_t, with the momentum μ·η_t/η_(t-1) taken"
                " from the original learning rates."
            )
        elif tau != 0:
            note_damp = f"Dampening τ = {tau:g} scales every learning rate by 1 - τ."
        else:
            note_damp = ""
    else:
        a, c = mu.copy(), eta.copy()
        note_damp = ""

    if dst.family is Family.SUTSKEVER:
        out = _Target(c, a)
        if src.family is Family.SUTSKEVER:
            out.notes.append(
                f"{src.name} and {dst.name} both keep the lr inside the velocity; the values carry"
                " over unchanged."
            )
        elif lr_changes:
            out.notes.append(_lr_change_note(eta, a, dst.name, "μ·η_t/η_(t-1)"))
        else:
            out.notes.append("The lr is constant, so both families give the same iterates.")
        big = a[1:] > 1
        if big.any():
            t = _first(big) + 2
            out.notes.append(
                f"The exact momentum exceeds 1 at {int(big.sum())} step(s) (first at step {t}:"
                f" {a[t - 1]:g}) because the lr grows faster than 1/μ; this is mathematically fine."
            )
        if (a > dst.momentum_max).any():
            over = a > dst.momentum_max
            kept = np.minimum(mu, dst.momentum_max)
            out.momentum = np.where(over, kept, a)
            out.state_scale = np.where(over, _ratio(a, out.momentum), 1.0)
            out.state_scale[0] = 1.0
            out.downgrade(Verdict.EXACT_WITH_STATE_RESCALING)
            out.notes.append(
                f"{dst.name} refuses momentum above {dst.momentum_max:g}, so at those steps it uses"
                " momentum min(μ, 1) and multiplies the velocity by state_scale (the rest of the"
                " exact factor) just before the step."
            )
    else:
        lr = c
        momentum = a.copy()
        momentum[1:] = a[1:] * _ratio(c[:-1], c[1:])
        frozen = (c[1:] == 0) & (a[1:] != 0) & alive(a, c)[:-1]
        impossible[1:] |= frozen
        out = _Target(lr, momentum)
        if frozen.any():
            t = _first(frozen) + 2
            out.notes.append(
                f"The lr is 0 at step {t}, where {src.name}'s velocity still moves the weights"
                f" (θ += μ·v) while {dst.name} freezes them: the momentum μ·η_(t-1)/η_t it would"
                " need is infinite."
            )
        if lr_changes:
            out.notes.append(_lr_change_note(eta, momentum, dst.name, "μ·η_(t-1)/η_t"))
        else:
            out.notes.append("The lr is constant, so both families give the same iterates.")
    if impossible_note:
        out.notes.insert(0, impossible_note)
    if note_damp:
        out.notes.append(note_damp)
    out.impossible = impossible
    return out


def _fit_lazy_buffer(dst: Convention, out: _Target) -> None:
    """Make a lazy-buffer target (PyTorch, Torch7) run the zero momenta the algebra asks for.

    Such a target skips its buffer at momentum 0, so a step whose exact momentum is 0
    (``b_t = ĝ_t``) before a later non-zero one uses momentum 1 with the buffer reset to 0
    first: ``b_t = 1·0 + ĝ_t``. At step 1 no reset is needed (the buffer is created as ``ĝ_1``).
    """
    if not lazy_buffer(dst) or out.copied:
        return
    replace = _zero_before_last_nonzero(out.momentum)
    if not replace.any():
        return
    out.momentum = np.where(replace, 1.0, out.momentum)
    reset = replace.copy()
    reset[0] = False
    if reset.any():
        scale = np.ones(out.lr.size) if out.state_scale is None else out.state_scale.copy()
        scale[reset] = 0.0
        out.state_scale = scale
        out.downgrade(Verdict.EXACT_WITH_STATE_RESCALING)
        out.notes.append(
            f"{dst.name} leaves its buffer untouched at momentum 0, so the {int(reset.sum())}"
            f" step(s) whose exact momentum is 0 (first: step {_first(reset) + 1}) use momentum 1"
            " with the buffer reset to 0 just before (state_scale 0)."
        )


def _nesterov(src: Convention, dst: Convention, eta: FloatArray, mu: FloatArray) -> _Target:
    out = _Target(eta.copy(), mu.copy())
    n = eta.size
    sf, df = src.nesterov_form, dst.nesterov_form
    if (sf is NesterovForm.NESTEROV_AG) != (df is NesterovForm.NESTEROV_AG):
        out.downgrade(Verdict.APPROXIMATE)
        out.notes.append(
            "Chainer's NesterovAG updates θ += μ²·v - (1+μ)·η·g with the new velocity, which"
            " matches neither Nesterov form for any per-step lr and momentum; the same lr and"
            " momentum are the closest (same total step size 1/(1-μ))."
        )
        return out
    if lazy_buffer(src) != lazy_buffer(dst) and _zero_before_last_nonzero(mu).any():
        out.impossible = _zero_before_last_nonzero(mu)
        lazy = src if lazy_buffer(src) else dst
        out.notes.append(
            f"The momentum is 0 at step {_first(out.impossible) + 1} before non-zero momenta:"
            f" {lazy.name} skips its buffer there and the Nesterov look-ahead uses the momentum"
            " itself, so no per-step values or state rescaling reproduce it."
        )
        return out
    if sf is df or src.family is dst.family:
        out.notes.append(f"{src.name} and {dst.name} use the same Nesterov form ({sf.value}).")
        return out
    changes = eta[1:] != eta[:-1]
    if not changes.any():
        out.notes.append(
            "The lr is constant, so the lr-outside and lr-inside Nesterov forms give the same"
            " iterates with the same numbers."
        )
        return out
    out.downgrade(Verdict.EXACT_WITH_STATE_RESCALING)
    impossible = np.zeros(n, dtype=bool)
    scale = np.ones(n)
    if src.family is Family.PYTORCH:
        scale[1:] = _ratio(eta[1:], eta[:-1])
        hidden = (eta[:-1] == 0) & (eta[1:] != 0) & (mu[1:] != 0) & alive(mu, np.ones(n))[:-1]
        impossible[1:] = hidden
        out.notes.append(
            "Nesterov under a changing lr has no per-step momentum map (the buffer needs"
            " μ·η_t/η_(t-1), the look-ahead needs μ); keeping μ and multiplying the velocity by"
            " η_t/η_(t-1) before each step (state_scale) is exact."
        )
        if hidden.any():
            t = _first(hidden) + 2
            out.notes.insert(
                0,
                f"The lr is 0 at step {t - 1} and non-zero at step {t}: the lr-outside buffer"
                " still holds gradients the lr-inside velocity (0) cannot carry; only carrying"
                " the unscaled buffer is exact.",
            )
    else:
        scale[1:] = _ratio(eta[:-1], eta[1:])
        frozen = (eta[1:] == 0) & (mu[1:] != 0) & alive(mu, eta)[:-1]
        impossible[1:] = frozen
        out.notes.append(
            "Nesterov under a changing lr has no per-step momentum map (the buffer needs"
            " μ·η_(t-1)/η_t, the look-ahead needs μ); keeping μ and multiplying the buffer by"
            " η_(t-1)/η_t before each step (state_scale) is exact."
        )
        if frozen.any():
            t = _first(frozen) + 2
            out.notes.insert(
                0,
                f"The lr is 0 at step {t}, where the lr-inside velocity still moves the weights"
                " while the lr-outside rule freezes them.",
            )
    out.state_scale = scale
    out.impossible = impossible
    return out


# --------------------------------------------------------------------------------------
# Validation, weight decay, hyperparameters


def _check_source(recipe: Recipe, src: Convention, eta: FloatArray, mu: FloatArray) -> None:
    if recipe.dampening != 0 and not src.supports_dampening:
        raise ConventionError(
            f"{src.name} has no dampening, got dampening={recipe.dampening!r}; only pytorch and"
            " torch7 accept it."
        )
    if recipe.nesterov and not src.supports_nesterov:
        raise ConventionError(f"{src.name} has no Nesterov momentum; drop --nesterov.")
    if recipe.nesterov and lazy_buffer(src) and recipe.momentum <= 0:
        raise ConventionError(
            f"{src.name} refuses Nesterov momentum with momentum {recipe.momentum!r}; give a"
            " momentum > 0."
        )
    bad = np.flatnonzero(~np.isfinite(eta) | (eta < 0))
    if bad.size:
        raise RecipeError(
            f"the lr schedule gives {eta[bad[0]]!r} at step {bad[0] + 1}; every lr must be a"
            " finite number >= 0."
        )
    bad = np.flatnonzero(~np.isfinite(mu) | (mu < 0))
    if bad.size:
        raise RecipeError(
            f"the momentum schedule gives {mu[bad[0]]!r} at step {bad[0] + 1}; every momentum"
            " must be a finite number >= 0."
        )
    if np.any(mu > src.momentum_max):
        raise ConventionError(
            f"{src.name} refuses momentum above {src.momentum_max:g}, got {float(mu.max())!r};"
            f" use a momentum in [0, {src.momentum_max:g}]."
        )


def _weight_decay(
    recipe: Recipe, src: Convention, dst: Convention, mu: FloatArray, out: _Target
) -> tuple[float, float, dict[str, Any]]:
    """The target's (coupled λ, decoupled w, hyperparameter entries)."""
    value = recipe.weight_decay / recipe.gradient_scale
    key = dst.weight_decay_key
    if src.weight_decay_rule is WeightDecayRule.DECOUPLED and value != 0:
        if dst.weight_decay_rule is WeightDecayRule.DECOUPLED:
            return 0.0, value, {key: value}
        if not np.any(mu != 0):
            coupled = value
            out.notes.append(
                f"{src.name}'s decoupled weight decay θ ← θ(1 - η_t·w) equals coupled weight"
                f" decay w = {value:g} because the momentum is 0."
            )
        else:
            mean_mu = float(np.mean(mu))
            coupled = value * (1.0 - mean_mu)
            out.downgrade(Verdict.APPROXIMATE)
            out.notes.append(
                f"{src.name}'s weight decay is decoupled (θ ← θ(1 - η_t·w), outside the velocity);"
                " with momentum > 0 no coupled value is exact, so this uses the steady-state"
                f" λ = w·(1 - μ) = {coupled:g} (μ = {mean_mu:g}, the mean momentum)."
            )
        return coupled, 0.0, _coupled_entries(dst, coupled, out, src)
    coupled = src.coupled_weight_decay(value) if value else 0.0
    if value and src.weight_decay_rule is WeightDecayRule.L2_LOSS:
        out.notes.append(
            f"{src.name}'s {src.weight_decay_name} = {value:g} adds {src.weight_decay_factor:g}·"
            f"{value:g}·θ to the gradient: coupled weight decay λ = {coupled:g}."
        )
    return coupled, 0.0, _coupled_entries(dst, coupled, out, src)


def _coupled_entries(
    dst: Convention, coupled: float, out: _Target, src: Convention
) -> dict[str, Any]:
    if dst.weight_decay_rule is WeightDecayRule.DECOUPLED:
        if coupled == 0:
            return {dst.weight_decay_key: None}
        out.notes.append(
            f"{dst.name}'s weight_decay is decoupled; the exact equivalent of coupled weight decay"
            f" λ = {coupled:g} is weight_decay=None and keras.regularizers.L2({coupled / 2:g})"
            " on every weight (its gradient is λ·θ)."
        )
        return {dst.weight_decay_key: None, "l2_regularizer": coupled / 2}
    target_value = coupled / dst.weight_decay_factor
    if coupled and dst.weight_decay_rule is WeightDecayRule.L2_LOSS:
        out.notes.append(
            f"{dst.name} has no weight decay in the optimizer: use {dst.weight_decay_name} with"
            f" {target_value:g}, whose gradient is {dst.weight_decay_factor:g}·{target_value:g}·θ"
            f" = {coupled:g}·θ."
        )
    return {dst.weight_decay_key: target_value}


def _typical(values: FloatArray, base: float) -> float:
    """The momentum to write in a config file: the recipe's own where the target uses it."""
    if np.any(values == base):
        return float(base)
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else float("nan")


def _hyperparameters(
    dst: Convention, out: _Target, recipe: Recipe, weight_decay: dict[str, Any]
) -> dict[str, Any]:
    nesterov = recipe.nesterov
    hp: dict[str, Any] = {}
    if dst.name == "caffe":
        hp["type"] = "Nesterov" if nesterov else "SGD"
    elif dst.name in ("mxnet", "chainer", "lasagne"):
        hp["optimizer"] = {
            "mxnet": ("NAG", "SGD"),
            "chainer": ("NesterovAG", "MomentumSGD"),
            "lasagne": ("nesterov_momentum", "momentum"),
        }[dst.name][0 if nesterov else 1]
    hp[dst.lr_name] = float(out.lr[0])
    hp[dst.momentum_name] = _typical(out.momentum, recipe.momentum)
    if dst.supports_dampening:
        hp[dst.dampening_name or "dampening"] = out.dampening
    if dst.nesterov_name in ("nesterov", "use_nesterov"):
        hp[dst.nesterov_name] = nesterov
    hp.update(weight_decay)
    return hp


def _state_mapping(
    src: Convention, dst: Convention, eta: FloatArray, gradient_scale: float, out: _Target
) -> StateMapping:
    """``target state = scale · source state`` through the displacement ``d_t = η_t b_t = -v_t``."""
    to_d: FloatArray | float
    if src.family is Family.PYTORCH:
        to_d, d_expr = eta, "η_t·b_t"
    elif src.state_name.startswith("history"):
        to_d, d_expr = 1.0, "h_t"
    else:
        to_d, d_expr = -1.0, "-v_t"
    n = eta.size
    if dst.family is Family.PYTORCH:
        from_d = np.full(n, np.nan)
        np.divide(1.0, out.lr, out=from_d, where=out.lr != 0)
        formula = f"b'_t = {d_expr} / η'_t (η'_t: the target lr used at step t)"
    elif dst.state_name.startswith("history"):
        from_d, formula = np.ones(n), f"h'_t = {d_expr}"
    else:
        from_d = -np.ones(n)
        formula = "v'_t = " + (d_expr[1:] if d_expr.startswith("-") else f"-{d_expr}")
    scale = from_d * to_d
    if src.family is Family.PYTORCH and dst.family is Family.PYTORCH and out.copied:
        scale = np.full(n, 1.0 / gradient_scale)
        formula = "b'_t = b_t" if gradient_scale == 1 else f"b'_t = b_t / {gradient_scale:g}"
    return StateMapping(src.state_name, dst.state_name, formula, np.asarray(scale, dtype=float))


def _framework_notes(
    recipe: Recipe, src: Convention, dst: Convention, eta: FloatArray, mu: FloatArray
) -> list[str]:
    notes: list[str] = []
    lr_changes = eta.size > 1 and bool(np.any(eta[1:] != eta[:-1]))
    schedule_changes = lr_changes or (mu.size > 1 and bool(np.any(mu[1:] != mu[:-1])))
    if src.dampening_defaults_to_momentum:
        notes.append(
            f"Torch7 defaults dampening to the momentum; this recipe uses dampening"
            f" {recipe.dampening:g}."
        )
    if dst.dampening_defaults_to_momentum:
        notes.append("Set dampening explicitly in Torch7: it defaults to the momentum.")
    if schedule_changes:
        notes.append(
            "per_step index i is the value used at step i+1: PyTorch's scheduler.last_epoch == i"
            " when the scheduler is stepped after optimizer.step(), and the 0-based iteration i"
            " of Caffe, Keras 3 and optax."
        )
    if lr_changes and src.family is Family.PYTORCH and dst.family is Family.PYTORCH:
        notes.append(
            "A lr-outside buffer needs no correction when the lr changes: multiplying it by"
            " new_lr/old_lr (as a popular Detectron port did) over-corrects."
        )
    if lr_changes or "caffe" in (src.name, dst.name) or "mxnet" in (src.name, dst.name):
        notes.append(
            "With several parameter groups or per-parameter multipliers (Caffe lr_mult/decay_mult,"
            " MXNet lr_mult/wd_mult, PyTorch param groups) convert each group with its own"
            " learning rates; a constant multiplier leaves the momentum map unchanged."
        )
    if {"caffe", "mxnet"} & {src.name, dst.name} and recipe.gradient_scale == 1:
        notes.append(
            "Gradient scale: Caffe divides the gradient by iter_size and MXNet Gluon's Trainer by"
            " the batch size (rescale_grad) inside the optimizer; these values assume both sides"
            " see the same gradient, otherwise give that factor as the gradient scale"
            " (--gradient-scale)."
        )
    return notes


# --------------------------------------------------------------------------------------
# Public entry point


def convert(recipe: Recipe, to: str | Convention) -> Conversion:
    """Convert ``recipe`` into the convention ``to``.

    Returns a :class:`Conversion` whose ``lr`` and ``momentum`` arrays are what the target
    optimizer must use at each step, with a verdict and plain-sentence notes. Never raises
    for a conversion that cannot be exact: it says ``impossible`` and why.

    Raises:
        ConventionError: an unknown convention, or settings the source refuses.
        RecipeError: a schedule producing a negative or non-finite value.
    """
    src, dst = resolve(recipe.convention), resolve(to)
    eta = recipe.lr_per_step()
    mu = recipe.momentum_per_step()
    _check_source(recipe, src, eta, mu)
    # A source that scales the gradient by s runs lr η on s·g + λθ = s·(g + (λ/s)·θ): the
    # target takes lr s·η and weight decay λ/s (decoupled: w/s, since θ(1 - η w) = θ(1 - sη·w/s)).
    scale = recipe.gradient_scale
    scaled_eta = eta * scale if scale != 1 else eta
    if recipe.nesterov:
        out = _nesterov(src, dst, scaled_eta, mu)
    else:
        out = _classical(src, dst, scaled_eta, mu, recipe.dampening)
        _fit_lazy_buffer(dst, out)
    coupled, decoupled, wd_entries = _weight_decay(recipe, src, dst, mu, out)
    if scale != 1:
        out.notes.append(
            f"{src.name} multiplies the gradient by {scale:g} inside the optimizer"
            " (gradient_scale); the target computes the plain gradient, so its learning rates"
            f" are the source's times {scale:g} and its weight decay the source's divided by it."
        )
    out.notes.extend(_framework_notes(recipe, src, dst, eta, mu))
    if recipe.nesterov and np.any(out.momentum > dst.momentum_max):
        if out.impossible is None:
            out.impossible = np.zeros(eta.size, dtype=bool)
        over = out.momentum > dst.momentum_max
        out.impossible |= over
        out.notes.insert(
            0,
            f"{dst.name} refuses momentum above {dst.momentum_max:g} and its Nesterov look-ahead"
            f" needs the momentum itself ({float(out.momentum.max()):g}).",
        )
    impossible_steps: tuple[int, ...] = ()
    if out.impossible is not None and out.impossible.any():
        out.downgrade(Verdict.IMPOSSIBLE)
        impossible_steps = tuple(int(t) + 1 for t in np.flatnonzero(out.impossible))
        out.momentum = np.where(out.impossible, np.nan, out.momentum)
    rule = None
    if out.verdict is not Verdict.IMPOSSIBLE:
        rule = UpdateRule(
            convention=dst,
            lr=out.lr,
            momentum=out.momentum,
            dampening=out.dampening,
            nesterov=recipe.nesterov,
            coupled_weight_decay=coupled,
            decoupled_weight_decay=decoupled,
            state_scale=out.state_scale,
        )
    conversion = Conversion(
        recipe=recipe,
        source=src,
        target=dst,
        verdict=out.verdict,
        notes=tuple(out.notes),
        lr=out.lr,
        momentum=out.momentum,
        hyperparameters=_hyperparameters(dst, out, recipe, wd_entries),
        state=_state_mapping(src, dst, eta, recipe.gradient_scale, out),
        target_rule=rule,
        state_scale=out.state_scale,
        impossible_steps=impossible_steps,
    )
    if conversion.verdict is Verdict.APPROXIMATE:
        error = verify(conversion, steps=APPROXIMATION_TEST_STEPS)
        n = min(APPROXIMATION_TEST_STEPS, eta.size)
        conversion = dataclasses.replace(
            conversion,
            notes=(
                *conversion.notes,
                f"On the noisy-quadratic test problem ({n} steps, seed 0) the largest relative"
                f" trajectory difference is {error:.2e}.",
            ),
        )
    return conversion
