"""How long one run of each built-in task takes, and what the sweep's training loop costs.

For each task, interleaved repetitions of:

* ``train_run``: :func:`sweeps.training.train_run` on a planned PyTorch run with a step
  decay (per-step arrays written into ``param_groups`` before every step, one loss check
  per epoch, validation metrics every epoch);
* ``baseline``: the loop a user would write by hand for the same work: the same task setup,
  ``torch.optim.SGD`` with ``MultiStepLR`` stepped once per epoch, the epoch's mean training
  loss (``loss.item()`` per step) with a divergence check, the same validation pass.

Reported: median seconds per run of each, and the ratio train_run / baseline (goal: close
to 1, i.e. the shared code path costs nothing noticeable). One intra-op thread, as sweep
workers on a shared CPU should use.

    python benchmarks/bench_training.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from sweeps.pairing import PlannedRun
from sweeps.search_space import Configuration
from sweeps.tasks import BUILTIN_TASKS, TaskSetup, get_task
from sweeps.training import train_run

EPOCHS = 5
BATCH = 32
MILESTONES = (3, 4)


def planned(steps_per_epoch: int) -> PlannedRun:
    config = Configuration(
        lr=0.05,
        momentum=0.9,
        weight_decay=0.0,
        nesterov=False,
        schedule="step",
        batch_size=BATCH,
        epochs=EPOCHS,
        schedule_params={"milestones_epochs": MILESTONES, "gamma": 0.1},
    )
    total = EPOCHS * steps_per_epoch
    schedule = config.lr_schedule(steps_per_epoch)
    return PlannedRun(
        role="source",
        optimizer="pytorch",
        seed=0,
        configuration=config,
        lr=schedule.values(config.lr, total),
        momentum=np.full(total, 0.9),
        schedule=schedule.describe(),
        hyperparameters={},
        optimizer_hyperparameters={},
    )


def baseline(setup: TaskSetup) -> float:
    """A hand-written loop: SGD + MultiStepLR per epoch, validation every epoch."""
    optimizer = torch.optim.SGD(setup.model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(MILESTONES), gamma=0.1)
    val_loss = 0.0
    for _ in range(EPOCHS):
        setup.model.train()
        train_loss = 0.0
        for inputs, targets in setup.train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = setup.loss_fn(setup.model(inputs), targets)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
        scheduler.step()
        if not np.isfinite(train_loss):
            break
        setup.model.eval()
        with torch.no_grad():
            total, count = 0.0, 0
            for inputs, targets in setup.val_loader:
                n = targets.shape[0] if targets.dim() else 1
                total += float(setup.loss_fn(setup.model(inputs), targets)) * n
                count += n
        val_loss = total / count
    return val_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s),"
        f" torch {torch.__version__}, python {platform.python_version()}"
    )
    print(
        f"{EPOCHS} epochs, batch {BATCH}, step decay at epochs {MILESTONES}, median of"
        f" {args.repeats} interleaved repetitions"
    )
    print("| task | steps/run | train_run (s) | baseline (s) | ratio |")
    print("|---|---|---|---|---|")
    for name in BUILTIN_TASKS:
        task = get_task(name)
        steps = task.build(seed=0, batch_size=BATCH, device="cpu").steps_per_epoch
        run = planned(steps)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.repeats + 1):  # the first round warms up and is dropped
            setup = task.build(seed=0, batch_size=BATCH, device="cpu")
            start = time.perf_counter()
            train_run(setup, run)
            ours.append(time.perf_counter() - start)
            setup = task.build(seed=0, batch_size=BATCH, device="cpu")
            start = time.perf_counter()
            baseline(setup)
            theirs.append(time.perf_counter() - start)
        a, b = statistics.median(ours[1:]), statistics.median(theirs[1:])
        print(f"| {name} | {EPOCHS * steps} | {a:.4f} | {b:.4f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
