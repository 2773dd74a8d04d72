"""The training loop: per-step values reach the optimizer, divergence is a result with
its step, pruning propagates, and the same seed gives the same metrics."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import optuna
import pytest
import torch

from sweeps.errors import SweepUsageError
from sweeps.pairing import PlannedRun
from sweeps.search_space import Configuration
from sweeps.tasks import TaskSetup, get_task
from sweeps.training import EpochResult, train_run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is fastest, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(
    lr: np.ndarray,
    momentum: np.ndarray | float = 0.9,
    *,
    optimizer: str = "pytorch",
    epochs: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    nesterov: bool = False,
    correct_like: str | None = None,
) -> PlannedRun:
    lr = np.asarray(lr, dtype=np.float64)
    momentum = np.broadcast_to(np.asarray(momentum, dtype=np.float64), lr.shape).copy()
    config = Configuration(
        lr=float(lr[0]),
        momentum=float(momentum.max()),
        weight_decay=0.0,
        nesterov=nesterov,
        schedule="constant",
        batch_size=batch_size,
        epochs=epochs,
    )
    return PlannedRun(
        role="source",
        optimizer=optimizer,
        seed=seed,
        configuration=config,
        lr=lr,
        momentum=momentum,
        schedule="per-step values",
        hyperparameters={},
        optimizer_hyperparameters={},
        nesterov=nesterov,
        correct_like=correct_like,
    )


class RecordingSGD(torch.optim.SGD):
    """torch's SGD that records the lr and momentum of each group at every step."""

    seen: list[tuple[float, float]]

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        self.seen.append((self.param_groups[0]["lr"], self.param_groups[0]["momentum"]))
        return super().step(closure)


def test_per_step_values_are_written_before_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import sweeps.training as training

    created: list[RecordingSGD] = []

    def build(run: PlannedRun, parameters: object) -> RecordingSGD:
        optimizer = RecordingSGD(parameters, lr=1.0, momentum=0.5)  # type: ignore[arg-type]
        optimizer.seen = []
        created.append(optimizer)
        return optimizer

    monkeypatch.setattr(training, "build_optimizer", build)
    steps = 2 * 16  # regression at batch size 64: 16 steps per epoch
    lr = np.linspace(0.05, 0.01, steps)
    momentum = np.linspace(0.5, 0.95, steps)
    epochs: list[EpochResult] = []
    train_run(get_task("regression"), make_run(lr, momentum), on_epoch=epochs.append)
    assert created[0].seen == list(zip(lr.tolist(), momentum.tolist(), strict=True))
    # The epoch's reported lr and momentum are those of its last step.
    assert [(e.metrics["lr"], e.metrics["momentum"]) for e in epochs] == [
        (lr[15], momentum[15]),
        (lr[31], momentum[31]),
    ]
    assert [e.step for e in epochs] == [16, 32]


@pytest.mark.parametrize("optimizer", ["pytorch", "sutskever"])
def test_same_seed_same_device_gives_the_same_metrics(optimizer: str) -> None:
    lr = np.concatenate([np.full(45, 0.1), np.full(45, 0.01)])
    results = []
    for seed in (0, 0, 1):
        epochs: list[EpochResult] = []
        run = make_run(lr, optimizer=optimizer, batch_size=32, seed=seed)
        train_run(get_task("digits-mlp"), run, on_epoch=epochs.append)
        results.append([e.metrics for e in epochs])
    assert results[0] == results[1]
    assert results[0] != results[2]


# --- divergence ---------------------------------------------------------------------------


