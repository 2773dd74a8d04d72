"""Divergence: a learning rate of 100 makes the loss NaN/inf; the run is a result (COMPLETE,
inf, the step it diverged at), the sweep goes on, and the report shows it. Momentum 1.5 is
refused before anything runs, with the field named; a momentum above 1 that an exact
conversion needs at some steps is trained as it is and is no divergence.

The step each diverged run must report is computed here, independently of
``sweeps.training.train_run``: :func:`reference_training` builds the same task setup (the
``reliability_task`` module the workspace writes, same seed, same batch order) and trains it
with the update rules written out by hand (torch's documented SGD rule for ``pytorch``, the
Form S rule of ``SutskeverSGD``'s docstring for ``sutskever``), recording every minibatch
loss and, after every epoch, whether every validation batch's loss is finite.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
import torch

from storage import metrics_frame, trials_frame
from tests.reliability.conftest import Workspace, load_study, sqlite_url

pytestmark = pytest.mark.reliability

SPEC = """
name = "rel"
task = "reliability_task:build"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = false
seeds = [0]
sampler = "grid"
n_trials = 4
[search_space]
lr = [0.01, 100.0]
momentum = {momentum}
batch_size = {batch_size}
epochs = {epochs}
"""

PAIRED_WARMUP_SPEC = """
name = "rel"
task = "reliability_task:build"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = true
seeds = [0]
sampler = "random"
n_trials = 1
[search_space]
lr = 0.05
momentum = 0.9
batch_size = 16
epochs = 3
[search_space.schedule]
warmup_cosine = {{ warmup_epochs = 1, start_factor = {start_factor} }}
"""


# --- the independent reference --------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceRun:
    """What a hand-written training loop saw on the reliability task.

    ``losses[t - 1]`` is the minibatch loss of step ``t`` (computed before its update);
    ``val_finite[e - 1]`` says whether every validation batch's loss was finite after
    epoch ``e``; ``steps_per_epoch`` is the setup's.
    """

    losses: list[float]
    val_finite: list[bool]
    steps_per_epoch: int

    def first_non_finite_loss_step(self) -> int:
        """The first step (1-based) whose minibatch loss is NaN or infinite."""
        return next(t for t, loss in enumerate(self.losses, 1) if not math.isfinite(loss))

    def first_non_finite_val_epoch(self) -> int:
        """The first epoch (1-based) after which some validation batch's loss is not finite."""
        return next(e for e, finite in enumerate(self.val_finite, 1) if not finite)


def reliability_task(folder: Path) -> ModuleType:
    """The ``reliability_task`` module the workspace wrote, imported from its file."""
    spec = importlib.util.spec_from_file_location(
        f"reliability_task_{id(folder)}", folder / "reliability_task.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_training(
    folder: Path, optimizer: str, *, lr: float, momentum: float, batch_size: int, epochs: int
) -> ReferenceRun:
    """Train the reliability task with a constant ``lr`` and ``momentum``, rules by hand.

    ``pytorch`` (torch.optim.SGD's documented rule, no dampening): ``b_1 = g_1``,
    ``b_t = μ b_{t-1} + g_t``, ``θ_t = θ_{t-1} - η b_t``. ``sutskever`` (Form S):
    ``v_0 = 0``, ``v_t = μ v_{t-1} - η g_t``, ``θ_t = θ_{t-1} + v_t``. The setup comes from
    the task's own ``build`` with seed 0, so the initial weights and batches are the run's.
    Every step is taken, also after a loss turned non-finite (NaN then spreads).
    """
    setup = reliability_task(folder).build(seed=0, batch_size=batch_size, device="cpu")
    parameters = list(setup.model.parameters())
    state: list[torch.Tensor | None] = [None] * len(parameters)
    losses: list[float] = []
    val_finite: list[bool] = []
    for _ in range(epochs):
        for inputs, targets in setup.train_loader:
            for p in parameters:
                p.grad = None
            loss = setup.loss_fn(setup.model(inputs), targets)
            loss.backward()
            losses.append(float(loss.detach()))
            with torch.no_grad():
                for i, p in enumerate(parameters):
                    g = p.grad
                    assert g is not None
                    previous = state[i]
                    if optimizer == "pytorch":
                        buffer = g.clone() if previous is None else momentum * previous + g
                        p.sub_(lr * buffer)
                        state[i] = buffer
                    else:
                        velocity = -lr * g if previous is None else momentum * previous - lr * g
                        p.add_(velocity)
                        state[i] = velocity
        with torch.no_grad():
            val_finite.append(
                all(
                    math.isfinite(float(setup.loss_fn(setup.model(x), y)))
                    for x, y in setup.val_loader
                )
            )
    return ReferenceRun(losses, val_finite, setup.steps_per_epoch)


