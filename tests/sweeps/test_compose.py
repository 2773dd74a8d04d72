"""docker-compose.yml: valid YAML, valid `sweeps` commands, the environment the code reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
import yaml

from storage.engine import STORAGE_ENV_VAR, normalize_url
from sweeps.cli import cli
from sweeps.devices import THREADS_ENV_VAR
from sweeps.samplers import WORKER_INDEX_ENV_VAR
from sweeps.sweep_study import GRACE_ENV_VAR, HEARTBEAT_ENV_VAR, MAX_RETRY_ENV_VAR

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
ENVIRONMENT_THE_CODE_READS = {
    STORAGE_ENV_VAR,
    HEARTBEAT_ENV_VAR,
    GRACE_ENV_VAR,
    MAX_RETRY_ENV_VAR,
    THREADS_ENV_VAR,
    WORKER_INDEX_ENV_VAR,
}


def interpolate(value: Any) -> Any:
    """Compose's ``${NAME:-default}`` with nothing set: every variable takes its default."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def sweeps_services(compose: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: service["command"]
        for name, service in compose["services"].items()
        if service.get("command", [None])[0] == "sweeps"
    }


def parse_sweeps_command(command: list[str]) -> click.Context:
    """Parse like the shell would run it, without running it (click's make_context)."""
    assert command[0] == "sweeps"
    subcommand = cli.get_command(click.Context(cli), command[1])
    assert subcommand is not None, f"`sweeps {command[1]}` is not a command"
    return subcommand.make_context(command[1], list(command[2:]))


def test_compose_has_postgres_a_scalable_gpu_worker_and_the_dashboard(compose):
    services = compose["services"]
    assert {"postgres", "worker", "dashboard"} <= set(services)
    worker = services["worker"]
    assert "container_name" not in worker  # a fixed name would make --scale fail
    assert not any(":" in str(p) for p in worker.get("ports", []))
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]


def test_every_sweeps_command_in_compose_parses_with_its_service_environment(compose, monkeypatch):
    commands = sweeps_services(compose)
    assert {"worker", "gpus"} <= set(commands)
    for name, command in commands.items():
        monkeypatch.delenv(STORAGE_ENV_VAR, raising=False)
        for key, value in compose["services"][name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        context = parse_sweeps_command(command)
        spec = context.params["spec_path"]
        assert (ROOT / spec).exists(), f"{name}: the spec {spec} is not in the image"
    worker = parse_sweeps_command(commands["worker"])
    assert worker.params["device"] == "cuda:0"  # the one GPU the reservation pins


def test_a_bad_command_would_be_caught_by_the_parser():
    with pytest.raises(click.UsageError):
        parse_sweeps_command(["sweeps", "worker", "spec.toml", "--gpu", "0"])


def test_compose_environment_is_what_the_code_reads(compose):
    for name, service in compose["services"].items():
        if name == "postgres":
            continue
        environment = service.get("environment", {})
        names = {key for key in environment if key.startswith("SWEEPS_")}
        assert names <= ENVIRONMENT_THE_CODE_READS, f"{name}: {names - ENVIRONMENT_THE_CODE_READS}"
        assert STORAGE_ENV_VAR in environment, f"{name} does not say where the database is"


def test_workers_and_dashboard_point_at_the_postgres_service(compose):
    postgres = compose["services"]["postgres"]["environment"]
    for name in ("worker", "gpus", "dashboard"):
        url = sa.make_url(compose["services"][name]["environment"][STORAGE_ENV_VAR])
        assert url.host == "postgres"
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"]
        assert url.database == postgres["POSTGRES_DB"]
        # The dashboard's SQLAlchemy needs the driver spelled out (psycopg 3, not psycopg2).
        assert normalize_url(url) == url.render_as_string(hide_password=False)


def test_dashboard_serves_the_same_storage_url(compose):
    command = " ".join(compose["services"]["dashboard"]["command"])
    assert "optuna-dashboard" in command
    assert f"$${STORAGE_ENV_VAR}" in command or f"${STORAGE_ENV_VAR}" in command


def test_dockerfile_installs_the_pinned_torch_and_the_sweeps_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "TORCH_VERSION=2.13.0" in dockerfile
    assert "optuna-dashboard" in dockerfile
    assert "COPY examples" in dockerfile
