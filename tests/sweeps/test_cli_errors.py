"""``sweeps`` commands facing a bad database, URL, task or spec: one sentence each, exit 2
for what the user gave, 1 for what failed at run time, no traceback, no password, and
nothing stored or changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sweeps.cli import cli

NQM_SPEC = """
name = "tiny"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = 1
[search_space]
lr = 0.05
momentum = 0.9
epochs = 1
"""
WRONG_TYPE_TASK = '''
def build(seed, batch_size, device):
    return [seed, batch_size, device]
'''
REPO = Path(__file__).resolve().parents[2]
MAIN = "from sweeps.cli import main; main()"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_sentence(result: Result, code: int, *, secret: str | None = None) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    if secret is not None:
        assert secret not in result.output
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def finished_sweep(tmp_path: Path) -> str:
    """A SQLite database holding the finished one-trial sweep ``tiny``."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(NQM_SPEC)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    result = invoke("worker", str(spec), "--storage", url)
    assert result.exit_code == 0, result.output
    return url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:s3cret-pw@127.0.0.1:1/sweeps",
        "sqlite:////no/such/directory/sweeps.db",
    ],
)
def test_report_on_an_unreachable_database_is_one_sentence_exit_1(url: str, tmp_path: Path):
    result = invoke("report", "demo", "--storage", url, "--out", str(tmp_path / "r"))
    line = assert_one_sentence(result, 1, secret="s3cret-pw")
    assert "Cannot reach the results database" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.postgres
def test_report_on_a_missing_postgres_database_is_one_sentence_exit_1(
    postgres_server_url: str, tmp_path: Path
):
    import sqlalchemy as sa

    url = sa.make_url(postgres_server_url).set(database="ms_no_such_database", password="pw9x")
    result = invoke("report", "demo", "--storage", url.render_as_string(hide_password=False))
    line = assert_one_sentence(result, 1, secret="pw9x")
    assert "ms_no_such_database" in line


@pytest.mark.mariadb
def test_report_on_a_missing_mariadb_database_is_one_sentence_exit_1(mariadb_server_url: str):
    import sqlalchemy as sa

    url = sa.make_url(mariadb_server_url).set(database="ms_no_such_database", password="pw9x")
    result = invoke("report", "demo", "--storage", url.render_as_string(hide_password=False))
    line = assert_one_sentence(result, 1, secret="pw9x")
    assert "ms_no_such_database" in line


def _command_lines(spec: Path, out: Path) -> list[list[str]]:
    return [
        ["list"],
        ["status", "tiny"],
        ["results", "tiny"],
        ["report", "tiny", "--out", str(out)],
        ["run", str(spec), "--workers", "1", "--no-progress"],
        ["worker", str(spec)],
        ["db", "upgrade"],
    ]


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_sqlite_file_is_one_sentence_in_every_command_and_stays_unchanged(
    damage: str, finished_sweep: str, tmp_path: Path
):
    # A copy on its own (no -wal file beside it), as a file copied or downloaded would be.
    database = tmp_path / "damaged.db"
    stored = finished_sweep.removeprefix("sqlite:///")
    with closing(sqlite3.connect(stored)) as source, closing(sqlite3.connect(database)) as copy:
        source.backup(copy)
    if damage == "random bytes":
        database.write_bytes(os.urandom(8192))
    else:
        database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    before = digest(database)
    spec = tmp_path / "tiny.toml"
    for args in _command_lines(spec, tmp_path / "report"):
        result = invoke(*args, "--storage", f"sqlite:///{database}")
        line = assert_one_sentence(result, 1)
        assert str(database.name) in line, line
        assert ("not a SQLite database" if damage == "random bytes" else "truncated") in line
        assert digest(database) == before, args
    assert not (tmp_path / "report").exists()


def test_a_non_numeric_port_is_a_usage_error_naming_the_port():
    result = invoke("list", "--storage", "postgresql://u:pw-4711@127.0.0.1:notaport/db")
    line = assert_one_sentence(result, 2, secret="pw-4711")
    assert "port that is not a number" in line
    assert "notaport" in line


@pytest.mark.parametrize(
    "url",
    [
        "postgresql//alice:hunter2secret@127.0.0.1/db",
        "postgresql:alice:hunter2secret@127.0.0.1/db",
        "alice:hunter2secret@127.0.0.1",
        "postgresql://alice:hunter2secret@127.0.0.1:99999999999/db",
    ],
)
def test_a_malformed_url_never_prints_its_password(url: str):
    for args in (["list"], ["status", "x"], ["results", "x"], ["report", "x"]):
        result = invoke(*args, "--storage", url)
        assert result.exit_code in (1, 2), result.output
        assert "hunter2secret" not in result.output
        assert "Traceback" not in result.output


def test_a_user_task_returning_the_wrong_type_stops_the_sweep_with_exit_2_storing_nothing(
    tmp_path: Path,
):
    (tmp_path / "wrong_type_task.py").write_text(WRONG_TYPE_TASK)
    spec = tmp_path / "user.toml"
    spec.write_text(NQM_SPEC.replace('task = "nqm"', 'task = "wrong_type_task:build"'))
    database = tmp_path / "user.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    for command in ("run", "worker"):
        storage = ["--storage", f"sqlite:///{database}"]
        done = subprocess.run(
            [sys.executable, "-c", MAIN, command, str(spec), *storage],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines == [
            "Error: task 'wrong_type_task:build' returned list; it must return a"
            " sweeps.tasks.TaskSetup or a dict with its keys."
        ], done.stderr
        assert not database.exists()


def test_epochs_beyond_the_bound_are_refused_saying_the_bound_and_why(tmp_path: Path):
    spec = tmp_path / "big.toml"
    spec.write_text(NQM_SPEC.replace("epochs = 1", "epochs = 1e12"))
    result = invoke("run", str(spec), "--storage", f"sqlite:///{tmp_path / 'big.db'}")
    line = assert_one_sentence(result, 2)
    assert "search_space.epochs can be 1e+12, more than the 10000 epochs" in line
    assert "per-step lr and momentum" in line
    assert not (tmp_path / "big.db").exists()


@pytest.mark.parametrize("command", ["status", "results"])
def test_status_and_results_without_a_name_list_the_stored_sweeps(
    command: str, finished_sweep: str
):
    result = invoke(command, "--storage", finished_sweep)
    line = assert_one_sentence(result, 2)
    assert line.endswith(f"the sweeps stored in {finished_sweep}: tiny."), line


def test_status_without_a_name_on_a_missing_file_says_none_and_creates_nothing(tmp_path: Path):
    result = invoke("status", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}")
    line = assert_one_sentence(result, 2)
    assert line.endswith(": none."), line
    assert list(tmp_path.iterdir()) == []


def test_report_without_out_writes_name_report_which_git_ignores(
    finished_sweep: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "tiny", "--storage", finished_sweep)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-report" / "report.html").is_file()
    for folder in ("tiny-report/", "sweeps-demo-report/", "report/"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", folder], cwd=REPO, check=False
        )
        assert ignored.returncode == 0, f"{folder} is not ignored by .gitignore"
