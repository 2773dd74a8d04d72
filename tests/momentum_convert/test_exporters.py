"""Exporters: the converted recipe, written for the target framework, runs as the source did.

The simulation tests run the *exported PyTorch code* with ``torch.optim.SGD`` in float64
against the source framework's own update, written here from docs/reference.md (Form S, with
Caffe's and Keras' 0-based iteration indexing), on a seeded noisy quadratic.
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.errors import ConventionError
from momentum_convert.exporters import export_keras3, export_optax, export_pytorch
from momentum_convert.importers import caffe, keras, load
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep

DATA = Path(__file__).resolve().parents[1] / "data" / "recipes"
DIM = 5


class Quadratic:
    """f(w) = ½ wᵀAw − bᵀw with a fixed noise vector per step (float64)."""

    def __init__(self, steps: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.curvature = np.linspace(0.1, 2.0, DIM)
        self.target = rng.normal(size=DIM)
        self.noise = 0.1 * rng.normal(size=(steps, DIM))
        self.start = rng.normal(size=DIM)

    def gradient(self, w: np.ndarray, index: int) -> np.ndarray:
        return self.curvature * w - self.target + self.noise[index]


def relative(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.max(np.abs(reference - other)) / np.max(np.abs(reference)))


def run_exported_pytorch(code: str, problem: Quadratic, steps: int) -> np.ndarray:
    """Execute the exported module and train with it; return the iterates."""
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(code, "exported.py", "exec"), namespace)
    param = torch.nn.Parameter(torch.tensor(problem.start, dtype=torch.float64))
    optimizer, scheduler = namespace["make_optimizer"]([param])
    trajectory = []
    for index in range(steps):
        grad = problem.gradient(param.detach().numpy().copy(), index)
        param.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
        scheduler.step()
        trajectory.append(param.detach().numpy().copy())
    return np.asarray(trajectory)


def form_s(
    problem: Quadratic, rates: list[float], mu: float, wd: float, nesterov: bool
) -> np.ndarray:
    """Form S as Caffe and Keras run it (history h = −v), rate ``rates[i]`` at iteration i."""
    w, h, trajectory = problem.start.copy(), np.zeros(DIM), []
    for index, rate in enumerate(rates):
        g = problem.gradient(w, index) + wd * w
        new_h = mu * h + rate * g
        # Caffe nesterov_solver.cpp: w -= (1 + μ) h_t − μ h_(t−1); Keras: w += μ v_t − η g.
        w = w - ((1 + mu) * new_h - mu * h) if nesterov else w - new_h
        h = new_h
        trajectory.append(w.copy())
    return np.asarray(trajectory)


def caffe_rates(policy: dict[str, float], base: float, steps: int) -> list[float]:
    """SGDSolver::GetLearningRate at iter = 0 .. steps−1 (docs/reference.md)."""
    rates, current = [], 0
    for it in range(steps):
        name = policy["lr_policy"]
        if name == "step":
            rates.append(base * policy["gamma"] ** (it // policy["stepsize"]))
        elif name == "inv":
            rates.append(base * (1 + policy["gamma"] * it) ** -policy["power"])
        elif name == "multistep":
            values = policy["stepvalue"]
            if current < len(values) and it >= values[current]:  # type: ignore[index]
                current += 1
            rates.append(base * policy["gamma"] ** current)
        elif name == "poly":
            rates.append(base * (1 - it / policy["max_iter"]) ** policy["power"])
    return rates


CAFFE = [
    ({"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [20, 35]}, 0.9, 0.001, "SGD"),
    ({"lr_policy": "step", "gamma": 0.5, "stepsize": 15}, 0.95, 0.0, "SGD"),
    ({"lr_policy": "inv", "gamma": 0.05, "power": 0.75}, 0.9, 0.0005, "SGD"),
    ({"lr_policy": "step", "gamma": 0.3, "stepsize": 10}, 0.9, 0.0005, "Nesterov"),
    ({"lr_policy": "poly", "power": 2.0, "max_iter": 60}, 0.8, 0.0, "Nesterov"),
]


@pytest.mark.parametrize(("policy", "mu", "wd", "solver"), CAFFE)
def test_caffe_solver_exported_to_pytorch_reproduces_caffe_trajectory(
    tmp_path: Path, policy: dict[str, Any], mu: float, wd: float, solver: str
) -> None:
    steps = 60
    lines = ["base_lr: 0.3", f"momentum: {mu}", f"weight_decay: {wd}", f'type: "{solver}"']
    lines += ["max_iter: 60", "# a comment", 'snapshot_prefix: "x"']
    for key, value in policy.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f'{key}: "{item}"' if isinstance(item, str) else f"{key}: {item}")
    path = tmp_path / "solver.prototxt"
    path.write_text("\n".join(lines))
    conversion = convert(load("caffe", path).recipe, "pytorch")
    problem = Quadratic(steps)
    expected = form_s(problem, caffe_rates(policy, 0.3, steps), mu, wd, solver == "Nesterov")
    got = run_exported_pytorch(export_pytorch(conversion), problem, steps)
    assert relative(expected, got) < 1e-10


def keras_rate(name: str, c: dict[str, Any], s: int) -> float:
    """Keras' schedules at iterations s (learning_rate_schedule.py), legacy decay apart."""
    if name == "ExponentialDecay":
        p = s / c["decay_steps"]
        return c["initial_learning_rate"] * c["decay_rate"] ** (
            math.floor(p) if c["staircase"] else p
        )
    if name == "InverseTimeDecay":
        return c["initial_learning_rate"] / (1 + c["decay_rate"] * s / c["decay_steps"])
    if name == "CosineDecay":
        w, d, target = c["warmup_steps"], c["decay_steps"], c["warmup_target"]
        s = min(s, d + w)
        if s < w:
            return (target - c["initial_learning_rate"]) * s / w + c["initial_learning_rate"]
        cosine = 0.5 * (1 + math.cos(math.pi * (s - w) / d))
        return target * ((1 - c["alpha"]) * cosine + c["alpha"])
    if name == "PolynomialDecay":
        d = c["decay_steps"] * (1.0 if s == 0 else math.ceil(s / c["decay_steps"]))
        end = c["end_learning_rate"]
        return (c["initial_learning_rate"] - end) * (1 - s / d) ** c["power"] + end
    raise AssertionError(name)


