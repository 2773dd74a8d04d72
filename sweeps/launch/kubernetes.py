"""``sweeps launch kubernetes``: the manifests of a sweep on a Kubernetes cluster.

Kubernetes does the placing, the GPU allocation and the restarting; this module writes
the objects that ask it to, for one spec (``deploy/kubernetes/`` holds them rendered for
the quickstart):

- a ``Secret`` with the database password, and a ``ConfigMap`` with the spec's text;
- PostgreSQL as a one-replica ``StatefulSet`` (its data on a ``PersistentVolumeClaim``)
  behind a headless ``Service``, ``max_connections`` sized at 6 per worker plus headroom
  (each worker holds at most 6, ``docs/sweeps.md``);
- the workers as an *Indexed* ``Job``: ``parallelism`` = ``completions`` = workers, each
  pod one ``sweeps worker`` with one ``nvidia.com/gpu`` (the device plugin sets
  ``CUDA_VISIBLE_DEVICES``, so it trains on ``cuda:0``), its storage URL assembled from the
  Secret by Kubernetes' ``$(VAR)`` expansion. A pod that is evicted, preempted or loses its
  node gets SIGTERM first when there is time (the worker's interrupted path: its trial is
  re-queued), and the Job controller starts a new pod for its index; the ``podFailurePolicy``
  does not count such disruptions against ``backoffLimit``, and fails the Job at once on
  exit status 2 (a bad spec, which a restart would repeat);
- optuna-dashboard as a ``Deployment`` and ``Service`` on port 8080.

The objects are plain dictionaries in the Kubernetes API's JSON form; ``--dry-run`` prints
them as one YAML stream, otherwise they go to ``kubectl apply -f -``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sweeps.errors import SweepError, SweepUsageError

if TYPE_CHECKING:
    from sweeps.launch.request import SweepLaunch

DEFAULT_IMAGE: Final = "momentum-sweeps:latest"
POSTGRES_IMAGE: Final = "postgres:16"
PASSWORD_ENV_VAR: Final = "SWEEPS_POSTGRES_PASSWORD"
"""The database password to render into the Secret (default: a new random one)."""
SPEC_MOUNT: Final = "/etc/sweeps"
DASHBOARD_PORT: Final = 8080
POSTGRES_PORT: Final = 5432
CONNECTIONS_PER_WORKER: Final = 6
CONNECTION_HEADROOM: Final = 20
STOP_GRACE_S: Final = 120
"""``terminationGracePeriodSeconds``: time for a stopping worker to record its trial."""
RESTARTS_PER_WORKER: Final = 3
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME: Final = 40
"""Room for the longest suffix (``-dashboard``) within a DNS label's 63 characters, and
for the Job controller's pod name suffixes."""


@dataclass(frozen=True)
class KubernetesOptions:
    """What the manifests depend on besides the sweep."""

    workers: int
    image: str = DEFAULT_IMAGE
    gpus_per_worker: int = 1
    namespace: str | None = None
    storage_size: str = "10Gi"


