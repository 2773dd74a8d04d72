"""``sweeps launch``: the engines are listed, bad options exit 2 with one sentence, an
unreachable Ray cluster exits 1 with one sentence before anything is written; and the
Ray placement rules (how many workers, reserving what)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeps.cli import cli
from sweeps.errors import SweepError, SweepUsageError
from sweeps.launch.ray import plan_placement
from sweeps.launch.request import prepare_launch

REPOSITORY = Path(__file__).resolve().parents[3]
QUICKSTART = REPOSITORY / "examples" / "quickstart.toml"


def _one_sentence(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_launch_help_lists_the_three_engines():
    result = CliRunner().invoke(cli, ["launch", "--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1]
    assert [line.split()[0] for line in commands.strip().splitlines()] == [
        "kubernetes",
        "ray",
        "slurm",
    ]
    assert "launch" in CliRunner().invoke(cli, ["--help"]).output


@pytest.mark.parametrize("engine", ["ray", "slurm", "kubernetes"])
@pytest.mark.parametrize("option", ["--workers", "--n-trials"])
def test_counts_below_one_exit_2(engine, option):
    result = CliRunner().invoke(cli, ["launch", engine, str(QUICKSTART), option, "0", "--dry-run"])
    assert f"{option} must be at least 1, got 0" in _one_sentence(result, 2)


@pytest.mark.parametrize("engine", ["ray", "slurm", "kubernetes"])
def test_a_missing_spec_exits_2_naming_it(engine, tmp_path):
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(cli, ["launch", engine, str(missing), "--dry-run"])
    assert "nope.toml" in _one_sentence(result, 2)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cpus-per-worker", "0"], "--cpus-per-worker must be above 0, got 0"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker must be 0 or more, got -1"),
        (["--max-restarts", "-2"], "--max-restarts must be -1 (no limit) or 0 or more"),
        (["--address", "nowhere"], "--address must be auto, local, HOST:PORT"),
    ],
)
def test_bad_ray_options_exit_2_with_one_sentence(args, words):
    result = CliRunner().invoke(cli, ["launch", "ray", str(QUICKSTART), "--dry-run", *args])
    assert words in _one_sentence(result, 2)


def test_an_unreachable_ray_address_exits_1_before_the_database_is_touched(tmp_path):
    database = tmp_path / "sweeps.db"
    result = CliRunner().invoke(
        cli,
        [
            "launch",
            "ray",
            str(QUICKSTART),
            "--address",
            "127.0.0.1:1",
            "--storage",
            f"sqlite:///{database}",
        ],
    )
    line = _one_sentence(result, 1)
    assert "No Ray cluster answers at 127.0.0.1:1" in line
    assert not database.exists(), "nothing is written before the cluster is reached"


def test_the_ray_dry_run_prints_the_plan_without_the_password():
    result = CliRunner().invoke(
        cli,
        [
            "launch",
            "ray",
            str(QUICKSTART),
            "--dry-run",
            "--workers",
            "4",
            "--gpus-per-worker",
            "0.5",
            "--storage",
            "postgresql://alice:s3cret-pw@db/sweeps",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Workers: 4" in result.output
    assert "num_gpus=0.5" in result.output
    assert "sweeps worker quickstart.toml --name quickstart --device cuda:0" in result.output
    assert "s3cret-pw" not in result.output


def _launch(workers: int | None = None):
    return prepare_launch(QUICKSTART, storage=None, name=None, n_trials=None, workers=workers)


@pytest.mark.parametrize(
    ("resources", "workers", "gpus", "cpus", "expected"),
    [
        ({"CPU": 32.0, "GPU": 8.0}, None, None, 1.0, (8, 1.0, "cuda:0")),  # one per GPU
        ({"CPU": 32.0, "GPU": 8.0}, None, 2.0, 1.0, (4, 2.0, "cuda:0")),
        ({"CPU": 32.0, "GPU": 8.0}, None, 0.0, 4.0, (8, 0.0, "cpu")),  # per CPU share
        ({"CPU": 3.0}, None, None, 1.0, (3, 0.0, "cpu")),
        ({"CPU": 3.0}, None, None, 2.0, (1, 0.0, "cpu")),
        ({"CPU": 3.0}, 7, None, 1.0, (7, 0.0, "cpu")),  # --workers wins; Ray queues the rest
    ],
)
def test_ray_places_one_worker_per_gpu_or_cpu_share(resources, workers, gpus, cpus, expected):
    placement = plan_placement(
        _launch(workers), resources, gpus_per_worker=gpus, cpus_per_worker=cpus, max_restarts=3
    )
    assert (placement.workers, placement.gpus_per_worker, placement.device) == expected


def test_gpu_workers_on_a_cluster_without_gpus_are_refused_with_what_to_pass():
    with pytest.raises(SweepError, match="pass --gpus-per-worker 0"):
        plan_placement(
            _launch(), {"CPU": 4.0}, gpus_per_worker=1.0, cpus_per_worker=1.0, max_restarts=3
        )


def test_a_cpu_worker_trains_with_its_share_of_threads():
    placement = plan_placement(
        _launch(), {"CPU": 8.0}, gpus_per_worker=0.0, cpus_per_worker=4.0, max_restarts=3
    )
    assert placement.threads == 4


def test_relative_sqlite_paths_become_absolute_for_workers_that_start_elsewhere(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    launch = prepare_launch(
        QUICKSTART, storage="sqlite:///runs/s.db", name=None, n_trials=None, workers=None
    )
    assert launch.storage_url == f"sqlite:///{tmp_path / 'runs' / 's.db'}"


def test_workers_get_the_storage_and_heartbeat_settings_in_their_environment(monkeypatch):
    monkeypatch.setenv("SWEEPS_GRACE_PERIOD", "45")
    monkeypatch.delenv("SWEEPS_HEARTBEAT_INTERVAL", raising=False)
    launch = prepare_launch(
        QUICKSTART,
        storage="postgresql://alice:pw@db/sweeps",
        name="other",
        n_trials=5,
        workers=2,
    )
    environment = launch.worker_environment(index=1, threads=2)
    assert environment["SWEEPS_STORAGE"] == "postgresql+psycopg://alice:pw@db/sweeps"
    assert environment["SWEEPS_GRACE_PERIOD"] == "45"
    assert "SWEEPS_HEARTBEAT_INTERVAL" not in environment
    assert environment["SWEEPS_WORKER_INDEX"] == "1"
    assert environment["SWEEPS_NUM_THREADS"] == "2"
    arguments = launch.worker_arguments("x.toml", "cpu")
    assert arguments == [
        "worker",
        "x.toml",
        "--name",
        "other",
        "--device",
        "cpu",
        "--n-trials",
        "5",
    ]
    assert not any("pw" in argument for argument in arguments), "no password on a command line"


def test_a_usage_error_type_is_what_bad_counts_raise():
    with pytest.raises(SweepUsageError):
        _launch(workers=0)