KERAS = [
    "keras2_sgd_exponential.yaml",
    "keras2_sgd_inverse_time.json",
    "keras2_sgd_legacy_decay.json",
    "keras3_sgd_cosine_warmup.json",
    "keras3_sgd_polynomial_cycle.json",
]


@pytest.mark.parametrize("name", KERAS)
def test_keras_config_exported_to_pytorch_reproduces_keras_trajectory(name: str) -> None:
    import yaml

    steps = 250
    obj = yaml.safe_load((DATA / name).read_text())
    config = obj["config"]
    schedule = config["learning_rate"]
    decay = config.get("decay", 0.0) or 0.0
    if isinstance(schedule, dict):
        rates = [keras_rate(schedule["class_name"], schedule["config"], s) for s in range(steps)]
    else:
        rates = [schedule] * steps
    rates = [rate / (1 + decay * s) for s, rate in enumerate(rates)]
    conversion = convert(load("keras", DATA / name, steps=steps).recipe, "pytorch")
    problem = Quadratic(steps, seed=1)
    expected = form_s(problem, rates, config["momentum"], 0.0, config["nesterov"])
    got = run_exported_pytorch(export_pytorch(conversion), problem, steps)
    assert relative(expected, got) < 1e-10


def test_caffe_to_keras3_config_round_trips_per_step_values(tmp_path: Path) -> None:
    original = load("caffe", DATA / "caffe_resnet_cifar_solver.prototxt").recipe
    conversion = convert(original, "keras3")
    path = tmp_path / "sgd.json"
    path.write_text(export_keras3(conversion))
    reimported = load("keras", path, steps=original.steps).recipe
    np.testing.assert_array_equal(reimported.lr_per_step(), conversion.lr)
    np.testing.assert_array_equal(reimported.momentum_per_step(), conversion.momentum)
    back = convert(reimported, "caffe")
    np.testing.assert_array_equal(back.lr, original.lr_per_step())
    np.testing.assert_allclose(back.momentum, original.momentum_per_step(), rtol=1e-15)


