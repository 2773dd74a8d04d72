"""The numbers of the transfer report, computed from the two pandas frames of a sweep.

Everything here is a pure function of :func:`storage.queries.trials_frame` (one row per
training run) and :func:`storage.queries.metrics_frame` (per-epoch metrics, long format);
nothing is trained and nothing touches the database.

Vocabulary (``docs/report.md``, and the paired design of ``sweeps.pairing``):

- A *configuration* is one Optuna trial's numbers; it is trained once per seed in each
  *role*: ``source`` (its own family), ``naive`` (the other family, same numbers) and
  ``converted`` (the other family, numbers from :func:`momentum_convert.convert`).
- The *finished* runs are the ``COMPLETE`` rows with a value (a diverged run is complete
  with value ``inf``); of several attempts of the same run, the last one counts.
- An optimizer's *own sweep* is its ``source`` and ``naive`` runs: over a paired sweep the
  naive runs are the other family's sweep over the same search space.
- A configuration's result is its mean objective over seeds with a 95% Student-t interval
  ``mean ± t_{0.975, n-1} · s / √n`` (``s`` the sample standard deviation, ``n`` seeds).
- The *best* configuration of an optimizer, per schedule family, has the best mean among
  the configurations with the most finished seeds (a config that lost seeds to pruning
  cannot win on one lucky seed).
- The two bests are compared with Welch's unequal-variance t-test (and Mann-Whitney U,
  which needs no normality and accepts diverged ``inf`` values); significant at p < 0.05.
- A *diverged* run is a finished run whose ``diverged_at_step`` is set: the training loop
  found a non-finite loss at that step and recorded the worst value of the direction
  (``inf`` when minimising, ``-inf`` when maximising). Its value is no number to show: the
  report writes "diverged" for it, and for any mean or gap it enters, and lists every
  diverged run (:func:`diverged_runs`, :func:`divergence_summary`).
- The *transfer* of the best configuration of one optimizer into the other: the gap
  ``mean(target runs) - mean(origin runs)`` of the naive and the converted runs of the same
  trial. A converted transfer *reproduces the source within seed noise* when its gap is no
  larger than the origin's 95% half-width (with one seed: 1e-6 relative, the float
  tolerance of an exact conversion under the same seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

Direction = Literal["minimize", "maximize"]

CONFIDENCE = 0.95
SIGNIFICANCE_LEVEL = 0.05
SINGLE_SEED_RELATIVE_TOLERANCE = 1e-6
OWN_SWEEP_ROLES = ("source", "naive")
FAMILY_ORDER = ("constant", "step", "multistep", "cosine", "warmup_cosine", "onecycle", "plateau")
OPTIMIZER_NAMES = {"pytorch": "PyTorch SGD (lr outside)", "sutskever": "Sutskever SGD (lr inside)"}
RUN_KEY = ["schedule_family", "optimizer", "role", "trial"]
ROLE_ORDER = ("source", "naive", "converted")
DIVERGED_CSV = "diverged.csv"
"""The file beside the report that lists every diverged run (the report shows the first ones)."""
DIVERGED_COLUMNS = (
    "trial",
    "optimizer",
    "role",
    "seed",
    "attempt",
    "schedule_family",
    "schedule",
    "diverged_at_step",
    "value",
)


@dataclass(frozen=True)
class Estimate:
    """The mean of one configuration's objective over seeds, with its 95% t-interval."""

    values: tuple[float, ...]
    seeds: tuple[int, ...]
    diverged: tuple[bool, ...] = ()
    """Per seed, whether that run diverged (:func:`diverged_mask`); when left empty, a
    non-finite value counts as diverged (only a divergence records one)."""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_diverged(self) -> int:
        """How many of the seeds diverged."""
        if self.diverged:
            return sum(self.diverged)
        return sum(not math.isfinite(v) for v in self.values)

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def half_width(self) -> float:
        """``t_{0.975, n-1} · s / √n``; NaN with one seed or a diverged seed."""
        if self.n < 2 or not self.finite:
            return math.nan
        spread = float(np.std(self.values, ddof=1))
        return float(stats.t.ppf(0.5 + CONFIDENCE / 2, self.n - 1)) * spread / math.sqrt(self.n)

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclass(frozen=True)
class Configuration:
    """One trial's numbers (in the sweep's convention) and its result in one role."""

    schedule_family: str
    optimizer: str
    role: str
    trial: int
    lr: float
    momentum: float
    schedule: str
    verdict: str | None
    estimate: Estimate

    @property
    def effective_lr(self) -> float:
        """The steady-state step size ``lr / (1 - μ)`` shared by both families."""
        return self.lr / (1.0 - self.momentum) if self.momentum < 1 else math.inf


