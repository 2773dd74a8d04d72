"""Float64 trajectories of the two momentum families on a seeded noisy 1-D quadratic.

Each rule is written from its framework's source, not from :mod:`momentum_convert`:

- :func:`lr_inside` is MXNet's ``SGD.step`` / ``NAG.step`` (``python/mxnet/optimizer/sgd.py``,
  ``nag.py``: ``mom = μ·mom − lr·(g + wd·w)``, ``w += mom`` or ``w += μ·mom − lr·(g + wd·w)``),
  which is also Caffe2's ``MomentumSGDUpdate`` with ``h = −mom``.
- :func:`lr_outside` is ``torch.optim.SGD`` (``torch/optim/sgd.py`` ``_single_tensor_sgd``:
  ``d = g + wd·w``; ``b = d`` at the first step, then ``b = μ·b + d``; ``w −= lr·(d + μ·b)``
  with Nesterov, ``w −= lr·b`` without).

Both take per-step learning rates and momenta, and an optional factor applied to the state
just before each step (state rescaling). Plain Python floats keep a 10^5-step run near a
second.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


class Quadratic:
    """``f(w) = ½ c w² − b w`` with a fixed noise term per step."""

    def __init__(self, steps: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.curvature = 0.8
        self.target = rng.gauss(0.0, 1.0)
        self.noise = [0.1 * rng.gauss(0.0, 1.0) for _ in range(steps)]
        self.start = 1.0 + rng.random()

    def gradient(self, w: float, index: int) -> float:
        return self.curvature * w - self.target + self.noise[index]


def _each(value: float | Sequence[float], steps: int) -> Sequence[float]:
    return [float(value)] * steps if isinstance(value, int | float) else value


def lr_inside(
    problem: Quadratic,
    lr: Sequence[float],
    momentum: float | Sequence[float],
    weight_decay: float = 0.0,
    nesterov: bool = False,
    state_scale: Sequence[float] | None = None,
) -> list[float]:
    """MXNet SGD/NAG (Form S) with ``lr[i]``, ``momentum[i]`` at update ``i + 1``."""
    mu = _each(momentum, len(lr))
    w, mom, out = problem.start, 0.0, []
    for i, rate in enumerate(lr):
        if state_scale is not None:
            mom *= state_scale[i]
        g = problem.gradient(w, i) + weight_decay * w
        mom = mu[i] * mom - rate * g
        w = w + (mu[i] * mom - rate * g if nesterov else mom)
        out.append(w)
    return out


def lr_outside(
    problem: Quadratic,
    lr: Sequence[float],
    momentum: float | Sequence[float],
    weight_decay: float = 0.0,
    nesterov: bool = False,
    state_scale: Sequence[float] | None = None,
) -> list[float]:
    """``torch.optim.SGD`` (Form P, no dampening), lr[i] and momentum[i] at step i + 1."""
    mu = _each(momentum, len(lr))
    w, buf, out = problem.start, None, []
    for i, rate in enumerate(lr):
        d = problem.gradient(w, i) + weight_decay * w
        if buf is None:
            buf = d
        else:
            if state_scale is not None:
                buf *= state_scale[i]
            buf = mu[i] * buf + d
        w = w - rate * (d + mu[i] * buf if nesterov else buf)
        out.append(w)
    return out


def relative(reference: Sequence[float], other: Sequence[float]) -> float:
    """Largest difference over the run, relative to the largest iterate."""
    scale = max(abs(v) for v in reference)
    return max(abs(a - b) for a, b in zip(reference, other, strict=True)) / scale
