"""Speed of ``SutskeverSGD`` and ``correct_momentum`` against ``torch.optim.SGD``, in one run.

Shapes: the 62 parameter tensors of ResNet-18 (11.7M float32 values, built here without
torchvision) and 2,000 tensors x 1,000 values; then 62 and 2,000 tensors of one value each,
where the step is pure per-tensor and Python overhead. On CPU with 2 threads, and on CUDA when a GPU
is present. Every variant gets its own parameters and momentum state and shares one set of
fixed gradients; momentum 0.9 and weight decay 1e-4 everywhere. Repetitions are interleaved
(every variant once per repetition, in a new random order each time) so that load on the machine
hits all variants alike; times are medians over repetitions, and each ratio is the median of the
per-repetition ratios against its baseline (paired, so slow phases of a shared machine cancel).

Reported, per device and shape:

* ``SutskeverSGD.step`` / ``torch.optim.SGD(fused=True).step`` (goal <= 1.0), for
  SutskeverSGD's default (fused) and its multi-tensor and per-tensor paths, with the learning
  rate constant and with the learning rate changed before every step (the worst case: one
  rescaling ``_foreach_mul_`` per step);
* the time ``correct_momentum`` adds to the step it wraps (goal <= 3 %), constant lr: as a
  paired ratio, and, below the noise floor of that ratio, the pre-hook's own time per step;
* achieved bytes/s of each step (an SGD step with momentum reads θ, g, b and writes θ, b:
  5 x 4 bytes per float32 value) against a memory-bandwidth ceiling measured in the same run:
  an in-place ``x += s·y`` over flat buffers as large as the parameters (reads x, y, writes x:
  12 bytes per value; in place like the optimizer step, so no write-allocate traffic is hidden
  from the count, which an out-of-place triad ``z = x + s·y`` would have).
* an A/A control: a second, identical ``torch.optim.SGD(fused=True)``, whose ratio to the first
  shows how far two equal steps differ on this machine (the noise floor of every ratio).

Usage: ``python benchmarks/bench_optim.py [--repetitions 40] [--steps 1] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from momentum_convert.optim import SutskeverSGD, correct_momentum

HYPER = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}


def resnet18_shapes() -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's resnet18(): 62 tensors, 11,689,512 values."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_channels = 64
    for stage, channels in enumerate((64, 128, 256, 512)):
        for block in range(2):
            downsample = block == 0 and stage > 0
            first_in = in_channels if block == 0 else channels
            shapes += [(channels, first_in, 3, 3), (channels,), (channels,)]
            shapes += [(channels, channels, 3, 3), (channels,), (channels,)]
            if downsample:
                shapes += [(channels, first_in, 1, 1), (channels,), (channels,)]
        in_channels = channels
    shapes += [(1000, 512), (1000,)]
    return shapes


SHAPES = {
    "resnet18 (62 tensors, 11.7M)": resnet18_shapes(),
    "2000 x 1000": [(1000,)] * 2000,
    # One value per tensor: the step is all per-tensor and Python overhead, no memory traffic.
    "overhead only, 62 x 1": [(1,)] * 62,
    "overhead only, 2000 x 1": [(1,)] * 2000,
}


@dataclass
class Variant:
    name: str
    step: Callable[[], None]
    baseline: str | None = None  # the variant this one's ratio is taken against


def make_params(shapes: list[tuple[int, ...]], grads: list[torch.Tensor], device: str):
    params = [torch.nn.Parameter(torch.randn(s, device=device)) for s in shapes]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    return params


def variants(
    shapes: list[tuple[int, ...]], device: str, hook_alone: list[torch.optim.Optimizer]
) -> list[Variant]:
    grads = [torch.randn(s, device=device) * 1e-3 for s in shapes]

    def new(factory: Callable[..., torch.optim.Optimizer], **kw: object) -> torch.optim.Optimizer:
        return factory(make_params(shapes, grads, device), **HYPER, **kw)

    torch_fused = new(torch.optim.SGD, fused=True)
    torch_fused_again = new(torch.optim.SGD, fused=True)
    torch_foreach = new(torch.optim.SGD, foreach=True)
    torch_loop = new(torch.optim.SGD, foreach=False, fused=False)
    ours = new(SutskeverSGD)
    ours_foreach = new(SutskeverSGD, foreach=True)
    ours_loop = new(SutskeverSGD, foreach=False, fused=False)
    ours_changing = new(SutskeverSGD)
    torch_corrected = new(torch.optim.SGD, fused=True)
    correct_momentum(torch_corrected, like="sutskever")
    ours_corrected = new(SutskeverSGD)
    correct_momentum(ours_corrected, like="pytorch")
    lrs = iter([0.01, 0.011] * 10**7)

    def changing_lr_step() -> None:
        ours_changing.param_groups[0]["lr"] = next(lrs)
        ours_changing.step()

    hook_alone.append(torch_corrected)
    return [
        Variant("torch SGD fused", torch_fused.step),
        Variant("torch SGD fused, A/A control", torch_fused_again.step, "torch SGD fused"),
        Variant("torch SGD foreach", torch_foreach.step, "torch SGD fused"),
        Variant("torch SGD for-loop", torch_loop.step, "torch SGD fused"),
        Variant("SutskeverSGD (default: fused)", ours.step, "torch SGD fused"),
        Variant("SutskeverSGD foreach", ours_foreach.step, "torch SGD fused"),
        Variant("SutskeverSGD for-loop", ours_loop.step, "torch SGD fused"),
        Variant("SutskeverSGD, lr changed every step", changing_lr_step, "torch SGD fused"),
        Variant("torch SGD fused + correct_momentum", torch_corrected.step, "torch SGD fused"),
        Variant(
            "SutskeverSGD + correct_momentum",
            ours_corrected.step,
            "SutskeverSGD (default: fused)",
        ),
    ]


def axpy(n_values: int, device: str) -> Callable[[], None]:
    x, y = (torch.randn(n_values, device=device) for _ in range(2))
    return lambda: x.add_(y, alpha=1e-6)


def correction_hook_seconds(optimizer: torch.optim.Optimizer, calls: int = 2000) -> float:
    """Median seconds of one call of the step pre-hook(s) ``correct_momentum`` registered."""
    hooks = list(optimizer._optimizer_step_pre_hooks.values())
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            for hook in hooks:
                hook(optimizer, (), {})
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    steps: dict[str, Callable[[], None]], device: str, repetitions: int, per: int
) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per repetition.

    Repetitions are interleaved across functions, in a new random order each time, so that
    the load of a shared machine falls on all of them alike.
    """
    for step in steps.values():  # warm-up: allocations, first-step buffers, lazy init
        for _ in range(3):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    shuffler = random.Random(0)
    for _ in range(repetitions):
        shuffler.shuffle(order)
        for name in order:
            step = steps[name]
            synchronize(device)
            start = time.perf_counter()
            for _ in range(per):
                step()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / per)
    return samples


