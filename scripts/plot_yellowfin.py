"""Draw docs/img/yellowfin_three_ways.png: YellowFin's tuned (lr, μ) run three ways.

    python scripts/plot_yellowfin.py [OUT.png]

A noisy least-squares problem (float64, minibatches of 8 from 256 samples, fixed seeds) is
trained with :class:`momentum_convert.optim.YellowFin`, recording the learning rate and momentum
it chose at each step. The same sequence and the same minibatches are then given to
``SutskeverSGD``, to ``torch.optim.SGD`` with ``correct_momentum(like="sutskever")`` and to plain
``torch.optim.SGD`` (the naive port, as the authors' PyTorch ``YFOptimizer`` runs it). It prints
the largest deviation of each replay from the YellowFin run and writes a three-panel figure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

from momentum_convert.optim import SutskeverSGD, YellowFin, correct_momentum

STEPS = 400
SAMPLES, FEATURES, BATCH = 256, 20, 8
DEFAULT_OUT = Path("docs/img/yellowfin_three_ways.png")


def problem() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Features with a wide range of scales, noisy targets, and the minibatch of every step."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-1, 0.5, FEATURES, dtype=torch.float64)
    features = torch.randn(SAMPLES, FEATURES, generator=generator, dtype=torch.float64) * scales
    truth = torch.randn(FEATURES, generator=generator, dtype=torch.float64)
    noise = torch.randn(SAMPLES, generator=generator, dtype=torch.float64)
    targets = features @ truth + 0.3 * noise
    batches = [torch.randint(SAMPLES, (BATCH,), generator=generator) for _ in range(STEPS)]
    return features, targets, batches


def yellowfin(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return YellowFin(params, lr=0.01, momentum=0.5)


def sutskever_sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return SutskeverSGD(params, lr=0.01, momentum=0.5)


def corrected_sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.5)
    correct_momentum(optimizer, like="sutskever")
    return optimizer


def naive_sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.5)


def train(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    schedule: list[tuple[float, float]] | None = None,
) -> tuple[list[float], list[tuple[float, float]], torch.Tensor]:
    """Full-data loss per step, the (lr, μ) used per step, and the final weights.

    With a ``schedule``, each step first sets the group's lr and momentum to its entry."""
    features, targets, batches = problem()
    weights = torch.zeros(FEATURES, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([weights])
    losses, used = [], []
    for step, batch in enumerate(batches):
        if schedule is not None:
            optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"] = schedule[step]
        optimizer.zero_grad()
        loss = 0.5 * torch.mean((features[batch] @ weights - targets[batch]) ** 2)
        loss.backward()
        optimizer.step()
        used.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        with torch.no_grad():
            losses.append(float(0.5 * torch.mean((features @ weights - targets) ** 2)))
    return losses, used, weights.detach()


def main(out: Path) -> None:
    tuned_losses, schedule, tuned_weights = train(yellowfin)
    replays = {
        "SutskeverSGD": train(sutskever_sgd, schedule),
        "torch SGD + correct_momentum": train(corrected_sgd, schedule),
        "torch SGD (naive port)": train(naive_sgd, schedule),
    }

    figure, (tuning, loss, deviation) = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True)
    steps = range(1, STEPS + 1)
    tuning.plot(steps, [lr for lr, _ in schedule], label="lr η_t", color="tab:blue")
    tuning.set_ylabel("η_t")
    momentum_axis = tuning.twinx()
    momentum_axis.plot(steps, [mu for _, mu in schedule], color="tab:orange", label="μ_t")
    momentum_axis.set_ylabel("μ_t")
    tuning.set_title("YellowFin's tuned learning rate (blue) and momentum (orange)")
    styles = {
        "SutskeverSGD": {"color": "tab:green", "linestyle": "-"},
        "torch SGD + correct_momentum": {"color": "black", "linestyle": ":"},
        "torch SGD (naive port)": {"color": "tab:red", "linestyle": "--"},
    }
    for name, result in replays.items():
        losses, _, weights = result
        loss.plot(steps, losses, label=name, **styles[name])
        gap = torch.linalg.vector_norm(weights - tuned_weights) / torch.linalg.vector_norm(
            tuned_weights
        )
        print(f"{name:30s} final relative distance to YellowFin's weights: {float(gap):.3g}")
    loss.set_yscale("log")
    loss.set_ylabel("full-data loss")
    loss.legend()
    loss.set_title("The same (η_t, μ_t) given to three optimizers")
    for name in ("torch SGD + correct_momentum", "torch SGD (naive port)"):
        losses = replays[name][0]
        gaps = [abs(a - b) / b + 1e-18 for a, b in zip(losses, tuned_losses, strict=True)]
        deviation.plot(steps, gaps, label=name, **styles[name])
    deviation.set_yscale("log")
    deviation.set_ylabel("|loss − YellowFin's| / loss")
    deviation.set_xlabel("step")
    deviation.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
