"""``sweeps launch slurm``: the sbatch script carries every option, bad options exit 2, a
missing ``sbatch`` exits 1, and submitit's local executor runs the same array here, where
the preemption signal re-queues the interrupted trial and requeues the array task."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from sweeps.cli import cli
from sweeps.errors import SweepUsageError
from sweeps.launch.slurm import parse_sbatch_options, parse_time
from tests.processes import EPOCH_PAUSE_VARIABLE, Workspace, sweeps_command
from tests.reliability.conftest import (
    assert_sweep_finished_cleanly,
    by_state,
    load_study,
    sqlite_url,
    stored_epochs,
)

REPOSITORY = Path(__file__).resolve().parents[3]
QUICKSTART = REPOSITORY / "examples" / "quickstart.toml"


def _sbatch_lines(script: str) -> dict[str, str]:
    """``#SBATCH --name=value`` lines as ``{name: value}`` (``True`` text for flags)."""
    options = {}
    for line in script.splitlines():
        match = re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(.*))?", line)
        if match:
            options[match[1]] = match[2] if match[2] is not None else "True"
    return options


def test_the_sbatch_script_carries_every_option(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "launch",
            "slurm",
            str(QUICKSTART),
            "--dry-run",
            "--workers",
            "6",
            "--partition",
            "gpu-a100",
            "--gpus-per-task",
            "1",
            "--cpus-per-task",
            "8",
            "--time",
            "1-02:30:00",
            "--sbatch",
            "account=lab",
            "--sbatch",
            "qos=high",
            "--sbatch",
            "exclusive",
            "--setup",
            "module load cuda/12",
            "--storage",
            "postgresql://alice:s3cret-pw@db.example/sweeps",
            "--log-folder",
            str(tmp_path / "logs" / "%j"),
        ],
    )
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert script.startswith("#!/bin/bash")
    options = _sbatch_lines(script)
    assert options["array"] == "0-5%6", "one array task per worker, all at once"
    assert options["partition"] == "gpu-a100"
    assert options["gpus-per-task"] == "1"
    assert options["cpus-per-task"] == "8"
    assert options["time"] == str(24 * 60 + 2 * 60 + 30)
    assert options["account"] == "lab"
    assert options["qos"] == "high"
    assert options["exclusive"] == "True"
    assert options["job-name"] == "sweeps-quickstart"
    assert options["ntasks-per-node"] == "1"
    # The preemption / time-limit warning that submitit turns into a requeue.
    assert re.fullmatch(r"USR2@\d+", options["signal"])
    assert options["output"].startswith(str(tmp_path / "logs"))
    assert "module load cuda/12" in script.split("# command")[0]
    assert "-m submitit.core._submit" in script
    assert "s3cret-pw" not in result.output, "the password is never printed"
    assert "sweeps worker quickstart.toml --name quickstart --device cuda:0" in script


def test_one_cpu_worker_is_a_plain_job_running_a_cpu_worker():
    result = CliRunner().invoke(cli, ["launch", "slurm", str(QUICKSTART), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "gpus-per-task" not in result.stdout
    assert "--device cpu" in result.stdout
    assert "array" not in _sbatch_lines(result.stdout), "one worker is a plain job"


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90", 90),
        ("1:30", 2),  # MINUTES:SECONDS, seconds round up
        ("02:00:00", 120),
        ("1-0", 1440),
        ("1-2:30", 1590),
        ("0-0:0:30", 1),
    ],
)
def test_time_limits_in_sbatch_forms_become_minutes(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["abc", "0", "1:2:3:4", "-5", "1h", ""])
def test_unusable_time_limits_are_refused_naming_the_forms(text):
    with pytest.raises(SweepUsageError, match="--time must be MINUTES"):
        parse_time(text)