@dataclass(frozen=True)
class Comparison:
    """The two optimizers' best configurations for one schedule family, and a test."""

    schedule_family: str
    best: dict[str, Configuration]
    p_welch: float
    p_mannwhitney: float

    @property
    def significant(self) -> bool:
        return bool(self.p_welch < SIGNIFICANCE_LEVEL)  # NaN compares False


@dataclass(frozen=True)
class Transfer:
    """The best configuration of ``origin`` run in the other optimizer, two ways."""

    schedule_family: str
    origin: Configuration
    naive: Configuration | None
    converted: Configuration | None

    @property
    def target_optimizer(self) -> str:
        other = self.naive or self.converted
        return other.optimizer if other is not None else ""

    def gap(self, run: Configuration | None) -> float:
        """``mean(run) - mean(origin)``: positive means a higher objective after transfer."""
        if run is None:
            return math.nan
        return _difference(run.estimate.mean, self.origin.estimate.mean)

    @property
    def converted_within_seed_noise(self) -> bool | None:
        """Whether the converted runs reproduce the origin (None without converted runs)."""
        if self.converted is None:
            return None
        return within_seed_noise(self.origin.estimate, self.converted.estimate)


@dataclass(frozen=True)
class FamilyResult:
    schedule_family: str
    comparison: Comparison
    transfers: tuple[Transfer, ...]
    configurations: pd.DataFrame
    """Every (optimizer, role, trial) with lr, momentum, mean, n: the landscape's points."""


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, per schedule family, plus the written conclusion."""

    sweep: str
    objective: str
    direction: Direction
    families: tuple[FamilyResult, ...]
    runs: pd.DataFrame
    """The finished runs (last attempt), with ``schedule_family``."""
    counts: dict[str, int]
    """Runs by state over the whole sweep (``COMPLETE``, ``PRUNED``, ``FAIL``, ...)."""
    conclusion: tuple[str, ...]


def within_seed_noise(origin: Estimate, other: Estimate) -> bool:
    """``|mean(other) - mean(origin)|`` within the origin's 95% half-width (see module doc)."""
    gap = _difference(other.mean, origin.mean)
    if math.isnan(gap):
        return False
    if not (origin.finite and other.finite):
        return gap == 0
    tolerance = origin.half_width
    if math.isnan(tolerance):
        tolerance = SINGLE_SEED_RELATIVE_TOLERANCE * max(1.0, abs(origin.mean))
    return abs(gap) <= tolerance


def divergence_text(estimate: Estimate) -> str | None:
    """``"diverged"`` when every seed diverged, ``"diverged (k of n seeds)"`` when some did,
    ``None`` when none did. A mean over a diverged seed is ±inf, which is no result to show."""
    k = estimate.n_diverged
    if k == 0:
        return None
    return "diverged" if k == estimate.n else f"diverged ({k} of {estimate.n} seeds)"


def gap_text(transfer: Transfer, run: Configuration) -> str:
    """The gap ``mean(run) - mean(origin)`` signed (``+0.0123``), or in words where one side
    diverged: ``"diverged"`` (the transferred runs did, the origin did not), ``"origin
    diverged"``, ``"both diverged"``. A gap to or from a diverged run is ±inf, and its sign
    says only which side diverged, so it is written as that."""
    origin_diverged = transfer.origin.estimate.n_diverged > 0
    run_diverged = run.estimate.n_diverged > 0
    if origin_diverged and run_diverged:
        return "both diverged"
    if run_diverged:
        return "diverged"
    if origin_diverged:
        return "origin diverged"
    gap = transfer.gap(run)
    return "n/a" if math.isnan(gap) else f"{gap:+.4g}"