def scalar_task(*, seed: int, batch_size: int, device: str) -> TaskSetup:
    """Minimise θ² from θ = 1, four batches per epoch."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    x = torch.ones(4, 1)
    batches = [(x[i : i + 1], torch.zeros(1, 1)) for i in range(4)]
    return TaskSetup(model, batches, batches[:1], torch.nn.functional.mse_loss, 4)


@pytest.mark.parametrize(("direction", "worst"), [("minimize", math.inf), ("maximize", -math.inf)])
def test_divergence_ends_the_run_with_the_first_bad_step(direction: str, worst: float) -> None:
    """Protection: check 1 of ``train_run`` (the epoch's minibatch losses). The first
    non-finite loss is at step 7, inside epoch 2; without check 1 the ``val_loss`` check
    would end the run at step 8, the epoch's last."""
    lr = np.full(12, 0.01)
    lr[5] = 1e30  # step 6 throws θ to about -1e30: the float32 loss of step 7 is inf
    epochs: list[EpochResult] = []
    outcome = train_run(
        scalar_task(seed=0, batch_size=1, device="cpu"),
        make_run(lr, 0.0, epochs=3, batch_size=1),
        on_epoch=epochs.append,
        direction=direction,
    )
    assert outcome.diverged_at_step == 7
    assert outcome.failure_reason == "diverged at step 7"
    assert outcome.value == worst
    assert outcome.epochs == 1  # epoch 2 (steps 5-8) diverged; only epoch 1 is a result
    assert [e.epoch for e in epochs] == [1]
    assert outcome.final_metrics == epochs[0].metrics


def test_divergence_on_a_real_task_is_a_result_not_a_crash() -> None:
    outcome = train_run(get_task("regression"), make_run(np.full(32, 1e3), 0.99))
    assert outcome.diverged_at_step is not None
    assert 1 <= outcome.diverged_at_step <= 32
    assert outcome.value == math.inf


def test_weights_broken_by_the_last_step_count_as_divergence() -> None:
    """Protection: check 2 of ``train_run`` (``val_loss`` after the epoch). Step 8, the
    last of the run, throws θ from about 0.85 to about -1.7e30: its own loss (θ before the
    update, squared) and all earlier ones are finite, but θ² overflows float32, so only the
    validation loss sees it. Without check 2 the run would end as an undiverged result."""
    lr = np.full(8, 0.01)
    lr[7] = 1e30
    epochs: list[EpochResult] = []
    outcome = train_run(
        scalar_task(seed=0, batch_size=1, device="cpu"),
        make_run(lr, 0.0, epochs=2, batch_size=1),
        on_epoch=epochs.append,
    )
    assert outcome.diverged_at_step == 8  # the epoch's last step, after which val_loss is inf
    assert outcome.value == math.inf
    assert [e.epoch for e in epochs] == [1]
    assert math.isfinite(epochs[0].metrics["train_loss"])
    # The outcome describes the last epoch that passed both checks, not the broken one.
    assert outcome.epochs == 1
    assert outcome.final_metrics == epochs[0].metrics


def test_finite_losses_near_the_float32_maximum_average_without_overflowing() -> None:
    """Protection: ``train_loss`` and ``val_loss`` are summed in float64. Every minibatch
    loss here is 3e38, finite in float32 (max about 3.4e38), so the run has not diverged;
    the float32 sum of two of them is inf, which made ``train_loss`` inf and, through the
    ``val_loss`` check, a false divergence."""
    huge = 3e38

    def huge_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).sum() * 0.0 + huge  # a gradient of 0: θ stays at 1

    task = scalar_task(seed=0, batch_size=1, device="cpu")
    task = TaskSetup(task.model, task.train_loader, task.train_loader, huge_loss, 4)
    epochs: list[EpochResult] = []
    outcome = train_run(
        task, make_run(np.full(8, 0.01), 0.9, epochs=2, batch_size=1), on_epoch=epochs.append
    )
    assert outcome.diverged_at_step is None
    assert outcome.epochs == 2
    expected = float(np.float32(huge))  # the loss as float32 holds it
    for epoch in epochs:
        assert epoch.metrics["train_loss"] == pytest.approx(expected, rel=1e-12)
        assert epoch.metrics["val_loss"] == pytest.approx(expected, rel=1e-12)


# --- callbacks, objective, errors -----------------------------------------------------------


def test_pruning_raised_by_on_epoch_propagates() -> None:
    def prune(result: EpochResult) -> None:
        raise optuna.TrialPruned(f"pruned at epoch {result.epoch}")

    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
        train_run(get_task("nqm"), make_run(np.full(64, 0.1)), on_epoch=prune)


def test_objective_picks_the_final_epochs_metric() -> None:
    epochs: list[EpochResult] = []
    run = make_run(np.full(2 * 23, 0.05))
    outcome = train_run(
        get_task("digits-mlp"),
        run,
        on_epoch=epochs.append,
        objective="val_accuracy",
        direction="maximize",
    )
    assert outcome.value == epochs[-1].metrics["val_accuracy"]
    assert outcome.final_metrics == epochs[-1].metrics


def test_correct_momentum_is_attached_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    import momentum_convert.optim as optim

    calls: list[str] = []
    real = optim.correct_momentum

    def spy(optimizer: torch.optim.Optimizer, like: str) -> object:
        handle = real(optimizer, like=like)
        calls.append(f"attach {type(optimizer).__name__} like={like}")
        original_remove = handle.remove

        def remove() -> None:
            calls.append("remove")
            original_remove()

        handle.remove = remove  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(optim, "correct_momentum", spy)
    lr = np.concatenate([np.full(16, 0.05), np.full(16, 0.005)])
    run = make_run(lr, optimizer="sutskever", nesterov=True, correct_like="pytorch")
    train_run(get_task("regression"), run)
    assert calls == ["attach SutskeverSGD like=pytorch", "remove"]


def test_accuracy_objective_on_a_task_without_accuracy_fails_before_training() -> None:
    with pytest.raises(SweepUsageError, match=r"'val_accuracy' needs a task whose setup has"):
        train_run(get_task("nqm"), make_run(np.full(64, 0.1)), objective="val_accuracy")


def test_too_few_per_step_values_is_a_usage_error() -> None:
    with pytest.raises(SweepUsageError, match=r"cover 10 steps, but 2 epochs of 16 steps need 32"):
        train_run(get_task("regression"), make_run(np.full(10, 0.1)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_argument_places_the_run_on_cuda() -> None:
    seen: list[torch.device] = []
    task = get_task("digits-mlp")
    setup = task.build(seed=0, batch_size=64, device="cuda:0")
    seen.extend(p.device for p in setup.model.parameters())
    outcome = train_run(setup, make_run(np.full(2 * 23, 0.05)))
    assert all(d.type == "cuda" for d in seen)
    assert math.isfinite(outcome.value)