def recorded_schedule(code: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The lr and momentum each step of the exported PyTorch code uses."""
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(code, "exported.py", "exec"), namespace)
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer, scheduler = namespace["make_optimizer"]([param])
    lr, momentum = [], []
    for _ in range(steps):
        lr.append(optimizer.param_groups[0]["lr"])
        momentum.append(optimizer.param_groups[0]["momentum"])
        param.grad = torch.ones(1, dtype=torch.float64)
        optimizer.step()
        scheduler.step()
    return np.asarray(lr), np.asarray(momentum)


def test_keras_to_pytorch_code_and_back_gives_the_keras_schedule() -> None:
    steps = 400
    original = load("keras", DATA / "keras2_sgd_exponential.yaml", steps=steps).recipe
    conversion = convert(original, "pytorch")
    lr, momentum = recorded_schedule(export_pytorch(conversion), steps)
    np.testing.assert_array_equal(lr, conversion.lr)
    np.testing.assert_array_equal(momentum, conversion.momentum)
    ran = Recipe(
        convention="pytorch",
        lr=None,
        momentum=0.0,
        lr_schedule=PerStep.of(lr),
        momentum_schedule=PerStep.of(momentum),
        steps=steps,
    )
    back = convert(ran, "keras")
    np.testing.assert_allclose(back.lr, original.lr_per_step(), rtol=1e-15)
    np.testing.assert_allclose(back.momentum, 0.9, rtol=1e-12)


@pytest.fixture
def fake_optax(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-ins for jax.numpy and optax that record what the exported code builds."""
    built: dict[str, Any] = {}
    jnp = types.ModuleType("jax.numpy")
    jnp.asarray = np.asarray  # type: ignore[attr-defined]
    jnp.minimum = np.minimum  # type: ignore[attr-defined]
    jax = types.ModuleType("jax")
    jax.numpy = jnp  # type: ignore[attr-defined]
    optax = types.ModuleType("optax")

    def inject_hyperparams(factory: Any, static_args: tuple[str, ...] = ()) -> Any:
        def build(**kwargs: Any) -> str:
            built.update(kwargs, factory=factory, static_args=static_args)
            return "sgd"

        return build

    optax.inject_hyperparams = inject_hyperparams  # type: ignore[attr-defined]
    optax.sgd = "optax.sgd"  # type: ignore[attr-defined]
    optax.chain = lambda *parts: ("chain", *parts)  # type: ignore[attr-defined]
    optax.add_decayed_weights = lambda wd: ("add_decayed_weights", wd)  # type: ignore[attr-defined]
    for name, module in {"jax": jax, "jax.numpy": jnp, "optax": optax}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return built


@pytest.mark.parametrize(
    ("kind", "name"),
    [("torch7", "torch7_sgd_default_dampening.json"), ("optax", "optax_sgd_piecewise.yaml"),
     ("tf1", "tf1_momentum_exponential.yaml"), ("caffe", "caffe_lenet_inv.prototxt")],
)  # fmt: skip
def test_optax_code_schedules_give_the_converted_values_at_each_count(
    fake_optax: dict[str, Any], kind: str, name: str
) -> None:
    steps = 300
    conversion = convert(load(kind, DATA / name, steps=steps).recipe, "optax")
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(export_optax(conversion), "exported.py", "exec"), namespace)
    counts = np.arange(steps + 5)
    lr = np.asarray([fake_optax["learning_rate"](c) for c in counts])
    momentum = np.asarray([fake_optax["momentum"](c) for c in counts])
    np.testing.assert_array_equal(lr[:steps], conversion.lr)
    np.testing.assert_array_equal(momentum[:steps], conversion.momentum)
    assert lr[-1] == conversion.lr[-1]  # past the end the last value holds
    assert fake_optax["nesterov"] == conversion.hyperparameters["nesterov"]
    expected_wd = conversion.hyperparameters.get("weight_decay") or 0.0
    assert namespace["WEIGHT_DECAY"] == expected_wd


def test_keras_export_refuses_a_per_step_momentum() -> None:
    recipe = load("torch7", DATA / "torch7_sgd_default_dampening.json", steps=10).recipe
    with pytest.raises(ConventionError, match="keras"):
        export_keras3(convert(recipe, "pytorch"))
    stepped = load("caffe", DATA / "caffe_resnet_cifar_solver.prototxt").recipe
    with pytest.raises(ConventionError, match="one momentum"):
        export_keras3(convert(convert_recipe_to_pytorch_and_back(stepped), "keras3"))


