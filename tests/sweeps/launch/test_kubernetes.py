"""``sweeps launch kubernetes``: every rendered manifest is a valid Kubernetes object (the
official client's models, which carry the API's schema: field names, types, required
fields), and the objects fit together: names, GPUs, the Secret, the worker command.

Validation: each object is deserialised into the client's model for its kind and
serialised back; a misspelt or misplaced field is dropped by the model (the round trip
then differs), a missing required field raises, a wrong type fails to convert.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes.client import ApiClient

from sweeps.cli import cli
from sweeps.errors import SweepUsageError
from sweeps.launch.kubernetes import KubernetesOptions, render_manifests, resource_name
from sweeps.launch.request import prepare_launch
from sweeps.spec import load_spec, parse_spec

REPOSITORY = Path(__file__).resolve().parents[3]
QUICKSTART = REPOSITORY / "examples" / "quickstart.toml"
DEPLOY = REPOSITORY / "deploy" / "kubernetes"
MODELS = {
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
}


def _validated(item: dict[str, Any]) -> dict[str, Any]:
    """The object after a round trip through its Kubernetes model."""
    client = ApiClient()
    model_name = MODELS[(item["apiVersion"], item["kind"])]
    model = client.deserialize(json.dumps(item), model_name, "application/json")
    return client.sanitize_for_serialization(model)


def _render(workers: int = 4, gpus: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    launch = prepare_launch(QUICKSTART, storage=None, name=None, n_trials=None, workers=workers)
    options = KubernetesOptions(workers=workers, gpus_per_worker=gpus, **kwargs)
    return render_manifests(launch, options, password="s3cret-pw")


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def _cli_manifests(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["launch", "kubernetes", *args], env=env)
    assert result.exit_code == 0, result.output
    return [item for item in yaml.safe_load_all(result.stdout) if item]


@pytest.mark.parametrize("gpus", [1, 0])
def test_every_rendered_manifest_is_a_valid_kubernetes_object(gpus):
    objects = _cli_manifests(
        str(QUICKSTART), "--workers", "3", "--gpus-per-worker", str(gpus), "--dry-run"
    )
    assert sorted((item["apiVersion"], item["kind"]) for item in objects) == sorted(
        [*MODELS, ("v1", "Service")]
    )
    for item in objects:
        assert _validated(item) == item, f"{item['kind']} has fields its schema does not know"


def test_the_indexed_job_runs_one_worker_per_gpu_with_the_sweeps_worker_command():
    [job] = _by_kind(_render(workers=4), "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == 4
    pod = spec["template"]["spec"]
    [worker] = pod["containers"]
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert worker["command"] == [
        "sweeps",
        "worker",
        "/etc/sweeps/spec.toml",
        "--name",
        "quickstart",
        "--device",
        "cuda:0",
    ]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to re-queue the trial on SIGTERM"
    [mount] = worker["volumeMounts"]
    [volume] = pod["volumes"]
    assert volume["name"] == mount["name"]
    assert mount["mountPath"] == "/etc/sweeps"


def test_a_total_from_the_command_line_reaches_every_worker():
    [job] = _by_kind(
        _cli_manifests(str(QUICKSTART), "--n-trials", "40", "--name", "big", "--dry-run"), "Job"
    )
    [worker] = job["spec"]["template"]["spec"]["containers"]
    assert worker["command"][-4:] == ["--device", "cuda:0", "--n-trials", "40"]
    assert worker["command"][worker["command"].index("--name") + 1] == "big"
    assert job["metadata"]["name"] == "sweeps-big-workers"


def test_cpu_workers_ask_for_no_gpu_and_train_on_the_cpu():
    [job] = _by_kind(_render(workers=2, gpus=0), "Job")
    [worker] = job["spec"]["template"]["spec"]["containers"]
    assert "limits" not in worker["resources"]
    assert worker["command"][worker["command"].index("--device") + 1] == "cpu"


def test_the_password_lives_only_in_the_secret_that_postgres_and_the_workers_read():
    objects = _render()
    [secret] = _by_kind(objects, "Secret")
    assert secret["stringData"] == {"password": "s3cret-pw"}
    others = [item for item in objects if item is not secret]
    assert "s3cret-pw" not in json.dumps(others)

    def password_source(container: dict[str, Any]) -> dict[str, Any]:
        [variable] = [v for v in container["env"] if v["name"] == "POSTGRES_PASSWORD"]
        return variable["valueFrom"]["secretKeyRef"]

    [database] = _by_kind(objects, "StatefulSet")
    [job] = _by_kind(objects, "Job")
    [dashboard] = _by_kind(objects, "Deployment")
    for owner in (database, job, dashboard):
        [container] = owner["spec"]["template"]["spec"]["containers"]
        assert password_source(container) == {
            "name": secret["metadata"]["name"],
            "key": "password",
        }


def test_workers_and_dashboard_reach_postgres_through_its_service():
    objects = _render(workers=5)
    [database] = _by_kind(objects, "StatefulSet")
    services = {item["metadata"]["name"]: item for item in _by_kind(objects, "Service")}
    database_service = services[database["spec"]["serviceName"]]
    assert database_service["spec"]["clusterIP"] == "None"
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert database_service["spec"]["selector"].items() <= labels.items()
    assert database["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [job] = _by_kind(objects, "Job")
    [worker] = job["spec"]["template"]["spec"]["containers"]
    [storage] = [v["value"] for v in worker["env"] if v["name"] == "SWEEPS_STORAGE"]
    # Kubernetes substitutes $(POSTGRES_PASSWORD): the variable must come first.
    names = [v["name"] for v in worker["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("SWEEPS_STORAGE")
    expected_host = f"@{database_service['metadata']['name']}:5432/sweeps"
    assert storage == f"postgresql+psycopg://sweeps:$(POSTGRES_PASSWORD){expected_host}"
    # Each worker holds at most 6 connections (docs/sweeps.md).
    [container] = database["spec"]["template"]["spec"]["containers"]
    [limit] = [a for a in container["args"] if a.startswith("max_connections=")]
    assert int(limit.split("=")[1]) >= 6 * 5


def test_the_dashboard_service_selects_the_dashboard_pods():
    objects = _render()
    [deployment] = _by_kind(objects, "Deployment")
    [service] = [s for s in _by_kind(objects, "Service") if "dashboard" in s["metadata"]["name"]]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [port] = service["spec"]["ports"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] == container["ports"][0]["containerPort"]
    assert "optuna-dashboard" in " ".join(container["command"])


def test_the_config_map_carries_the_spec_the_workers_run():
    [config] = _by_kind(_render(), "ConfigMap")
    shipped = parse_spec(config["data"]["spec.toml"], default_name="quickstart")
    assert shipped.to_json() == load_spec(QUICKSTART).to_json()


def test_a_namespace_is_set_on_every_object():
    objects = _render(namespace="lab")
    assert {item["metadata"]["namespace"] for item in objects} == {"lab"}


def test_the_checked_in_manifests_are_the_rendering_of_the_quickstart():
    rendered = _cli_manifests(
        str(QUICKSTART),
        "--workers",
        "4",
        "--dry-run",
        env={"SWEEPS_POSTGRES_PASSWORD": "change-me"},
    )
    checked_in = [
        item
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for item in yaml.safe_load_all(path.read_text())
        if item
    ]

    def key(item: dict[str, Any]) -> tuple[str, str]:
        return item["kind"], item["metadata"]["name"]

    assert sorted(checked_in, key=key) == sorted(rendered, key=key)
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("quickstart", "sweeps-quickstart"),
        ("LR_study v2", "sweeps-lr-study-v2"),
        ("sweeps-a", "sweeps-a"),
    ],
)
def test_resource_names_are_dns_labels(name, expected):
    assert resource_name(name) == expected


def test_a_name_with_nothing_usable_is_refused():
    with pytest.raises(SweepUsageError, match="pass --name"):
        resource_name("___")


def test_a_password_a_url_would_need_escaped_is_refused(monkeypatch):
    monkeypatch.setenv("SWEEPS_POSTGRES_PASSWORD", "p@ss/word")
    result = CliRunner().invoke(cli, ["launch", "kubernetes", str(QUICKSTART), "--dry-run"])
    assert result.exit_code == 2
    assert "SWEEPS_POSTGRES_PASSWORD" in result.output
    assert "p@ss/word" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker must be 0 or more, got -1"),
        (["--storage", "postgresql://a@b/c"], "--storage is not used on Kubernetes"),
    ],
)
def test_bad_options_exit_2_with_one_sentence(args, words):
    result = CliRunner().invoke(cli, ["launch", "kubernetes", str(QUICKSTART), "--dry-run", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert words in lines[0]


def test_applying_without_kubectl_exits_1_with_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl here
    result = CliRunner().invoke(cli, ["launch", "kubernetes", str(QUICKSTART)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "kubectl was not found on PATH" in lines[0]
