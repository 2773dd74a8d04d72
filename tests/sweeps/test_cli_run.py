"""``sweeps run/worker/status``: bad input exits 2, runtime failures 1, one sentence each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeps.cli import cli

GOOD_SPEC = """
name = "cli"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = 2
[search_space]
lr = { low = 0.01, high = 0.1, log = true }
momentum = 0.9
epochs = 1
"""
UNREACHABLE = "postgresql://alice:s3cret-pw@127.0.0.1:1/sweeps"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(GOOD_SPEC)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_one_sentence(result, code: int) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("spec_text", "words"),
    [
        ('name = "x"\ntask = "nqm\n', "not valid TOML"),
        (GOOD_SPEC.replace('task = "nqm"', 'task = "imagenet"'), "imagenet"),
        (GOOD_SPEC.replace("n_trials = 2", "n_trials = -3"), "n_trials"),
    ],
)
def test_bad_spec_exits_2_with_one_sentence_naming_the_problem(tmp_path, spec_text, words):
    path = tmp_path / "bad.toml"
    path.write_text(spec_text)
    for command in ("run", "worker"):
        result = invoke(command, str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}")
        assert_one_sentence(result, 2)
        assert words in result.output


def test_missing_spec_file_exits_2(tmp_path):
    result = invoke("run", str(tmp_path / "nowhere.toml"))
    assert_one_sentence(result, 2)
    assert "nowhere.toml" in result.output


@pytest.mark.parametrize(
    ("option", "value"), [("--workers", "0"), ("--n-trials", "-3"), ("--n-trials", "0")]
)
def test_bad_counts_exit_2(spec_file, tmp_path, option, value):
    result = invoke(
        "run", str(spec_file), "--storage", f"sqlite:///{tmp_path / 'x.db'}", option, value
    )
    assert_one_sentence(result, 2)
    assert option in result.output


def test_unknown_device_exits_2(spec_file, tmp_path):
    result = invoke("worker", str(spec_file), "--storage", "sqlite://", "--device", "tpu:0")
    assert_one_sentence(result, 2)
    assert "tpu:0" in result.output


@pytest.mark.parametrize("command", ["run", "worker"])
def test_unreachable_database_exits_1_without_the_password(spec_file, command):
    result = invoke(command, str(spec_file), "--storage", UNREACHABLE)
    assert_one_sentence(result, 1)
    assert "s3cret-pw" not in result.output
    assert "127.0.0.1" in result.output


def test_status_of_unreachable_database_exits_1_without_the_password():
    result = invoke("status", "cli", "--storage", UNREACHABLE)
    assert_one_sentence(result, 1)
    assert "s3cret-pw" not in result.output


def test_status_of_an_unknown_sweep_exits_2_naming_it(tmp_path, spec_file):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert invoke("worker", str(spec_file), "--storage", url).exit_code == 0
    result = invoke("status", "nonesuch", "--storage", url)
    assert_one_sentence(result, 2)
    assert "nonesuch" in result.output
    assert "cli" in result.output


def test_worker_then_status_json_reports_the_finished_sweep(tmp_path, spec_file):
    url = f"sqlite:///{tmp_path / 's.db'}"
    worker = invoke("worker", str(spec_file), "--storage", url, "--n-trials", "3")
    assert worker.exit_code == 0, worker.output
    result = invoke("status", "cli", "--storage", url, "--format", "json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["counts"]["COMPLETE"] == 3
    assert status["n_trials"] == 3
    assert status["done"] is True
    assert set(status["best"]) == {"pytorch"}
    table = invoke("status", "cli", "--storage", url)
    assert table.exit_code == 0
    assert "pytorch" in table.output
    assert "COMPLETE" in table.output


def test_worker_reads_the_storage_from_the_environment(tmp_path, spec_file, monkeypatch):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("SWEEPS_STORAGE", url)
    assert invoke("worker", str(spec_file)).exit_code == 0
    assert (tmp_path / "env.db").exists()


def test_devices_parse_cpu_auto_and_cuda_lists(monkeypatch):
    from sweeps import devices
    from sweeps.errors import SweepUsageError

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)
    assert [str(d) for d in devices.parse_devices("auto")] == ["cpu"]
    assert [str(d) for d in devices.parse_devices("cpu")] == ["cpu"]
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 4)
    assert [str(d) for d in devices.parse_devices("auto")] == [f"cuda:{i}" for i in range(4)]
    assert [str(d) for d in devices.parse_devices("cuda:0, cuda:2")] == ["cuda:0", "cuda:2"]
    for bad, words in [
        ("cuda:7", "cuda:7"),
        ("cuda:1,cuda:1", "twice"),
        ("gpu0", "gpu0"),
        ("", "empty"),
    ]:
        with pytest.raises(SweepUsageError, match=words):
            devices.parse_devices(bad)


def test_each_worker_is_pinned_to_its_gpu_and_sees_it_as_cuda0():
    from sweeps.devices import CPU, Device
    from sweeps.launcher import worker_command

    gpu = Device("cuda", 3)
    assert gpu.worker_environment() == {"CUDA_VISIBLE_DEVICES": "3"}
    assert CPU.worker_environment() == {"CUDA_VISIBLE_DEVICES": ""}
    command = worker_command("s.toml", "sqlite:///x.db", device=gpu, n_trials=5, name="n")
    context = cli.get_command(None, "worker").make_context("worker", command[1:])  # type: ignore[arg-type,union-attr]
    assert context.params["device"] == "cuda:0"
    assert context.params["n_trials"] == 5


@pytest.mark.parametrize(
    ("workers", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 16, 8)]
)
def test_workers_share_the_cores(workers, cores, threads):
    from sweeps.devices import threads_per_worker

    assert threads_per_worker(workers, cores) == threads
