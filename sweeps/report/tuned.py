r"""The numbers of the tuned-vs-tuned report of a sweep with ``pairing = "independent"``.

Pure functions of :func:`storage.queries.trials_frame` of each arm (``<sweep>.<optimizer>``,
:mod:`sweeps.independent`); nothing is trained, nothing touches the database.

Definitions (``docs/report.md``, "Tuned vs tuned"):

- An arm's *tuned optimum* in a schedule family is its trial with ``confirm`` runs in that
  family (the best trial by Optuna's value once the budget was spent). A tuner arm
  (``yellowfin``) searches no schedule; its optimum stands in every family's table.
- Its *confirmed result* is the mean of its ``confirm`` runs (fresh seeds, last complete
  attempt of each) with the 95% Student-t interval of :class:`~sweeps.report.data.Estimate`.
  Its *tuning result* is the mean of its ``source`` runs, the value it was chosen on (biased
  upwards by the choice, hence the confirmation).
- Two tuned optima are compared with Welch's unequal-variance t-test on their confirmation
  values (:func:`welch_test`): with sample means :math:`\bar a, \bar b`, variances
  :math:`s_a^2, s_b^2` and sizes :math:`n_a, n_b`,

  .. math::
     t = \frac{\bar a - \bar b}{\sqrt{s_a^2/n_a + s_b^2/n_b}}, \qquad
     \nu = \frac{(s_a^2/n_a + s_b^2/n_b)^2}
                {\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}},

  the two-sided :math:`p = 2\,P(T_\nu > |t|)`, the 95% interval of the difference
  :math:`\bar a - \bar b \pm t_{0.975,\nu}\sqrt{s_a^2/n_a + s_b^2/n_b}`, and the effect size
  Cohen's :math:`d = (\bar a - \bar b) / \sqrt{(s_a^2 + s_b^2)/2}` (Welch 1947; Cohen 1988).
  Significant at :math:`p < 0.05`.
- The *transfer* of a tuned optimum to the other momentum family: the ``naive`` (same
  numbers) and ``converted`` (``momentum_convert.convert``) runs of the same trial on the
  same confirmation seeds; gap = mean(target) - mean(confirm). A converted transfer
  reproduces the optimum within seed noise as in :func:`~sweeps.report.data.within_seed_noise`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sweeps.report.data import (
    CONFIDENCE,
    SIGNIFICANCE_LEVEL,
    Direction,
    Estimate,
    diverged_mask,
    finished_runs,
    schedule_family,
    within_seed_noise,
)

CONFIRM = "confirm"
MOMENTUM_FAMILIES = ("pytorch", "sutskever")
NAMES = {
    "pytorch": "PyTorch SGD (lr outside)",
    "sutskever": "Sutskever SGD (lr inside)",
    "yellowfin": "YellowFin (tunes its own lr and momentum)",
}


@dataclass(frozen=True)
class TunedOptimum:
    """One arm's tuned optimum in one schedule family, with its confirmation."""

    optimizer: str
    schedule_family: str
    trial: int
    lr: float
    momentum: float
    tuning: Estimate
    confirmed: Estimate
    n_trials: int
    """The arm's finished trials in this schedule family (its budget there)."""

    @property
    def name(self) -> str:
        return NAMES.get(self.optimizer, self.optimizer)


@dataclass(frozen=True)
class WelchTest:
    """Welch's test of ``a`` against ``b`` (means of their confirmation values)."""

    a: str
    b: str
    difference: float
    low: float
    high: float
    t: float
    df: float
    p: float
    effect_size: float

    @property
    def significant(self) -> bool:
        return bool(self.p < SIGNIFICANCE_LEVEL)  # NaN compares False


