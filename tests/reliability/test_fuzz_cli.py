"""Fuzzing the option values of both programs, ``momentum-convert`` and ``sweeps``, through
click's CliRunner: every command line either runs (exit 0) or is refused with exit 2 and
one sentence naming the option or field; no uncaught exception, no traceback. The sweeps
commands that would start processes have their launcher and worker loop replaced by stubs:
what is fuzzed is the validation in front of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from momentum_convert.cli import cli as convert_cli
from sweeps.cli import cli as sweeps_cli
from tests.reliability.fuzzing import FUZZ, NUMBER_TEXT, assert_one_sentence
from tests.reliability.test_fuzz_schedule_spec import KEYS, KIND_NAMES

pytestmark = pytest.mark.reliability

CONVENTIONS = st.sampled_from(
    ["pytorch", "sutskever", "caffe", "keras", "keras3", "tf1", "optax", "torch7", "mxnet",
     "chainer", "lasagne", "paddle", "PyTorch", "", "caffe2", "-", "--lr"]
)  # fmt: skip
SCHEDULES = st.one_of(
    st.sampled_from(
        ["constant", "step:step_size=3", "multistep:milestones=2/4,gamma=0.5", "cosine:t_max=9",
         "warmup:steps=2+cosine:t_max=9", "onecycle:max_lr=0.1,total_steps=20", "exponential",
         "caffe:policy=inv,gamma=0.1,power=0.75", "file:nope.json", "cosine:t_max=-1", ""]
    ),
    st.text(max_size=15),
)  # fmt: skip
STEPS = st.one_of(st.integers(-5, 300).map(str), st.sampled_from(["0", "1e3", "x", "", "-1"]))


@st.composite
def options(draw: st.DrawFn, table: dict[str, st.SearchStrategy[str]]) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=len(table)))
    argv: list[str] = []
    for name in chosen:
        argv += [name, draw(table[name])]
    return argv


def check(result: Any, argv: list[str], *, runtime_ok: bool = False) -> None:
    """Exit 0, or a refusal: exit 2 (1 where the database is at fault), one sentence."""
    accepted = (0, 1, 2) if runtime_ok else (0, 2)
    assert result.exit_code in accepted, (argv, result.output, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (argv, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        return
    message = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert message, (argv, result.output)
    assert_one_sentence(message[-1])
    if result.exit_code == 2:
        # The option given, an option missing, or the field inside a value (a spec key,
        # a schedule piece, a convention) is named.
        # Or the message quotes the bad value itself.
        values = {repr(a) for a in argv} | {a for a in argv if len(a) >= 2}
        names = {n for n in FIELDS | values if n in result.output}
        assert names, (argv, result.output)


#: Option and field names a refusal may name (the options of both programs' commands).
FIELDS = {
    "--from", "--to", "--lr", "--momentum", "--dampening", "--weight-decay",
    "--gradient-scale", "--schedule", "--momentum-schedule", "--steps", "--format", "--base",
    "--workers", "--n-trials", "--devices", "--device", "--name", "--population",
    "--storage", "SPEC", "NAME", "schedule", "convention", "momentum", "lr", "name",
    "population", "device", "storage", "URL", "steps", "sweep",
}  # fmt: skip
FIELDS |= {*KEYS, *KIND_NAMES} - {""}
FIELDS |= {n.lstrip("-").replace("-", sep) for n in FIELDS for sep in ("-", "_", " ")}


CONVERT = {
    "--from": CONVENTIONS,
    "--to": CONVENTIONS,
    "--lr": NUMBER_TEXT,
    "--momentum": NUMBER_TEXT,
    "--dampening": NUMBER_TEXT,
    "--weight-decay": NUMBER_TEXT,
    "--gradient-scale": NUMBER_TEXT,
    "--schedule": SCHEDULES,
    "--momentum-schedule": SCHEDULES,
    "--steps": STEPS,
    "--format": st.sampled_from(["table", "json", "python", "yaml", ""]),
}


@FUZZ
@given(options(CONVERT))
def test_momentum_convert_convert_options(argv: list[str]):
    """Protection: click's option types plus the converter's own validation, mapped to
    exit 2 by ``ErrorHandlingGroup``."""
    argv = ["convert", *argv]
    check(CliRunner().invoke(convert_cli, argv), argv)


SCHEDULE = {
    "--steps": STEPS,
    "--base": NUMBER_TEXT,
    "--format": st.sampled_from(["table", "json", "csv"]),
}


@FUZZ
@given(SCHEDULES, options(SCHEDULE))
def test_momentum_convert_schedule_options(spec: str, argv: list[str]):
    """Protection: ``parse_schedule`` and the ``--steps``/``--base`` checks."""
    argv = ["schedule", spec, *argv]
    check(CliRunner().invoke(convert_cli, argv), argv)


VALID_SPEC = """
name = "fuzz"
task = "nqm"
optimizers = ["pytorch", "sutskever"]
sampler = "random"
n_trials = 4
[search_space]
lr = { low = 0.001, high = 0.1, log = true }
epochs = 2
"""

NAMES = st.one_of(st.sampled_from(["ok", "a.b-c_d", "", "x'; DROP TABLE trials; --"]),
                  st.text(max_size=12))  # fmt: skip
COUNTS = st.one_of(st.integers(-3, 40).map(str), st.sampled_from(["", "x", "1.5", "1e9"]))
DEVICES = st.one_of(
    st.sampled_from(["auto", "cpu", "cuda:0", "cuda:0,cuda:1", "cuda:x", "tpu", "", "cuda:-1"]),
    st.text(max_size=10),
)
RUN = {
    "--workers": COUNTS,
    "--n-trials": COUNTS,
    "--devices": DEVICES,
    "--name": NAMES,
    "--population": st.sampled_from(["1", "4", "auto", "0", "-2", "many", ""]),
}
WORKER = {
    "--n-trials": COUNTS,
    "--device": DEVICES,
    "--name": NAMES,
    "--population": st.sampled_from(["1", "4", "auto", "0", "-2", "many", ""]),
}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.toml"
    path.write_text(VALID_SPEC)
    return path


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stubs for what would start workers: launch() and the worker loops."""
    from sweeps import launcher, worker
    from sweeps.launcher import LaunchResult
    from sweeps.population import worker as population_worker
    from sweeps.worker import WorkerSummary

    def launch(spec: Any, *args: Any, workers: int | None = None, devices: Any = None,
               **kwargs: Any) -> LaunchResult:  # fmt: skip
        from sweeps.devices import parse_devices

        parse_devices(devices or spec.devices or "auto")  # what launch() checks first
        return LaunchResult(0, None, "stub")  # type: ignore[arg-type]

    monkeypatch.setattr(launcher, "launch", launch)
    monkeypatch.setattr(worker, "run_worker", lambda *a, **k: WorkerSummary())
    monkeypatch.setattr(population_worker, "run_population_worker", lambda *a, **k: WorkerSummary())