def test_extra_sbatch_options_pass_through_as_names_and_values():
    assert parse_sbatch_options(("account=lab", "--qos=high", "exclusive", "mail_type=END")) == {
        "account": "lab",
        "qos": "high",
        "exclusive": True,
        "mail-type": "END",
    }


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--time", "soon"], "--time must be MINUTES"),
        (["--sbatch", "=x"], "--sbatch takes NAME=VALUE"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--cpus-per-task", "0"], "--cpus-per-task must be at least 1, got 0"),
        (["--gpus-per-task", "-1"], "--gpus-per-task must be at least 0, got -1"),
        (["--cluster", "pbs"], "'pbs' is not one of 'slurm', 'local'"),
    ],
)
def test_bad_options_exit_2_with_one_sentence(args, words):
    result = CliRunner().invoke(cli, ["launch", "slurm", str(QUICKSTART), "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_a_missing_sbatch_exits_1_with_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    result = CliRunner().invoke(cli, ["launch", "slurm", str(QUICKSTART), "--workers", "2"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "sbatch was not found on PATH" in lines[0]


# --- the array on this machine (submitit's LocalExecutor) -----------------------------

N_TRIALS = 6
EPOCHS = 4
PREEMPT_EPOCHS = 12
"""The preempted trial's epochs: with 4 (1.6 s a run) submitit's SIGUSR2 -> checkpoint ->
SIGTERM chain could reach the worker after the trial had finished, on a quiet machine."""


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace.create(
        tmp_path,
        {
            "SWEEPS_HEARTBEAT_INTERVAL": "1",
            "SWEEPS_GRACE_PERIOD": "2",
            "SWEEPS_MAX_RETRY": "10",
            "SWEEPS_NUM_THREADS": "1",
            EPOCH_PAUSE_VARIABLE: "0.4",
        },
    )
    space.env.pop("SWEEPS_STORAGE", None)
    try:
        yield space
    finally:
        space.stop_all()


def _parent_of(pid: int) -> int:
    """The parent's pid, from ``/proc/PID/stat`` (field 4, after the command in parens)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
@pytest.mark.reliability
def test_a_preempted_array_task_requeues_its_trial_and_itself(workspace: Workspace):
    """Protection: SIGUSR2 (Slurm's warning before preemption or the time limit, which
    submitit handles) makes the array task's checkpoint stop its worker with SIGTERM: the
    trial is failed as ``interrupted`` and queued again, and submitit requeues the task.
    Without the checkpoint the signal would kill the task, and the trial would be failed
    only after the grace period, as a lost worker (``worker lost``), costing a retry."""
    spec = workspace.spec(n_trials=N_TRIALS, epochs=PREEMPT_EPOCHS)
    url = sqlite_url(workspace.folder)
    logs = workspace.folder / "slurm" / "%j"
    launcher = subprocess.Popen(
        sweeps_command(
            "launch",
            "slurm",
            str(spec),
            "--cluster",
            "local",
            "--workers",
            "2",
            "--storage",
            url,
            "--log-folder",
            str(logs),
            "--no-progress",
        ),
        env=workspace.env,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        worker_pid, trial_number = _wait_mid_trial(launcher, url)
        array_task = _parent_of(worker_pid)
        os.kill(array_task, signal.SIGUSR2)
        _, stderr = launcher.communicate(timeout=180)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    output = stderr.decode(errors="replace")
    assert launcher.returncode == 0, output
    assert "Done:" in output
    assert "Traceback" not in output
    assert_sweep_finished_cleanly(url, n_trials=N_TRIALS, epochs=PREEMPT_EPOCHS)
    trials = load_study(url).get_trials()
    preempted = trials[trial_number]
    assert preempted.state is TrialState.FAIL
    from storage import trials_frame

    runs = trials_frame(url, "rel")
    reasons = set(runs[runs["trial"] == trial_number]["failure_reason"].dropna())
    assert reasons == {"interrupted"}, "stopped on its interrupted path, not lost"
    assert not by_state(trials)[TrialState.RUNNING]
    # submitit's own log of the array task: requeued, started again, finished.
    task_logs = [
        path.read_text(errors="replace") for path in (workspace.folder / "slurm").rglob("*_log.out")
    ]
    [requeued] = [text for text in task_logs if "Requeued job" in text]
    after = requeued.split("Requeued job", 1)[1]
    assert "Starting with JobEnvironment" in after
    assert "Job completed successfully" in after


def _wait_mid_trial(launcher: subprocess.Popen[bytes], url: str) -> tuple[int, int]:
    deadline = time.monotonic() + 120
    while True:
        assert launcher.poll() is None, launcher.communicate()[1].decode(errors="replace")
        assert time.monotonic() < deadline, "no worker got into a trial"
        try:
            running = by_state(load_study(url).get_trials())[TrialState.RUNNING]
        except Exception:  # the study is not created yet
            running = []
        for trial in running:
            owner = str(trial.user_attrs.get("sweeps:worker", ""))
            if ":" in owner and stored_epochs(url, trial.number) > 0:
                return int(owner.rsplit(":", 1)[1]), trial.number
        time.sleep(0.2)