@dataclass(frozen=True)
class TunedTransfer:
    """A tuned optimum run in the other momentum family on the same confirmation seeds."""

    origin: TunedOptimum
    target: str
    naive: Estimate | None
    converted: Estimate | None
    verdict: str | None

    def gap(self, estimate: Estimate | None) -> float:
        if estimate is None:
            return math.nan
        return estimate.mean - self.origin.confirmed.mean

    @property
    def converted_within_seed_noise(self) -> bool | None:
        if self.converted is None:
            return None
        return within_seed_noise(self.origin.confirmed, self.converted)


@dataclass(frozen=True)
class TunedFamily:
    """Everything the report shows for one schedule family."""

    schedule_family: str
    optima: Mapping[str, TunedOptimum]
    tests: tuple[WelchTest, ...]
    transfers: tuple[TunedTransfer, ...]
    landscapes: Mapping[str, pd.DataFrame]
    """Per momentum family: its own tuning trials (``trial, lr, momentum, mean, n``)."""
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class TunedReport:
    sweep: str
    objective: str
    direction: Direction
    optimizers: tuple[str, ...]
    confirm_seeds: tuple[int, ...]
    budgets: Mapping[str, int]
    """Finished (COMPLETE or PRUNED) trials of each arm, counted from its runs."""
    families: tuple[TunedFamily, ...]