def convert_recipe_to_pytorch_and_back(recipe: Recipe) -> Recipe:
    """A PyTorch recipe with Caffe's lr: its Keras form needs a momentum spike at each cut."""
    return Recipe(
        convention="pytorch",
        lr=recipe.lr,
        momentum=recipe.momentum,
        lr_schedule=recipe.lr_schedule,
        steps=recipe.steps,
    )


def test_keras_and_optax_exports_refuse_state_rescaling() -> None:
    nesterov = load("torch7", DATA / "torch7_sgd.yaml", steps=50).recipe
    with pytest.raises(ConventionError, match="state_scale"):
        export_keras3(convert(nesterov, "keras3"))
    keras_nesterov = load("keras", DATA / "keras3_sgd_cosine_warmup.json", steps=50).recipe
    with pytest.raises(ConventionError, match="state_scale"):
        export_optax(convert(keras_nesterov, "optax"))


def test_keras_config_is_json_serialize_shape() -> None:
    recipe = load("keras", DATA / "keras2_sgd_legacy_decay.json", steps=5).recipe
    config = json.loads(export_keras3(convert(recipe, "keras3")))
    assert set(config) == {"module", "class_name", "config", "registered_name"}
    assert config["config"]["momentum"] == 0.9
    assert config["config"]["learning_rate"]["class_name"] == "PiecewiseConstantDecay"


def test_naive_port_of_a_caffe_step_decay_misses_the_caffe_trajectory(tmp_path: Path) -> None:
    # The same check with the momentum left at 0.9 across the cut (no conversion) fails:
    # the trajectory test above can tell a naive port from an exact one.
    steps, policy = 60, {"lr_policy": "step", "gamma": 0.1, "stepsize": 20}
    problem = Quadratic(steps)
    expected = form_s(problem, caffe_rates(policy, 0.3, steps), 0.9, 0.0, False)
    naive = Recipe(
        convention="pytorch",
        lr=None,
        momentum=0.9,
        lr_schedule=PerStep.of(caffe_rates(policy, 0.3, steps)),
        steps=steps,
    )
    got = run_exported_pytorch(export_pytorch(convert(naive, "pytorch")), problem, steps)
    assert relative(expected, got) > 1e-3


def test_keras_export_allows_round_off_in_the_momentum_but_not_a_real_change() -> None:
    def recipe(second: float) -> Recipe:
        return Recipe(
            convention="keras3",
            lr=0.1,
            momentum=0.9,
            momentum_schedule=PerStep.of([0.9, second, 0.9]),
            steps=3,
        )

    config = json.loads(export_keras3(convert(recipe(0.9 * (1 + 1e-15)), "keras3")))
    assert config["config"]["momentum"] == 0.9
    with pytest.raises(ConventionError, match=r"1 other values besides 0.9 \(up to 0.95\)"):
        export_keras3(convert(recipe(0.95), "keras3"))


@settings(max_examples=25, deadline=None)
@given(
    base_lr=st.floats(1e-4, 1.0),
    gamma=st.sampled_from([0.1, 0.2, 0.5]),
    stepvalue=st.lists(st.integers(1, 150), min_size=1, max_size=4, unique=True).map(sorted),
    momentum=st.floats(0.0, 0.99),
)
def test_any_caffe_multistep_solver_round_trips_through_a_keras3_config(
    base_lr: float, gamma: float, stepvalue: list[int], momentum: float
) -> None:
    text = "\n".join(
        [f"base_lr: {base_lr!r}", 'lr_policy: "multistep"', f"gamma: {gamma}"]
        + [f"stepvalue: {value}" for value in stepvalue]
        + [f"momentum: {momentum!r}", "max_iter: 160"]
    )
    original = caffe.to_recipe(caffe.parse_solver(text)).recipe
    config = json.loads(export_keras3(convert(original, "keras3")))
    reimported = keras.to_recipe(keras.parse_config(config), steps=160).recipe
    np.testing.assert_array_equal(reimported.lr_per_step(), original.lr_per_step())
    np.testing.assert_array_equal(reimported.momentum_per_step(), original.momentum_per_step())
