"""The CIFAR-10 ResNet tasks on a small archive written in CIFAR-10's own pickle format.

The archive is written here from the format's description (Krizhevsky's page, and what
torchvision's ``CIFAR10`` reads): five ``data_batch_*`` files and a ``test_batch``, each a
protocol-2 pickle of a dict with ``data`` (``uint8 [n, 3072]``, the red, green and blue
planes of each 32×32 image) and ``labels``. Nothing here touches the network: the download
is tested with ``urllib.request.urlopen`` replaced.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sweeps.cli import cli
from sweeps.errors import SweepError, SweepUsageError
from sweeps.tasks import get_task, task_for_spec
from sweeps.tasks.cifar10_files import (
    ARCHIVE_MD5,
    download_cifar10,
    load_cifar10,
    random_cifar10,
    write_cifar10,
)
from sweeps.tasks.resnet_cifar import CifarResNet

N_PER_BATCH = 16  # 80 training images in five files
N_TEST = 24


def _pickle_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    content = {
        "batch_label": "testing",
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(labels), 3072),
        "filenames": [f"{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(content, protocol=2))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(root, train_images, train_labels, test_images, test_labels)``, images ``[n,3,32,32]``."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(7)
    train_x = rng.integers(0, 256, (5 * N_PER_BATCH, 3, 32, 32), dtype=np.uint8)
    train_y = rng.integers(0, 10, 5 * N_PER_BATCH)
    test_x = rng.integers(0, 256, (N_TEST, 3, 32, 32), dtype=np.uint8)
    test_y = rng.integers(0, 10, N_TEST)
    for i in range(5):
        part = slice(i * N_PER_BATCH, (i + 1) * N_PER_BATCH)
        _pickle_batch(folder / f"data_batch_{i + 1}", train_x[part], train_y[part])
    _pickle_batch(folder / "test_batch", test_x, test_y)
    meta = {"label_names": ["airplane", "automobile"], "num_cases_per_batch": N_PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root, train_x, train_y, test_x, test_y


def resnet20(root: Path, **options):
    return get_task("cifar10-resnet20").with_options(data_dir=str(root), **options)


@pytest.fixture(autouse=True)
def no_data_dir_variable(monkeypatch):
    monkeypatch.delenv("SWEEPS_DATA_DIR", raising=False)


# --- the models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "millions"),  # He et al. (2016), Table 6
    [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)],
)
def test_cifar_resnets_have_the_parameter_counts_of_the_papers_table_6(depth, millions):
    count = sum(p.numel() for p in CifarResNet(depth).parameters())
    digits = 1 if millions >= 1 else 2
    assert round(count / 1e6, digits) == millions


def test_the_built_in_tasks_train_resnet20_and_resnet56(archive):
    root = archive[0]
    for name, depth in (("cifar10-resnet20", 20), ("cifar10-resnet56", 56)):
        setup = (
            get_task(name)
            .with_options(data_dir=str(root))
            .build(seed=0, batch_size=8, device="cpu")
        )
        convolutions = [m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in setup.model.modules() if isinstance(m, torch.nn.Linear)]
        assert len(convolutions) + len(linears) == depth  # 6n + 2 weighted layers


def test_stages_halve_the_map_and_double_the_channels_with_parameter_free_shortcuts():
    model = CifarResNet(20)
    shapes = []
    for block in model.stages:
        block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert shapes == [(16, 32, 32)] * 3 + [(32, 16, 16)] * 3 + [(64, 8, 8)] * 3
    assert all(not list(b.shortcut.parameters()) for b in model.stages)
    # Option A: a downsampling shortcut is every second pixel, zero-padded channels.
    x = torch.randn(1, 16, 32, 32)
    out = model.stages[3].shortcut(x)
    assert out.shape == (1, 32, 16, 16)
    kept = out[:, 8:24]
    torch.testing.assert_close(kept, x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0
    assert out[:, 24:].abs().sum() == 0


# --- the data ---------------------------------------------------------------------------


def test_the_archive_is_read_in_its_own_order_and_layout(archive):
    root, train_x, train_y, test_x, test_y = archive
    arrays = load_cifar10(root)
    np.testing.assert_array_equal(arrays.train_images, train_x)
    np.testing.assert_array_equal(arrays.train_labels, train_y)
    np.testing.assert_array_equal(arrays.test_images, test_x)
    np.testing.assert_array_equal(arrays.test_labels, test_y)


def test_written_data_reads_back_identically(tmp_path):
    arrays = random_cifar10(33, 5, seed=3)
    write_cifar10(tmp_path, arrays)
    back = load_cifar10(tmp_path)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(arrays, name))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar10(tmp_path, random_cifar10(10, 2))

    class Planted:
        def __reduce__(self):
            return (print, ("planted code ran",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({"data": Planted(), "labels": []}, protocol=2)
    )
    with pytest.raises(SweepUsageError, match="test_batch is not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path)


def test_setup_shapes_and_steps_per_epoch_come_from_the_data(archive):
    root = archive[0]
    setup = resnet20(root).build(seed=0, batch_size=32, device="cpu")
    assert setup.steps_per_epoch == math.ceil(5 * N_PER_BATCH / 32) == len(list(setup.train_loader))
    inputs, targets = next(iter(setup.train_loader))
    assert inputs.shape == (32, 3, 32, 32)
    assert inputs.dtype == torch.float32
    assert targets.dtype == torch.int64
    assert sum(len(t) for _, t in setup.val_loader) == N_TEST
    assert setup.has_accuracy
    assert setup.model(inputs).shape == (32, 10)


def test_validation_split_holds_out_a_tenth_of_the_training_images(archive):
    root, train_x, train_y, *_ = archive
    a = resnet20(root, validation_split=True).build(seed=0, batch_size=1000, device="cpu")
    b = resnet20(root, validation_split=True).build(seed=5, batch_size=1000, device="cpu")
    val = torch.cat([x for x, _ in a.val_loader])
    assert val.shape[0] == round(0.1 * len(train_y))
    # The held-out images are training images (not test images), the same for every seed,
    # and none of them is trained on.
    assert torch.equal(val, torch.cat([x for x, _ in b.val_loader]))
    trained = {bytes(img) for img in a.train_loader.images.numpy().reshape(-1, 3072)}
    held_out = {bytes(img) for img in a.val_loader.images.numpy().reshape(-1, 3072)}
    everything = {bytes(img) for img in train_x.reshape(-1, 3072)}
    assert trained | held_out == everything
    assert not trained & held_out
    assert a.steps_per_epoch == math.ceil((len(train_y) - val.shape[0]) / 1000)


def _reference_normalised(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaled = images.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


def test_validation_images_are_the_originals_normalised_per_channel(archive):
    root, train_x, _, test_x, _ = archive
    setup = resnet20(root).build(seed=0, batch_size=8, device="cpu")
    mean, std = _reference_normalised(train_x)
    expected = (test_x / 255.0 - mean[:, None, None]) / std[:, None, None]
    got = torch.cat([x for x, _ in setup.val_loader]).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_every_training_image_is_a_4_pixel_padded_crop_maybe_flipped(archive):
    root, train_x, train_y, *_ = archive
    setup = resnet20(root).build(seed=3, batch_size=16, device="cpu")
    mean, std = _reference_normalised(train_x)
    padded = np.pad(train_x / 255.0, ((0, 0), (0, 0), (4, 4), (4, 4)))
    flips, offsets = 0, set()
    inputs, labels = next(iter(setup.train_loader))
    pixels = inputs.double().numpy() * std[:, None, None] + mean[:, None, None]
    for image, label in zip(pixels, labels.numpy(), strict=True):
        found = None
        for source in np.flatnonzero(train_y == label):
            for dy in range(9):
                for dx in range(9):
                    crop = padded[source, :, dy : dy + 32, dx : dx + 32]
                    for flip in (False, True):
                        candidate = crop[:, :, ::-1] if flip else crop
                        if np.allclose(candidate, image, atol=1e-5):
                            found = (dy, dx, flip)
        assert found is not None, "an augmented image is no crop of a padded original"
        offsets.add(found[:2])
        flips += found[2]
    assert len(offsets) > 1
    assert 0 < flips < len(labels)


def test_the_same_seed_gives_the_same_batches_and_another_seed_others(archive):
    root = archive[0]

    def epochs(seed: int) -> list[torch.Tensor]:
        loader = resnet20(root).build(seed=seed, batch_size=16, device="cpu").train_loader
        return [torch.cat([x for x, _ in loader]) for _ in range(2)]

    first, again, other = epochs(11), epochs(11), epochs(12)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # every epoch draws afresh
    assert not torch.equal(first[0], other[0])


def test_bf16_and_channels_last_options_train_a_step(archive):
    root = archive[0]
    setup = resnet20(root, precision="bf16", channels_last=True).build(
        seed=0, batch_size=8, device="cpu"
    )
    inputs, targets = next(iter(setup.train_loader))
    assert inputs.is_contiguous(memory_format=torch.channels_last)
    output = setup.model(inputs)
    assert output.dtype == torch.float32
    setup.loss_fn(output, targets).backward()
    conv = next(m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.grad is not None
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"precision": "fp16"}, "task_options.precision must be one of fp32, bf16"),
        ({"validation_split": "yes"}, "task_options.validation_split must be a bool"),
        ({"mixup": True}, "task_options.mixup is not an option of cifar10-resnet20"),
    ],
)
def test_bad_task_options_are_refused_naming_the_option(options, words):
    with pytest.raises(SweepUsageError, match=words):
        get_task("cifar10-resnet20").with_options(**options)


# --- in a sweep -------------------------------------------------------------------------

SPEC = """
name = "resnet"
task = "cifar10-resnet20"
recipe = "resnet_cifar10"
data_dir = "{root}"
seeds = 1
n_trials = 1
objective = "val_accuracy"
sampler = "random"
[task_options]
validation_split = true
[search_space]
batch_size = 16
epochs = {epochs}
"""


def test_the_example_spec_sweeps_the_recipe_on_cifar10_resnet20():
    from sweeps.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "examples" / "resnet_cifar10.toml")
    assert (spec.task, spec.recipe, spec.convention) == (
        "cifar10-resnet20",
        "resnet_cifar10",
        "caffe",
    )
    assert spec.task_options["validation_split"] is True
    # The paper's run: 64k iterations of batch 128 on 45k images is 182 epochs of 352 steps.
    assert math.ceil(45_000 / 128) == 352
    assert abs(182 * 352 - 64_000) < 352


def test_the_recipe_drops_the_rate_at_half_and_three_quarters_of_the_real_steps(archive):
    from sweeps.pairing import plan_runs
    from sweeps.search_space import Configuration
    from sweeps.spec import parse_spec

    root = archive[0]
    spec = parse_spec(SPEC.format(root=root, epochs=4))
    steps = task_for_spec(spec).build(seed=0, batch_size=16, device="cpu").steps_per_epoch
    assert steps == math.ceil((80 - 8) / 16)  # 72 training images after the split: 5 steps
    configuration = Configuration(
        lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False, schedule="recipe",
        batch_size=16, epochs=4, schedule_params={"name": "resnet_cifar10"},
    )  # fmt: skip
    [source, *_] = plan_runs(spec, configuration, steps)
    total = 4 * steps  # 20: the paper's 32k and 48k of 64k are steps 10 and 15
    assert source.schedule == f"multistep:milestones={total // 2}/{3 * total // 4}"
    lr = np.asarray(source.lr)
    assert np.allclose(lr[:10], 0.1)
    assert np.allclose(lr[10:15], 0.01)
    assert np.allclose(lr[15:], 0.001)


def test_a_worker_trains_a_resnet_trial_of_the_recipe(archive, tmp_path):
    from storage.queries import trials_frame
    from sweeps.spec import parse_spec
    from sweeps.worker import run_worker

    spec = parse_spec(SPEC.format(root=archive[0], epochs=1))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    summary = run_worker(spec, url, device="cpu", handle_signals=False)
    assert (summary.complete, summary.failed) == (1, 0)
    frame = trials_frame(url)
    assert sorted(frame["role"]) == ["converted", "naive", "source"]
    assert frame["value"].between(0, 1).all()  # val_accuracy of each run


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_population_of_resnets_reproduces_each_member_trained_alone(archive, channels_last):
    """Batch norm included: each member normalises with its own batch statistics and keeps
    its own running statistics, so its validation loss is the one it gets alone."""
    from dataclasses import replace

    from sweeps.pairing import PlannedRun
    from sweeps.population import train_population
    from sweeps.population.stacked import is_stackable
    from sweeps.search_space import Configuration
    from sweeps.training import train_run

    task = resnet20(archive[0], channels_last=channels_last)
    assert is_stackable(task)
    steps = task.build(seed=0, batch_size=16, device="cpu").steps_per_epoch
    configuration = Configuration(
        lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=False, schedule="constant",
        batch_size=16, epochs=1,
    )  # fmt: skip
    run = PlannedRun(
        role="source", optimizer="pytorch", seed=0, configuration=configuration,
        lr=np.full(steps, 0.05), momentum=np.full(steps, 0.9), schedule="constant",
        hyperparameters={}, optimizer_hyperparameters={}, weight_decay=1e-4,
    )  # fmt: skip
    runs = [run, replace(run, seed=1, optimizer="sutskever")]
    together = train_population(task, runs)
    values = []
    for member, alone_run in zip(together, runs, strict=True):
        alone = train_run(task, alone_run)
        assert member.outcome is not None
        # Grouped and single convolutions round differently; a mix-up of members' batches
        # or batch statistics would differ as much as two members do (checked below).
        assert member.outcome.value == pytest.approx(alone.value, rel=2e-3)
        values.append(alone.value)
    assert abs(values[0] - values[1]) > 2e-2 * values[0]


def test_data_options_on_a_task_without_data_are_a_spec_error(tmp_path):
    from sweeps.errors import SpecError
    from sweeps.spec import parse_spec

    text = SPEC.format(root=tmp_path, epochs=1).replace("cifar10-resnet20", "digits-mlp")
    with pytest.raises(SpecError, match="data_dir is given, but task 'digits-mlp'"):
        parse_spec(text)


# --- missing data and --download ---------------------------------------------------------


def _sweeps(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("command", ["run", "worker"])
def test_missing_data_is_one_sentence_saying_how_to_get_it(tmp_path, command):
    spec = tmp_path / "r.toml"
    spec.write_text(SPEC.format(root=tmp_path / "empty", epochs=1))
    result = _sweeps(command, str(spec), "--storage", f"sqlite:///{tmp_path / 'r.db'}")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "Traceback" not in result.output
    assert "CIFAR-10 is not in" in lines[0]
    assert "--download" in lines[0]
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in lines[0]
    assert not (tmp_path / "r.db").exists()  # nothing started


def _archive_bytes(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buffer.getvalue()


class FakeNetwork:
    """``urllib.request.urlopen`` answering with ``payload`` and recording the URLs asked."""

    def __init__(self, payload: bytes | Exception) -> None:
        self.payload = payload
        self.urls: list[str] = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if isinstance(self.payload, Exception):
            raise self.payload
        return io.BytesIO(self.payload)


def test_download_refuses_an_archive_whose_md5_is_not_the_official(archive, tmp_path, monkeypatch):
    network = FakeNetwork(_archive_bytes(archive[0]))
    monkeypatch.setattr("urllib.request.urlopen", network)
    spec = tmp_path / "r.toml"
    target = tmp_path / "data"
    spec.write_text(SPEC.format(root=target, epochs=1))
    result = _sweeps("run", str(spec), "--download", "--storage", f"sqlite:///{tmp_path / 'r.db'}")
    assert result.exit_code == 1, result.output
    assert network.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert f"not the official {ARCHIVE_MD5}" in result.output
    assert "Traceback" not in result.output
    assert list(target.iterdir()) == []  # nothing unpacked, no scratch left behind


def test_download_unpacks_an_archive_with_the_expected_md5(archive, tmp_path, monkeypatch):
    payload = _archive_bytes(archive[0])
    network = FakeNetwork(payload)
    monkeypatch.setattr("urllib.request.urlopen", network)
    md5 = hashlib.md5(payload).hexdigest()
    folder = download_cifar10(tmp_path, md5=md5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]
    np.testing.assert_array_equal(load_cifar10(tmp_path).train_images, archive[1])
    assert folder == tmp_path / "cifar-10-batches-py"
    download_cifar10(tmp_path, md5=md5)  # already there: no second download
    assert len(network.urls) == 1


def test_a_failed_download_is_a_runtime_error_naming_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", FakeNetwork(urllib.error.URLError("no route")))
    with pytest.raises(SweepError, match=r"downloading https://www\.cs\.toronto\.edu/.* failed"):
        download_cifar10(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- on a GPU ---------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
def test_on_cuda_the_data_and_its_augmentation_stay_on_the_device(archive):
    root = archive[0]
    setup = resnet20(root).build(seed=0, batch_size=16, device="cuda:0")
    assert setup.train_loader.images.device.type == "cuda"
    assert setup.train_loader.images.dtype == torch.uint8
    inputs, targets = next(iter(setup.train_loader))
    assert inputs.device.type == "cuda"
    assert targets.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in setup.model.parameters())
    again = resnet20(root).build(seed=0, batch_size=16, device="cuda:0")
    assert torch.equal(inputs, next(iter(again.train_loader))[0])


@pytest.mark.cuda
@cuda
def test_on_cuda_bf16_channels_last_trains_a_recipe_epoch(archive):
    from sweeps.pairing import plan_runs
    from sweeps.search_space import Configuration
    from sweeps.spec import parse_spec
    from sweeps.training import train_run

    spec = parse_spec(SPEC.format(root=archive[0], epochs=1))
    task = resnet20(archive[0], precision="bf16", channels_last=True)
    steps = task.build(seed=0, batch_size=16, device="cuda:0").steps_per_epoch
    configuration = Configuration(
        lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False, schedule="recipe",
        batch_size=16, epochs=1, schedule_params={"name": "resnet_cifar10"},
    )  # fmt: skip
    [source, *_] = plan_runs(spec, configuration, steps)
    outcome = train_run(
        task, source, device="cuda:0", objective="val_accuracy", direction="maximize"
    )
    assert outcome.diverged_at_step is None
    assert 0 <= outcome.value <= 1