@FUZZ
@given(argv=options(RUN))
def test_sweeps_run_options(argv: list[str], spec_file: Path, no_processes: None):
    """Protection: ``--workers``/``--n-trials`` at least 1, spec validation of the name
    and population overrides, device list parsing: all exit 2 naming the option."""
    argv = ["run", str(spec_file), "--storage", "sqlite:///:memory:", *argv]
    check(CliRunner().invoke(sweeps_cli, argv), argv)


@FUZZ
@given(argv=options(WORKER))
def test_sweeps_worker_options(argv: list[str], spec_file: Path, no_processes: None):
    """Protection: as for ``run``, plus ``--device`` parsing before the worker starts."""
    argv = ["worker", str(spec_file), "--storage", "sqlite:///:memory:", *argv]
    check(CliRunner().invoke(sweeps_cli, argv), argv)


STORAGE = st.one_of(
    st.sampled_from(["sqlite:///:memory:", "sqlite://", "postgresql://", "nope://x", "", ":",
                     "sqlite:////nonexistent/dir/x.db", "mysql+nodriver://h/x"]),
    st.text(alphabet="abcdefgilqrstu:/+.@", max_size=20),
)  # fmt: skip


@FUZZ
@given(
    command=st.sampled_from(["status", "results", "list"]),
    name=NAMES,
    storage=STORAGE,
    output_format=st.sampled_from(["table", "json", "csv", "parquet", "xml", ""]),
)
def test_sweeps_read_commands_options(command: str, name: str, storage: str, output_format: str):
    """Protection: URL parsing and the unknown-sweep check (exit 2), unreachable or
    unusable databases (exit 1), format choices; never a traceback."""
    argv = [command] if command == "list" else [command, name]
    argv += ["--storage", storage, "--format", output_format]
    check(CliRunner().invoke(sweeps_cli, argv), argv, runtime_ok=True)


def test_status_with_an_unknown_database_backend_is_refused_in_one_sentence():
    """Protection: ``load_existing_study`` checks the URL with ``storage.engine.
    create_engine`` first (the fuzzer found ``nope://x`` escaping as NoSuchModuleError)."""
    argv = ["status", "ok", "--storage", "nope://x"]
    result = CliRunner().invoke(sweeps_cli, argv)
    assert result.exit_code == 2, result.output
    assert "nope://x" in result.output
    check(result, argv)


@pytest.mark.postgres
def test_results_for_a_name_holding_a_null_byte_is_refused_on_postgres(postgres_url: str):
    """Protection: ``storage.queries`` answers "no such sweep" for a name holding NUL
    instead of sending it (the fuzzer found psycopg's DataError escaping as a traceback)."""
    from storage.engine import create_engine
    from storage.schema import ensure_current

    engine = create_engine(postgres_url)
    ensure_current(engine)
    engine.dispose()
    argv = ["results", "a\x00b", "--storage", postgres_url]
    result = CliRunner().invoke(sweeps_cli, argv)
    assert result.exit_code == 2, result.output
    check(result, argv)
