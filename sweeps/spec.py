"""Sweep specs: a TOML file that says what to sweep, validated before anything runs.

A spec names the task, the optimizers, the convention the search space is written in,
the search space itself (:mod:`sweeps.search_space`), whether each configuration is also
run in the other formulation (pairing), and how Optuna searches (sampler, pruner, trials,
seeds, objective). ``docs/sweep-spec.md`` documents every key; ``examples/`` holds specs.

Every mistake is a :class:`~sweeps.errors.SpecError` whose one sentence names the key path
(``search_space.lr.low``): unknown keys (with a "did you mean" hint), wrong types,
impossible ranges and malformed TOML (with its line).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.errors import SpecError
from sweeps.search_space import (
    HYPERPARAMETERS,
    SCHEDULE_FAMILIES,
    Distribution,
    Fixed,
    SearchSpace,
    check_bounds,
    grid_search_space,
    parse_distribution,
    unknown_key_message,
)

OPTIMIZERS = ("pytorch", "sutskever")
#: Optimizers that set their own lr and momentum every step (``momentum_convert.optim``):
#: each is an arm of its own, with no lr or momentum to search.
TUNERS = ("yellowfin",)
#: ``pairing = "independent"``: one Optuna study per optimizer (``sweeps.independent``).
INDEPENDENT = "independent"
#: Confirmation seeds of an independent sweep when the spec gives no ``confirm_seeds``.
DEFAULT_CONFIRM_SEEDS = 3
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS = ("none", "median", "hyperband")
#: The metrics every task reports per epoch, and the direction each is optimised in.
OBJECTIVES = {"val_loss": "minimize", "train_loss": "minimize", "val_accuracy": "maximize"}
DIRECTIONS = ("minimize", "maximize")
MAX_EPOCHS = 10_000
"""The most epochs a run may have: each run plans its per-step lr and momentum for every
step before training (``sweeps.pairing``, ``sweeps.training``), so its memory grows with
epochs x steps per epoch; 10,000 epochs of 1,000 steps is already 10^7 steps per run."""

_DEVICES = re.compile(r"^(auto|cpu|cuda(:\d+)?(,cuda(:\d+)?)*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Top-level keys, in the order ``docs/sweep-spec.md`` lists them.
TOP_LEVEL_KEYS = (
    "name",
    "task",
    "task_options",
    "data_dir",
    "optimizers",
    "convention",
    "recipe",
    "recipe_spread",
    "pairing",
    "confirm_seeds",
    "search_space",
    "seeds",
    "objective",
    "direction",
    "sampler",
    "sampler_seed",
    "pruner",
    "n_trials",
    "timeout",
    "devices",
    "population",
    "threads",
    "storage",
    "heartbeat_interval",
    "grace_period",
    "max_retries",
)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (see ``docs/sweep-spec.md`` for every field).

    ``convention`` is what the spec says (``"caffe"``); ``family`` the momentum family it
    belongs to (``"sutskever"``), whose optimizer trains the *source* runs.
    """

    name: str
    task: str
    optimizers: tuple[str, ...]
    convention: str
    family: str
    search_space: SearchSpace
    pairing: bool
    seeds: tuple[int, ...]
    sampler: str
    sampler_seed: int | None
    pruner: str
    n_trials: int | None
    timeout: float | None
    devices: str
    storage: str | None
    objective: str
    direction: str
    heartbeat_interval: int
    grace_period: int | None
    max_retries: int
    #: Trials trained together by each worker (``docs/population.md``); 1 is one at a time.
    population: int | str = 1
    #: The catalog recipe the search space was filled from (``sweeps.recipe_start``).
    recipe: str | None = None
    recipe_spread: float | None = None
    #: The task's options (``[task_options]``) and data folder (``sweeps.tasks.cifar10``).
    task_options: dict[str, Any] = field(default_factory=dict, hash=False)
    data_dir: str | None = None
    #: torch threads per CPU worker; ``None``: its share of the cores (``sweeps.threads``).
    threads: int | None = None
    #: ``pairing = "independent"``: each optimizer is tuned in a study of its own
    #: (``sweeps.independent``); ``pairing`` is then false.
    independent: bool = False
    #: The fresh seeds each optimizer's best configuration is confirmed on (independent).
    confirm_seeds: tuple[int, ...] = ()

    @property
    def other_family(self) -> str | None:
        """The family a paired run converts to, or ``None`` when only one optimizer runs."""
        other = next(o for o in OPTIMIZERS if o != self.family)
        return other if other in self.optimizers else None

    def to_json(self) -> dict[str, Any]:
        """The spec as a TOML-shaped dict; :func:`spec_from_dict` reads it back."""
        out: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "task_options": dict(self.task_options) or None,
            "data_dir": self.data_dir,
            "optimizers": list(self.optimizers),
            "convention": self.convention,
            "recipe": self.recipe,
            "recipe_spread": self.recipe_spread,
            "pairing": INDEPENDENT if self.independent else self.pairing,
            "confirm_seeds": list(self.confirm_seeds) if self.independent else None,
            "search_space": self.search_space.to_json(),
            "seeds": list(self.seeds),
            "objective": self.objective,
            "direction": self.direction,
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
            "pruner": self.pruner,
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "devices": self.devices,
            # Stored with the sweep and shown by tools: never with its password.
            "storage": _without_password(self.storage),
            "heartbeat_interval": self.heartbeat_interval,
            "grace_period": self.grace_period,
            "max_retries": self.max_retries,
            "population": self.population if self.population != 1 else None,
            "threads": self.threads,
        }
        return {key: value for key, value in out.items() if value is not None}