def paired_ratio(samples: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over repetitions of time(name) / time(baseline) within the same repetition."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[baseline], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1, help="steps timed per repetition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the shapes whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {platform.machine()}, {platform.processor() or '?'}, "
          f"{torch.get_num_threads()} threads, devices: {', '.join(devices)}")  # fmt: skip
    for device in devices:
        for shape_name, shapes in SHAPES.items():
            if args.only not in shape_name:
                continue
            n_values = sum(torch.Size(s).numel() for s in shapes)
            corrected: list[torch.optim.Optimizer] = []
            found = variants(shapes, device, corrected)
            timed = {v.name: v.step for v in found}
            timed["bandwidth axpy"] = axpy(n_values, device)
            samples = measure(timed, device, args.repetitions, args.steps)
            ceiling = 12 * n_values / statistics.median(samples["bandwidth axpy"])
            print(f"\n### {device}, {shape_name}: {n_values:,} float32 values")
            print(f"bandwidth ceiling (in-place axpy, median): {ceiling / 1e9:.1f} GB/s\n")
            print("| variant | median ms/step | paired ratio | against | GB/s | % of ceiling |")
            print("|---|---:|---:|---|---:|---:|")
            for variant in found:
                seconds = statistics.median(samples[variant.name])
                if variant.baseline:
                    ratio = f"{paired_ratio(samples, variant.name, variant.baseline):.3f}"
                else:
                    ratio = "1"
                rate = 20 * n_values / seconds
                print(f"| {variant.name} | {seconds * 1e3:.2f} | {ratio} | "
                      f"{variant.baseline or ''} | {rate / 1e9:.1f} | "
                      f"{100 * rate / ceiling:.0f} % |")  # fmt: skip
            hook = correction_hook_seconds(corrected[0])
            step = statistics.median(samples["torch SGD fused"])
            print(
                "\ncorrect_momentum(like='sutskever') pre-hook alone, constant lr: "
                f"{hook * 1e6:.1f} µs per step = {100 * hook / step:.2f} % of the fused step"
            )


if __name__ == "__main__":
    main()