def _difference(a: float, b: float) -> float:
    if math.isinf(a) and math.isinf(b) and a == b:
        return 0.0
    return a - b


def schedule_family(trials: pd.DataFrame) -> pd.Series:
    """The schedule family of each run: ``hp_schedule`` if sampled, else the SPEC's name."""
    from_spec = trials["schedule"].astype("string").str.split(":").str[0].str.strip()
    if "hp_schedule" in trials.columns:
        return trials["hp_schedule"].astype("string").fillna(from_spec)
    return from_spec


def diverged_mask(runs: pd.DataFrame) -> pd.Series:
    """Which runs diverged: ``diverged_at_step`` is set, or the value is not finite.

    The training loop records both together (the step, and the worst value of the
    direction); a frame without the ``diverged_at_step`` column (hand-made, or exported
    before it existed) still shows a divergence through its ``±inf`` value, whatever the
    sign, since no other outcome stores a non-finite value.
    """
    values = pd.to_numeric(runs["value"], errors="coerce").astype(float)
    non_finite = pd.Series(~np.isfinite(values.to_numpy()), index=runs.index) & values.notna()
    if "diverged_at_step" not in runs.columns:
        return non_finite
    return runs["diverged_at_step"].notna() | non_finite


def finished_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The ``COMPLETE`` runs with a value, last attempt of each (trial, role, optimizer, seed)."""
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()].copy()
    done["schedule_family"] = schedule_family(done)
    done = done.sort_values("attempt").drop_duplicates(
        ["trial", "role", "optimizer", "seed"], keep="last"
    )
    return done.sort_values(["trial", "role", "optimizer", "seed"]).reset_index(drop=True)


def _order_families(names: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(FAMILY_ORDER)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def _configurations(runs: pd.DataFrame) -> dict[tuple[str, str, str, int], Configuration]:
    out: dict[tuple[str, str, str, int], Configuration] = {}
    diverged = diverged_mask(runs)
    for key, group in runs.groupby(RUN_KEY, sort=True, observed=True):
        family, optimizer, role, trial = key
        first = group.iloc[0]
        verdict = first.get("verdict")
        out[(str(family), str(optimizer), str(role), int(trial))] = Configuration(
            schedule_family=str(family),
            optimizer=str(optimizer),
            role=str(role),
            trial=int(trial),
            lr=float(first["hp_lr"]),
            momentum=float(first["hp_momentum"]),
            schedule=str(first["schedule"]),
            verdict=None if pd.isna(verdict) else str(verdict),
            estimate=Estimate(
                values=tuple(float(v) for v in group["value"]),
                seeds=tuple(int(s) for s in group["seed"]),
                diverged=tuple(bool(d) for d in diverged.loc[group.index]),
            ),
        )
    return out


def _sort_key(config: Configuration, direction: Direction) -> tuple[float, int]:
    mean = config.estimate.mean
    if math.isnan(mean):
        mean = math.inf if direction == "minimize" else -math.inf
    return (mean if direction == "minimize" else -mean, config.trial)


def best_configuration(
    candidates: Sequence[Configuration], direction: Direction
) -> Configuration | None:
    """The best mean among the candidates with the most seeds; ties: lowest trial number."""
    if not candidates:
        return None
    most = max(c.estimate.n for c in candidates)
    full = [c for c in candidates if c.estimate.n == most]
    return min(full, key=lambda c: _sort_key(c, direction))


def compare(a: Estimate, b: Estimate) -> tuple[float, float]:
    """``(p_welch, p_mannwhitney)`` for two sets of seed values (NaN where undefined)."""
    if a.n < 2 or b.n < 2:
        return math.nan, math.nan
    p_welch = math.nan
    if a.finite and b.finite:
        p_welch = float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)
    p_mw = float(stats.mannwhitneyu(a.values, b.values, alternative="two-sided").pvalue)
    return p_welch, p_mw


def build_report_data(
    trials: pd.DataFrame,
    *,
    sweep: str,
    objective: str = "val_loss",
    direction: Direction = "minimize",
) -> ReportData:
    """Compute every table of the report from ``trials_frame(url, sweep)``."""
    counts = {str(k): int(v) for k, v in trials["state"].value_counts().items()}
    runs = finished_runs(trials)
    configs = _configurations(runs)
    families: list[FamilyResult] = []
    for family in _order_families(list(runs["schedule_family"].astype(str))):
        best: dict[str, Configuration] = {}
        for optimizer in sorted({k[1] for k in configs if k[0] == family}):
            own = [
                c
                for (f, o, r, _), c in configs.items()
                if f == family and o == optimizer and r in OWN_SWEEP_ROLES
            ]
            chosen = best_configuration(own, direction)
            if chosen is not None:
                best[optimizer] = chosen
        p_welch = p_mw = math.nan
        if len(best) == 2:
            a, b = (best[o].estimate for o in sorted(best))
            p_welch, p_mw = compare(a, b)
        transfers = []
        for optimizer in sorted(best):
            origin = best[optimizer]
            others = {
                role: configs.get((family, other, role, origin.trial))
                for other in OPTIMIZER_NAMES
                if other != optimizer
                for role in ("naive", "converted", "source")
            }
            if origin.role == "source":
                naive, converted = others.get("naive"), others.get("converted")
            else:  # a naive run's numbers, moved back unchanged, are the source run;
                # its conversion back exists only if `sweeps report --run-missing` ran it
                naive, converted = others.get("source"), others.get("converted")
            if naive is not None or converted is not None:
                transfers.append(Transfer(family, origin, naive, converted))
        table = pd.DataFrame(
            [
                {
                    "optimizer": c.optimizer,
                    "role": c.role,
                    "trial": c.trial,
                    "lr": c.lr,
                    "momentum": c.momentum,
                    "mean": c.estimate.mean,
                    "n": c.estimate.n,
                }
                for (f, _, _, _), c in configs.items()
                if f == family
            ]
        )
        families.append(
            FamilyResult(family, Comparison(family, best, p_welch, p_mw), tuple(transfers), table)
        )
    result = ReportData(sweep, objective, direction, tuple(families), runs, counts, ())
    return ReportData(
        sweep, objective, direction, tuple(families), runs, counts, conclusion(result)
    )


def _fmt(value: float) -> str:
    """A plain number (lr, momentum, a ratio): an infinite one is written as such."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}"