def _without_password(url: str | None) -> str | None:
    from storage.engine import hide_password

    return hide_password(url) if url is not None and "@" in url else url


def load_spec(path: str | Path, **overrides: Any) -> SweepSpec:
    """Read and validate the spec at ``path``; keyword overrides (``n_trials=5``) win.

    The sweep's name defaults to the file's stem. Raises :class:`SpecError` for a missing
    or unreadable file, malformed TOML or any invalid key; the message starts with the
    file's path.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"the spec file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"the spec file {str(path)!r} cannot be read: {exc}.") from None
    try:
        return parse_spec(text, source=str(path), default_name=path.stem, **overrides)
    except SpecError as exc:
        message = str(exc)
        if message.startswith(str(path)):
            raise
        raise SpecError(f"{path}: {message}") from None


def parse_spec(
    text: str, source: str = "<spec>", *, default_name: str | None = None, **overrides: Any
) -> SweepSpec:
    """Validate a spec given as TOML text (``source`` names it in messages)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source} is not valid TOML: {exc}.") from None
    if default_name is not None:
        table.setdefault("name", default_name)
    return spec_from_dict(table, source, **overrides)


def spec_from_dict(table: Mapping[str, Any], source: str = "<spec>", **overrides: Any) -> SweepSpec:
    """Validate a spec given as a TOML-shaped dict (what :meth:`SweepSpec.to_json` returns)."""
    table = dict(table)
    for key, value in overrides.items():
        if key not in TOP_LEVEL_KEYS:
            raise SpecError(unknown_key_message(key, TOP_LEVEL_KEYS, ""))
        if value is not None:
            table[key] = value
    for key in table:
        if key not in TOP_LEVEL_KEYS:
            raise SpecError(unknown_key_message(key, TOP_LEVEL_KEYS, ""))
    return _build(table)


# --- validation ------------------------------------------------------------------------


def _required(table: Mapping[str, Any], key: str) -> Any:
    if key not in table:
        raise SpecError(f"the key '{key}' is missing; every spec needs it.")
    return table[key]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{path} must be a non-empty string, got {value!r}.")
    return value.strip()


def _one_of(value: object, accepted: tuple[str, ...], path: str) -> str:
    if not isinstance(value, str) or value.lower() not in accepted:
        raise SpecError(f"{path} must be one of {', '.join(accepted)}, got {value!r}.")
    return value.lower()


def _whole(value: object, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path} must be a whole number >= {minimum}, got {value!r}.")
    if value < minimum:
        raise SpecError(f"{path} must be >= {minimum}, got {value!r}.")
    return value