def welch_test(a: str, b: str, values_a: Sequence[float], values_b: Sequence[float]) -> WelchTest:
    """Welch's unequal-variance t-test of ``a - b`` (module docstring); NaN where undefined
    (fewer than two values on a side, a non-finite value, or no spread at all)."""
    x, y = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    nan = WelchTest(a, b, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    if len(x) < 2 or len(y) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return nan
    difference = float(x.mean() - y.mean())
    va, vb = float(x.var(ddof=1)), float(y.var(ddof=1))
    sa, sb = va / len(x), vb / len(y)
    se = math.sqrt(sa + sb)
    if se == 0:  # identical values on both sides: a difference, no test
        return dataclasses.replace(nan, difference=difference, low=difference, high=difference)
    t = difference / se
    df = (sa + sb) ** 2 / (sa**2 / (len(x) - 1) + sb**2 / (len(y) - 1))
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    d = difference / math.sqrt((va + vb) / 2)
    return WelchTest(a, b, difference, difference - half, difference + half, t, df, p, d)


def _estimate(runs: pd.DataFrame) -> Estimate:
    return Estimate(
        values=tuple(float(v) for v in runs["value"]),
        seeds=tuple(int(s) for s in runs["seed"]),
        diverged=tuple(bool(d) for d in diverged_mask(runs)),
    )


def _number(row: pd.Series, column: str) -> float:
    value = row.get(column)
    return math.nan if value is None or pd.isna(value) else float(value)


def _optima(
    optimizer: str, runs: pd.DataFrame, budget_by_family: Mapping[str, int]
) -> dict[str, TunedOptimum]:
    """The arm's tuned optimum per schedule family: its trials with confirm runs."""
    out: dict[str, TunedOptimum] = {}
    confirm = runs[(runs["role"] == CONFIRM) & (runs["optimizer"] == optimizer)]
    for family, group in confirm.groupby("schedule_family", sort=True):
        # One confirmed trial per family; after a resumed budget, the latest one.
        trial = int(group["trial"].max())
        chosen = group[group["trial"] == trial]
        source = runs[
            (runs["role"] == "source") & (runs["trial"] == trial) & (runs["optimizer"] == optimizer)
        ]
        first = chosen.iloc[0]
        searched = optimizer in MOMENTUM_FAMILIES  # a tuner's lr and momentum are its own
        out[str(family)] = TunedOptimum(
            optimizer=optimizer,
            schedule_family=str(family),
            trial=trial,
            lr=_number(first, "hp_lr") if searched else math.nan,
            momentum=_number(first, "hp_momentum") if searched else math.nan,
            tuning=_estimate(source),
            confirmed=_estimate(chosen),
            n_trials=budget_by_family.get(str(family), 0),
        )
    return out


def _landscape(optimizer: str, runs: pd.DataFrame, family: str) -> pd.DataFrame:
    source = runs[
        (runs["role"] == "source")
        & (runs["optimizer"] == optimizer)
        & (runs["schedule_family"] == family)
    ]
    if source.empty:
        return pd.DataFrame(columns=["trial", "lr", "momentum", "mean", "n"])
    grouped = source.groupby("trial", sort=True)
    return pd.DataFrame(
        {
            "trial": grouped["trial"].first().astype(int),
            "lr": grouped["hp_lr"].first().astype(float),
            "momentum": grouped["hp_momentum"].first().astype(float),
            "mean": grouped["value"].mean().astype(float),
            "n": grouped["value"].size().astype(int),
        }
    ).reset_index(drop=True)


def _budgets(trials: pd.DataFrame, optimizer: str) -> tuple[int, dict[str, int]]:
    """Finished trials of an arm (a trial counts when one of its source runs finished)."""
    source = trials[(trials["role"] == "source") & (trials["optimizer"] == optimizer)].copy()
    finished = source[source["state"].isin(["COMPLETE", "PRUNED"])].copy()
    if finished.empty:
        return 0, {}
    finished["schedule_family"] = schedule_family(finished)
    per_trial = finished.drop_duplicates("trial")
    by_family = per_trial.groupby("schedule_family").size()
    return len(per_trial), {str(k): int(v) for k, v in by_family.items()}


def build_tuned_report(
    arm_trials: Mapping[str, pd.DataFrame],
    *,
    sweep: str,
    objective: str = "val_loss",
    direction: Direction = "minimize",
    confirm_seeds: Sequence[int] = (),
) -> TunedReport:
    """Every table of the tuned-vs-tuned report from each arm's ``trials_frame``."""
    optimizers = tuple(arm_trials)
    runs_by_arm = {o: finished_runs(frame) for o, frame in arm_trials.items()}
    budgets: dict[str, int] = {}
    optima: dict[str, dict[str, TunedOptimum]] = {}
    for optimizer, frame in arm_trials.items():
        total, by_family = _budgets(frame, optimizer)
        budgets[optimizer] = total
        optima[optimizer] = _optima(optimizer, runs_by_arm[optimizer], by_family)
    searched = [o for o in optimizers if o in MOMENTUM_FAMILIES]
    family_names = sorted({f for o in searched for f in optima[o]}) or sorted(
        {f for o in optimizers for f in optima[o]}
    )
    families = []
    for family in family_names:
        chosen: dict[str, TunedOptimum] = {}
        for optimizer in optimizers:
            if optimizer in MOMENTUM_FAMILIES:
                found = optima[optimizer].get(family)
            else:  # a tuner searches no schedule: its one optimum stands in every family
                found = next(iter(optima[optimizer].values()), None)
            if found is not None:
                chosen[optimizer] = found
        names = list(chosen)
        tests = tuple(
            welch_test(a, b, chosen[a].confirmed.values, chosen[b].confirmed.values)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        )
        transfers = []
        for optimizer in searched:
            origin = chosen.get(optimizer)
            if origin is None:
                continue
            target = next(o for o in MOMENTUM_FAMILIES if o != optimizer)
            runs = runs_by_arm[optimizer]
            of_trial = runs[(runs["trial"] == origin.trial) & (runs["optimizer"] == target)]
            naive = of_trial[of_trial["role"] == "naive"]
            converted = of_trial[of_trial["role"] == "converted"]
            if naive.empty and converted.empty:
                continue
            verdict = converted["verdict"].dropna().astype(str)
            transfers.append(
                TunedTransfer(
                    origin,
                    target,
                    _estimate(naive) if not naive.empty else None,
                    _estimate(converted) if not converted.empty else None,
                    verdict.iloc[0] if len(verdict) else None,
                )
            )
        landscapes = {o: _landscape(o, runs_by_arm[o], family) for o in searched}
        result = TunedFamily(family, chosen, tests, tuple(transfers), landscapes, ())
        words = sentences(result, objective, direction, len(confirm_seeds))
        families.append(dataclasses.replace(result, sentences=words))
    return TunedReport(
        sweep, objective, direction, optimizers, tuple(confirm_seeds), budgets, tuple(families)
    )


def estimate_text(estimate: Estimate) -> str:
    """``mean ± half-width (n=k)``, or the divergence in words."""
    k = estimate.n_diverged
    if k:
        return f"diverged ({k} of {estimate.n} seeds)"
    if math.isnan(estimate.half_width):
        return f"{estimate.mean:.4g} (n={estimate.n})"
    return f"{estimate.mean:.4g} ± {estimate.half_width:.2g} (n={estimate.n})"


def welch_text(test: WelchTest) -> str:
    """``difference +x [lo, hi], Welch t = .., df = .., p = ..; Cohen's d = ..``."""
    if math.isnan(test.p):
        return "no test (a side has fewer than two finite values, or no spread)"
    return (
        f"difference {test.difference:+.3g} [95% CI {test.low:+.3g}, {test.high:+.3g}],"
        f" Welch t = {test.t:.3g}, df = {test.df:.3g}, p = {test.p:.3g};"
        f" Cohen's d = {test.effect_size:.3g}"
    )


def _better(test: WelchTest, direction: Direction) -> str:
    lower_a = test.difference < 0
    a_wins = lower_a if direction == "minimize" else not lower_a
    return test.a if a_wins else test.b


def sentences(
    family: TunedFamily, objective: str, direction: Direction, n_confirm: int
) -> tuple[str, ...]:
    """Per schedule family: whether the formulation matters once both are tuned, in words,
    then the tuner's standing and each transfer."""
    lines: list[str] = []
    name = family.schedule_family
    optima = family.optima
    tests = {(t.a, t.b): t for t in family.tests}
    better = "lower" if direction == "minimize" else "higher"
    if all(o in optima for o in MOMENTUM_FAMILIES):
        a, b = (optima[o] for o in MOMENTUM_FAMILIES)
        test = tests[(a.optimizer, b.optimizer)]
        head = (
            f"{name}: tuned with {a.n_trials} and {b.n_trials} trials and confirmed on"
            f" {n_confirm} fresh seeds, {a.name} reaches {objective}"
            f" {estimate_text(a.confirmed)} and {b.name} {estimate_text(b.confirmed)}"
            f" ({better} is better; {welch_text(test)})."
        )
        if math.isnan(test.p):
            verdict = " Whether the formulation matters cannot be tested here."
        elif test.significant:
            verdict = (
                f" The formulation matters even once both are tuned:"
                f" {NAMES[_better(test, direction)]} is better (p < {SIGNIFICANCE_LEVEL})."
            )
        else:
            verdict = (
                " Once both are tuned the formulation does not matter here: the difference"
                f" is within seed noise (p ≥ {SIGNIFICANCE_LEVEL})."
            )
        lines.append(head + verdict)
    elif optima:
        only = [o for o in MOMENTUM_FAMILIES if o in optima]
        if only:
            lines.append(
                f"{name}: only {optima[only[0]].name} has a confirmed optimum; nothing to"
                " compare it with."
            )
    for tuner in (o for o in optima if o not in MOMENTUM_FAMILIES):
        optimum = optima[tuner]
        rivals = [o for o in MOMENTUM_FAMILIES if o in optima]
        parts = [
            f"{name}: {optimum.name}, {optimum.n_trials} trial(s), reaches {objective}"
            f" {estimate_text(optimum.confirmed)}"
        ]
        for rival in rivals:
            test = tests.get((rival, tuner))
            if test is None:
                continue
            if math.isnan(test.p):
                parts.append(f"; against tuned {optima[rival].name}: no test")
                continue
            standing = (
                f"{NAMES[_better(test, direction)]} is better"
                if test.significant
                else "no significant difference"
            )
            parts.append(
                f"; against tuned {optima[rival].name}: {standing} (p = {test.p:.3g},"
                f" d = {test.effect_size:.3g})"
            )
        lines.append("".join(parts) + ".")
    for transfer in family.transfers:
        origin = transfer.origin
        text = (
            f"{name}: the tuned {origin.name} optimum (trial {origin.trial}, lr"
            f" {origin.lr:.4g}, momentum {origin.momentum:.4g}) moved to"
            f" {NAMES[transfer.target]}"
        )
        if transfer.naive is not None:
            text += f" naively changes {objective} by {_gap_text(transfer, transfer.naive)}"
        if transfer.converted is not None:
            ok = transfer.converted_within_seed_noise
            text += (
                f"; converted exactly ({transfer.verdict or 'no verdict'}) by"
                f" {_gap_text(transfer, transfer.converted)}, which "
                + (
                    "reproduces it within seed noise"
                    if ok
                    else "does NOT reproduce it within seed noise (flagged)"
                )
            )
        lines.append(text + ".")
    return tuple(lines)


def _gap_text(transfer: TunedTransfer, estimate: Estimate) -> str:
    if estimate.n_diverged or transfer.origin.confirmed.n_diverged:
        return "n/a (a run diverged)"
    return f"{transfer.gap(estimate):+.4g}"


SUMMARY_COLUMNS = (
    "schedule",
    "table",
    "optimizer",
    "other",
    "role",
    "trial",
    "n_trials",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "tuning_mean",
    "lr",
    "momentum",
    "difference",
    "diff_low",
    "diff_high",
    "t",
    "df",
    "p_welch",
    "effect_size",
    "gap",
    "within_seed_noise",
    "verdict",
)


def tuned_summary_frame(report: TunedReport) -> pd.DataFrame:
    """The rows of ``summary.csv`` for an independent sweep (documented in docs/report.md).

    ``table = tuned``: one row per arm, its confirmed optimum; ``table = welch``: one row
    per pair (``optimizer`` minus ``other``); ``table = transfer``: the naive and converted
    runs of a tuned optimum in the ``other`` family, ``gap = mean - mean(confirm)``.
    """
    rows: list[dict[str, object]] = []
    for family in report.families:
        for optimum in family.optima.values():
            e = optimum.confirmed
            rows.append(
                {
                    "schedule": family.schedule_family,
                    "table": "tuned",
                    "optimizer": optimum.optimizer,
                    "role": CONFIRM,
                    "trial": optimum.trial,
                    "n_trials": optimum.n_trials,
                    "n_seeds": e.n,
                    "mean": e.mean,
                    "ci_low": e.low,
                    "ci_high": e.high,
                    "tuning_mean": optimum.tuning.mean,
                    "lr": optimum.lr,
                    "momentum": optimum.momentum,
                }
            )
        for test in family.tests:
            rows.append(
                {
                    "schedule": family.schedule_family,
                    "table": "welch",
                    "optimizer": test.a,
                    "other": test.b,
                    "difference": test.difference,
                    "diff_low": test.low,
                    "diff_high": test.high,
                    "t": test.t,
                    "df": test.df,
                    "p_welch": test.p,
                    "effect_size": test.effect_size,
                }
            )
        for transfer in family.transfers:
            for role, estimate in (("naive", transfer.naive), ("converted", transfer.converted)):
                if estimate is None:
                    continue
                rows.append(
                    {
                        "schedule": family.schedule_family,
                        "table": "transfer",
                        "optimizer": transfer.origin.optimizer,
                        "other": transfer.target,
                        "role": role,
                        "trial": transfer.origin.trial,
                        "n_seeds": estimate.n,
                        "mean": estimate.mean,
                        "ci_low": estimate.low,
                        "ci_high": estimate.high,
                        "gap": transfer.gap(estimate),
                        "within_seed_noise": (
                            transfer.converted_within_seed_noise if role == "converted" else None
                        ),
                        "verdict": transfer.verdict if role == "converted" else None,
                        "lr": transfer.origin.lr,
                        "momentum": transfer.origin.momentum,
                    }
                )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
