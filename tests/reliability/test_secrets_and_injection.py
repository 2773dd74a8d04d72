"""Passwords never shown, SQL only through bound parameters, HTML reports escaped."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import Workspace, sqlite_url, sweeps_command, table_names

pytestmark = pytest.mark.reliability

PASSWORD = "s3cret-pw"


def with_password(url: str) -> str:
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def sweeps(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sweeps_command(*args),
        env=workspace.env,
        cwd=workspace.folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.postgres
def test_password_in_the_storage_url_never_appears_anywhere(
    workspace: Workspace, postgres_url: str
):
    """Protection: ``storage.engine.hide_password`` wherever a URL is printed, logged or
    stored (run/status/results/report output, error messages, spec JSON in the database,
    exported files). PostgreSQL's trust authentication accepts any password."""
    url = with_password(postgres_url)
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.spec(n_trials=2, epochs=2, pairing=True)
    # The password reaches the programs through every door: spec, option, environment.
    spec.write_text(spec.read_text().replace('name = "rel"', f'name = "rel"\nstorage = "{url}"'))
    workspace.env["SWEEPS_STORAGE"] = url
    out = workspace.folder / "out"
    out.mkdir()
    outputs = [
        sweeps(workspace, "run", str(spec), "--workers", "1"),
        sweeps(workspace, "run", str(spec), "--storage", url, "--workers", "1"),
        sweeps(workspace, "status", "rel", "--storage", url),
        sweeps(workspace, "status", "rel", "--storage", url, "--format", "json"),
        sweeps(workspace, "results", "rel", "--storage", url),
        sweeps(workspace, "results", "rel", "--storage", url, "--format", "json", "--metrics"),
        sweeps(workspace, "results", "rel", "--storage", url, "-o", str(out / "runs.csv")),
        sweeps(workspace, "report", "rel", "--storage", url, "--out", str(out / "report")),
        sweeps(workspace, "list", "--storage", url),
        # Errors: a missing sweep, an unreachable server, a refused database name.
        sweeps(workspace, "status", "nope", "--storage", url),
        sweeps(workspace, "status", "rel", "--storage", url.replace(":5432/", ":1/")),
        sweeps(workspace, "worker", str(spec), "--storage", url.replace(":5432/", ":1/")),
        sweeps(workspace, "results", "rel", "--storage", url + "_missing"),
    ]
    assert outputs[0].returncode == 0, outputs[0].stderr
    for done in outputs[:9]:
        assert done.returncode == 0, done.stderr
    for done in outputs[9:]:
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr
    for done in outputs:
        assert PASSWORD not in done.stdout + done.stderr
    assert "***" in outputs[10].stderr  # the URL is shown, with the password hidden

    exported = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in exported)
    for path in exported:
        assert PASSWORD.encode() not in path.read_bytes(), path
    for path in workspace.folder.rglob("*.log"):
        assert PASSWORD not in path.read_text(errors="replace"), path
    assert PASSWORD not in database_dump(postgres_url)


def database_dump(url: str) -> str:
    """Every text value of every table in the database, as one string."""
    engine = sa.create_engine(url)
    try:
        chunks = []
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                for row in connection.execute(sa.select(table)):
                    chunks.append(json.dumps([str(v) for v in row]))
        return "\n".join(chunks)
    finally:
        engine.dispose()


EVIL_NAMES = ["x'; DROP TABLE trials; --", 'x"); DELETE FROM sweeps; --<script>alert(1)</script>']


@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_hostile_sweep_name_is_stored_reported_and_escaped_harmlessly(
    workspace: Workspace, evil: str, monkeypatch: pytest.MonkeyPatch
):
    """Protection: SQL only through bound parameters (SQLAlchemy, Optuna) in the worker,
    status, results and report; HTML-escaping of user strings in report.html. Spec files
    refuse such names (exit 2, ``name`` named), so the name is set past the validation,
    as a program using the library could."""
    from sweeps.spec import load_spec
    from sweeps.sweep_study import StudySettings
    from sweeps.worker import run_worker

    monkeypatch.syspath_prepend(str(workspace.folder))
    monkeypatch.setenv("RELIABILITY_EPOCH_S", "0")
    spec_path = workspace.spec(n_trials=2, epochs=2, pairing=True)
    url = sqlite_url(workspace.folder)
    refused = sweeps(workspace, "run", str(spec_path), "--storage", url, "--name", evil)
    assert refused.returncode == 2
    assert "name" in refused.stderr
    assert "Traceback" not in refused.stderr

    spec = dataclasses.replace(load_spec(spec_path), name=evil)
    summary = run_worker(spec, url, settings=StudySettings(1, 2, 3), handle_signals=False)
    assert summary.complete == 2

    status = sweeps(workspace, "status", evil, "--storage", url, "--format", "json")
    assert status.returncode == 0, status.stderr
    results = sweeps(workspace, "results", evil, "--storage", url)
    assert results.returncode == 0, results.stderr
    assert len(results.stdout.strip().splitlines()) == 1 + 2 * 3  # header + 2 trials x 3 runs
    out = workspace.folder / "report"
    report = sweeps(workspace, "report", evil, "--storage", url, "--out", str(out))
    assert report.returncode == 0, report.stderr

    assert {"trials", "ms_sweeps", "ms_trial_runs"} <= table_names(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 2
        assert connection.execute(sa.text("SELECT count(*) FROM ms_sweeps")).scalar() == 1
    engine.dispose()
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html
    if "<script>" in evil:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
