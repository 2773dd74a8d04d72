"""Built-in tasks train (loss goes down), are deterministic, and user tasks load safely."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sweeps.errors import SweepUsageError
from sweeps.pairing import PlannedRun
from sweeps.search_space import Configuration
from sweeps.tasks import BUILTIN_TASKS, TaskSetup, get_task
from sweeps.training import train_run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is fastest, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plain_run(lr: float, epochs: int, batch_size: int, steps_per_epoch: int) -> PlannedRun:
    """A PyTorch SGD run with momentum 0.9 and a constant learning rate."""
    config = Configuration(
        lr=lr,
        momentum=0.9,
        weight_decay=0.0,
        nesterov=False,
        schedule="constant",
        batch_size=batch_size,
        epochs=epochs,
    )
    steps = epochs * steps_per_epoch
    return PlannedRun(
        role="source",
        optimizer="pytorch",
        seed=0,
        configuration=config,
        lr=np.full(steps, lr),
        momentum=np.full(steps, 0.9),
        schedule="constant",
        hyperparameters={},
        optimizer_hyperparameters={},
    )


#: The built-in tasks that need no data files (the CIFAR-10 ones: tests/sweeps/test_cifar10.py).
SELF_CONTAINED = [name for name, task in BUILTIN_TASKS.items() if not hasattr(task, "prepare")]

LEARNING_RATES = {"digits-mlp": 0.05, "digits-cnn": 0.05, "nqm": 0.1, "regression": 0.02}


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_builtin_task_trains_and_its_loss_goes_down(name: str) -> None:
    task = get_task(name)
    setup = task.build(seed=0, batch_size=64, device="cpu")
    assert setup.steps_per_epoch == len(list(setup.train_loader))
    epochs = []
    run = plain_run(LEARNING_RATES[name], 3, 64, setup.steps_per_epoch)
    outcome = train_run(setup, run, on_epoch=epochs.append)
    assert outcome.diverged_at_step is None
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].step == 3 * setup.steps_per_epoch
    first, last = epochs[0].metrics, epochs[-1].metrics
    assert last["train_loss"] < first["train_loss"]
    assert last["val_loss"] < first["val_loss"]
    expected = {"train_loss", "val_loss", "lr", "momentum"}
    if task.has_accuracy:  # type: ignore[attr-defined]
        expected.add("val_accuracy")
        assert last["val_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert set(last) == expected


def test_digits_are_scikit_learns_bundled_digits() -> None:
    from sklearn.datasets import load_digits

    from sweeps.tasks.digits import _load_digits

    pixels, labels = _load_digits()
    reference = load_digits()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_split_is_fixed_and_disjoint() -> None:
    a = get_task("digits-mlp").build(seed=0, batch_size=32, device="cpu")
    b = get_task("digits-mlp").build(seed=1, batch_size=32, device="cpu")
    assert torch.equal(a.val_loader.inputs, b.val_loader.inputs)  # type: ignore[attr-defined]
    train = {tuple(row.tolist()) for row in a.train_loader.inputs}  # type: ignore[attr-defined]
    val = {tuple(row.tolist()) for row in a.val_loader.inputs}  # type: ignore[attr-defined]
    assert len(a.train_loader.inputs) + len(a.val_loader.inputs) == 1797  # type: ignore[attr-defined]
    assert len(val) > 300
    assert len(train & val) < 5  # the digits data has a few duplicate images


def _first_batch(setup: TaskSetup) -> torch.Tensor:
    inputs, _ = next(iter(setup.train_loader))
    return inputs


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_same_seed_same_weights_and_batches_other_seed_differs(name: str) -> None:
    task = get_task(name)
    a, b, c = (task.build(seed=s, batch_size=16, device="cpu") for s in (3, 3, 4))
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(_first_batch(a), _first_batch(b))
    assert not torch.equal(_first_batch(a), _first_batch(c))
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.model.parameters(), c.model.parameters(), strict=True)
    )


def test_nqm_gradient_is_curvature_times_theta_plus_noise_of_variance_h_over_b() -> None:
    """Zhang et al. (2019): g = Hθ + ε with Cov(ε) = H / B."""
    task = get_task("nqm")
    batch = 8
    setup = task.build(seed=0, batch_size=batch, device="cpu", dtype=torch.float64)  # type: ignore[call-arg]
    model = setup.model
    theta = model.theta.detach().clone()  # type: ignore[union-attr]
    h = 1.0 / torch.arange(1, theta.numel() + 1, dtype=torch.float64)
    noises = []
    for _ in range(40):
        for noise, target in setup.train_loader:
            model.zero_grad()
            setup.loss_fn(model(noise), target).backward()
            noises.append(model.theta.grad - h * theta)  # type: ignore[union-attr, operator]
    eps = torch.stack(noises)
    assert eps.mean(0).abs().max() < 0.05
    ratio = eps.var(0) / (h / batch)
    assert 0.85 < float(ratio.mean()) < 1.15
    val_inputs, val_target = next(iter(setup.val_loader))
    val_loss = setup.loss_fn(model(val_inputs), val_target).detach()
    assert float(val_loss) == pytest.approx(float(0.5 * (h * theta**2).sum()), rel=1e-12)


def test_nqm_larger_batches_take_fewer_steps_per_epoch() -> None:
    task = get_task("nqm")
    assert task.build(seed=0, batch_size=32, device="cpu").steps_per_epoch == 32
    assert task.build(seed=0, batch_size=100, device="cpu").steps_per_epoch == 11


# --- user tasks -------------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    source = textwrap.dedent(
        """
        import torch
        from sweeps.tasks import TaskSetup

        def _data(batch_size):
            x = torch.linspace(-1, 1, 64).unsqueeze(1)
            steps = range(0, 64, batch_size)
            return [(x[i:i + batch_size], 3 * x[i:i + batch_size]) for i in steps]

        def as_setup(*, seed, batch_size, device):
            torch.manual_seed(seed)
            batches = _data(batch_size)
            return TaskSetup(torch.nn.Linear(1, 1), batches, batches, torch.nn.functional.mse_loss,
                             len(batches))

        def as_dict(*, seed, batch_size, device):
            return as_setup(seed=seed, batch_size=batch_size, device=device).__dict__

        def wrong_type(*, seed, batch_size, device):
            return 42

        def missing_key(*, seed, batch_size, device):
            d = dict(as_dict(seed=seed, batch_size=batch_size, device=device))
            del d["loss_fn"]
            return d

        def no_device(*, seed, batch_size):
            return None

        NOT_CALLABLE = 3
        """
    )
    (tmp_path / "my_sweep_task.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    yield "my_sweep_task"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("my_sweep_task", None)


@pytest.mark.parametrize("function", ["as_setup", "as_dict"])
def test_user_task_returning_setup_or_dict_trains(user_module: str, function: str) -> None:
    task = get_task(f"{user_module}:{function}")
    setup = task.build(seed=0, batch_size=16, device="cpu")
    assert isinstance(setup, TaskSetup)
    outcome = train_run(task, plain_run(0.1, 2, 16, setup.steps_per_epoch))
    assert outcome.diverged_at_step is None
    assert outcome.value < 1.0


@pytest.mark.parametrize(
    ("function", "pattern"),
    [
        ("wrong_type", r"returned int; it must return a sweeps\.tasks\.TaskSetup or a dict"),
        ("missing_key", r"returned a dict with no loss_fn"),
    ],
)
def test_user_task_with_wrong_return_is_a_usage_error(
    user_module: str, function: str, pattern: str
) -> None:
    task = get_task(f"{user_module}:{function}")
    with pytest.raises(SweepUsageError, match=pattern):
        task.build(seed=0, batch_size=16, device="cpu")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("mnist", r"unknown task 'mnist'; built-in tasks are digits-mlp, digits-cnn, nqm"),
        ("no_such_module_q:build", r"the module 'no_such_module_q' cannot be imported"),
        ("{mod}:absent", r"the module 'my_sweep_task' has no 'absent'"),
        ("{mod}:NOT_CALLABLE", r"'NOT_CALLABLE' is not callable"),
        ("{mod}:no_device", r"must accept the keyword arguments seed, batch_size and device"),
        (":build", r"must be written 'module:function'"),
    ],
)
def test_bad_task_names_are_usage_errors(user_module: str, name: str, pattern: str) -> None:
    with pytest.raises(SweepUsageError, match=pattern):
        get_task(name.format(mod=user_module))


def test_example_user_task_follows_the_contract() -> None:
    task = get_task("examples.user_task:build")
    setup = task.build(seed=0, batch_size=64, device="cpu")
    assert setup.has_accuracy
    outcome = train_run(task, plain_run(0.2, 3, 64, setup.steps_per_epoch))
    assert outcome.final_metrics["val_accuracy"] > 0.8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_builtin_task_builds_on_cuda(name: str) -> None:
    setup = get_task(name).build(seed=0, batch_size=32, device="cuda:0")
    assert all(p.device.type == "cuda" for p in setup.model.parameters())
    inputs, _ = next(iter(setup.train_loader))
    assert inputs.device.type == "cuda"
