"""Every row of PopulationSGD steps exactly as that member's own optimizer would.

The reference is the single-run path of :mod:`sweeps.training`: ``torch.optim.SGD`` or
``SutskeverSGD`` (with ``correct_momentum`` where planned) built by ``build_optimizer``,
with each step's lr and momentum written into ``param_groups``. Members differ in
everything at once: family, per-step lr (zero included for Form S) and momentum (zero
steps included), dampening, Nesterov and weight decay.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.optim import correct_momentum
from sweeps.pairing import PlannedRun
from sweeps.population.optimizer import PopulationSGD
from sweeps.search_space import Configuration
from sweeps.training import build_optimizer

STEPS = 6
SIZE = 5


@st.composite
def members(draw: st.DrawFn) -> PlannedRun:
    optimizer = draw(st.sampled_from(["pytorch", "sutskever"]))
    correct_like = draw(
        st.sampled_from([None, "pytorch" if optimizer == "sutskever" else "sutskever"])
    )
    # torch.optim.SGD following Form S cannot take lr = 0 with a velocity: keep its lrs positive.
    low = 0.0 if optimizer == "sutskever" else 0.01
    lr = draw(st.lists(st.sampled_from([low, 0.01, 0.1, 0.5]), min_size=STEPS, max_size=STEPS))
    if optimizer == "pytorch" and correct_like is None:
        lr = [max(v, 1e-3) for v in lr]
    uses_momentum = draw(st.booleans())
    momentum = (
        draw(st.lists(st.sampled_from([0.0, 0.5, 0.9]), min_size=STEPS, max_size=STEPS))
        if uses_momentum
        else [0.0] * STEPS
    )
    nesterov = uses_momentum and any(momentum) and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.3]))
    if correct_like == "sutskever" and 0.0 in momentum:
        # Form S steps by η(1-τ)ĝ at momentum 0, torch.optim.SGD by ηĝ: correct_momentum
        # refuses that step, so such a member cannot be planned.
        dampening = 0.0
    weight_decay = draw(st.sampled_from([0.0, 0.05]))
    configuration = Configuration(
        lr=max(lr), momentum=max(momentum), weight_decay=weight_decay, nesterov=nesterov,
        schedule="constant", batch_size=1, epochs=1,
    )  # fmt: skip
    return PlannedRun(
        role="source",
        optimizer=optimizer,
        seed=0,
        configuration=configuration,
        lr=np.array(lr),
        momentum=np.array(momentum),
        schedule="per-step values",
        hyperparameters={},
        optimizer_hyperparameters={},
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        correct_like=correct_like,
    )


def gradient(theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The gradient of a quadratic with curvature 1..SIZE plus a fixed noise draw."""
    return torch.arange(1, SIZE + 1, dtype=theta.dtype) * theta + noise


def trained_alone(run: PlannedRun, theta0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    theta = torch.nn.Parameter(theta0.clone())
    optimizer = build_optimizer(run, [theta])
    if run.correct_like is not None:
        correct_momentum(optimizer, like=run.correct_like)
    momenta = run.momentum.tolist()
    for t in range(STEPS):
        optimizer.param_groups[0]["lr"] = float(run.lr[t])
        optimizer.param_groups[0]["momentum"] = momenta[t]
        theta.grad = gradient(theta.detach(), noise[t])
        optimizer.step()
    return theta.detach()


@settings(max_examples=40, deadline=None)
@given(st.lists(members(), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_each_row_follows_its_members_own_optimizer(runs: list[PlannedRun], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    k = len(runs)
    theta0 = torch.randn(k, SIZE, generator=generator, dtype=torch.float64)
    noise = torch.randn(k, STEPS, SIZE, generator=generator, dtype=torch.float64)
    stacked = theta0.clone()
    optimizer = PopulationSGD(runs, [STEPS] * k, stacked)
    for t in range(STEPS):
        grads = torch.stack([gradient(stacked[i], noise[i, t]) for i in range(k)])
        optimizer.step(stacked, grads, t)
    for i, run in enumerate(runs):
        expected = trained_alone(run, theta0[i], noise[i])
        torch.testing.assert_close(stacked[i], expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.lists(members(), min_size=2, max_size=5), st.data())
def test_removing_members_leaves_the_others_exactly_as_they_were(
    runs: list[PlannedRun], data: st.DataObject
) -> None:
    k = len(runs)
    kept_rows = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    generator = torch.Generator().manual_seed(0)
    theta0 = torch.randn(k, SIZE, generator=generator, dtype=torch.float64)
    grads = torch.randn(STEPS, k, SIZE, generator=generator, dtype=torch.float64)
    full, reference = theta0.clone(), PopulationSGD(runs, [STEPS] * k, theta0)
    shrunk, optimizer = theta0.clone(), PopulationSGD(runs, [STEPS] * k, theta0)
    rows = torch.tensor(kept_rows)
    for t in range(STEPS):
        reference.step(full, grads[t], t)
        if t == STEPS // 2:
            optimizer.keep(rows)
            shrunk = shrunk[rows]
        optimizer.step(shrunk, grads[t] if t < STEPS // 2 else grads[t][rows], t)
    torch.testing.assert_close(shrunk, full[rows], rtol=0, atol=0)
