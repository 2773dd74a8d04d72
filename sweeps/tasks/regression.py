"""``regression``: a synthetic nonlinear regression, fixed data, a small MLP, MSE loss.

Inputs ``x ~ N(0, I_16)``; targets ``y = x·w + 0.5 sin(x·v) + 0.1 ξ`` with ``w``, ``v`` and
the noise ``ξ`` drawn once from a fixed seed, so every run sees the same 1,024 training
and 256 validation points. The model is a 16-32-1 tanh MLP; the loss mean squared error,
whose floor on validation is the noise variance 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from sweeps.tasks import TaskSetup
from sweeps.tasks.data import InMemoryBatches

DATA_SEED = 1_234
FEATURES = 16
TRAIN_SIZE = 1024
VAL_SIZE = 256


@lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, torch.Tensor]:
    train, val = TRAIN_SIZE, VAL_SIZE
    generator = torch.Generator().manual_seed(DATA_SEED)
    x = torch.randn(train + val, FEATURES, generator=generator, dtype=torch.float64)
    w = torch.randn(FEATURES, generator=generator, dtype=torch.float64) / FEATURES**0.5
    v = torch.randn(FEATURES, generator=generator, dtype=torch.float64)
    noise = torch.randn(train + val, generator=generator, dtype=torch.float64)
    y = x @ w + 0.5 * torch.sin(x @ v) + 0.1 * noise
    return x, y.unsqueeze(1)


@dataclass(frozen=True)
class SyntheticRegression:
    """The synthetic regression task (1,024 train, 256 validation points)."""

    name: str = "regression"
    has_accuracy: bool = False

    def build(
        self, *, seed: int, batch_size: int, device: str, dtype: torch.dtype = torch.float32
    ) -> TaskSetup:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(FEATURES, 32), nn.Tanh(), nn.Linear(32, 1))
        x, y = _data()
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        n = TRAIN_SIZE
        train = InMemoryBatches(
            x[:n], y[:n], batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        val = InMemoryBatches(x[n:], y[n:], 512, shuffle=False)
        return TaskSetup(
            model=model.to(device=device, dtype=dtype),
            train_loader=train,
            val_loader=val,
            loss_fn=nn.functional.mse_loss,
            steps_per_epoch=len(train),
            has_accuracy=False,
        )
