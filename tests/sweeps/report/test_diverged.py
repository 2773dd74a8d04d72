"""Diverged runs in the report and in ``sweeps status``, on small hand-written frames.

A diverged run is recorded COMPLETE with the step of its first non-finite loss
(``diverged_at_step``) and the worst value of the direction: ``inf`` when minimising,
``-inf`` when maximising. The report must list each one (trial, optimizer, role, seed,
attempt, hyperparameters, "diverged at step k"), count them per optimizer, and write
"diverged" wherever such a value or a mean or gap over it would be shown, in both directions.
The expected texts below are written out by hand from those rules.
"""

from __future__ import annotations

import io
import math
import re

import pandas as pd
from rich.console import Console

from sweeps.progress import BestRun, SweepSnapshot, describe, format_value
from sweeps.report.data import ReportData, build_report_data
from sweeps.report.render import diverged_section, render_html, render_markdown
from sweeps.status import status_table


def run(
    trial: int,
    role: str,
    optimizer: str,
    seed: int,
    value: float,
    step: int | None = None,
    **extra: object,
) -> dict[str, object]:
    """One ``trials_frame`` row; ``step`` is its ``diverged_at_step`` (None: did not diverge)."""
    row: dict[str, object] = {
        "sweep": "s",
        "trial": trial,
        "optimizer": optimizer,
        "role": role,
        "seed": seed,
        "attempt": 1,
        "state": "COMPLETE",
        "value": value,
        "schedule": "constant",
        "verdict": "exact" if role == "converted" else None,
        "diverged_at_step": pd.NA if step is None else step,
        "failure_reason": None if step is None else f"diverged at step {step}",
        "hp_lr": 0.1,
        "hp_momentum": 0.9,
        "hp_schedule": "constant",
        "hp_batch_size": 32,
        "hp_steps_per_epoch": 4,
    }
    row.update(extra)
    return row


def paired_sweep(direction: str) -> ReportData:
    """Two seeds, paired; trial 1 (lr 100) diverges; trial 0's naive run diverges in seed 1.

    Good values: loss 0.30/0.32 (minimize) or accuracy 0.90/0.92 (maximize).
    """
    bad = math.inf if direction == "minimize" else -math.inf
    good = (0.30, 0.32) if direction == "minimize" else (0.90, 0.92)
    rows = []
    for seed in (0, 1):
        rows += [
            run(0, "source", "pytorch", seed, good[seed]),
            run(
                0, "naive", "sutskever", seed, bad if seed == 1 else good[seed], 6 if seed else None
            ),
            run(0, "converted", "sutskever", seed, good[seed]),
            run(1, "source", "pytorch", seed, bad, 7, hp_lr=100.0),
            run(1, "naive", "sutskever", seed, bad, 5, hp_lr=100.0),
            run(1, "converted", "sutskever", seed, bad, 7, hp_lr=100.0),
        ]
    objective = "val_loss" if direction == "minimize" else "val_accuracy"
    return build_report_data(
        pd.DataFrame(rows),
        sweep="s",
        objective=objective,
        direction="minimize" if direction == "minimize" else "maximize",
    )


def section(markdown: str) -> str:
    """The text of the "Diverged runs" section of report.md."""
    start = markdown.index("## Diverged runs")
    end = markdown.index("\n## ", start + 1)
    return markdown[start:end]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


EXPECTED_ROWS = [
    # trial, optimizer, role, seed, attempt, schedule, lr, momentum, divergence
    # (4 steps per epoch: step 5-8 is epoch 2)
    ["0", "sutskever", "naive", "1", "1", "constant", "0.1", "0.9", "diverged at step 6 (epoch 2)"],
    ["1", "pytorch", "source", "0", "1", "constant", "100", "0.9", "diverged at step 7 (epoch 2)"],
    ["1", "pytorch", "source", "1", "1", "constant", "100", "0.9", "diverged at step 7 (epoch 2)"],
    ["1", "sutskever", "naive", "0", "1", "constant", "100", "0.9", "diverged at step 5 (epoch 2)"],
    ["1", "sutskever", "naive", "1", "1", "constant", "100", "0.9", "diverged at step 5 (epoch 2)"],
    [
        "1",
        "sutskever",
        "converted",
        "0",
        "1",
        "constant",
        "100",
        "0.9",
        "diverged at step 7 (epoch 2)",
    ],
    [
        "1",
        "sutskever",
        "converted",
        "1",
        "1",
        "constant",
        "100",
        "0.9",
        "diverged at step 7 (epoch 2)",
    ],
]
EXPECTED_SUMMARY = (
    "7 of 12 finished runs diverged. Each optimizer's own sweep (source and naive runs):"
    " PyTorch SGD (lr outside) 2 of 4, Sutskever SGD (lr inside) 3 of 4; converted runs:"
    " 2 of 4."
)


