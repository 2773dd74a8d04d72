"""``cifar10-resnet20`` and ``cifar10-resnet56``: He et al. (2016)'s CIFAR-10 ResNets.

The models are :class:`~sweeps.tasks.resnet_cifar.CifarResNet` (option-A shortcuts,
0.27M and 0.85M parameters), the data CIFAR-10's python-pickle files
(:mod:`sweeps.tasks.cifar10_files`: ``data_dir`` / ``SWEEPS_DATA_DIR``, ``--download``).
Loss: cross-entropy; ``val_accuracy`` is reported.

Training data, the standard augmentation of the paper (section 4.2, after Lee et al.
2015): every epoch, each training image is padded by 4 zero pixels on each side, a random
32×32 crop is taken, and it is flipped horizontally with probability 1/2; then every
channel is normalised with the training images' per-channel mean and standard deviation
(computed from the loaded data, so CIFAR-format data of your own is normalised too). The
order is torchvision's ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``,
``ToTensor()``, ``Normalize(mean, std)``: the padding is black in pixel space.

The whole data set lives on the training device as ``uint8`` (150 MB for the 50,000 training
images), and :class:`AugmentedBatches` crops, flips and normalises each mini-batch there
with a few tensor operations: no DataLoader worker processes, no per-image Python. The
random crops, flips and the shuffle order are drawn from one generator seeded with the
run's seed, so the same seed gives the same batches on the same device.

Validation: by default the 10,000 test images. With ``validation_split = true`` the paper's
45k/5k split: a fixed tenth of the training images (chosen by a seed independent of the
run's) is held out for validation and the rest trained on; the test images are not used.

Task options (``[task_options]`` in the spec): ``validation_split`` (bool),
``precision`` (``"fp32"`` or ``"bf16"``: the forward pass under bf16 autocast),
``channels_last`` (bool: model and batches in channels-last memory format), ``augment``
(bool, default true). ``data_dir`` is the spec's top-level key.

Population mode stacks these models (``stackable``): ``torch.func.vmap`` runs K members'
convolutions as grouped convolutions, and each member's batch norm normalises with its own
batch statistics and updates its own running statistics (the stacked buffers are vmapped
inputs, so the in-place update is per member), so a member reproduces its run alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from sweeps.errors import SweepUsageError
from sweeps.tasks import TaskSetup
from sweeps.tasks.cifar10_files import data_root, download_cifar10, load_cifar10, require_present
from sweeps.tasks.resnet_cifar import Bf16Autocast, CifarResNet

#: The seed of the 45k/5k split; fixed so every run holds out the same images.
SPLIT_SEED: Final = 20_160_627
#: The paper's 5k of 50k held out.
VALIDATION_FRACTION: Final = 0.1
PADDING: Final = 4
SIZE: Final = 32
VALIDATION_BATCH: Final = 1000
PRECISIONS: Final = ("fp32", "bf16")


def augment(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator | None,
    *,
    crop_and_flip: bool = True,
) -> torch.Tensor:
    """Pad-4 random crops and horizontal flips of ``uint8`` ``images``, normalised.

    ``images`` is ``[n, 3, 32, 32]`` ``uint8`` on any device; the result is float32 on the
    same device: ``(crop(flip(pad(images / 255))) - mean) / std`` per channel, each image with
    its own offsets ``(dy, dx)`` in ``0..8`` and flip drawn from ``generator``.
    """
    x = images.to(torch.float32).div_(255.0)
    if crop_and_flip:
        n, device = x.shape[0], x.device
        padded = nn.functional.pad(x, (PADDING, PADDING, PADDING, PADDING))
        offsets = torch.randint(0, 2 * PADDING + 1, (2, n), generator=generator, device=device)
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        span = torch.arange(SIZE, device=device)
        rows = offsets[0, :, None] + span  # [n, 32]
        cols = offsets[1, :, None] + span
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        index_n = torch.arange(n, device=device)[:, None, None, None]
        index_c = torch.arange(x.shape[1], device=device)[None, :, None, None]
        x = padded[index_n, index_c, rows[:, None, :, None], cols[:, None, None, :]]
    return (x - mean[:, None, None]) / std[:, None, None]


class AugmentedBatches:
    """Shuffled, augmented mini-batches of ``uint8`` images held on the device.

    Every iteration is one epoch: a fresh permutation and fresh crops and flips, all from
    ``generator``. The last batch may be smaller (``drop_last=False``, as DataLoader).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        generator: torch.Generator | None,
        shuffle: bool = True,
        crop_and_flip: bool = True,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.generator = generator
        self.shuffle = shuffle
        self.crop_and_flip = crop_and_flip
        self.memory_format = memory_format

    def __len__(self) -> int:
        return math.ceil(self.images.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = self.images.shape[0]
        device = self.images.device
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator, device=device)
        else:
            order = torch.arange(count, device=device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = augment(
                self.images[index],
                self.mean,
                self.std,
                self.generator,
                crop_and_flip=self.crop_and_flip,
            )
            yield batch.contiguous(memory_format=self.memory_format), self.labels[index]


@dataclass(frozen=True)
class _DeviceData:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


@lru_cache(maxsize=2)
def _device_data(root: str, device: str, validation_split: bool) -> _DeviceData:
    """The data set on ``device`` once per process (every run of a worker reuses it)."""
    from pathlib import Path

    arrays = load_cifar10(Path(root))
    train_x, train_y = arrays.train_images, arrays.train_labels
    if validation_split:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(train_y))
        n_val = max(1, round(VALIDATION_FRACTION * len(train_y)))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        val_x, val_y = train_x[val], train_y[val]
        train_x, train_y = train_x[train], train_y[train]
    else:
        val_x, val_y = arrays.test_images, arrays.test_labels
    pixels = train_x.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255.0
    mean, std = pixels.mean(axis=1), pixels.std(axis=1)
    std = np.where(std > 0, std, 1.0)

    def on_device(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

    return _DeviceData(
        train_images=on_device(train_x, torch.uint8),
        train_labels=on_device(train_y, torch.int64),
        val_images=on_device(val_x, torch.uint8),
        val_labels=on_device(val_y, torch.int64),
        mean=on_device(mean, torch.float32),
        std=on_device(std, torch.float32),
    )


#: The options a spec's ``[task_options]`` may set, with their types.
OPTIONS: Final[dict[str, type]] = {
    "validation_split": bool,
    "precision": str,
    "channels_last": bool,
    "augment": bool,
}


@dataclass(frozen=True)
class Cifar10ResNet:
    """A CIFAR-10 ResNet of ``depth`` layers, trained with the standard augmentation."""

    name: str
    depth: int
    data_dir: str | None = None
    validation_split: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    augment: bool = True
    has_accuracy: bool = True
    #: Population mode stacks these models (batch norm included: ``sweeps.population``).
    stackable: bool = True

    def with_options(self, data_dir: str | None = None, **options: Any) -> Cifar10ResNet:
        """This task with the spec's ``data_dir`` and ``[task_options]``.

        Raises:
            SweepUsageError: an unknown option, or a value of the wrong type or range.
        """
        checked: dict[str, Any] = {}
        for key, value in options.items():
            if key not in OPTIONS:
                raise SweepUsageError(
                    f"task_options.{key} is not an option of {self.name}; its options are"
                    f" {', '.join(OPTIONS)}."
                )
            kind = OPTIONS[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise SweepUsageError(
                    f"task_options.{key} must be a {kind.__name__}, got {value!r}."
                )
            checked[key] = value
        if checked.get("precision", self.precision) not in PRECISIONS:
            raise SweepUsageError(
                f"task_options.precision must be one of {', '.join(PRECISIONS)},"
                f" got {checked['precision']!r}."
            )
        if data_dir is not None:
            checked["data_dir"] = str(data_dir)
        return replace(self, **checked)

    def options(self) -> Mapping[str, Any]:
        """The task options that differ from the defaults (what a spec stores)."""
        default = type(self)(self.name, self.depth)
        return {
            key: getattr(self, key)
            for key in ("data_dir", *OPTIONS)
            if getattr(self, key) != getattr(default, key)
        }

    def prepare(self, *, download: bool = False) -> None:
        """Make sure the data is on disk: download it when asked, else say how to get it.

        Raises:
            SweepUsageError: the data is missing and ``download`` is false.
            SweepError: the download failed.
        """
        root = data_root(self.data_dir)
        if download:
            download_cifar10(root)
        require_present(root)

    def build(self, *, seed: int, batch_size: int, device: str) -> TaskSetup:
        """A fresh ResNet (initialised from ``seed``) and this seed's batches on ``device``."""
        root = data_root(self.data_dir)
        data = _device_data(str(root), device, self.validation_split)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        torch.manual_seed(seed)
        model: nn.Module = CifarResNet(self.depth).to(device=device, memory_format=memory_format)
        if self.precision == "bf16":
            model = Bf16Autocast(model, torch.device(device).type)
        generator = torch.Generator(device=device).manual_seed(seed)
        train = AugmentedBatches(
            data.train_images,
            data.train_labels,
            batch_size,
            data.mean,
            data.std,
            generator=generator,
            crop_and_flip=self.augment,
            memory_format=memory_format,
        )
        val = AugmentedBatches(
            data.val_images,
            data.val_labels,
            VALIDATION_BATCH,
            data.mean,
            data.std,
            generator=None,
            shuffle=False,
            crop_and_flip=False,
            memory_format=memory_format,
        )
        return TaskSetup(
            model=model,
            train_loader=train,
            val_loader=val,
            loss_fn=nn.functional.cross_entropy,
            steps_per_epoch=len(train),
            has_accuracy=True,
        )


def cifar10_tasks() -> tuple[Cifar10ResNet, ...]:
    """The built-in CIFAR-10 tasks."""
    return (Cifar10ResNet("cifar10-resnet20", 20), Cifar10ResNet("cifar10-resnet56", 56))