def _build(table: Mapping[str, Any]) -> SweepSpec:
    recipe, recipe_spread = table.get("recipe"), table.get("recipe_spread")
    if recipe is not None:
        from sweeps.recipe_start import fill_from_recipe

        table = fill_from_recipe(table)  # fills only what the spec leaves out
    elif recipe_spread is not None:
        raise SpecError("recipe_spread is given without recipe; name a catalog recipe.")
    name = _string(_required(table, "name"), "name")
    if not _NAME.match(name):
        raise SpecError(f"name must use letters, digits, '.', '_' and '-' only, got {name!r}.")
    task = _task(_string(_required(table, "task"), "task"))
    data_dir = table.get("data_dir")
    if data_dir is not None:
        data_dir = _string(data_dir, "data_dir")
    task_options = _task_options(task, data_dir, table.get("task_options", {}))
    optimizers = _optimizers(table.get("optimizers", list(OPTIMIZERS)))
    convention = _string(table.get("convention", "pytorch"), "convention").lower()
    family = _family(convention)
    independent = table.get("pairing") == INDEPENDENT
    pairing = False if independent else _pairing(table.get("pairing", True))
    if family not in optimizers and not independent and optimizers != TUNERS[:1]:
        raise SpecError(
            f"convention {convention!r} belongs to the {family} family, which optimizers"
            f" ({', '.join(optimizers)}) does not list; add {family!r} to optimizers."
        )
    tuners = [name for name in optimizers if name in TUNERS]
    if tuners and len(optimizers) > 1 and not independent:
        raise SpecError(
            f"optimizers lists {tuners[0]!r}, which tunes its own lr and momentum, beside"
            f" {', '.join(o for o in optimizers if o not in TUNERS)}; such a sweep needs"
            f" pairing = {INDEPENDENT!r} (each optimizer in a study of its own)."
        )
    raw_space = _required(table, "search_space")
    if not isinstance(raw_space, dict):
        raise SpecError(f"search_space must be a table, got {raw_space!r}.")
    search_space = _search_space(raw_space)

    objective = _one_of(table.get("objective", "val_loss"), tuple(OBJECTIVES), "objective")
    direction = _one_of(table.get("direction", OBJECTIVES[objective]), DIRECTIONS, "direction")
    if objective == "val_accuracy" and not _task_has_accuracy(task):
        raise SpecError(
            f"objective 'val_accuracy' needs a classification task, and {task!r} reports no"
            " accuracy; use val_loss or train_loss."
        )

    sampler = _one_of(table.get("sampler", "tpe"), SAMPLERS, "sampler")
    sampler_seed = table.get("sampler_seed", 0)
    if sampler_seed is not None:
        sampler_seed = _whole(sampler_seed, "sampler_seed", 0)
    pruner = _one_of(table.get("pruner", "none"), PRUNERS, "pruner")

    n_trials = table.get("n_trials")
    if n_trials is not None:
        n_trials = _whole(n_trials, "n_trials", 1)
    timeout = table.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise SpecError(f"timeout must be a number of seconds, got {timeout!r}.")
        if not math.isfinite(timeout) or timeout <= 0:
            raise SpecError(f"timeout must be a number of seconds > 0, got {timeout!r}.")
        timeout = float(timeout)
    if n_trials is None and timeout is None:
        raise SpecError("the spec gives neither n_trials nor timeout; give one or both.")

    devices = table.get("devices", "auto")
    if isinstance(devices, list) and all(isinstance(d, str) for d in devices):
        devices = ",".join(devices)
    if not isinstance(devices, str) or not _DEVICES.match(devices.replace(" ", "")):
        raise SpecError(
            f"devices must be 'auto', 'cpu' or a list such as 'cuda:0,cuda:1', got {devices!r}."
        )
    storage = table.get("storage")
    if storage is not None:
        storage = _string(storage, "storage")

    heartbeat = _whole(table.get("heartbeat_interval", 10), "heartbeat_interval", 1)
    grace = table.get("grace_period")
    if grace is not None:
        grace = _whole(grace, "grace_period", 1)
        if grace <= heartbeat:
            raise SpecError(
                f"grace_period ({grace}) must be longer than heartbeat_interval ({heartbeat})."
            )
    max_retries = _whole(table.get("max_retries", 3), "max_retries", 0)
    population = table.get("population", 1)
    if population != "auto":
        population = _whole(population, "population (or 'auto')", 1)
    threads = table.get("threads")
    if threads is not None:
        threads = _whole(threads, "threads", 1)
    if population != 1 and "plateau" in search_space.schedules:
        raise SpecError(
            "search_space.schedule.plateau cuts each run's lr when its own metric stalls, which"
            f" a population (population = {population!r}) cannot train; use population = 1."
        )

    seeds = _seeds(table.get("seeds", 1))
    confirm_seeds = _confirm_seeds(table.get("confirm_seeds"), seeds, independent)
    if tuners and population != 1:
        raise SpecError(
            f"{tuners[0]!r} cannot be trained as a population (its tuner keeps statistics per"
            f" model); remove population (got {population!r})."
        )
    if independent and population != 1:
        raise SpecError(
            f"pairing = {INDEPENDENT!r} trains one trial at a time per worker; remove population"
            f" (got {population!r})."
        )

    spec = SweepSpec(
        name=name,
        task=task,
        optimizers=optimizers,
        convention=convention,
        family=family,
        search_space=search_space,
        pairing=pairing,
        seeds=seeds,
        sampler=sampler,
        sampler_seed=sampler_seed,
        pruner=pruner,
        n_trials=n_trials,
        timeout=timeout,
        devices=devices.replace(" ", ""),
        storage=storage,
        objective=objective,
        direction=direction,
        heartbeat_interval=heartbeat,
        grace_period=grace,
        max_retries=max_retries,
        population=population,
        recipe=recipe,
        recipe_spread=None if recipe_spread is None else float(recipe_spread),
        task_options=task_options,
        data_dir=data_dir,
        threads=threads,
        independent=independent,
        confirm_seeds=confirm_seeds,
    )
    if sampler == "grid":
        grid_search_space(spec)  # raises SpecError naming a continuous range
    return spec


