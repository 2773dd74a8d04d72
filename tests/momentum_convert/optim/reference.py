"""Float64 references for the optimizer tests, written from docs/reference.md "The two families".

Plain per-step numpy code, one line per formula, independent of ``momentum_convert.optim``:

    Form P (PyTorch):  b_t = μ b_{t-1} + (1-τ) ĝ_t  (b_1 = ĝ_1)   θ_t = θ_{t-1} - η_t b_t
                       Nesterov: θ_t = θ_{t-1} - η_t (ĝ_t + μ b_t)
    Form S (Sutskever, Caffe, Keras): v_0 = 0, v_t = μ v_{t-1} - η_t (1-τ) ĝ_t, θ_t = θ_{t-1} + v_t
                       Nesterov: θ_t = θ_{t-1} + μ v_t - η_t ĝ_t

with ĝ_t = ±g_t + λ θ_{t-1}. The test problem is a separable non-quadratic objective whose
gradient ``a θ + 0.1 sin θ`` depends on the iterate, so a wrong step changes every later one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHAPES: tuple[tuple[int, ...], ...] = ((3, 4), (5,), (2, 3, 2), (7,), (1,))


@dataclass
class Problem:
    """Parameters split into param groups, with a per-step lr and momentum for each group."""

    theta0: list[list[np.ndarray]]
    curvature: list[list[np.ndarray]]
    lrs: np.ndarray  # [step, group]
    momenta: np.ndarray  # [step, group]
    weight_decay: float
    dampening: float
    nesterov: bool
    maximize: bool = False
    idle_every: int = 0  # > 0: parameter i of group g gets no gradient when this divides t+3g+i
    late_start: bool = False  # the idle rule applies at step 0 too: some parameters start late

    def idle(self, step: int, group: int, index: int) -> bool:
        """Whether that parameter has no gradient at ``step`` (it then takes no step at all).

        Unless ``late_start``, every parameter steps at step 0: ``torch.optim.SGD(fused=True)``
        2.13 fails with a ``TypeError`` when a parameter takes its first step after the others.
        """
        if self.idle_every == 0 or (step == 0 and not self.late_start):
            return False
        return (step + 3 * group + index) % self.idle_every == 0

    @property
    def steps(self) -> int:
        return self.lrs.shape[0]

    @property
    def n_groups(self) -> int:
        return len(self.theta0)


def make_problem(
    seed: int,
    *,
    steps: int = 200,
    n_groups: int = 2,
    nesterov: bool = False,
    dampening: float = 0.0,
    weight_decay: float = 1e-3,
    maximize: bool = False,
    zero_lr_every: int = 0,
    zero_lr_start: int = 0,
    idle_every: int = 0,
    zero_momentum_every: int = 0,
) -> Problem:
    """A random problem: random lr changes at random steps, momentum changing per step."""
    rng = np.random.default_rng(seed)
    theta0: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    curvature: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    for i, shape in enumerate(SHAPES):
        theta0[i % n_groups].append(rng.normal(size=shape))
        curvature[i % n_groups].append(rng.uniform(0.2, 2.0, size=shape))
    lrs = np.empty((steps, n_groups))
    momenta = np.empty((steps, n_groups))
    for g in range(n_groups):
        lr, mu = rng.uniform(0.005, 0.1), rng.uniform(0.5, 0.95)
        for t in range(steps):
            if rng.random() < 0.3:  # a scheduler or the user changed it
                lr = float(np.exp(rng.uniform(np.log(0.003), np.log(0.15))))
            if rng.random() < 0.3:  # OneCycleLR-style momentum cycling
                mu = rng.uniform(0.5, 0.95)
            lrs[t, g], momenta[t, g] = lr, mu
    lrs[:zero_lr_start] = 0.0
    if zero_lr_every:
        lrs[zero_lr_every::zero_lr_every] = 0.0
    if zero_momentum_every:  # a momentum schedule that reaches exactly 0 mid-run
        momenta[zero_momentum_every::zero_momentum_every] = 0.0
    return Problem(
        theta0, curvature, lrs, momenta, weight_decay, dampening, nesterov, maximize, idle_every
    )


def gradient(theta: np.ndarray, curvature: np.ndarray, maximize: bool = False) -> np.ndarray:
    """The gradient of the test objective (its negative when maximizing, so both descend)."""
    g = curvature * theta + 0.1 * np.sin(theta)
    return -g if maximize else g


def form_s(problem: Problem) -> list[list[np.ndarray]]:
    """Final parameters of Form S, zero-initialised velocity."""
    theta = [[t.copy() for t in group] for group in problem.theta0]
    velocity = [[np.zeros_like(t) for t in group] for group in problem.theta0]
    lam, tau = problem.weight_decay, problem.dampening
    for step in range(problem.steps):
        for g, group in enumerate(theta):
            eta, mu = problem.lrs[step, g], problem.momenta[step, g]
            for i, th in enumerate(group):
                if problem.idle(step, g, i):
                    continue
                grad = gradient(th, problem.curvature[g][i], problem.maximize)
                ghat = (-grad if problem.maximize else grad) + lam * th
                v = mu * velocity[g][i] - eta * (1 - tau) * ghat
                velocity[g][i] = v
                group[i] = th + (mu * v - eta * ghat if problem.nesterov else v)
    return theta


def form_p(problem: Problem) -> list[list[np.ndarray]]:
    """Final parameters of Form P (PyTorch), first-step rule b_1 = ĝ_1."""
    theta = [[t.copy() for t in group] for group in problem.theta0]
    buffer: list[list[np.ndarray | None]] = [[None for _ in group] for group in problem.theta0]
    lam, tau = problem.weight_decay, problem.dampening
    for step in range(problem.steps):
        for g, group in enumerate(theta):
            eta, mu = problem.lrs[step, g], problem.momenta[step, g]
            for i, th in enumerate(group):
                if problem.idle(step, g, i):
                    continue
                grad = gradient(th, problem.curvature[g][i], problem.maximize)
                ghat = (-grad if problem.maximize else grad) + lam * th
                previous = buffer[g][i]
                b = ghat if previous is None else mu * previous + (1 - tau) * ghat
                buffer[g][i] = b
                group[i] = th - eta * (ghat + mu * b if problem.nesterov else b)
    return theta


def param_groups(problem: Problem, dtype: torch.dtype = torch.float64) -> list[dict]:
    """Fresh torch parameters for ``problem``, one param group per problem group."""
    return [
        {
            "params": [torch.nn.Parameter(torch.tensor(t, dtype=dtype)) for t in group],
            "lr": float(problem.lrs[0, g]),
            "momentum": float(problem.momenta[0, g]),
        }
        for g, group in enumerate(problem.theta0)
    ]


def run(
    optimizer: torch.optim.Optimizer,
    problem: Problem,
    start: int = 0,
    stop: int | None = None,
) -> list[list[np.ndarray]]:
    """Drive ``optimizer`` over steps [start, stop): set lr and momentum like a scheduler."""
    stop = problem.steps if stop is None else stop
    for step in range(start, stop):
        for g, group in enumerate(optimizer.param_groups):
            group["lr"] = float(problem.lrs[step, g])
            group["momentum"] = float(problem.momenta[step, g])
            for i, p in enumerate(group["params"]):
                if problem.idle(step, g, i):
                    p.grad = None
                    continue
                theta = p.detach().to(torch.float64).numpy()
                grad = gradient(theta, problem.curvature[g][i], problem.maximize)
                p.grad = torch.tensor(grad, dtype=p.dtype)
        optimizer.step()
    return params_of(optimizer)


def params_of(optimizer: torch.optim.Optimizer) -> list[list[np.ndarray]]:
    return [
        [p.detach().to(torch.float64).numpy().copy() for p in group["params"]]
        for group in optimizer.param_groups
    ]


def max_relative_error(actual: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> float:
    """max |actual - expected| / max |expected| over every parameter."""
    flat_a = np.concatenate([a.ravel() for group in actual for a in group])
    flat_e = np.concatenate([e.ravel() for group in expected for e in group])
    return float(np.max(np.abs(flat_a - flat_e)) / np.max(np.abs(flat_e)))
