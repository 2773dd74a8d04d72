"""The GPU check: every GPU-related test and measurement of the project, in one command.

Run it first whenever a GPU is lent (``bash scripts/gpu_check.sh``; under 8 minutes on one
H100). It prints, and writes to ``--out``, one Markdown block for ``benchmarks/RESULTS.md``
that names the machine. Each step measures its subject and its baseline in the same run:

1. ``cuda-tests``: ``pytest -m cuda`` (every CUDA test of the suite).
2. ``optimizer``: ``SutskeverSGD.step`` / ``torch.optim.SGD(fused=True).step`` on ResNet-18's
   62 parameter tensors (goal <= 1.0x), paired repetitions (``bench_optim.py``).
3. ``population``: digits-mlp trials trained as one population vs one at a time, seconds
   per trial (goal >= 20x).
4. ``cifar-sweep``: a real sweep of ``cifar10-resnet20`` (the ``resnet_cifar10`` recipe, bf16,
   channels-last) on full-size random data in CIFAR-10's format (50,000 + 10,000 images),
   2 epochs, 8 trials, one worker: images/s per trial, trials/hour, GPU utilisation sampled
   with ``nvidia-smi`` every 0.2 s (goal >= 80 %), and the ratio to a plain training loop of
   the same model over the same batches written here (goal: within 2x). Also the stacking
   proxy: images/s at batch 4 x 128 over batch 128.
5. ``cifar-population``: K ResNet-20 runs trained as one population (vmap, grouped
   convolutions, per-member batch norm) vs one at a time, seconds per run (docs/population.md).
6. ``devices-auto``: ``sweeps run --devices auto`` on a small digits sweep: one worker per
   GPU (distinct worker processes in the study, and GPUs that ran one).

``--dry`` runs on a CPU with tiny sizes (CI runs it: tests/benchmarks/test_gpu_check.py):
every step that can run without CUDA runs, so none of this code can rot between GPU runs;
the others print ``skipped: no CUDA device``. Dry figures are not measurements.

Usage: ``python benchmarks/gpu_check.py [--dry] [--out FILE] [--only STEP,...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = "skipped: no CUDA device"


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the real check, or the dry run's tiny version."""

    optimizer_repetitions: int
    population_members: int
    population_sample: int
    population_epochs: int
    cifar_train: int
    cifar_test: int
    cifar_trials: int
    cifar_epochs: int
    batch_size: int
    auto_trials_per_device: int
    resnet_members: int
    resnet_population_train: int


REAL = Sizes(30, 256, 8, 10, 50_000, 10_000, 8, 2, 128, 4, 8, 10_000)
DRY = Sizes(2, 4, 2, 1, 64, 16, 1, 1, 16, 1, 2, 64)


@dataclass
class Report:
    """The Markdown block, filled step by step."""

    device: str
    dry: bool
    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        for line in ("", f"### {title}", ""):
            self.add(line)

    def add(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines).strip() + "\n"


def machine(device: str) -> str:
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU"
    count = torch.cuda.device_count() if device == "cuda" else 0
    return (
        f"{gpu} x{count}, {os.cpu_count()} CPU cores ({platform.machine()}), Python"
        f" {platform.python_version()}, torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}" if device == "cuda" else "")
    )


def sweeps_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sweeps.cli import main; main()", *args]


# --- GPU utilisation ----------------------------------------------------------------------