def _task(name: str) -> str:
    from sweeps.errors import SweepUsageError
    from sweeps.tasks import get_task

    try:
        get_task(name)  # an unknown built-in, or a module:function that cannot be loaded
    except SweepUsageError as exc:
        raise SpecError(str(exc)) from None
    return name


def _task_options(task: str, data_dir: str | None, raw: object) -> dict[str, Any]:
    """``[task_options]``, checked by the task itself (:func:`sweeps.tasks.configure_task`)."""
    from sweeps.errors import SweepUsageError
    from sweeps.tasks import configure_task, get_task

    if not isinstance(raw, dict):
        raise SpecError(
            f"task_options must be a table such as {{precision = 'bf16'}}, got {raw!r}."
        )
    try:
        configure_task(get_task(task), data_dir, raw)
    except SweepUsageError as exc:
        raise SpecError(str(exc)) from None
    return dict(raw)


def _task_has_accuracy(name: str) -> bool:
    from sweeps.tasks import BUILTIN_TASKS

    task = BUILTIN_TASKS.get(name)
    return True if task is None else task.has_accuracy  # user tasks: known only when built


def _family(convention: str) -> str:
    if convention in OPTIMIZERS:
        return convention
    from momentum_convert.errors import MomentumConvertError

    try:
        from momentum_convert.conventions import resolve
    except ImportError:  # the conventions registry is not installed: families only
        raise SpecError(
            f"convention must be 'pytorch' or 'sutskever', got {convention!r}."
        ) from None
    try:
        return str(resolve(convention).family)
    except MomentumConvertError as exc:
        raise SpecError(f"convention: {exc}") from None


def _optimizers(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"optimizers must be a non-empty list such as {list(OPTIMIZERS)!r}.")
    names = tuple(_one_of(v, OPTIMIZERS + TUNERS, f"optimizers[{i}]") for i, v in enumerate(raw))
    if len(set(names)) != len(names):
        raise SpecError(f"optimizers lists the same optimizer twice: {list(raw)!r}.")
    return names


def _pairing(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise SpecError(f"pairing must be true, false or {INDEPENDENT!r}, got {raw!r}.")
    return raw


def _confirm_seeds(raw: object, seeds: tuple[int, ...], independent: bool) -> tuple[int, ...]:
    """The confirmation seeds: a count of fresh seeds after the tuning ones, or a list."""
    if not independent:
        if raw is not None:
            raise SpecError(
                f"confirm_seeds is given, but only pairing = {INDEPENDENT!r} confirms each"
                " optimizer's best configuration; set pairing or remove confirm_seeds."
            )
        return ()
    if raw is None:
        raw = DEFAULT_CONFIRM_SEEDS
    if isinstance(raw, int) and not isinstance(raw, bool):
        count = _whole(raw, "confirm_seeds", 2)
        if count > MAX_SEEDS:
            raise SpecError(f"confirm_seeds must be a count of at most {MAX_SEEDS}, got {count}.")
        first = max(seeds) + 1
        return tuple(range(first, first + count))
    if not isinstance(raw, list) or len(raw) < 2:
        raise SpecError(
            "confirm_seeds must be a count >= 2 or a list of at least two seeds such as"
            f" [100, 101, 102] (an interval needs two), got {raw!r}."
        )
    confirm = tuple(_whole(v, f"confirm_seeds[{i}]", 0) for i, v in enumerate(raw))
    if len(set(confirm)) != len(confirm):
        raise SpecError(f"confirm_seeds lists the same seed twice: {list(raw)!r}.")
    reused = sorted(set(confirm) & set(seeds))
    if reused:
        raise SpecError(
            f"confirm_seeds reuses the tuning seed(s) {reused}; confirmation needs fresh"
            " seeds, the best configuration was chosen on the tuning ones."
        )
    return confirm


MAX_SEEDS = 1000
"""The most seeds a spec may ask for by count (``seeds = 5``)."""


def _seeds(raw: object) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        count = _whole(raw, "seeds", 1)
        if count > MAX_SEEDS:  # range() of a mistyped count would fill the memory
            raise SpecError(
                f"seeds must be a count of at most {MAX_SEEDS} (every seed trains each"
                f" configuration again), got {count}."
            )
        return tuple(range(count))
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            f"seeds must be a count >= 1 or a non-empty list of seeds such as [0, 1, 2],"
            f" got {raw!r}."
        )
    seeds = tuple(_whole(v, f"seeds[{i}]", 0) for i, v in enumerate(raw))
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"seeds lists the same seed twice: {list(raw)!r}.")
    return seeds