def _estimate_text(estimate: Estimate) -> str:
    diverged = divergence_text(estimate)
    if diverged is not None:  # "diverged (k of n seeds)" names n already
        return f"{diverged} (n={estimate.n})" if diverged == "diverged" else diverged
    if math.isnan(estimate.half_width):
        return f"{_fmt(estimate.mean)} (n={estimate.n})"
    return f"{_fmt(estimate.mean)} ± {estimate.half_width:.2g} (n={estimate.n})"


def conclusion(data: ReportData) -> tuple[str, ...]:
    """Plain sentences from the numbers: which schedules transfer, which do not, how much."""
    lines: list[str] = []
    better = "lower" if data.direction == "minimize" else "higher"
    for family in data.families:
        best = family.comparison.best
        name = family.schedule_family
        if len(best) == 2:
            a, b = (best[o] for o in sorted(best))
            winner = min((a, b), key=lambda c: _sort_key(c, data.direction))
            p_text = (
                f" (Welch p = {family.comparison.p_welch:.3g})"
                if not math.isnan(family.comparison.p_welch)
                else ""
            )
            verdict = (
                f"wins; the difference is significant{p_text}"
                if family.comparison.significant
                else f"is ahead, but the difference is within seed noise{p_text}"
            )
            lr_ratio = b.lr / a.lr if a.lr > 0 else math.nan
            moved = (
                f" The same configuration (trial {a.trial}: lr {_fmt(a.lr)}, momentum"
                f" {_fmt(a.momentum)}) is best for both."
                if a.trial == b.trial
                else f" The best lr moves ×{_fmt(lr_ratio)} ({_fmt(a.lr)} → {_fmt(b.lr)}),"
                f" the momentum {_fmt(a.momentum)} → {_fmt(b.momentum)}, the effective step"
                f" lr/(1-μ) {_fmt(a.effective_lr)} → {_fmt(b.effective_lr)}."
            )
            lines.append(
                f"{name}: best {data.objective} {_estimate_text(a.estimate)} with"
                f" {OPTIMIZER_NAMES.get(a.optimizer, a.optimizer)} vs"
                f" {_estimate_text(b.estimate)} with"
                f" {OPTIMIZER_NAMES.get(b.optimizer, b.optimizer)} ({better} is better):"
                f" {OPTIMIZER_NAMES.get(winner.optimizer, winner.optimizer)} {verdict}." + moved
            )
        elif best:
            (only,) = best.values()
            lines.append(
                f"{name}: only {OPTIMIZER_NAMES.get(only.optimizer, only.optimizer)} has"
                f" finished runs; best {data.objective} {_estimate_text(only.estimate)}."
            )
        for transfer in family.transfers:
            origin = OPTIMIZER_NAMES.get(transfer.origin.optimizer, transfer.origin.optimizer)
            target = OPTIMIZER_NAMES.get(transfer.target_optimizer, transfer.target_optimizer)
            parts = [f"{name}: the best {origin} configuration (trial {transfer.origin.trial})"]
            if transfer.naive is not None:
                parts.append(
                    f" moved naively to {target}"
                    f" {_change_text(data.objective, transfer, transfer.naive)}"
                )
            if transfer.converted is not None:
                ok = transfer.converted_within_seed_noise
                parts.append(
                    f"; converted ({transfer.converted.verdict or 'no verdict'}),"
                    f" it {_change_text(data.objective, transfer, transfer.converted)}, which "
                    + (
                        "reproduces the source within seed noise"
                        if ok
                        else "does NOT reproduce the source within seed noise (flagged)"
                    )
                )
            lines.append("".join(parts) + ".")
    if not lines:
        lines.append("No run of this sweep has finished yet; there is nothing to compare.")
    return tuple(lines)


