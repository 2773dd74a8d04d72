"""Render the report as Markdown and as one self-contained HTML page.

The HTML page embeds every figure as a base64 ``data:image/png`` URI and carries its CSS
inline, so it opens offline from anywhere (mail it, attach it to a ticket). Every piece of
text that reaches HTML goes through :func:`html.escape`: sweep names, schedule SPEC strings,
verdicts and notes come from users and stored data, and a sweep called
``<script>alert(1)</script>`` must show up as text. The page is built with plain string
joins (no template engine needed for one fixed layout).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sweeps.report.data import (
    DIVERGED_CSV,
    OPTIMIZER_NAMES,
    Configuration,
    Estimate,
    FamilyResult,
    ReportData,
    Transfer,
    diverged_mask,
    diverged_runs,
    divergence_summary,
    divergence_text,
    gap_text,
)
from sweeps.report.figures import FigureFile


@dataclass(frozen=True)
class Table:
    """A small table of already formatted cells (plain text, escaped when rendered)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


DIVERGED_ROWS_SHOWN = 50
"""The diverged runs listed in the report; the rest are counted, and all are in the CSV."""


def number(value: float, digits: int = 4) -> str:
    """A plain number (lr, momentum, a p-value); objective values go through
    :func:`estimate_text`, which knows which runs diverged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def estimate_text(estimate: Estimate) -> str:
    """``mean ± half-width`` (95% t-interval over seeds), the mean alone, or "diverged"
    (with how many seeds, when not all) for a mean that a diverged run entered."""
    diverged = divergence_text(estimate)
    if diverged is not None:
        return diverged
    if math.isnan(estimate.half_width):
        return number(estimate.mean)
    return f"{number(estimate.mean)} ± {estimate.half_width:.2g}"


def _name(optimizer: str) -> str:
    return OPTIMIZER_NAMES.get(optimizer, optimizer)


def best_table(family: FamilyResult) -> Table:
    rows = []
    comparison = family.comparison
    for optimizer, config in sorted(comparison.best.items()):
        rows.append(
            (
                _name(optimizer),
                str(config.trial),
                config.role,
                estimate_text(config.estimate),
                str(config.estimate.n),
                number(config.lr),
                number(config.momentum),
                number(config.effective_lr),
            )
        )
    return Table(
        (
            "optimizer",
            "trial",
            "runs",
            "best objective (mean ± 95% CI)",
            "seeds",
            "lr",
            "momentum",
            "lr/(1-μ)",
        ),
        tuple(rows),
    )


def significance_text(family: FamilyResult) -> str:
    comparison = family.comparison
    if len(comparison.best) < 2:
        return "Only one optimizer has finished runs for this schedule; nothing to compare."
    if math.isnan(comparison.p_welch) and math.isnan(comparison.p_mannwhitney):
        return "Too few seeds to test the difference (a test needs at least two per side)."
    verdict = "significant" if comparison.significant else "not significant"
    return (
        f"Difference of the two bests: Welch's t-test p = {number(comparison.p_welch, 3)},"
        f" Mann-Whitney U p = {number(comparison.p_mannwhitney, 3)}: {verdict} at the 5% level."
    )


def transfer_table(family: FamilyResult) -> Table:
    rows = []
    for transfer in family.transfers:
        origin = transfer.origin

        def cell(run: Configuration | None) -> str:
            return "not run" if run is None else estimate_text(run.estimate)

        def gap(run: Configuration | None, transfer: Transfer = transfer) -> str:
            if run is None:
                return "—"
            text = gap_text(transfer, run)
            return "—" if text == "n/a" else text

        reproduces = transfer.converted_within_seed_noise
        check = {None: "—", True: "yes", False: "NO (flagged)"}[reproduces]
        rows.append(
            (
                f"{_name(origin.optimizer)} → {_name(transfer.target_optimizer)}",
                str(origin.trial),
                estimate_text(origin.estimate),
                cell(transfer.naive),
                gap(transfer.naive),
                cell(transfer.converted),
                gap(transfer.converted),
                (transfer.converted.verdict or "—") if transfer.converted else "—",
                check,
            )
        )
    return Table(
        (
            "best of → run in",
            "trial",
            "origin",
            "naive",
            "naive gap",
            "converted",
            "converted gap",
            "verdict",
            "converted within seed noise",
        ),
        tuple(rows),
    )


def overview_lines(data: ReportData) -> list[str]:
    runs = data.runs
    seeds = sorted({int(s) for s in runs["seed"]}) if len(runs) else []
    counts = ", ".join(f"{state} {n}" for state, n in sorted(data.counts.items())) or "none"
    lines = [
        f"Objective: {data.objective} ({data.direction}).",
        f"Runs by state: {counts}.",
        f"Configurations (Optuna trials) with finished runs: {runs['trial'].nunique()};"
        f" seeds: {', '.join(map(str, seeds)) or 'none'}.",
        "Intervals are 95% Student-t intervals of the mean over seeds.",
    ]
    diverged = int(diverged_mask(runs).sum()) if len(runs) else 0
    if diverged:
        lines.append(
            f"Diverged: {diverged} of {len(runs)} finished runs (listed under Diverged runs)."
        )
    return lines


# --- Diverged runs -------------------------------------------------------------------------

_SHOWN_FIRST = ("hp_lr", "hp_momentum")
_NOT_SHOWN = ("hp_schedule", "hp_optimizer")  # the schedule and optimizer columns show them


def hyperparameter_text(value: Any) -> str:
    """One hyperparameter as written in the spec: numbers to 4 digits, lists and tables
    compactly (``milestones_epochs=[1], gamma=0.1``; an empty table is ``none``), ``—``
    where a run has no such hyperparameter."""
    if isinstance(value, dict):
        if not value:
            return "none"
        return ", ".join(f"{k}={hyperparameter_text(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hyperparameter_text(v) for v in value) + "]"
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class DivergedSection:
    """The "Diverged runs" section: counts, the first rows, and what the rows leave out."""

    summary: tuple[str, ...]
    table: Table | None
    notes: tuple[str, ...]


def _step_text(step: Any, steps_per_epoch: Any) -> str:
    if step is None or step is pd.NA or pd.isna(step):
        return "diverged (step not recorded)"
    text = f"diverged at step {int(step)}"
    if steps_per_epoch is not None and not pd.isna(steps_per_epoch) and int(steps_per_epoch) > 0:
        text += f" (epoch {(int(step) - 1) // int(steps_per_epoch) + 1})"
    return text


def diverged_section(data: ReportData, limit: int = DIVERGED_ROWS_SHOWN) -> DivergedSection:
    """The diverged runs, sorted by trial: the first ``limit`` as rows, the rest counted.

    Columns: trial, optimizer, role, seed, attempt, schedule family, lr, momentum, the other
    ``hp_*`` hyperparameters that differ between the sweep's finished runs, and the step the
    run diverged at (with its epoch, ``(step - 1) // steps_per_epoch + 1``). Hyperparameters
    that every finished run shares are written once in a note instead of as columns.
    """
    summary = divergence_summary(data.runs)
    rows = diverged_runs(data.runs)
    if rows.empty:
        return DivergedSection(summary, None, ())
    names = [c for c in rows.columns if c.startswith("hp_") and c not in _NOT_SHOWN]
    texts = {c: data.runs[c].map(hyperparameter_text) for c in names}
    varying = [c for c in _SHOWN_FIRST if c in names]
    varying += sorted(c for c in names if c not in _SHOWN_FIRST and texts[c].nunique() > 1)
    shared = [c for c in names if c not in varying]
    table_rows = []
    for row in rows.head(limit).to_dict("records"):
        table_rows.append(
            (
                str(row["trial"]),
                str(row["optimizer"]),
                str(row["role"]),
                str(row["seed"]),
                str(row["attempt"]),
                str(row["schedule_family"]),
                *(hyperparameter_text(row[c]) for c in varying),
                _step_text(row["diverged_at_step"], row.get("hp_steps_per_epoch")),
            )
        )
    headers = (
        "trial",
        "optimizer",
        "role",
        "seed",
        "attempt",
        "schedule",
        *(c.removeprefix("hp_") for c in varying),
        "divergence",
    )
    notes = []
    if len(rows) > limit:
        notes.append(
            f"… and {len(rows) - limit} more diverged runs; {DIVERGED_CSV} beside this report"
            " lists all of them."
        )
    if shared:
        notes.append(
            "Every finished run has "
            + ", ".join(f"{c.removeprefix('hp_')} {texts[c].iloc[0]}" for c in shared)
            + "."
        )
    return DivergedSection(summary, Table(headers, tuple(table_rows)), tuple(notes))


# --- Markdown ----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
        "|" + "|".join("---" for _ in table.headers) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(data: ReportData, figures: dict[str, list[FigureFile]]) -> str:
    """``report.md``: figures are referenced by file name, next to it."""
    text = [f"# Transfer report: {_md_cell(data.sweep)}", ""]
    text += [f"- {_md_cell(line)}" for line in overview_lines(data)]
    text += ["", "## Conclusion", ""]
    text += [f"- {_md_cell(line)}" for line in data.conclusion]
    diverged = diverged_section(data)
    text += ["", "## Diverged runs", ""]
    text += [f"- {_md_cell(line)}" for line in diverged.summary]
    if diverged.table is not None:
        text += ["", markdown_table(diverged.table)]
    for note in diverged.notes:
        text += ["", _md_cell(note)]
    for family in data.families:
        text += ["", f"## Schedule: {_md_cell(family.schedule_family)}", ""]
        text += ["### Best configuration per optimizer", "", markdown_table(best_table(family))]
        text += ["", _md_cell(significance_text(family)), ""]
        if family.transfers:
            text += ["### Transfer", "", markdown_table(transfer_table(family)), ""]
        for figure in figures.get(family.schedule_family, []):
            text += [
                f"![{_md_cell(figure.title)}]({figure.path.name})",
                "",
                f"*{_md_cell(figure.caption)}*",
                "",
            ]
    return "\n".join(text).rstrip() + "\n"


# --- HTML --------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1150px; color: #1d232a; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; }
th { background: #f6f8fa; }
td.flag { color: #b42318; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .88rem; color: #57606a; }
.conclusion li { margin: .3rem 0; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="flag">{_e(c)}</td>' if c.startswith("NO") else f"<td>{_e(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of a PNG file (so the page needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_list(lines: Sequence[str], css_class: str = "") -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<ul class="{css_class}">{items}</ul>' if css_class else f"<ul>{items}</ul>"


def render_html(data: ReportData, figures: dict[str, list[FigureFile]]) -> str:
    """``report.html``: one file, CSS inline, every figure embedded as a data URI."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Transfer report: {_e(data.sweep)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Transfer report: {_e(data.sweep)}</h1>",
        _html_list(overview_lines(data)),
        "<h2>Conclusion</h2>",
        _html_list(data.conclusion, "conclusion"),
    ]
    diverged = diverged_section(data)
    parts += ["<h2>Diverged runs</h2>"]
    parts.append(_html_list(diverged.summary))
    if diverged.table is not None:
        parts.append(html_table(diverged.table))
    parts += [f"<p>{_e(note)}</p>" for note in diverged.notes]
    for family in data.families:
        parts += [
            f"<h2>Schedule: {_e(family.schedule_family)}</h2>",
            "<h3>Best configuration per optimizer</h3>",
            html_table(best_table(family)),
            f"<p>{_e(significance_text(family))}</p>",
        ]
        if family.transfers:
            parts += ["<h3>Transfer</h3>", html_table(transfer_table(family))]
        for figure in figures.get(family.schedule_family, []):
            parts.append(
                f'<figure><img src="{data_uri(figure.path)}" alt="{_e(figure.title)}">'
                f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