def resource_name(sweep_name: str) -> str:
    """The objects' common name prefix: the sweep's name as a DNS label (RFC 1123).

    Raises:
        SweepUsageError: nothing usable is left of the name.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", sweep_name.lower()).strip("-")[:_MAX_NAME].strip("-")
    if not name or not _NAME.match(name):
        raise SweepUsageError(
            f"the sweep name {sweep_name!r} gives no Kubernetes name (lower-case letters,"
            " digits and '-'); pass --name."
        )
    return f"sweeps-{name}" if not name.startswith("sweeps") else name


def render_manifests(
    launch: SweepLaunch, options: KubernetesOptions, *, password: str | None = None
) -> list[dict[str, Any]]:
    """Every object of the sweep, in the order ``kubectl apply`` should create them.

    ``password`` (default: ``$SWEEPS_POSTGRES_PASSWORD``, else 24 random hex characters:
    hex needs no escaping inside the URL) goes into the Secret.

    Raises:
        SweepUsageError: ``workers`` or ``gpus_per_worker`` out of range, a name unusable
            in Kubernetes, a password with characters a URL would need escaped.
    """
    if options.workers < 1:
        raise SweepUsageError(f"--workers must be at least 1, got {options.workers}.")
    if options.gpus_per_worker < 0:
        raise SweepUsageError(
            f"--gpus-per-worker must be 0 or more, got {options.gpus_per_worker}."
        )
    password = password or os.environ.get(PASSWORD_ENV_VAR) or secrets.token_hex(12)
    if not re.fullmatch(r"[A-Za-z0-9._~-]+", password):
        raise SweepUsageError(
            f"${PASSWORD_ENV_VAR} may hold only letters, digits and . _ ~ - (it goes into a"
            " URL unescaped)."
        )
    base = resource_name(launch.name)
    names = _Names(base)
    labels = {"app.kubernetes.io/part-of": "momentum-sweeps", "sweeps/sweep": base}
    objects = [
        _secret(names, labels, password),
        _spec_config_map(names, labels, launch),
        _postgres_service(names, labels),
        _postgres_stateful_set(names, labels, options),
        _worker_job(names, labels, launch, options),
        _dashboard_deployment(names, labels, options),
        _dashboard_service(names, labels),
    ]
    if options.namespace:
        for item in objects:
            item["metadata"]["namespace"] = options.namespace
    return objects


def manifests_yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as one YAML stream (``---`` between documents), for ``kubectl apply``."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        """Multi-line text (the spec) as a literal block, readable in the manifest."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def apply(objects: list[dict[str, Any]]) -> str:
    """``kubectl apply -f -`` the objects; returns kubectl's report.

    Raises:
        SweepError: kubectl is missing or refused them.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SweepError(
            "kubectl was not found on PATH: install it and point it at the cluster, or add"
            " --dry-run to print the manifests."
        )
    done = subprocess.run(
        [kubectl, "apply", "-f", "-"],
        input=manifests_yaml(objects),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise SweepError(f"kubectl apply failed: {lines[-1] if lines else done.returncode}")
    return done.stdout


@dataclass(frozen=True)
class _Names:
    base: str

    @property
    def secret(self) -> str:
        return f"{self.base}-postgres"

    @property
    def spec(self) -> str:
        return f"{self.base}-spec"

    @property
    def postgres(self) -> str:
        return f"{self.base}-postgres"

    @property
    def workers(self) -> str:
        return f"{self.base}-workers"

    @property
    def dashboard(self) -> str:
        return f"{self.base}-dashboard"


def _metadata(name: str, labels: dict[str, str], component: str) -> dict[str, Any]:
    return {"name": name, "labels": {**labels, "app.kubernetes.io/component": component}}


def _selector(labels: dict[str, str], component: str) -> dict[str, str]:
    return {"sweeps/sweep": labels["sweeps/sweep"], "app.kubernetes.io/component": component}


def _secret(names: _Names, labels: dict[str, str], password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(names.secret, labels, "database"),
        "type": "Opaque",
        "stringData": {"password": password},
    }


def _spec_config_map(names: _Names, labels: dict[str, str], launch: SweepLaunch) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(names.spec, labels, "spec"),
        "data": {"spec.toml": launch.spec_text},
    }


def _storage_environment(names: _Names) -> list[dict[str, Any]]:
    """``SWEEPS_STORAGE`` built from the Secret (``$(VAR)`` refers to an earlier variable)."""
    return [
        {
            "name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": names.secret, "key": "password"}},
        },
        {
            "name": "SWEEPS_STORAGE",
            "value": (
                "postgresql+psycopg://sweeps:$(POSTGRES_PASSWORD)"
                f"@{names.postgres}:{POSTGRES_PORT}/sweeps"
            ),
        },
    ]


def _postgres_service(names: _Names, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(names.postgres, labels, "database"),
        "spec": {
            "clusterIP": "None",
            "selector": _selector(labels, "database"),
            "ports": [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": POSTGRES_PORT}],
        },
    }


def _postgres_stateful_set(
    names: _Names, labels: dict[str, str], options: KubernetesOptions
) -> dict[str, Any]:
    connections = CONNECTIONS_PER_WORKER * options.workers + CONNECTION_HEADROOM
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(names.postgres, labels, "database"),
        "spec": {
            "serviceName": names.postgres,
            "replicas": 1,
            "selector": {"matchLabels": _selector(labels, "database")},
            "template": {
                "metadata": {"labels": {**labels, "app.kubernetes.io/component": "database"}},
                "spec": {
                    "containers": [
                        {
                            "name": "postgres",
                            "image": POSTGRES_IMAGE,
                            "args": ["-c", f"max_connections={connections}"],
                            "env": [
                                {"name": "POSTGRES_USER", "value": "sweeps"},
                                {"name": "POSTGRES_DB", "value": "sweeps"},
                                {
                                    "name": "POSTGRES_PASSWORD",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": names.secret, "key": "password"}
                                    },
                                },
                                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                            ],
                            "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
                            "readinessProbe": {
                                "exec": {"command": ["pg_isready", "-U", "sweeps", "-d", "sweeps"]},
                                "periodSeconds": 5,
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/var/lib/postgresql/data"}
                            ],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": options.storage_size}},
                    },
                }
            ],
        },
    }


def _worker_job(
    names: _Names, labels: dict[str, str], launch: SweepLaunch, options: KubernetesOptions
) -> dict[str, Any]:
    device = "cuda:0" if options.gpus_per_worker else "cpu"
    command = ["sweeps", *launch.worker_arguments(f"{SPEC_MOUNT}/spec.toml", device)]
    resources: dict[str, Any] = {}
    if options.gpus_per_worker:
        resources = {"limits": {"nvidia.com/gpu": str(options.gpus_per_worker)}}
    environment = _storage_environment(names)
    environment += [{"name": key, "value": value} for key, value in launch.settings.items()]
    environment.append(
        {
            "name": "SWEEPS_WORKER_INDEX",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                }
            },
        }
    )
    worker = {
        "name": "worker",
        "image": options.image,
        "command": command,
        "env": environment,
        "resources": resources,
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}],
    }
    wait_for_database = {
        "name": "wait-for-database",
        "image": POSTGRES_IMAGE,
        "command": [
            "sh",
            "-c",
            f"until pg_isready -h {names.postgres} -p {POSTGRES_PORT} -U sweeps; do sleep 2; done",
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(names.workers, labels, "worker"),
        "spec": {
            "completionMode": "Indexed",
            "completions": options.workers,
            "parallelism": options.workers,
            "backoffLimit": RESTARTS_PER_WORKER * options.workers,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "worker",
                            "operator": "In",
                            "values": [2],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": {**labels, "app.kubernetes.io/component": "worker"}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": STOP_GRACE_S,
                    "initContainers": [wait_for_database],
                    "containers": [worker],
                    "volumes": [{"name": "spec", "configMap": {"name": names.spec}}],
                },
            },
        },
    }


def _dashboard_deployment(
    names: _Names, labels: dict[str, str], options: KubernetesOptions
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(names.dashboard, labels, "dashboard"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(labels, "dashboard")},
            "template": {
                "metadata": {"labels": {**labels, "app.kubernetes.io/component": "dashboard"}},
                "spec": {
                    "containers": [
                        {
                            "name": "dashboard",
                            "image": options.image,
                            "command": [
                                "sh",
                                "-c",
                                'exec optuna-dashboard "$SWEEPS_STORAGE" --host 0.0.0.0'
                                f" --port {DASHBOARD_PORT}",
                            ],
                            "env": _storage_environment(names),
                            "ports": [{"name": "http", "containerPort": DASHBOARD_PORT}],
                        }
                    ]
                },
            },
        },
    }


def _dashboard_service(names: _Names, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(names.dashboard, labels, "dashboard"),
        "spec": {
            "selector": _selector(labels, "dashboard"),
            "ports": [{"name": "http", "port": DASHBOARD_PORT, "targetPort": DASHBOARD_PORT}],
        },
    }
