"""``nqm``: the noisy quadratic model, the standard toy for momentum and schedule studies.

Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue & Grosse (2019), "Which algorithmic
choices matter at which batch sizes? Insights from a noisy quadratic model", NeurIPS:

.. math::

    L(\\theta) = \\tfrac12 \\sum_i h_i \\theta_i^2, \\qquad
    g = H\\theta + \\varepsilon, \\quad
    \\varepsilon \\sim \\mathcal N\\!\\left(0, \\tfrac{C}{B}\\right), \\quad C = H,

with diagonal curvature ``h_i = 1/i`` (``i = 1..dim``), gradient noise whose covariance
shrinks as ``1/B`` with the batch size ``B``, and ``θ_0 ~ N(0, I)`` drawn from the run's
seed. Each optimizer step draws fresh noise from a generator seeded by the run's seed.

The minibatch loss is ``L(θ) + ε·θ`` (its gradient is exactly ``Hθ + ε``); ``train_loss``
is its epoch mean, and ``val_loss`` the noise-free risk ``L(θ)`` at the end of the epoch.
An "epoch" is ``ceil(examples / B)`` steps of a virtual data set of ``examples`` points,
so that larger batches take fewer steps per epoch, as on real data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sweeps.tasks import TaskSetup


class QuadraticModel(nn.Module):
    """The parameters ``θ`` and the diagonal curvature ``h`` (a buffer)."""

    curvature: torch.Tensor

    def __init__(self, curvature: torch.Tensor, theta0: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("curvature", curvature)
        self.theta = nn.Parameter(theta0)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """``½ Σ h θ² + ε·θ``: the minibatch loss, whose gradient is ``Hθ + ε``."""
        theta = self.theta
        return 0.5 * torch.dot(self.curvature * theta, theta) + torch.dot(noise, theta)


class GradientNoise:
    """One epoch of ``steps`` noise vectors ``ε ~ N(0, H/B)`` from a seeded generator."""

    def __init__(
        self, scale: torch.Tensor, steps: int, generator: torch.Generator, device: str
    ) -> None:
        self.scale = scale
        self.steps = steps
        self.generator = generator
        self.device = device

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        draws = torch.randn(
            (self.steps, self.scale.shape[0]), generator=self.generator, dtype=self.scale.dtype
        ).to(self.device)
        noise = draws * self.scale
        nothing = torch.zeros((), device=self.device)
        for row in noise:
            yield row, nothing


def _model_output(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The model already returns the loss; the target is unused."""
    return output


@dataclass(frozen=True)
class NoisyQuadratic:
    """The NQM with ``dim`` directions of curvature ``1/i`` and ``examples`` per epoch."""

    name: str = "nqm"
    has_accuracy: bool = False
    dim: int = 100
    examples: int = 1024

    def build(
        self, *, seed: int, batch_size: int, device: str, dtype: torch.dtype = torch.float32
    ) -> TaskSetup:
        torch.manual_seed(seed)
        curvature = 1.0 / torch.arange(1, self.dim + 1, dtype=torch.float64)
        theta0 = torch.randn(self.dim, dtype=torch.float64)
        model = QuadraticModel(curvature, theta0).to(device=device, dtype=dtype)
        steps = math.ceil(self.examples / batch_size)
        scale = torch.sqrt(curvature / batch_size).to(dtype)
        generator = torch.Generator().manual_seed(seed)
        train = GradientNoise(scale, steps, generator, device)
        val = [(torch.zeros(self.dim, dtype=dtype, device=device), torch.zeros((), device=device))]
        return TaskSetup(
            model=model,
            train_loader=train,
            val_loader=val,
            loss_fn=_model_output,
            steps_per_epoch=steps,
            has_accuracy=False,
        )
