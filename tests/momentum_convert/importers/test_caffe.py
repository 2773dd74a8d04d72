"""The Caffe solver importer: text format, every lr_policy at Caffe's 0-based iter, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import caffe
from momentum_convert.importers.textproto import Message, Scalar, parse

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"


def caffe_rate(solver: dict[str, object], it: int, state: list[int]) -> float:
    """SGDSolver::GetLearningRate, written from Caffe's formulas (docs/reference.md), one iter."""
    base = float(solver["base_lr"])  # type: ignore[arg-type]
    policy = solver["lr_policy"]
    gamma = float(solver.get("gamma", 0.0))  # type: ignore[arg-type]
    power = float(solver.get("power", 0.0))  # type: ignore[arg-type]
    if policy == "fixed":
        return base
    if policy == "step":
        return base * gamma ** (it // int(solver["stepsize"]))  # type: ignore[call-overload]
    if policy == "exp":
        return base * gamma**it
    if policy == "inv":
        return base * (1 + gamma * it) ** (-power)
    if policy == "multistep":
        stepvalue = solver["stepvalue"]
        assert isinstance(stepvalue, list)
        # Caffe keeps current_step_ across calls and advances it at most once per iteration.
        if state[0] < len(stepvalue) and it >= stepvalue[state[0]]:
            state[0] += 1
        return base * gamma ** state[0]
    if policy == "poly":
        return base * (1 - it / int(solver["max_iter"])) ** power  # type: ignore[call-overload]
    if policy == "sigmoid":
        return base / (1 + math.exp(-gamma * (it - int(solver["stepsize"]))))  # type: ignore[call-overload]
    raise AssertionError(policy)


def prototxt(solver: dict[str, object]) -> str:
    lines = []
    for key, value in solver.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f'{key}: "{item}"' if isinstance(item, str) else f"{key}: {item}")
    return "\n".join(lines)


