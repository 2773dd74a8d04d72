"""Write deploy/kubernetes/ from ``sweeps launch kubernetes``'s rendering of the quickstart.

    python scripts/render_kubernetes_deploy.py

The files are the objects of ``SWEEPS_POSTGRES_PASSWORD=change-me sweeps launch kubernetes
examples/quickstart.toml --workers 4 --dry-run``, grouped by component, plus a
kustomization; tests/sweeps/launch/test_kubernetes.py checks that they still are.
"""

from __future__ import annotations

from pathlib import Path

from sweeps.launch.kubernetes import KubernetesOptions, manifests_yaml, render_manifests
from sweeps.launch.request import prepare_launch

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "deploy" / "kubernetes"
HEADER = (
    "# Rendered by `SWEEPS_POSTGRES_PASSWORD=change-me sweeps launch kubernetes\n"
    "# examples/quickstart.toml --workers 4 --dry-run` (scripts/render_kubernetes_deploy.py).\n"
)
FILES = {
    "database": (
        "postgres.yaml",
        "# PostgreSQL: the password Secret (change it before applying), a headless Service,\n"
        "# a one-replica StatefulSet with its data on a PersistentVolumeClaim.\n",
    ),
    "spec": ("workers.yaml", ""),
    "worker": (
        "workers.yaml",
        "# The workers: the spec as a ConfigMap, an Indexed Job of 4 `sweeps worker` pods with\n"
        "# one nvidia.com/gpu each.\n",
    ),
    "dashboard": (
        "dashboard.yaml",
        "# optuna-dashboard on the sweep's database: a Deployment and a Service on port 8080.\n",
    ),
}
KUSTOMIZATION = """\
# kubectl apply -k deploy/kubernetes   (after changing the password in postgres.yaml)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - postgres.yaml
  - workers.yaml
  - dashboard.yaml
"""


def main() -> None:
    launch = prepare_launch(
        ROOT / "examples" / "quickstart.toml", storage=None, name=None, n_trials=None, workers=4
    )
    objects = render_manifests(launch, KubernetesOptions(workers=4), password="change-me")
    grouped: dict[str, tuple[str, list[dict]]] = {}
    for item in objects:
        file_name, comment = FILES[item["metadata"]["labels"]["app.kubernetes.io/component"]]
        text, items = grouped.get(file_name, ("", []))
        grouped[file_name] = (text + comment, [*items, item])
    for file_name, (comment, items) in grouped.items():
        (FOLDER / file_name).write_text(HEADER + comment + manifests_yaml(items))
    (FOLDER / "kustomization.yaml").write_text(KUSTOMIZATION)


if __name__ == "__main__":
    main()