class UtilisationSampler:
    """``nvidia-smi``'s GPU utilisation (percent), sampled every ``period`` s in a thread."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.samples: list[list[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                self.samples.append([int(v) for v in out.split()])
            self._stop.wait(self.period)

    @contextlib.contextmanager
    def running(self) -> Iterator[UtilisationSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def summary(self, gpu: int = 0) -> tuple[float, float, int]:
        """Mean over all samples, mean from the first to the last busy sample, and count."""
        values = [s[gpu] for s in self.samples if len(s) > gpu]
        if not values:
            return float("nan"), float("nan"), 0
        busy = [i for i, v in enumerate(values) if v > 0]
        during = values[busy[0] : busy[-1] + 1] if busy else values
        return statistics.fmean(values), statistics.fmean(during), len(values)


# --- the steps ----------------------------------------------------------------------------


def step_cuda_tests(report: Report, sizes: Sizes) -> None:
    if report.device != "cuda":
        report.add(SKIPPED)
        return
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run([*command, "tests"], cwd=ROOT, capture_output=True, text=True)
    tail = [line for line in done.stdout.splitlines() if line.strip()][-1:]
    report.add(f"`pytest -m cuda`: exit {done.returncode}, {tail[0] if tail else 'no output'}")
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    for line in failures[:10]:
        report.add(f"- {line}")


def step_optimizer(report: Report, sizes: Sizes) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_optim

    from momentum_convert.optim import SutskeverSGD

    device = report.device
    shapes = bench_optim.resnet18_shapes()
    if report.dry:
        shapes = [tuple(max(1, d // 16) for d in s) for s in shapes]  # same 62 tensors, tiny
    grads = [torch.randn(s, device=device) * 1e-3 for s in shapes]
    hyper = bench_optim.HYPER
    ours = SutskeverSGD(bench_optim.make_params(shapes, grads, device), **hyper)
    fused = torch.optim.SGD(bench_optim.make_params(shapes, grads, device), fused=True, **hyper)
    again = torch.optim.SGD(bench_optim.make_params(shapes, grads, device), fused=True, **hyper)
    steps = {"SutskeverSGD": ours.step, "SGD fused": fused.step, "SGD fused again": again.step}
    samples = bench_optim.measure(steps, device, sizes.optimizer_repetitions, 5)
    ratio = bench_optim.paired_ratio(samples, "SutskeverSGD", "SGD fused")
    control = bench_optim.paired_ratio(samples, "SGD fused again", "SGD fused")
    ms = {name: 1e3 * statistics.median(v) for name, v in samples.items()}
    report.add("| step | median ms | paired ratio to SGD fused |")
    report.add("|---|---:|---:|")
    report.add(f"| torch.optim.SGD(fused=True) | {ms['SGD fused']:.3f} | 1 |")
    report.add(f"| SutskeverSGD (default) | {ms['SutskeverSGD']:.3f} | {ratio:.3f} |")
    report.add(f"| SGD fused, A/A control | {ms['SGD fused again']:.3f} | {control:.3f} |")
    report.add(f"\nGoal <= 1.0x: {ratio:.3f}x ({'met' if ratio <= 1.0 else 'not met'};"
               f" the A/A control shows the noise floor).")  # fmt: skip


def step_population(report: Report, sizes: Sizes) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_population import random_runs

    from sweeps.population import train_population
    from sweeps.tasks import get_task
    from sweeps.training import train_run

    device = "cuda:0" if report.device == "cuda" else "cpu"
    task = get_task("digits-mlp")
    runs = random_runs("digits-mlp", sizes.population_members, sizes.population_epochs, 32)
    train_run(task, runs[0], device=device)  # warm-up: CUDA context, kernels
    synchronize()
    start = time.perf_counter()
    for run in runs[: sizes.population_sample]:
        train_run(task, run, device=device)
    synchronize()
    alone = (time.perf_counter() - start) / sizes.population_sample
    start = time.perf_counter()
    train_population(task, runs, device=device)
    synchronize()
    together = (time.perf_counter() - start) / len(runs)
    speedup = alone / together
    report.add(f"digits-mlp, {sizes.population_epochs} epochs, batch 32, on {device}:")
    report.add(f"one at a time {alone:.3f} s/trial ({sizes.population_sample} trials);"
               f" population of {len(runs)}: {together:.4f} s/trial; **{speedup:.1f}x**"
               f" (goal >= 20x: {'met' if speedup >= 20 else 'not met'}).")  # fmt: skip


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


CIFAR_SPEC = """
name = "gpu-check-resnet20"
task = "cifar10-resnet20"
recipe = "resnet_cifar10"
optimizers = ["sutskever"]
pairing = false
data_dir = "{data}"
seeds = 1
sampler = "random"
n_trials = {trials}
objective = "val_accuracy"
[task_options]
precision = "{precision}"
channels_last = {channels_last}
[search_space]
batch_size = {batch}
epochs = {epochs}
"""


def plain_loop_images_per_second(
    data: Path, device: str, batch: int, precision: str, channels_last: bool, epochs: int = 1
) -> tuple[float, float]:
    """The baseline: a plain PyTorch loop over the same model and batches (one warm-up
    epoch, then ``epochs`` timed), and the stacking proxy: images/s at 4 x batch / at batch."""
    from sweeps.tasks import get_task

    task = get_task("cifar10-resnet20").with_options(
        data_dir=str(data), precision=precision, channels_last=channels_last
    )

    def rate(batch_size: int) -> float:
        setup = task.build(seed=0, batch_size=batch_size, device=device)
        model = setup.model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        model.train()
        timed = 0.0
        images = 0
        for epoch in range(1 + epochs):
            synchronize()
            start = time.perf_counter()
            for inputs, targets in setup.train_loader:
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                loss.backward()
                optimizer.step()
                if epoch:
                    images += targets.shape[0]
            synchronize()
            if epoch:
                timed += time.perf_counter() - start
        return images / timed

    single = rate(batch)
    return single, rate(4 * batch) / single


def step_cifar_sweep(report: Report, sizes: Sizes, scratch: Path) -> None:
    import optuna

    from storage.queries import metrics_frame
    from sweeps.tasks.cifar10_files import random_cifar10, write_cifar10

    cuda = report.device == "cuda"
    data = scratch / "cifar"
    write_cifar10(data, random_cifar10(sizes.cifar_train, sizes.cifar_test, seed=0))
    precision, channels_last = ("bf16", True) if cuda else ("fp32", False)
    spec = scratch / "resnet.toml"
    spec.write_text(CIFAR_SPEC.format(
        data=data, trials=sizes.cifar_trials, precision=precision,
        channels_last=str(channels_last).lower(), batch=sizes.batch_size,
        epochs=sizes.cifar_epochs,
    ))  # fmt: skip
    url = f"sqlite:///{scratch / 'resnet.db'}"
    device = "cuda:0" if cuda else "cpu"
    sampler = UtilisationSampler()
    start = time.perf_counter()
    with sampler.running() if cuda else contextlib.nullcontext():
        done = subprocess.run(
            sweeps_command(
                "run", str(spec), "--storage", url, "--devices", device, "--no-progress"
            ),
            capture_output=True,
            text=True,
        )
    wall = time.perf_counter() - start
    report.add(f"`sweeps run` exit {done.returncode}: {done.stderr.strip().splitlines()[:1]}")
    if done.returncode:
        report.add(f"```\n{done.stderr[-2000:]}\n```")
        return
    frame = metrics_frame(url)
    last = frame[frame["metric"] == "train_loss"].groupby("trial")["wall_time"].max()
    train_images = round(sizes.cifar_train)
    per_trial = sizes.cifar_epochs * train_images / last
    study = optuna.load_study(study_name="gpu-check-resnet20", storage=url)
    finished = sum(t.state.is_finished() for t in study.trials)
    trials_per_hour = 3600 * finished / wall
    plain, stacked = plain_loop_images_per_second(
        data, device, sizes.batch_size, precision, channels_last
    )
    ratio = plain / statistics.median(per_trial)
    report.add(f"cifar10-resnet20, {precision}, channels_last={channels_last}, batch"
               f" {sizes.batch_size}, {train_images:,} training images, {sizes.cifar_epochs}"
               f" epochs, {finished} trials, one worker on {device}:")  # fmt: skip
    report.add("")
    rows = [
        ("images/s per trial (training + evaluation), median", f"{per_trial.median():,.0f}"),
        ("images/s per trial, min .. max", f"{per_trial.min():,.0f} .. {per_trial.max():,.0f}"),
        ("plain PyTorch loop, same model and batches (training only)", f"{plain:,.0f}"),
        ("plain / sweep (goal <= 2x)", f"{ratio:.2f}x"),
        (f"trials per hour (whole `sweeps run`, {wall:.0f} s)", f"{trials_per_hour:,.0f}"),
        (f"stacking proxy: images/s at batch {4 * sizes.batch_size} / at {sizes.batch_size}",
         f"{stacked:.2f}"),
    ]  # fmt: skip
    if cuda:
        mean, during, count = sampler.summary()
        rows.append((f"GPU utilisation, mean of {count} nvidia-smi samples", f"{mean:.0f} %"))
        rows.append(
            ("GPU utilisation, first to last busy sample (goal >= 80 %)", f"{during:.0f} %")
        )
    else:
        rows.append(("GPU utilisation", SKIPPED))
    report.add("| measure | value |")
    report.add("|---|---:|")
    for name, value in rows:
        report.add(f"| {name} | {value} |")


def step_cifar_population(report: Report, sizes: Sizes, scratch: Path) -> None:
    from dataclasses import replace

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_population import random_runs

    from sweeps.population import train_population
    from sweeps.tasks import get_task
    from sweeps.tasks.cifar10_files import random_cifar10, write_cifar10
    from sweeps.training import train_run

    cuda = report.device == "cuda"
    device = "cuda:0" if cuda else "cpu"
    write_cifar10(scratch, random_cifar10(sizes.resnet_population_train, 16, seed=0))
    task = get_task("cifar10-resnet20").with_options(
        data_dir=str(scratch), precision="bf16" if cuda else "fp32", channels_last=cuda
    )
    steps = task.build(seed=0, batch_size=sizes.batch_size, device=device).steps_per_epoch
    template = random_runs("digits-mlp", sizes.resnet_members, 1, sizes.batch_size)
    runs = [
        replace(run, lr=run.lr[:1].repeat(steps), momentum=run.momentum[:1].repeat(steps))
        for run in template
    ]
    train_run(task, runs[0], device=device)  # warm-up
    synchronize()
    start = time.perf_counter()
    for run in runs:
        train_run(task, run, device=device)
    synchronize()
    alone = (time.perf_counter() - start) / len(runs)
    start = time.perf_counter()
    train_population(task, runs, device=device)
    synchronize()
    together = (time.perf_counter() - start) / len(runs)
    report.add(f"cifar10-resnet20, {sizes.resnet_population_train:,} images, 1 epoch, batch"
               f" {sizes.batch_size}, on {device}: one at a time {alone:.2f} s/run; population"
               f" of {len(runs)}: {together:.2f} s/run; **{alone / together:.2f}x**.")  # fmt: skip


AUTO_SPEC = """
name = "gpu-check-auto"
task = "digits-mlp"
optimizers = ["pytorch"]
pairing = false
seeds = 1
sampler = "random"
n_trials = {trials}
[search_space]
lr = {{ low = 0.01, high = 0.3, log = true }}
momentum = 0.9
batch_size = 32
epochs = {epochs}
"""


def step_devices_auto(report: Report, sizes: Sizes, scratch: Path) -> None:
    import optuna

    from sweeps.devices import parse_devices

    placement = parse_devices("auto")
    gpus = len([d for d in placement if d.kind == "cuda"])
    spec = scratch / "auto.toml"
    trials = sizes.auto_trials_per_device * max(1, gpus)
    spec.write_text(AUTO_SPEC.format(trials=trials, epochs=20 if gpus else 1))
    url = f"sqlite:///{scratch / 'auto.db'}"
    seen_gpus: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # which GPUs run a compute process during the sweep
        query = ["nvidia-smi", "--query-compute-apps=gpu_uuid", "--format=csv,noheader"]
        while not stop.is_set():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                seen_gpus.update(line.strip() for line in out.splitlines() if line.strip())
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    if gpus:
        watcher.start()
    done = subprocess.run(
        sweeps_command("run", str(spec), "--storage", url, "--devices", "auto", "--no-progress"),
        capture_output=True,
        text=True,
    )
    stop.set()
    if gpus:
        watcher.join()
    report.add(f"`sweeps run --devices auto`: exit {done.returncode}, placement"
               f" {', '.join(map(str, placement))}")  # fmt: skip
    if done.returncode:
        report.add(f"```\n{done.stderr[-2000:]}\n```")
        return
    study = optuna.load_study(study_name="gpu-check-auto", storage=url)
    workers = {t.user_attrs.get("sweeps:worker") for t in study.trials}
    expected = max(1, gpus)
    verdict = "one per device" if len(workers) == expected else "NOT one per device"
    report.add(f"{len(workers)} worker process(es) for {expected} device(s) ({verdict}).")
    if gpus:
        report.add(f"GPUs that ran a compute process: {len(seen_gpus)} of {gpus}.")
    else:
        report.add(f"GPUs that ran a worker: {SKIPPED}")


STEPS: dict[str, Callable[..., None]] = {
    "cuda-tests": step_cuda_tests,
    "optimizer": step_optimizer,
    "population": step_population,
    "cifar-sweep": step_cifar_sweep,
    "cifar-population": step_cifar_population,
    "devices-auto": step_devices_auto,
}
NEEDS_SCRATCH = {"cifar-sweep", "cifar-population", "devices-auto"}


def run(dry: bool, only: list[str]) -> Report:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = Report(device=device, dry=dry)
    sizes = DRY if dry else REAL
    title = "GPU check (dry run on CPU, tiny sizes: not measurements)" if dry else "GPU check"
    report.add(f"## {title}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    report.add("")
    report.add(f"Machine: {machine(device)}. Command: `bash scripts/gpu_check.sh"
               f"{' --dry' if dry else ''}`.")  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        for name, step in STEPS.items():
            if only and name not in only:
                continue
            report.section(name)
            step_start = time.perf_counter()
            try:
                if name in NEEDS_SCRATCH:
                    scratch = Path(folder) / name
                    scratch.mkdir()
                    step(report, sizes, scratch)
                else:
                    step(report, sizes)
            except Exception:  # one broken step must not cost the others their GPU time
                report.add(f"```\nstep {name} failed:\n{traceback.format_exc()[-3000:]}```")
            report.add(f"\n({time.perf_counter() - step_start:.0f} s)")
    report.add(f"\nTotal: {time.perf_counter() - started:.0f} s.")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes (CI)")
    parser.add_argument("--out", type=Path, help="also write the Markdown block here")
    parser.add_argument("--only", default="", help=f"comma list of {', '.join(STEPS)}")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if s not in STEPS]
    if unknown:
        parser.error(f"unknown step {unknown[0]!r}; the steps are {', '.join(STEPS)}.")
    if not args.dry and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --dry to check the script on a CPU.")
    report = run(args.dry, only)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.text(), encoding="utf-8")
    failed = any("failed:" in line for line in report.lines)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
