"""YellowFin: its tuned (lr, momentum) sequence is Form S's; torch SGD runs it only corrected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentum_convert.errors import ConventionError
from momentum_convert.optim import SutskeverSGD, YellowFin, correct_momentum
from momentum_convert.optim.yellowfin import YellowFinTuner, single_step
from tests.momentum_convert.optim.reference import (
    Problem,
    form_p,
    form_s,
    gradient,
    make_problem,
    max_relative_error,
    param_groups,
    params_of,
    run,
)


def tune(problem: Problem, optimizer: YellowFin, start: int, stop: int) -> YellowFin:
    """Run YellowFin on ``problem`` over steps [start, stop); record the (lr, momentum) it used
    in ``problem.lrs`` and ``problem.momenta`` (a step's groups show the values it used)."""
    for step in range(start, stop):
        for g, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                p.grad = torch.tensor(gradient(p.detach().numpy(), problem.curvature[g][i]))
        optimizer.step()
        problem.lrs[step, :] = optimizer.param_groups[0]["lr"]
        problem.momenta[step, :] = optimizer.param_groups[0]["momentum"]
    return optimizer


def yellowfin(problem: Problem) -> YellowFin:
    return YellowFin(param_groups(problem), lr=0.05, momentum=0.5, stat_protect_factor=None)


@pytest.fixture
def tuned() -> tuple[Problem, YellowFin]:
    """A float64 problem whose lrs and momenta are the sequence YellowFin chose on it."""
    problem = make_problem(7, steps=150, n_groups=2, weight_decay=0.0)
    return problem, tune(problem, yellowfin(problem), 0, problem.steps)


def test_yellowfin_sequence_is_followed_by_sutskever_sgd_and_corrected_torch_sgd_only(
    tuned: tuple[Problem, YellowFin],
) -> None:
    problem, yellowfin = tuned
    lrs = problem.lrs[:, 0]
    assert np.ptp(lrs) > 0.5 * lrs.max(), "the tuner should change the lr a lot (slow start)"
    heavy_ball = form_s(problem)  # independent float64 heavy ball fed the same sequence

    sutskever = run(SutskeverSGD(param_groups(problem)), problem)
    corrected_sgd = torch.optim.SGD(param_groups(problem), lr=0.1, momentum=0.5)
    correct_momentum(corrected_sgd, like="sutskever")
    corrected = run(corrected_sgd, problem)
    naive = run(torch.optim.SGD(param_groups(problem), lr=0.1, momentum=0.5), problem)

    assert max_relative_error(params_of(yellowfin), heavy_ball) < 1e-12
    assert max_relative_error(sutskever, heavy_ball) < 1e-12
    assert max_relative_error(corrected, heavy_ball) < 1e-10
    # The lr changes every step (by (t+1)/t in the slow start), so the naive port drifts: far
    # less than the sweeps' step cuts, but eight orders of magnitude beyond float64 agreement.
    assert max_relative_error(naive, heavy_ball) > 1e-4, "the naive port must not agree"
    assert max_relative_error(naive, form_p(problem)) < 1e-12, "the naive port is Form P"


def test_single_step_momentum_minimises_the_one_step_bound() -> None:
    """μ = x² with x = argmin x²D² + (1-x)⁴C/h², checked by numpy's polynomial roots."""
    for distance, variance, h_min in [(1.0, 1.0, 1.0), (0.3, 5.0, 2.0), (4.0, 0.01, 0.5)]:
        # d/dx: 2 D² x - 4 (C/h²) (1-x)³ = 0, i.e. 4k x³ - 12k x² + (12k + 2D²) x - 4k = 0.
        k = variance / h_min**2
        roots = np.roots([4 * k, -12 * k, 12 * k + 2 * distance**2, -4 * k])
        real = [r.real for r in roots if abs(r.imag) < 1e-9 and 0 <= r.real <= 1]
        assert len(real) == 1
        mu = single_step(distance, variance, h_min, h_max=h_min)  # ratio 1: no lower bound
        assert mu == pytest.approx(real[0] ** 2, rel=1e-3)  # the reference's ε terms


def test_single_step_momentum_is_at_least_the_curvature_range_bound() -> None:
    ratio = 100.0  # (sqrt(100) - 1) / (sqrt(100) + 1) = 9/11
    mu = single_step(distance=10.0, variance=1e-3, h_min=1.0, h_max=ratio)  # x² ≈ 0
    assert mu == pytest.approx((9 / 11) ** 2, rel=1e-5)


def test_variance_estimate_converges_to_the_gradient_noise_variance() -> None:
    """Gradients m + σε in d dimensions: C → d σ² (Algorithm 1's Variance)."""
    generator = torch.Generator().manual_seed(0)
    d, sigma = 50, 0.3
    mean = torch.randn(d, generator=generator, dtype=torch.float64)
    tuner = YellowFinTuner(lr=0.1, momentum=0.0, beta=0.99, curvature_window=20)
    state: dict = {}
    for _ in range(3000):
        noise = torch.randn(d, generator=generator, dtype=torch.float64)
        tuner.observe([mean + sigma * noise], [state])
    average = state["grad_average"]
    stats = tuner.statistics
    variance = stats.norm_squared_average - float(average @ average)  # debias ≈ 1 here
    assert variance == pytest.approx(d * sigma**2, rel=0.2)


def test_resumed_yellowfin_continues_exactly() -> None:
    problem = make_problem(3, steps=60, n_groups=1, weight_decay=0.0)
    straight = tune(problem, yellowfin(problem), 0, 60)

    first = tune(problem, yellowfin(problem), 0, 30)
    resumed = YellowFin(
        [{"params": first.param_groups[0]["params"]}], lr=0.05, stat_protect_factor=None
    )
    resumed.load_state_dict(first.state_dict())
    tune(problem, resumed, 30, 60)

    assert max_relative_error(params_of(resumed), params_of(straight)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 1.0}, r"beta in \(0, 1\), got beta=1.0"),
        ({"curvature_window": 0}, r"curvature_window >= 1, got curvature_window=0"),
        ({"stat_protect_factor": -1.0}, r"stat_protect_factor > 0 or None"),
    ],
)
def test_yellowfin_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ConventionError, match=message):
        YellowFin([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_yellowfin_refuses_a_checkpoint_without_its_statistics() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    plain = SutskeverSGD([param], lr=0.1, momentum=0.9)
    with pytest.raises(ConventionError, match="no YellowFin statistics"):
        YellowFin([param]).load_state_dict(plain.state_dict())