def diverged_step(stored: Any) -> int | None:
    """A stored ``diverged_at_step`` (pandas ``Int64``) as an int, ``None`` where it is NA."""
    return None if pd.isna(stored) else int(stored)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def backend_url(request: pytest.FixtureRequest, workspace: Workspace) -> str:
    """An empty database on each backend in turn (MariaDB has no infinities to store)."""
    if request.param == "sqlite":
        return sqlite_url(workspace.folder)
    return str(request.getfixturevalue(f"{request.param.replace('postgresql', 'postgres')}_url"))


def run_grid_sweep(
    workspace: Workspace, *, momentum: str, batch_size: int, epochs: int, url: str | None = None
) -> str:
    """Run the 4-trial grid (lr 0.01 and 100, both optimizers) to the end; its URL."""
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.folder / "rel.toml"
    spec.write_text(SPEC.format(momentum=momentum, batch_size=batch_size, epochs=epochs))
    url = url or sqlite_url(workspace.folder)
    run = workspace.start("run", str(spec), "--storage", url, "--workers", "1", "--no-progress")
    workspace.wait([run], timeout=120)
    return url


# --- the tests --------------------------------------------------------------------------------


def test_lr_100_diverges_at_its_first_non_finite_loss_and_the_sweep_goes_on(
    workspace: Workspace, backend_url: str
) -> None:
    """Protection: the training loop's check of the epoch's minibatch losses
    (``sweeps/training.py``, check 1), which ends the run at the first step whose loss is not
    finite. At batch size 4 (16 steps per epoch) that step lies inside epoch 1, so without
    this check the run would end at the epoch's last step (check 2, on ``val_loss``) and
    report another step. The objective then tells Optuna inf instead of raising, so the
    worker keeps going; ``sweeps status`` counts the diverged runs and the report ranks them
    last and lists each one with its step (report.md, report.html and diverged.csv).
    The same on SQLite, PostgreSQL and MariaDB (which stores the inf as a sentinel)."""
    batch_size, epochs = 4, 3
    url = run_grid_sweep(
        workspace, momentum="0.9", batch_size=batch_size, epochs=epochs, url=backend_url
    )

    trials = load_study(url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    runs = trials_frame(url, "rel")
    diverged = runs[runs["hp_lr"] == 100.0]
    healthy = runs[runs["hp_lr"] == 0.01]
    assert sorted(diverged["optimizer"]) == ["pytorch", "sutskever"]
    assert len(healthy) == 2
    assert set(diverged["state"]) == {"COMPLETE"}
    assert all(v == math.inf for v in diverged["value"])
    expected_steps: dict[tuple[int, str], int] = {}
    expected_epochs: dict[tuple[int, str], int] = {}
    for row in diverged.itertuples():
        reference = reference_training(
            workspace.folder, str(row.optimizer), lr=100.0, momentum=0.9,
            batch_size=batch_size, epochs=epochs,
        )  # fmt: skip
        expected = reference.first_non_finite_loss_step()
        # Inside an epoch, not its last step: only check 1 can name this step.
        assert expected % reference.steps_per_epoch != 0, expected
        assert diverged_step(row.diverged_at_step) == expected, row.optimizer
        assert row.failure_reason == f"diverged at step {expected}"
        expected_steps[(int(row.trial), str(row.optimizer))] = expected
        # steps 1..n of epoch 1, n+1..2n of epoch 2, ...
        epoch = math.ceil(expected / reference.steps_per_epoch)
        expected_epochs[(int(row.trial), str(row.optimizer))] = epoch
    assert all(math.isfinite(v) for v in healthy["value"])
    assert healthy["diverged_at_step"].isna().all()

    status = workspace.start("status", "rel", "--storage", url)
    workspace.wait([status], timeout=60)
    assert "2 run(s) diverged (value inf)." in workspace.log_of(status)

    # The report counts the diverged runs as finished, inf never wins, and its "Diverged
    # runs" section lists each one with the step found above. (Searching the whole page for
    # "diverged" would prove nothing: the landscape figure's caption, which every report
    # carries, has the word.)
    out = workspace.folder / "report"
    report = workspace.start("report", "rel", "--storage", url, "--out", str(out))
    workspace.wait([report], timeout=120)
    markdown = (out / "report.md").read_text()
    assert "- Runs by state: COMPLETE 4." in markdown
    best_rows = [
        line
        for line in markdown.splitlines()
        if "| source | " in line and line.startswith(("| PyTorch SGD", "| Sutskever SGD"))
    ]
    assert len(best_rows) == 2
    assert all("| 0.01 | 0.9 |" in row for row in best_rows), best_rows
    assert "## Diverged runs" in markdown
    listed = markdown[markdown.index("## Diverged runs") :].split("\n## ")[0]
    assert (
        "- 2 of 4 finished runs diverged. Each optimizer's own sweep (source and naive runs):"
        " PyTorch SGD (lr outside) 1 of 2, Sutskever SGD (lr inside) 1 of 2." in listed
    ), listed
    rows = [line for line in listed.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 2, listed  # the header and one row per diverged run
    html = (out / "report.html").read_text()
    for (trial, optimizer), step in sorted(expected_steps.items()):
        row = next(r for r in rows if r.startswith(f"| {trial} | {optimizer} |"))
        assert row.startswith(f"| {trial} | {optimizer} | source | 0 | 1 | constant | 100 | 0.9 |")
        divergence = f"diverged at step {step} (epoch {expected_epochs[(trial, optimizer)]})"
        assert row.endswith(f"| {divergence} |"), row
        assert f"<td>{divergence}</td>" in html
    csv = pd.read_csv(out / "diverged.csv")
    assert {
        (int(r.trial), str(r.optimizer)): int(r.diverged_at_step) for r in csv.itertuples()
    } == expected_steps


def test_weights_broken_after_the_last_minibatch_are_caught_by_the_val_loss_check(
    workspace: Workspace,
) -> None:
    """Protection: the training loop's check of ``val_loss`` after each epoch
    (``sweeps/training.py``, check 2), which ends the run at the epoch's last step when every
    minibatch loss was finite but the weights it left are not. At batch size 16 and lr 100
    every minibatch loss of the two epochs is finite (the largest about 1e33), while the
    loss of the weights after step 8 overflows float32; the sweep has no step 9, so without
    this check the run would end as a normal, undiverged result."""
    batch_size, epochs = 16, 2
    url = run_grid_sweep(workspace, momentum="0.9", batch_size=batch_size, epochs=epochs)

    assert [t.state.name for t in load_study(url).get_trials()] == ["COMPLETE"] * 4
    runs = trials_frame(url, "rel")
    diverged = runs[runs["hp_lr"] == 100.0]
    assert sorted(diverged["optimizer"]) == ["pytorch", "sutskever"]
    for row in diverged.itertuples():
        reference = reference_training(
            workspace.folder, str(row.optimizer), lr=100.0, momentum=0.9,
            batch_size=batch_size, epochs=epochs,
        )  # fmt: skip
        # The case check 2 exists for: finite minibatch losses, non-finite weights after.
        assert all(math.isfinite(loss) for loss in reference.losses)
        bad_epoch = reference.first_non_finite_val_epoch()
        expected = bad_epoch * reference.steps_per_epoch
        assert expected == len(reference.losses)  # the run's last step
        assert row.state == "COMPLETE"
        assert row.value == math.inf
        assert diverged_step(row.diverged_at_step) == expected, row.optimizer
        assert row.failure_reason == f"diverged at step {expected}"
    # The epochs before the bad one were stored; the bad one was not.
    metrics = metrics_frame(url, "rel")
    val = metrics[(metrics["metric"] == "val_loss") & metrics["trial"].isin(diverged["trial"])]
    assert sorted(val["epoch"]) == [1, 1]
    assert all(math.isfinite(v) for v in val["value"])


def test_momentum_1_5_is_refused_before_anything_runs(workspace: Workspace) -> None:
    """Protection: spec validation of ``search_space.momentum`` (exit 2, the key named)."""
    spec = workspace.folder / "rel.toml"
    spec.write_text(SPEC.format(momentum="1.5", batch_size=16, epochs=3))
    url = sqlite_url(workspace.folder)
    run = workspace.start("run", str(spec), "--storage", url, "--workers", "1", "--no-progress")
    run.wait(timeout=60)
    log = workspace.log_of(run)
    assert run.returncode == 2, log
    assert "search_space.momentum" in log
    assert "Traceback" not in log
    assert not (workspace.folder / "sweeps.db").exists()


def test_a_converted_momentum_above_1_is_trained_as_it_is_and_is_no_divergence(
    workspace: Workspace,
) -> None:
    """A warmup in PyTorch's convention makes the exact Sutskever conversion use
    ``μ·η_t/η_{t-1} > 1`` while the lr grows faster than ``1/μ``; spec validation only sees
    the sampled ``μ = 0.9``, so a momentum ≥ 1 reaches the training loop this way.

    Protection: the training loop writes every step's converted momentum into the optimizer
    unchanged (no cap below 1, no range check that ends or fails the run), and divergence is
    judged by the losses alone. So the converted run is COMPLETE, not diverged, and ends
    where its source ends, while the naive port does not."""
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.folder / "rel.toml"
    spec.write_text(PAIRED_WARMUP_SPEC.format(start_factor=0.01))
    url = sqlite_url(workspace.folder)
    run = workspace.start("run", str(spec), "--storage", url, "--workers", "1", "--no-progress")
    workspace.wait([run], timeout=120)

    runs = trials_frame(url, "rel").set_index("role")
    assert set(runs["state"]) == {"COMPLETE"}
    assert runs["diverged_at_step"].isna().all()
    assert runs.loc["converted", "optimizer"] == "sutskever"
    assert runs.loc["converted", "verdict"] == "exact"
    # Epoch 1 is the warmup (4 steps from 0.01·lr up); its last step's momentum, stored with
    # the epoch, is μ·η_4/η_3 = 0.9·0.7525/0.505 ≈ 1.34 for the converted run.
    metrics = metrics_frame(url, "rel")
    momentum = metrics[(metrics["metric"] == "momentum") & (metrics["epoch"] == 1)]
    by_role = dict(zip(momentum["role"], momentum["value"], strict=True))
    assert by_role["source"] == 0.9
    assert by_role["naive"] == 0.9
    assert by_role["converted"] > 1.0
    source, converted, naive = (
        float(runs.loc[r, "value"]) for r in ("source", "converted", "naive")
    )
    assert math.isfinite(source)
    assert converted == pytest.approx(source, rel=1e-4)
    assert naive != pytest.approx(source, rel=1e-2)
