"""The CIFAR ResNets of He et al. (2016), section 4.2, with option-A shortcuts.

The network, as the paper describes it for 32×32 inputs: a 3×3 convolution with 16 filters,
then three stages of ``n`` basic blocks (two 3×3 convolutions each) with 16, 32 and 64
filters on feature maps of 32×32, 16×16 and 8×8 (the first convolution of stages 2 and 3
has stride 2), then global average pooling and a 10-way fully connected layer: ``6n + 2``
weighted layers (ResNet-20: ``n = 3``, ResNet-56: ``n = 9``). Batch normalisation follows
every convolution, before the ReLU. Every shortcut is the identity (option A): where a
block halves the map and doubles the channels, the shortcut takes every second pixel and
pads the new channels with zeros, so it has no parameters. Table 6 of the paper gives
0.27M parameters for ResNet-20 and 0.85M for ResNet-56.

Initialisation: convolutions ``N(0, 2 / (k² · c_out))`` ("He" initialisation, the paper's
reference [13]), as fb.resnet.torch's ``models/resnet.lua`` (``ConvInit``) and torchvision's
``resnet.py`` do; batch-norm weights 1 and biases 0; the classifier keeps PyTorch's default.

References:
    He, Zhang, Ren & Sun (2016), "Deep Residual Learning for Image Recognition", CVPR,
    section 4.2 and Table 6.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and pad the missing channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = functional.pad(x, (0, 0, 0, 0, half, self.extra - half))
        return x


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm, and the identity (option A) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return functional.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The ``6n + 2``-layer CIFAR ResNet (``depth = 6n + 2``: 20, 32, 44, 56, 110)."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}."
            )
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_channels = 16
        for stage, channels in enumerate((16, 32, 64)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.stages = nn.Sequential(*layers)
        self.classifier = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1))


class Bf16Autocast(nn.Module):
    """``model`` run under bf16 autocast; its output is cast back to float32 for the loss."""

    def __init__(self, model: nn.Module, device_type: str) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()
