"""optuna-dashboard shows what the report shows, read through the dashboard's own API.

A real paired trial (two seeds) runs on an SQLite study; the dashboard's WSGI app
(``optuna_dashboard.wsgi``) then serves ``/api/studies/<id>`` as the browser would get it.
"""

from __future__ import annotations

import io
import json
import math
import wsgiref.util
from pathlib import Path

import optuna
from optuna_dashboard import wsgi

from sweeps.dashboard import SeedMeanCurve, arm_attributes
from sweeps.objective import SweepObjective
from tests.sweeps.test_objective import ListRecorder, make_spec


def dashboard_get(storage: str, path: str) -> dict:
    """GET ``path`` from optuna-dashboard's WSGI app, in-process, and decode its JSON."""
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, REQUEST_METHOD="GET", QUERY_STRING="")
    environ["wsgi.input"] = io.BytesIO(b"")
    status: list[str] = []
    body = b"".join(wsgi(storage)(environ, lambda s, headers, exc=None: status.append(s)))
    assert status[0].startswith("200"), status
    return json.loads(body)


def test_the_dashboard_shows_the_seed_mean_curve_and_every_arms_value(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="dashboard", storage=storage)
    recorder = ListRecorder()
    study.optimize(SweepObjective(make_spec(), recorder), n_trials=1)

    # The expected numbers, from what the objective recorded per run and epoch.
    runs = recorder.runs
    per_epoch: dict[int, list[float]] = {}
    for run_id, epoch, metrics in recorder.epochs:
        if runs[run_id]["role"] == "source":
            per_epoch.setdefault(epoch, []).append(metrics["val_loss"])
    expected_curve = {epoch: sum(v) / len(v) for epoch, v in per_epoch.items()}
    expected_arms = {
        role: sum(r["value"] for r in runs.values() if r["role"] == role) / 2
        for role in ("source", "naive", "converted")
    }

    detail = dashboard_get(storage, f"/api/studies/{study._study_id}")
    (trial,) = detail["trials"]
    curve = {v["step"]: v["value"] for v in trial["intermediate_values"]}
    assert curve.keys() == expected_curve.keys() == {1, 2, 3}
    for epoch, value in expected_curve.items():
        assert math.isclose(curve[epoch], value, rel_tol=1e-12)
    # The last intermediate value is the trial's value: the same per-epoch quantity.
    assert math.isclose(curve[3], trial["values"][0], rel_tol=1e-12)
    attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
    for role, value in expected_arms.items():
        assert math.isclose(float(attrs[f"value:{role}"]), value, rel_tol=1e-12)
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    assert [sortable[f"value:{role}"] for role in expected_arms] == [True, True, True]


def test_the_seed_mean_waits_for_every_seed_and_skips_a_diverged_one() -> None:
    curve = SeedMeanCurve([0, 1])
    curve.add(0, 1, 2.0)
    assert curve.mean(1) is None  # seed 1 has not reached epoch 1
    curve.add(1, 1, 4.0)
    assert curve.mean(1) == 3.0
    curve.add(0, 2, math.inf)
    curve.add(1, 2, 1.0)
    assert curve.mean(2) is None


def test_arm_attributes_leave_out_untrained_and_diverged_arms() -> None:
    summaries = [
        {"role": "source", "state": "COMPLETE", "value": 1.0},
        {"role": "source", "state": "COMPLETE", "value": 3.0},
        {"role": "naive", "state": "COMPLETE", "value": math.inf},
        {"role": "converted", "state": "FAIL", "value": None},
    ]
    assert arm_attributes(summaries) == {"value:source": 2.0}