def _search_space(raw: Mapping[str, Any]) -> SearchSpace:
    accepted = (*HYPERPARAMETERS, "schedule")
    for key in raw:
        if key not in accepted:
            raise SpecError(unknown_key_message(key, accepted, "search_space"))
    dists: dict[str, Distribution] = {}
    for name, (kind, default) in HYPERPARAMETERS.items():
        path = f"search_space.{name}"
        if name not in raw:
            if default is None:
                raise SpecError(f"{path} is missing; the search space needs it.")
            dists[name] = Fixed(default)
            continue
        dists[name] = parse_distribution(raw[name], kind, path)
    check_bounds(dists["lr"], "search_space.lr", minimum=0.0, inclusive=False)
    check_bounds(
        dists["momentum"], "search_space.momentum", minimum=0.0, maximum=1.0, below_maximum=True
    )
    check_bounds(dists["weight_decay"], "search_space.weight_decay", minimum=0.0)
    check_bounds(dists["batch_size"], "search_space.batch_size", minimum=1.0)
    check_bounds(dists["epochs"], "search_space.epochs", minimum=1.0)
    most_epochs = float(dists["epochs"].bounds()[1])  # type: ignore[arg-type]
    if most_epochs > MAX_EPOCHS:
        raise SpecError(
            f"search_space.epochs can be {most_epochs:g}, more than the {MAX_EPOCHS} epochs a"
            " run may have: every run computes its per-step lr and momentum for all its"
            " steps up front, which for more epochs does not fit in memory (or finish)."
        )
    nesterov_possible = True in (dists["nesterov"].values() or ())
    if nesterov_possible and float(dists["momentum"].bounds()[0]) == 0.0:
        raise SpecError(
            "search_space.nesterov can be true while search_space.momentum can be 0;"
            " Nesterov momentum needs momentum > 0."
        )
    schedules = _schedules(raw.get("schedule", {"constant": {}}))
    min_epochs = int(dists["epochs"].bounds()[0])  # type: ignore[arg-type]
    warmup = schedules.get("warmup_cosine", {}).get("warmup_epochs")
    if warmup is not None and int(warmup.bounds()[1]) >= min_epochs:  # type: ignore[arg-type]
        raise SpecError(
            "search_space.schedule.warmup_cosine.warmup_epochs can reach"
            f" {warmup.bounds()[1]!r}, but epochs can be as few as {min_epochs};"
            " warmup must end before the last epoch."
        )
    return SearchSpace(schedules=schedules, **dists)


def _schedules(raw: object) -> dict[str, dict[str, Distribution]]:
    path = "search_space.schedule"
    if isinstance(raw, str):
        raw = {raw: {}}
    elif isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        raw = {family: {} for family in raw}
    if not isinstance(raw, dict) or not raw:
        raise SpecError(
            f"{path} must be a table of schedule families such as"
            " {step = {milestones_epochs = [5, 8]}, cosine = {}}, or a family name."
        )
    families = tuple(SCHEDULE_FAMILIES)
    out: dict[str, dict[str, Distribution]] = {}
    for family_name, params in raw.items():
        family = SCHEDULE_FAMILIES.get(family_name)
        if family is None:
            raise SpecError(unknown_key_message(family_name, families, path))
        family_path = f"{path}.{family_name}"
        if not isinstance(params, dict):
            raise SpecError(f"{family_path} must be a table of its parameters, got {params!r}.")
        accepted = tuple(family.parameters)
        for key in params:
            if key not in accepted:
                if not accepted:
                    raise SpecError(f"{family_path}.{key}: the {family_name} schedule has no keys.")
                raise SpecError(unknown_key_message(key, accepted, family_path))
        dists: dict[str, Distribution] = {}
        for key, parameter in family.parameters.items():
            param_path = f"{family_path}.{key}"
            if key in params:
                dist = parse_distribution(params[key], parameter.kind, param_path)
            elif parameter.default is None:
                raise SpecError(f"{param_path} is missing; the {family_name} schedule needs it.")
            else:
                dist = Fixed(parameter.default)
            if parameter.check is not None:
                parameter.check(dist, param_path)
            dists[key] = dist
        out[family_name] = dists
    return out
