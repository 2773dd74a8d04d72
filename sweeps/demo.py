"""``sweeps demo``: the product's main job, end to end, on the embedded default.

In the current folder, with ``./sweeps.db`` and no server: a small paired sweep on
``digits-mlp`` (scikit-learn's bundled 8×8 digits, nothing downloads) in the PyTorch
convention, with a step-decay and a cosine schedule. Every trial trains the PyTorch
``source`` run, the SutskeverSGD run converted exactly from it, and the naive SutskeverSGD
run with the same numbers, so both optimizers' results are in the database. It writes its
spec to ``./sweeps-demo.toml`` (edit it and ``sweeps run sweeps-demo.toml`` for more) and
runs two local workers. Running it again resumes the sweep, or says it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEMO_NAME: Final = "demo"
DEMO_SPEC_FILE: Final = "sweeps-demo.toml"
DEMO_STORAGE: Final = "sqlite:///sweeps.db"
DEMO_WORKERS: Final = 2

DEMO_SPEC: Final = f'''\
# The sweep `sweeps demo` runs: a small paired sweep on the digits MLP.
name = "{DEMO_NAME}"
task = "digits-mlp"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"       # the search space below is written for torch.optim.SGD
pairing = true               # each configuration also runs converted and naive in SutskeverSGD
seeds = [0, 1]                # two seeds per configuration: the report shows intervals
sampler = "tpe"
pruner = "none"
n_trials = 16
devices = "cpu"
population = 4               # each worker trains 4 trials at once (docs/population.md)

[search_space]
lr = {{ low = 0.01, high = 0.5, log = true }}
momentum = {{ low = 0.5, high = 0.95 }}
batch_size = 64
epochs = 4

[search_space.schedule]
step = {{ milestones_epochs = [2, 3], gamma = 0.3 }}
cosine = {{}}
'''


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo keeps its spec and results."""

    folder: Path
    spec_path: Path
    storage: str


def prepare(folder: Path | None = None) -> DemoPlan:
    """Write the demo spec into ``folder`` (default: the current folder) unless it is there."""
    folder = (folder or Path.cwd()).resolve()
    spec_path = folder / DEMO_SPEC_FILE
    if not spec_path.exists():
        spec_path.write_text(DEMO_SPEC, encoding="utf-8")
    return DemoPlan(folder=folder, spec_path=spec_path, storage=f"sqlite:///{folder / 'sweeps.db'}")


def closing_words(plan: DemoPlan) -> str:
    """Where the results are and the two lines of pandas that read them."""
    return (
        f"Results: {plan.folder / 'sweeps.db'} (sweep {DEMO_NAME!r}, spec {plan.spec_path.name}).\n"
        "Read them with pandas:\n"
        "    from storage import trials_frame, metrics_frame\n"
        f'    runs = trials_frame("{DEMO_STORAGE}"); epochs = metrics_frame("{DEMO_STORAGE}")\n'
        f"See the sweep with `sweeps status {DEMO_NAME}`."
    )
