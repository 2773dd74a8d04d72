"""Write the tuned-vs-tuned report of a sweep with ``pairing = "independent"``.

``write_tuned_report`` reads each arm's runs (``<sweep>.<optimizer>``), computes the tables
(:mod:`sweeps.report.tuned`), draws two figures per schedule family and writes::

    out_dir/report.html    one self-contained page (figures embedded)
    out_dir/report.md      the same in Markdown, figures beside it
    out_dir/summary.csv    every number of the tuned, Welch and transfer tables
    out_dir/diverged.csv   every diverged run of every arm
    out_dir/*.png          per family: each arm's own landscape; the confirmed results

Figures:

- *Landscapes*: one panel per momentum family, its own tuning trials (mean objective over
  the tuning seeds, one colour scale for both), the confirmed optimum starred. Unlike a
  paired sweep's landscape, the two panels show different points: each sampler explored in
  its own convention.
- *Confirmed*: each arm's confirmation values (one dot per seed) and their mean with the 95%
  interval, beside the tuning value it was chosen on (a hollow diamond).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from momentum_convert.plotting import save_figure
from sweeps.report.data import DIVERGED_COLUMNS, DIVERGED_CSV, diverged_runs, finished_runs
from sweeps.report.figures import FigureFile
from sweeps.report.render import CSS, Table, data_uri, html_table, markdown_table
from sweeps.report.tuned import (
    NAMES,
    TunedFamily,
    TunedReport,
    build_tuned_report,
    estimate_text,
    tuned_summary_frame,
    welch_text,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

COLOURS = {"pytorch": "tab:blue", "sutskever": "tab:orange", "yellowfin": "tab:green"}
TUNED_FILES = ("report.html", "report.md", "summary.csv", DIVERGED_CSV)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "family"


def _number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4g}"


def tuned_table(family: TunedFamily) -> Table:
    rows = []
    for optimum in family.optima.values():
        rows.append(
            (
                optimum.name,
                str(optimum.trial),
                _number(optimum.lr),
                _number(optimum.momentum),
                str(optimum.n_trials),
                estimate_text(optimum.tuning),
                estimate_text(optimum.confirmed),
            )
        )
    return Table(
        (
            "optimizer",
            "trial",
            "lr",
            "momentum",
            "trials",
            "tuning seeds",
            "confirmation seeds (mean ± 95%)",
        ),
        tuple(rows),
    )


def welch_table(family: TunedFamily) -> Table:
    rows = tuple(
        (f"{NAMES.get(t.a, t.a)} − {NAMES.get(t.b, t.b)}", welch_text(t)) for t in family.tests
    )
    return Table(("difference of confirmed means", "Welch's test"), rows)


def transfer_table(family: TunedFamily, objective: str) -> Table:
    rows = []
    for transfer in family.transfers:
        for role, estimate in (("naive", transfer.naive), ("converted", transfer.converted)):
            if estimate is None:
                continue
            within = ""
            if role == "converted":
                within = "yes" if transfer.converted_within_seed_noise else "NO (flagged)"
            rows.append(
                (
                    f"{transfer.origin.name} → {NAMES.get(transfer.target, transfer.target)}",
                    role,
                    estimate_text(estimate),
                    f"{transfer.gap(estimate):+.4g}",
                    within,
                )
            )
    return Table(
        ("tuned optimum moved", "how", objective, "gap to its confirmation", "within seed noise"),
        tuple(rows),
    )


def draw_landscapes(family: TunedFamily, report: TunedReport, out: Path) -> FigureFile | None:
    panels = [(o, frame) for o, frame in family.landscapes.items() if not frame.empty]
    if not panels:
        return None
    values = np.concatenate([frame["mean"].to_numpy() for _, frame in panels])
    finite = values[np.isfinite(values)]
    norm = Normalize(float(finite.min()), float(finite.max())) if finite.size else None
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    scatter = None
    for axis, (optimizer, frame) in zip(axes[0], panels, strict=True):
        shown = frame[np.isfinite(frame["mean"])]
        scatter = axis.scatter(
            shown["lr"], shown["momentum"], c=shown["mean"], cmap="viridis", norm=norm, s=40
        )
        diverged = frame[~np.isfinite(frame["mean"])]
        if not diverged.empty:
            axis.scatter(diverged["lr"], diverged["momentum"], marker="x", color="red", s=40)
        optimum = family.optima.get(optimizer)
        if optimum is not None:
            axis.scatter(
                [optimum.lr], [optimum.momentum], marker="*", s=260, color=COLOURS[optimizer],
                edgecolors="black", zorder=3, label=f"tuned optimum (trial {optimum.trial})",
            )  # fmt: skip
            axis.legend(loc="lower left", fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel(f"lr ({optimizer} convention)")
        axis.set_ylabel("momentum")
        axis.set_title(f"{NAMES.get(optimizer, optimizer)}: its own {len(frame)} trials")
    if scatter is not None:
        figure.colorbar(scatter, ax=axes[0].tolist(), label=f"mean {report.objective}")
    path = save_figure(figure, out / f"landscapes_{_safe(family.schedule_family)}.png")
    return FigureFile(
        path,
        f"{family.schedule_family}: each optimizer's own search",
        "Each panel shows the trials its own sampler chose, in its own convention (mean over"
        " the tuning seeds, red crosses diverged); the star is the optimum that was confirmed.",
    )


def draw_confirmed(family: TunedFamily, report: TunedReport, out: Path) -> FigureFile:
    figure, axis = plt.subplots(figsize=(1.9 * max(2, len(family.optima)) + 2, 3.8))
    for x, optimum in enumerate(family.optima.values()):
        colour = COLOURS.get(optimum.optimizer, "grey")
        confirmed = optimum.confirmed
        finite = [v for v in confirmed.values if math.isfinite(v)]
        axis.scatter([x + 0.08] * len(finite), finite, color=colour, alpha=0.5, s=18)
        if finite and confirmed.finite:
            error = 0.0 if math.isnan(confirmed.half_width) else confirmed.half_width
            axis.errorbar(
                [x - 0.05], [confirmed.mean], yerr=[error], fmt="o", color=colour, capsize=5
            )
        if math.isfinite(optimum.tuning.mean):
            axis.scatter(
                [x - 0.2], [optimum.tuning.mean], marker="D", facecolors="none",
                edgecolors=colour, s=40,
            )  # fmt: skip
    axis.set_xticks(range(len(family.optima)))
    axis.set_xticklabels([o.replace("_", " ") for o in family.optima], rotation=0)
    axis.set_ylabel(report.objective)
    axis.set_title(f"{family.schedule_family}: tuned vs tuned on fresh seeds")
    path = save_figure(figure, out / f"confirmed_{_safe(family.schedule_family)}.png")
    return FigureFile(
        path,
        f"{family.schedule_family}: confirmed optima",
        "Dots: each confirmation seed; circle and bar: their mean and 95% interval; hollow"
        " diamond: the mean over the tuning seeds the optimum was chosen on.",
    )


def _overview(report: TunedReport) -> list[str]:
    budgets = ", ".join(
        f"{NAMES.get(o, o)}: {report.budgets.get(o, 0)} trials (study {report.sweep}.{o})"
        for o in report.optimizers
    )
    seeds = ", ".join(str(s) for s in report.confirm_seeds)
    lines = [
        f"Objective: {report.objective} ({report.direction}).",
        f"Each optimizer was tuned in its own study with its own sampler: {budgets}.",
        f"Each tuned optimum was rerun on the confirmation seeds {seeds}.",
    ]
    if not report.families:
        lines.append(
            "No optimizer has a confirmed optimum yet: run the sweep until every study has its"
            " trials and its confirmation (sweeps run resumes it)."
        )
    return lines


def render_tuned_markdown(
    report: TunedReport, figures: dict[str, list[FigureFile]], objective: str
) -> str:
    text = [f"# Tuned vs tuned: {html.escape(report.sweep)}", ""]
    text += [f"- {line}" for line in _overview(report)] + [""]
    for family in report.families:
        text += [f"## Schedule: {family.schedule_family}", ""]
        text += [f"- {line}" for line in family.sentences] + [""]
        text += ["### Tuned optima", "", markdown_table(tuned_table(family)), ""]
        if family.tests:
            text += ["### Welch's test", "", markdown_table(welch_table(family)), ""]
        if family.transfers:
            text += ["### Transfer", "", markdown_table(transfer_table(family, objective)), ""]
        for figure in figures.get(family.schedule_family, []):
            text += [f"![{figure.title}]({figure.path.name})", "", f"*{figure.caption}*", ""]
    return "\n".join(text)


def render_tuned_html(
    report: TunedReport, figures: dict[str, list[FigureFile]], objective: str
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Tuned vs tuned: {e(report.sweep)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Tuned vs tuned: {e(report.sweep)}</h1>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _overview(report)) + "</ul>",
    ]
    for family in report.families:
        parts += [
            f"<h2>Schedule: {e(family.schedule_family)}</h2>",
            '<ul class="conclusion">'
            + "".join(f"<li>{e(line)}</li>" for line in family.sentences)
            + "</ul>",
            "<h3>Tuned optima</h3>",
            html_table(tuned_table(family)),
        ]
        if family.tests:
            parts += ["<h3>Welch's test</h3>", html_table(welch_table(family))]
        if family.transfers:
            parts += ["<h3>Transfer</h3>", html_table(transfer_table(family, objective))]
        for figure in figures.get(family.schedule_family, []):
            parts.append(
                f'<figure><img src="{data_uri(figure.path)}" alt="{e(figure.title)}">'
                f"<figcaption>{e(figure.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_tuned_report(
    engine: Engine, sweep: str, sweep_id: int, spec: dict[str, Any], out_dir: str | Path
) -> Path:
    """Write the report of the independent sweep ``sweep`` (its stored ``spec``) and return
    the path of report.html; each file is recorded as a report artifact of the sweep."""
    from storage import queries, records
    from storage.engine import session_factory
    from sweeps.independent import arm_name
    from sweeps.report.writer import _json_cells, _objective, _plain

    objective, direction = _objective(spec)
    from storage.errors import SweepNotFoundError

    arms = {}
    for optimizer in spec.get("optimizers", ()):
        try:
            arms[optimizer] = _plain(queries.trials_frame(engine, arm_name(sweep, optimizer)))
        except SweepNotFoundError:  # no worker has opened this optimizer's study yet
            continue
    report = build_tuned_report(
        arms,
        sweep=sweep,
        objective=objective,
        direction=direction,
        confirm_seeds=tuple(spec.get("confirm_seeds", ())),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[FigureFile]] = {}
    for family in report.families:
        drawn = [draw_landscapes(family, report, out), draw_confirmed(family, report, out)]
        figures[family.schedule_family] = [f for f in drawn if f is not None]
    tuned_summary_frame(report).to_csv(out / "summary.csv", index=False)
    finished = [finished_runs(frame) for frame in arms.values()]
    if finished:
        every_run = pd.concat(finished, ignore_index=True)
        _json_cells(diverged_runs(every_run)).to_csv(out / DIVERGED_CSV, index=False)
    else:
        pd.DataFrame(columns=list(DIVERGED_COLUMNS)).to_csv(out / DIVERGED_CSV, index=False)
    (out / "report.md").write_text(
        render_tuned_markdown(report, figures, objective), encoding="utf-8"
    )
    html_path = out / "report.html"
    html_path.write_text(render_tuned_html(report, figures, objective), encoding="utf-8")
    artifacts = [(name.split(".")[-1], out / name) for name in TUNED_FILES]
    artifacts += [("figure", f.path) for group in figures.values() for f in group]
    with session_factory(engine).begin() as session:
        for kind, path in artifacts:
            records.add_report_artifact(session, sweep_id, kind=kind, path=str(path))
    return html_path
