"""``digits-mlp`` and ``digits-cnn``: scikit-learn's bundled 8×8 handwritten digits.

1,797 images of the digits 0-9 (``sklearn.datasets.load_digits``, shipped inside
scikit-learn, so nothing downloads), pixel values 0-16 scaled to [0, 1]. A fixed split
(seeded independently of the run's seed) keeps 1,437 images for training and 360 for
validation. Loss: cross-entropy; ``val_accuracy`` is reported.

Sizes are chosen for sweeps on a laptop CPU: an epoch of the MLP at batch size 32 (45
steps) takes a few tens of milliseconds.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sweeps.tasks import TaskSetup
from sweeps.tasks.data import InMemoryBatches

#: The seed of the train / validation split; fixed so every run sees the same data.
SPLIT_SEED = 20_131_017
VALIDATION_FRACTION = 0.2


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 flattened images (0-16) and labels of ``sklearn.datasets.load_digits``.

    The file ships inside scikit-learn; reading it directly skips importing scikit-learn
    (about 1.5 s per worker process), and ``load_digits`` is the fallback.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    data = load_digits()
    return data.data, data.target.astype(np.int64)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pixels, labels = _load_digits()
    images = pixels.astype(np.float64) / 16.0
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_val = round(VALIDATION_FRACTION * len(labels))
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


def _setup(
    model: nn.Module, *, seed: int, batch_size: int, device: str, dtype: torch.dtype, flat: bool
) -> TaskSetup:
    train_x, train_y, val_x, val_y = _digits()
    shape = (-1, 64) if flat else (-1, 1, 8, 8)

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x.reshape(shape), dtype=dtype, device=device)

    generator = torch.Generator().manual_seed(seed)
    train = InMemoryBatches(
        tensor(train_x),
        torch.as_tensor(train_y, device=device),
        batch_size,
        shuffle=True,
        generator=generator,
    )
    val = InMemoryBatches(tensor(val_x), torch.as_tensor(val_y, device=device), 512, shuffle=False)
    return TaskSetup(
        model=model.to(device=device, dtype=dtype),
        train_loader=train,
        val_loader=val,
        loss_fn=nn.functional.cross_entropy,
        steps_per_epoch=len(train),
        has_accuracy=True,
    )


@dataclass(frozen=True)
class DigitsMLP:
    """A 64-64-10 ReLU MLP on the flattened 8×8 digits."""

    name: str = "digits-mlp"
    has_accuracy: bool = True
    hidden: int = 64

    def build(
        self, *, seed: int, batch_size: int, device: str, dtype: torch.dtype = torch.float32
    ) -> TaskSetup:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 10))
        return _setup(
            model, seed=seed, batch_size=batch_size, device=device, dtype=dtype, flat=True
        )


@dataclass(frozen=True)
class DigitsCNN:
    """Two 3×3 convolutions (16, 32 channels), a 2×2 max-pool and a linear classifier."""

    name: str = "digits-cnn"
    has_accuracy: bool = True

    def build(
        self, *, seed: int, batch_size: int, device: str, dtype: torch.dtype = torch.float32
    ) -> TaskSetup:
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )
        return _setup(
            model, seed=seed, batch_size=batch_size, device=device, dtype=dtype, flat=False
        )
