"""A sweep's spec is immutable once the sweep has trials.

Every trial of a sweep must come from one spec: the results table keeps one copy of it,
the report compares runs drawn from one search space, and a resumed sampler continues one
search. Opening a sweep that already has trials with a spec that differs in anything that
decides *what* is trained (task, optimizers, convention, search space, seeds, objective,
sampler, pruner, ...) is refused before anything is written (:class:`SpecChangedError`,
exit 2), naming the first differing key. The keys that only decide *how* it runs
(:data:`OPERATIONAL_KEYS`: devices, population, storage, timeout, heartbeats, retries) may
differ. The total ``n_trials`` may only grow, and only when asked for (``--extend``).
"""

from __future__ import annotations

from typing import Any, Final

from sweeps.errors import SweepUsageError
from sweeps.spec import TOP_LEVEL_KEYS

OPERATIONAL_KEYS: Final = frozenset(
    {
        "n_trials",
        "timeout",
        "devices",
        "population",
        "storage",
        "heartbeat_interval",
        "grace_period",
        "max_retries",
    }
)
"""Spec keys that may differ between the runs of one sweep (``n_trials`` with ``--extend``)."""


class SpecChangedError(SweepUsageError):
    """A different spec under the name of a sweep that already has trials (exit 2)."""


def first_difference(stored: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (``search_space.lr.high``) where ``new`` differs from ``stored``,
    with both values (``None`` where a key is missing); None when they are equal.

    Top-level keys in the order ``docs/sweep-spec.md`` lists them, nested keys sorted.
    """
    if isinstance(stored, dict) and isinstance(new, dict):
        keys = sorted(set(stored) | set(new))
        if not path:
            order = {key: i for i, key in enumerate(TOP_LEVEL_KEYS)}
            keys.sort(key=lambda key: (order.get(key, len(order)), key))
        for key in keys:
            where = f"{path}.{key}" if path else key
            found = first_difference(stored.get(key), new.get(key), where)
            if found is not None:
                return found
        return None
    if isinstance(stored, (list, tuple)) and isinstance(new, (list, tuple)):
        if len(stored) == len(new) and all(
            first_difference(a, b, path) is None for a, b in zip(stored, new, strict=True)
        ):
            return None
        return path, stored, new
    if (stored == new and type(stored) is type(new)) or _same_number(stored, new):
        return None
    return path, stored, new


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and float(a) == float(b)
    )


def check_unchanged(
    name: str,
    stored: dict[str, Any],
    new: dict[str, Any],
    *,
    n_trials_done: int,
    stored_total: int | None,
    new_total: int | None,
    extend: bool,
) -> None:
    """Refuse ``new`` for the sweep ``name`` that has trials from ``stored``.

    Raises:
        SpecChangedError: a key outside :data:`OPERATIONAL_KEYS` differs, or the total
            changes without ``extend`` (or shrinks with it).
    """
    what = {key: value for key, value in stored.items() if key not in OPERATIONAL_KEYS}
    wanted = {key: value for key, value in new.items() if key not in OPERATIONAL_KEYS}
    found = first_difference(what, wanted)
    if found is not None:
        key, old, now = found
        raise SpecChangedError(
            f"The sweep {name!r} already has {n_trials_done} trial(s) from another spec:"
            f" {key} was {_shown(old)}, now {_shown(now)}; a sweep's spec cannot change once"
            " it has trials, so run this spec under a new --name (or run the stored spec"
            " again to resume it)."
        )
    if new_total is None or stored_total is None or new_total == stored_total:
        return
    if not extend:
        raise SpecChangedError(
            f"The sweep {name!r} was started for {stored_total} trials, not {new_total};"
            f" pass --extend to run the same spec to {new_total} trials, or --n-trials"
            f" {stored_total} to resume it."
        )
    if new_total < stored_total:
        raise SpecChangedError(
            f"--extend can only add trials: the sweep {name!r} is set to {stored_total}"
            f" trials, more than the {new_total} asked for."
        )


def _shown(value: Any) -> str:
    return "absent" if value is None else repr(value)
