"""Write a sweep's transfer report into a directory.

``write_report(url_or_engine, sweep, out_dir)`` reads the sweep's runs and metrics with
:mod:`storage.queries`, computes the tables (:mod:`sweeps.report.data`), draws the figures
(:mod:`sweeps.report.figures`) and writes::

    out_dir/report.html    one self-contained page (figures embedded, CSS inline)
    out_dir/report.md      the same report in Markdown, figures referenced beside it
    out_dir/summary.csv    every number of the best and transfer tables (docs/report.md)
    out_dir/diverged.csv   every diverged run (the report lists the first 50; header only
                           when no run diverged)
    out_dir/*.png          the figures

and records each file as a :class:`storage.models.ReportArtifact` of the sweep. It reads
the database and writes files; it never trains (a configuration missing a paired run shows
as "not run").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import records
from storage.engine import create_engine, session_factory, unavailable_as_storage_error
from storage.errors import SweepNotFoundError
from storage.models import Sweep
from sweeps.report.caveats import with_caveats
from sweeps.report.data import (
    DIVERGED_CSV,
    Direction,
    build_report_data,
    diverged_runs,
    summary_frame,
)
from sweeps.report.figures import draw_report_figures
from sweeps.report.missing import run_missing_pairs
from sweeps.report.render import render_html, render_markdown

REPORT_FILES = ("report.html", "report.md", "summary.csv", DIVERGED_CSV)


def _objective(spec: dict[str, Any]) -> tuple[str, Direction]:
    objective = str(spec.get("objective") or "val_loss")
    direction: Direction = "maximize" if objective.endswith("accuracy") else "minimize"
    if spec.get("direction") == "maximize":
        direction = "maximize"
    elif spec.get("direction") == "minimize":
        direction = "minimize"
    return objective, direction


def _stored_sweep(engine: Engine, sweep: str) -> tuple[int, dict[str, Any]]:
    with session_factory(engine)() as session:
        row = session.scalars(sa.select(Sweep).where(Sweep.name == sweep)).one_or_none()
        if row is None:
            names = session.scalars(sa.select(Sweep.name).order_by(Sweep.name)).all()
            known = ", ".join(repr(n) for n in names) if names else "none"
            raise SweepNotFoundError(
                f"No sweep named {sweep!r} is stored; the stored sweeps are: {known}."
            )
        return row.id, dict(row.spec or {})


def write_report(
    url_or_engine: str | Engine,
    sweep: str,
    out_dir: str | Path,
    *,
    run_missing: bool = False,
    device: str = "cpu",
) -> Path:
    """Write the report of ``sweep`` into ``out_dir`` and return the path of report.html.

    With ``run_missing``, the transfers the sweep lacks (the exact conversion of the other
    optimizer's best configuration back into the spec's family) are first trained on
    ``device`` and recorded in the sweep (:mod:`sweeps.report.missing`); otherwise nothing
    is trained and they show as "not run".

    Raises:
        SweepNotFoundError: no sweep of that name is stored (lists the stored ones).
        StorageError: the database cannot be read.
        OSError: ``out_dir`` cannot be written.
    """
    from storage import queries  # imported here: the CLI starts without reading anything

    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with unavailable_as_storage_error(engine.url):
            sweep_id, spec = _stored_sweep(engine, sweep)
        if spec.get("pairing") == "independent":  # one study per optimizer: tuned vs tuned
            from sweeps.report.tuned_writer import write_tuned_report

            return write_tuned_report(engine, sweep, sweep_id, spec, out_dir)
        objective, direction = _objective(spec)
        trials = _plain(queries.trials_frame(engine, sweep))
        data = build_report_data(trials, sweep=sweep, objective=objective, direction=direction)
        if run_missing and run_missing_pairs(engine, sweep, data, device=device):
            trials = _plain(queries.trials_frame(engine, sweep))
            data = build_report_data(trials, sweep=sweep, objective=objective, direction=direction)
        data = with_caveats(data, spec)
        metrics = _plain(queries.metrics_frame(engine, sweep))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figures = draw_report_figures(data, metrics, out, spec=spec, device=device)
        summary_frame(data).to_csv(out / "summary.csv", index=False)
        _json_cells(diverged_runs(data.runs)).to_csv(out / DIVERGED_CSV, index=False)
        (out / "report.md").write_text(render_markdown(data, figures), encoding="utf-8")
        html_path = out / "report.html"
        html_path.write_text(render_html(data, figures), encoding="utf-8")
        artifacts = [(name.split(".")[-1], out / name) for name in REPORT_FILES]
        artifacts += [("figure", f.path) for group in figures.values() for f in group]
        with unavailable_as_storage_error(engine.url), session_factory(engine).begin() as session:
            for kind, path in artifacts:
                records.add_report_artifact(session, sweep_id, kind=kind, path=str(path))
        return html_path
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def _json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists and tables (``hp_schedule_params``) as JSON in a CSV cell, not Python reprs."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = [
                json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                for v in out[column]
            ]
    return out


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as plain values, so comparisons and groupbys behave simply."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(object)
    return out