def test_markdown_lists_every_diverged_run_sorted_by_trial_with_its_step() -> None:
    markdown = render_markdown(paired_sweep("minimize"), {})
    text = section(markdown)
    assert table_rows(text) == EXPECTED_ROWS
    assert text.splitlines()[2] == f"- {EXPECTED_SUMMARY}"
    headers = [line for line in text.splitlines() if line.startswith("| trial")]
    assert headers == [
        "| trial | optimizer | role | seed | attempt | schedule | lr | momentum | divergence |"
    ]
    # batch size and steps per epoch are the same in every run: one note, not two columns
    assert "Every finished run has batch_size 32, steps_per_epoch 4." in text
    assert "- Diverged: 7 of 12 finished runs (listed under Diverged runs)." in markdown


def test_minimize_diverged_values_and_gaps_are_words_not_inf() -> None:
    markdown = render_markdown(paired_sweep("minimize"), {})
    transfer = markdown[markdown.index("### Transfer") :]
    forward = next(r for r in table_rows(transfer) if r[0].startswith("PyTorch"))
    # origin trial 0 of pytorch (0.31 over two seeds); its naive port diverged in seed 1
    assert forward[2] == "0.31 ± 0.13"
    assert forward[3:5] == ["diverged (1 of 2 seeds)", "diverged"]
    assert forward[6] == "+0"
    assert not re.search(r"[+-]?\binf\b", markdown), markdown
    assert "+diverged" not in markdown
    assert any(
        "moved naively to Sutskever SGD (lr inside) diverges in 1 of 2 seeds" in line
        for line in markdown.splitlines()
    )


def test_maximize_diverged_values_and_gaps_are_words_not_minus_inf() -> None:
    data = paired_sweep("maximize")
    markdown = render_markdown(data, {})
    assert table_rows(section(markdown)) == EXPECTED_ROWS
    assert section(markdown).splitlines()[2] == f"- {EXPECTED_SUMMARY}"
    transfer = markdown[markdown.index("### Transfer") :]
    forward = next(r for r in table_rows(transfer) if r[0].startswith("PyTorch"))
    assert forward[2] == "0.91 ± 0.13"
    assert forward[3:5] == ["diverged (1 of 2 seeds)", "diverged"]
    assert "-inf" not in markdown
    assert "+diverged" not in markdown


def test_a_diverged_origin_gives_an_origin_diverged_gap() -> None:
    """Every pytorch configuration diverged, so its best diverged; moved to sutskever it
    trains: the gap is "origin diverged" and the origin cell "diverged"."""
    rows = [
        run(0, "source", "pytorch", 0, math.inf, 3),
        run(0, "naive", "sutskever", 0, 0.4),
        run(0, "converted", "sutskever", 0, math.inf, 3),
    ]
    markdown = render_markdown(build_report_data(pd.DataFrame(rows), sweep="s"), {})
    transfer = markdown[markdown.index("### Transfer") :]
    cells = {r[0].split(" →")[0]: r for r in table_rows(transfer)}
    forward, backward = cells["PyTorch SGD (lr outside)"], cells["Sutskever SGD (lr inside)"]
    assert forward[2:7] == ["diverged", "0.4", "origin diverged", "diverged", "both diverged"]
    assert backward[2:5] == ["0.4", "diverged", "diverged"]


def test_no_divergence_is_one_line_and_no_table() -> None:
    rows = [run(0, "source", "pytorch", 0, 0.3), run(0, "naive", "sutskever", 0, 0.4)]
    data = build_report_data(pd.DataFrame(rows), sweep="s")
    markdown = render_markdown(data, {})
    assert section(markdown).strip().splitlines()[1:] == ["", "- No run diverged."]
    assert "Diverged:" not in markdown
    assert "<h2>Diverged runs</h2>\n<ul><li>No run diverged.</li></ul>\n<h2>" in render_html(
        data, {}
    )


def test_a_long_list_is_cut_after_the_limit_and_points_to_the_csv() -> None:
    rows = [run(t, "source", "pytorch", 0, math.inf, 100 + t) for t in range(12, 0, -1)]
    rows.append(run(0, "source", "pytorch", 0, 0.3))
    data = build_report_data(pd.DataFrame(rows), sweep="s")
    shown = diverged_section(data, limit=5)
    assert shown.table is not None
    assert [row[0] for row in shown.table.rows] == ["1", "2", "3", "4", "5"]
    assert shown.table.rows[0][-1] == "diverged at step 101 (epoch 26)"
    assert shown.notes[0] == (
        "… and 7 more diverged runs; diverged.csv beside this report lists all of them."
    )