def _change_text(objective: str, transfer: Transfer, run: Configuration) -> str:
    """What moving the origin's configuration to ``run`` did, as a verb phrase."""
    origin_diverged = transfer.origin.estimate.n_diverged > 0
    diverged = run.estimate.n_diverged
    if diverged and origin_diverged:
        return "diverges as the origin does"
    if diverged:
        seeds = "" if diverged == run.estimate.n else f" in {diverged} of {run.estimate.n} seeds"
        return f"diverges{seeds}"
    if origin_diverged:
        return f"does not diverge where the origin did: {objective} {_estimate_text(run.estimate)}"
    return f"changes {objective} by {gap_text(transfer, run)}"


def diverged_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs that diverged (:func:`diverged_mask`), one row each.

    Columns :data:`DIVERGED_COLUMNS` (``diverged_at_step`` as ``Int64``, ``<NA>`` where a
    run has a non-finite value but no recorded step), then every ``hp_*`` column of the
    sweep; sorted by trial, role (source, naive, converted), optimizer, seed and attempt.
    """
    hyperparameters = sorted(c for c in runs.columns if str(c).startswith("hp_"))
    out = runs.loc[diverged_mask(runs)].copy()
    if "diverged_at_step" not in out.columns:
        out["diverged_at_step"] = pd.NA
    out["diverged_at_step"] = out["diverged_at_step"].astype("Int64")
    for column in DIVERGED_COLUMNS:
        if column not in out.columns:
            out[column] = pd.NA
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    out["_role_rank"] = [rank.get(str(r), len(rank)) for r in out["role"]]
    out = out.sort_values(["trial", "_role_rank", "optimizer", "seed", "attempt"])
    return out[[*DIVERGED_COLUMNS, *hyperparameters]].reset_index(drop=True)


def divergence_summary(runs: pd.DataFrame) -> tuple[str, ...]:
    """How many finished runs diverged, per optimizer, so the formulations compare at a glance.

    The comparison counts each optimizer's own sweep (its ``source`` and ``naive`` runs: the
    same configurations trained in both formulations); ``converted`` runs, which reproduce
    their source, are counted apart. With several schedule families, one more line per
    family. ``("No run diverged.",)`` when none did.
    """
    diverged = diverged_mask(runs)
    if not diverged.any():
        return ("No run diverged.",)
    own = runs["role"].astype(str).isin(OWN_SWEEP_ROLES)

    def per_optimizer(selection: pd.Series) -> str:
        parts = []
        for optimizer in sorted({str(o) for o in runs.loc[selection, "optimizer"]}):
            chosen = selection & (runs["optimizer"].astype(str) == optimizer)
            parts.append(
                f"{OPTIMIZER_NAMES.get(optimizer, optimizer)} {int(diverged[chosen].sum())}"
                f" of {int(chosen.sum())}"
            )
        return ", ".join(parts) or "no runs"

    line = (
        f"{int(diverged.sum())} of {len(runs)} finished runs diverged. Each optimizer's own"
        f" sweep (source and naive runs): {per_optimizer(own)}"
    )
    converted = runs["role"].astype(str) == "converted"
    if converted.any():
        line += f"; converted runs: {int(diverged[converted].sum())} of {int(converted.sum())}"
    lines = [line + "."]
    families = _order_families([str(f) for f in runs["schedule_family"]])
    if len(families) > 1:
        for family in families:
            in_family = own & (runs["schedule_family"].astype(str) == family)
            lines.append(f"Schedule {family}, own sweeps: {per_optimizer(in_family)}.")
    return tuple(lines)


SUMMARY_COLUMNS = (
    "schedule",
    "table",
    "direction",
    "optimizer",
    "role",
    "trial",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "gap",
    "within_seed_noise",
    "verdict",
    "p_welch",
    "p_mannwhitney",
    "lr",
    "momentum",
    "effective_lr",
)


def summary_frame(data: ReportData) -> pd.DataFrame:
    """The rows of ``summary.csv`` (columns :data:`SUMMARY_COLUMNS`, documented in docs).

    ``table = best``: one row per optimizer, its best configuration; ``p_*`` compare the
    two bests. ``table = transfer``: per direction ``origin->target``, the origin's best
    configuration (role ``origin``) and the same trial's ``naive`` and ``converted`` runs,
    with ``gap = mean - mean(origin)``. ``lr``/``momentum`` are the configuration's sampled
    numbers in the sweep's convention.
    """
    rows: list[dict[str, object]] = []

    def row(config: Configuration, **extra: object) -> dict[str, object]:
        e = config.estimate
        return {
            "schedule": config.schedule_family,
            "optimizer": config.optimizer,
            "role": config.role,
            "trial": config.trial,
            "n_seeds": e.n,
            "mean": e.mean,
            "ci_low": e.low,
            "ci_high": e.high,
            "verdict": config.verdict,
            "lr": config.lr,
            "momentum": config.momentum,
            "effective_lr": config.effective_lr,
            **extra,
        }

    for family in data.families:
        comparison = family.comparison
        for optimizer in sorted(comparison.best):
            rows.append(
                row(
                    comparison.best[optimizer],
                    table="best",
                    p_welch=comparison.p_welch,
                    p_mannwhitney=comparison.p_mannwhitney,
                )
            )
        for transfer in family.transfers:
            direction = f"{transfer.origin.optimizer}->{transfer.target_optimizer}"
            rows.append(row(transfer.origin, table="transfer", direction=direction, gap=0.0))
            rows[-1]["role"] = "origin"
            for kind, run in (("naive", transfer.naive), ("converted", transfer.converted)):
                if run is None:
                    continue
                extra: dict[str, object] = {"gap": transfer.gap(run)}
                if kind == "converted":
                    extra["within_seed_noise"] = transfer.converted_within_seed_noise
                rows.append(row(run, table="transfer", direction=direction, **extra))
                rows[-1]["role"] = kind
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return frame


def learning_curves(metrics: pd.DataFrame, config: Configuration, metric: str) -> pd.DataFrame:
    """Per epoch, ``metric`` of one configuration's runs: columns ``epoch, seed, value``."""
    mask = (
        (metrics["trial"] == config.trial)
        & (metrics["role"] == config.role)
        & (metrics["optimizer"] == config.optimizer)
        & (metrics["metric"] == metric)
        & metrics["seed"].isin(config.estimate.seeds)
    )
    selected = metrics.loc[mask, ["epoch", "seed", "attempt", "value"]]
    selected = selected.sort_values("attempt").drop_duplicates(["epoch", "seed"], keep="last")
    return selected.drop(columns="attempt").sort_values(["seed", "epoch"]).reset_index(drop=True)