POLICIES = [
    {"lr_policy": "fixed"},
    {"lr_policy": "step", "gamma": 0.5, "stepsize": 7},
    {"lr_policy": "exp", "gamma": 0.97},
    {"lr_policy": "inv", "gamma": 0.01, "power": 0.75},
    {"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [5, 5, 5, 20]},
    {"lr_policy": "poly", "power": 2.0, "max_iter": 40},
    {"lr_policy": "sigmoid", "gamma": -0.3, "stepsize": 20},
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: str(p["lr_policy"]))
def test_every_lr_policy_is_evaluated_at_caffes_zero_based_iter(policy: dict[str, object]) -> None:
    solver = {"base_lr": 0.05, "momentum": 0.9, "max_iter": 40, **policy}
    imported = caffe.to_recipe(caffe.parse_solver(prototxt(solver)))
    state = [0]
    expected = [caffe_rate(solver, it, state) for it in range(40)]
    np.testing.assert_allclose(imported.recipe.lr_per_step(), expected, rtol=1e-13, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    gamma=st.floats(0.01, 0.99),
    stepsize=st.integers(1, 30),
    base_lr=st.floats(1e-4, 1.0),
)
def test_step_policy_matches_caffe_for_any_parameters(
    gamma: float, stepsize: int, base_lr: float
) -> None:
    solver = {"base_lr": base_lr, "lr_policy": "step", "gamma": gamma, "stepsize": stepsize}
    recipe = caffe.to_recipe(caffe.parse_solver(prototxt(solver)), steps=100).recipe
    expected = [caffe_rate(solver, it, [0]) for it in range(100)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-12)


def test_resnet_cifar_solver_reads_paper_schedule_and_reports_unknown_field() -> None:
    imported = caffe.load(DATA / "caffe_resnet_cifar_solver.prototxt")
    recipe = imported.recipe
    assert recipe.convention == "caffe"
    assert (recipe.lr, recipe.momentum, recipe.weight_decay) == (0.1, 0.9, 0.0001)
    assert recipe.steps == 64000
    assert not recipe.nesterov
    lr = recipe.lr_per_step()
    # He et al. 2016: 0.1, divided by 10 at 32k and 48k iterations (iter 32000 is step 32001).
    assert lr[31999] == 0.1
    assert lr[32000] == pytest.approx(0.01, rel=1e-15)
    assert lr[47999] == pytest.approx(0.01, rel=1e-15)
    assert lr[48000] == pytest.approx(0.001, rel=1e-15)
    assert any("my_cluster_tag" in note for note in imported.notes)


def test_nesterov_solver_with_iter_size_is_nesterov_and_warns_about_batch() -> None:
    imported = caffe.load(DATA / "caffe_googlenet_quick_nesterov.prototxt")
    assert imported.recipe.nesterov
    assert imported.recipe.steps == 2400
    assert imported.recipe.lr_per_step()[0] == 0.01
    assert imported.recipe.lr_per_step()[1200] == pytest.approx(0.01 * 0.5**0.5)
    assert any("iter_size 2" in note for note in imported.notes)


def test_steps_argument_overrides_max_iter() -> None:
    imported = caffe.load(DATA / "caffe_alexnet_solver.prototxt", steps=250_000)
    lr = imported.recipe.lr_per_step()
    assert imported.recipe.steps == 250_000
    assert (lr[99_999], lr[100_000], lr[200_000]) == pytest.approx((0.01, 0.001, 0.0001))


def test_legacy_solver_type_enum_selects_nesterov() -> None:
    text = 'base_lr: 0.1 lr_policy: "fixed" max_iter: 10 momentum: 0.9 solver_type: NESTEROV'
    assert caffe.to_recipe(caffe.parse_solver(text)).recipe.nesterov


def test_text_format_reads_comments_escapes_nested_messages_and_separators() -> None:
    message = parse(
        """# leading comment
        net: "a # not a comment" 'b\\'c' ; base_lr: 1e-2f,
        net_param { layer { name: "conv" convolution_param < num_output: 3 > } }
        stepvalue: [1, 2]
        stepvalue: 3
        """
    )
    assert message.all("net") == [Scalar("a # not a commentb'c", True, 2)]
    assert isinstance(message.all("net_param")[0], Message)
    assert [v.text for v in message.all("stepvalue") if isinstance(v, Scalar)] == ["1", "2", "3"]
    solver = caffe.parse_solver(
        'net_param { layer { name: "x" } }\nbase_lr: 0.1f\nlr_policy: "fixed"\nbase_lr: 0.2'
    )
    assert solver.base_lr == 0.2  # the last occurrence of a singular field wins


BROKEN = [
    ('lr_policy: "fixed"\nmomentum: 0.9', "base_lr is missing"),
    ('base_lr: 0.01\nlr_policy: "stepp"', "lr_policy 'stepp' is not a Caffe policy"),
    ('base_lr: 0.01\nlr_policy: "fixed"\nmomentum: 1.5', "momentum must be in \\[0, 1\\]"),
    ('base_lr: 0.01\nlr_policy: "fixed"\nmomentum: -0.1', "momentum must be in \\[0, 1\\]"),
    ('base_lr: fast\nlr_policy: "fixed"', "line 1: base_lr must be a number"),
    ('base_lr: "0.01"\nlr_policy: "fixed"', "base_lr must be a number"),
    ('base_lr: 0.01\nlr_policy: "step"\ngamma: 0.1', "needs stepsize"),
    ('base_lr: 0.01\nlr_policy: "step"\ngamma: 0.1\nstepsize: 1.5', "stepsize must be a whole"),
    ('base_lr: 0.01\nlr_policy: "fixed"\ntype: "Adam"', "solver type 'Adam' is not SGD"),
    ('base_lr: 0.01\nlr_policy: "fixed"\nnet_param { layer {', "never closed"),
    ('base_lr: 0.01\nlr_policy: "multistep"\ngamma: 0.1\nstepvalue: 9\nstepvalue: 3', "stepvalue"),
    ('base_lr: 0.01\nlr_policy: "fixed"\nweight_decay: 1e-4\nregularization_type: "L1"', "L1"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_broken_solver_is_refused_with_the_field_named(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        caffe.parse_solver(text)


def test_missing_max_iter_asks_for_steps() -> None:
    solver = caffe.parse_solver('base_lr: 0.01 lr_policy: "fixed"')
    with pytest.raises(RecipeError, match="give --steps"):
        caffe.to_recipe(solver)


def _caffe_clipped_run(
    batches: np.ndarray,
    start: np.ndarray,
    rates: list[float],
    mu: float,
    wd: float,
    clip: float,
    iter_size: int,
) -> np.ndarray:
    """Caffe's Solver::Step + SGDSolver::ApplyUpdate on a least-squares problem.

    ``batches[k, j]`` is the j-th of the ``iter_size`` sub-batches of update k (rows of
    (x, y)). ForwardBackward adds each sub-batch's mean-loss gradient to the diff; then
    ClipGradients scales the summed diff to norm ``clip``, Normalize divides by ``iter_size``,
    Regularize adds ``wd·w``, ComputeUpdateValue does ``h = μh + rate·diff``; ``w -= h``.
    """
    w, h = start.copy(), np.zeros_like(start)
    for k, rate in enumerate(rates):
        diff = np.zeros_like(w)
        for j in range(iter_size):
            x, y = batches[k, j, :, :-1], batches[k, j, :, -1]
            diff += x.T @ (x @ w - y) / len(y)
        norm = np.sqrt(np.sum(diff * diff))
        if norm > clip:
            diff *= clip / norm
        diff /= iter_size
        diff += wd * w
        h = mu * h + rate * diff
        w = w - h
    return w


def test_clip_gradients_with_iter_size_means_clip_grad_norm_of_clip_over_iter_size(
    tmp_path: Path,
) -> None:

    iter_size, clip, steps = 4, 0.5, 30
    path = tmp_path / "solver.prototxt"
    path.write_text(
        'base_lr: 0.05\nlr_policy: "step"\ngamma: 0.1\nstepsize: 15\nmomentum: 0.9\n'
        f"weight_decay: 0.001\niter_size: {iter_size}\nclip_gradients: {clip}\nmax_iter: {steps}\n"
    )
    imported = caffe.load(path)
    note = next(n for n in imported.notes if n.startswith("clip_gradients"))
    assert f"clip_grad_norm_(params, {clip / iter_size:g})" in note
    rng = np.random.default_rng(0)
    batches = rng.normal(size=(steps, iter_size, 8, 4))
    batches[..., -1] *= 5.0  # targets large enough that the clipping is active
    start = rng.normal(size=3)
    rates = list(imported.recipe.lr_per_step())
    expected = _caffe_clipped_run(batches, start, rates, 0.9, 0.001, clip, iter_size)
    conversion = convert(imported.recipe, "pytorch")

    def pytorch_run(max_norm: float) -> np.ndarray:
        """One batch iter_size times larger, mean loss, clip_grad_norm_, torch SGD."""
        w = torch.tensor(start, requires_grad=True)
        optimizer = torch.optim.SGD([w], lr=0.0, momentum=0.9, weight_decay=0.001)
        for k in range(steps):
            data = torch.tensor(batches[k].reshape(-1, 4))
            loss = 0.5 * torch.mean((data[:, :-1] @ w - data[:, -1]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([w], max_norm)
            optimizer.param_groups[0]["lr"] = float(conversion.lr[k])
            optimizer.param_groups[0]["momentum"] = float(conversion.momentum[k])
            optimizer.step()
        return w.detach().numpy()

    advised = pytorch_run(clip / iter_size)
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6) (torch/nn/utils/clip_grad.py), so
    # it differs from Caffe's clip_gradients / norm by about 1e-6 relative per clipped step.
    assert np.max(np.abs(advised - expected)) <= 1e-5 * np.max(np.abs(expected))
    plain = pytorch_run(clip)  # clip_grad_norm_(clip_gradients) lets through iter_size× more
    assert np.max(np.abs(plain - expected)) > 1e-3 * np.max(np.abs(expected))