def test_hyperparameters_that_vary_are_columns_and_a_run_without_a_step_still_shows() -> None:
    """A searched batch size becomes a column; a sampled optimizer (an unpaired sweep's
    ``hp_optimizer``) does not repeat the optimizer column; a non-finite value stored
    without a step (an older record) is still listed, as diverged without a step."""
    rows = [
        run(0, "source", "sutskever", 0, 0.3, hp_batch_size=16, hp_optimizer="sutskever"),
        run(1, "source", "pytorch", 0, math.inf, None, hp_batch_size=64, hp_optimizer="pytorch",
            hp_schedule_params={"milestones_epochs": [1, 2], "gamma": 0.1}),
    ]  # fmt: skip
    rows[0]["hp_schedule_params"] = {}
    table = diverged_section(build_report_data(pd.DataFrame(rows), sweep="s")).table
    assert table is not None
    assert table.headers == (
        "trial", "optimizer", "role", "seed", "attempt", "schedule", "lr", "momentum",
        "batch_size", "schedule_params", "divergence",
    )  # fmt: skip
    assert table.rows == (
        ("1", "pytorch", "source", "0", "1", "constant", "0.1", "0.9", "64",
         "gamma=0.1, milestones_epochs=[1, 2]", "diverged (step not recorded)"),
    )  # fmt: skip


def test_html_section_escapes_user_strings() -> None:
    rows = [
        run(0, "source", "pytorch", 0, 0.3, hp_tag="plain"),
        run(1, "source", "pytorch", 0, math.inf, 4, hp_tag="<script>alert(1)</script>"),
    ]
    page = render_html(build_report_data(pd.DataFrame(rows), sweep="s"), {})
    start = page.index("<h2>Diverged runs</h2>")
    text = page[start : page.index("<h2>", start + 1)]
    assert "<script>" not in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in text
    assert "<td>diverged at step 4 (epoch 1)</td>" in text
    assert "<li>1 of 2 finished runs diverged. Each optimizer&#x27;s own sweep" in text


# --- sweeps status and the progress line ---------------------------------------------------


def snapshot_with_best(direction: str, values: dict[str, float]) -> SweepSnapshot:
    best = {name: BestRun(name, value, 3, {"lr": 100.0}) for name, value in values.items()}
    return SweepSnapshot(
        name="s",
        direction=direction,
        n_trials=4,
        counts={"COMPLETE": 4},
        best=best,
        diverged=2,
    )


def test_status_value_of_a_diverged_run_reads_diverged_in_both_directions() -> None:
    assert format_value(math.inf, "minimize") == "diverged"
    assert format_value(-math.inf, "maximize") == "diverged"
    assert format_value(0.12345, "maximize") == "0.1235"
    assert format_value(math.nan, "minimize") == "n/a"
    assert describe(snapshot_with_best("maximize", {"pytorch": -math.inf, "sutskever": 0.9})) == (
        "4/4 finished, 0 running, 0 failed | best pytorch diverged, sutskever 0.9"
    )


def test_status_table_of_a_maximize_sweep_shows_diverged_not_minus_inf() -> None:
    out = io.StringIO()
    Console(file=out, width=120).print(
        status_table(snapshot_with_best("maximize", {"pytorch": -math.inf}))
    )
    text = out.getvalue()
    row = next(line for line in text.splitlines() if "pytorch" in line)
    assert "diverged" in row
    assert "2 run(s) diverged (value -inf)." in text
    assert "-inf" not in row


def test_status_counts_each_diverged_run_not_each_optimizer_mean_over_seeds() -> None:
    """``sweeps status`` says "N run(s) diverged": N counts runs, every role and seed, as the
    report's "Diverged runs" section lists them. Here one trial holds three pytorch seeds of
    which two diverged, a converted run that diverged, and one healthy sutskever run: 3."""
    import optuna

    from sweeps.objective import RUNS_ATTR
    from sweeps.progress import snapshot

    study = optuna.create_study()
    trial = study.ask()
    runs = [  # role, optimizer, seed, state, value
        ("source", "pytorch", 0, "COMPLETE", math.inf),
        ("source", "pytorch", 1, "COMPLETE", math.inf),
        ("source", "pytorch", 2, "COMPLETE", 0.5),
        ("converted", "sutskever", 0, "COMPLETE", math.inf),
        ("naive", "sutskever", 0, "COMPLETE", 0.4),
        ("converted", "sutskever", 1, "FAIL", None),
    ]
    keys = ("role", "optimizer", "seed", "state", "value")
    trial.set_user_attr(RUNS_ATTR, [dict(zip(keys, run, strict=True)) for run in runs])
    study.tell(trial, math.inf)
    snap = snapshot(study)
    assert snap.diverged == 3
    assert snap.best["pytorch"].value == math.inf  # the mean over seeds one diverged run entered
    assert snap.best["sutskever"].value == 0.4
