"""Fuzzing what ``--storage`` points at: generated storage URLs (scheme, user, password,
host, port, database, query string), malformed at every position, and damaged database
files (random bytes, truncated valid files, valid files of other applications), through
every ``sweeps`` command that takes ``--storage``.

Every case ends with exit status 1 or 2 and one sentence (or, for a URL that is valid and
reaches nothing dangerous, exit 0), no traceback, the URL's password never printed (where
the URL still designates one, or cannot be parsed at all), and a damaged file byte for byte
unchanged. Safety: URLs are only tried when they can reach nothing but closed ports on this
machine (never the PostgreSQL, MariaDB or Redis ports, never a Unix socket) or a SQLite file
inside the test's folder; the others are discarded before anything connects.

The plain tests run a small count in the default run; the ``reliability`` ones the large
counts listed in RELIABILITY.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import string
import zipfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sweeps.cli import cli
from tests.reliability.conftest import FULL
from tests.reliability.fuzzing import assert_one_sentence

SMALL_URLS, LARGE_URLS = 15, (3000 if FULL else 150)
SMALL_FILES, LARGE_FILES = 3, (300 if FULL else 40)

SPEC = """
name = "tiny"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = 1
[search_space]
lr = 0.05
momentum = 0.9
epochs = 1
"""
SERVER_PORTS = {5432, 3306, 6379}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
URL_COMMANDS = (
    ("list",),
    ("status", "tiny"),
    ("results", "tiny"),
    ("report", "tiny", "--out", "report-out"),
    ("db", "upgrade"),
)


def _fuzz(examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# --- URLs ---------------------------------------------------------------------------------

PASSWORDS = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.~", min_size=6, max_size=14
).map(lambda text: f"Zq{text}")
"""A password that cannot be confused with any other text of a message."""
SCHEMES = st.sampled_from(
    ["postgresql", "postgres", "postgresql+psycopg", "mysql", "mariadb", "mysql+pymysql",
     "sqlite", "postgresql+nodriver", "oracle", "bogus", "", "http", "postgresql+psycopg2"]
)  # fmt: skip
USERS = st.sampled_from(["alice", "", "root", "a b", "x%40y", "ü", "user.name"])
HOSTS = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "", "127.0.0.1.", "::1", "[::1"])
PORTS = st.sampled_from(
    ["1", "9", "0", "65535", "65536", "-1", "99999999999999999999", "notaport", "1e3", " ", ""]
)
DATABASES = st.sampled_from(["sweeps", "", "a/b", "x.db", "db?", "%00", "ü", "sweeps.db"])
QUERIES = st.sampled_from(
    ["", "?connect_timeout=2", "?a", "?=&=", "?charset=utf8mb4", "?password={password}",
     "?sslmode=disable", "?x=1&x=2"]
)
NOISE = st.sampled_from([*":/@?#%&=[] \\\t\x00", "://", "@@", "%4", "\n"])


@st.composite
def storage_urls(draw: st.DrawFn) -> tuple[str, str]:
    """A storage URL built from parts and then maybe malformed at one position; the
    password it was built with."""
    password = draw(PASSWORDS)
    scheme, user, host = draw(SCHEMES), draw(USERS), draw(HOSTS)
    port, database = draw(PORTS), draw(DATABASES)
    query = draw(QUERIES).format(password=password)
    credentials = f"{user}:{password}@" if draw(st.booleans()) or not user else f"{user}@"
    url = f"{scheme}://{credentials}{host}{':' + port if port else ''}/{database}{query}"
    if scheme == "sqlite":
        url = f"sqlite:///{database or 'fuzz.db'}{query}"
    edit = draw(st.sampled_from(["none", "insert", "delete", "replace", "truncate"]))
    if edit != "none" and url:
        position = draw(st.integers(0, len(url) - 1))
        if edit == "insert":
            url = url[:position] + draw(NOISE) + url[position:]
        elif edit == "delete":
            url = url[:position] + url[position + 1 :]
        elif edit == "replace":
            url = url[:position] + draw(NOISE) + url[position + 1 :]
        else:
            url = url[:position]
    return url, password


def _safe(url: str, folder: Path) -> tuple[bool, str | None]:
    """Whether trying ``url`` can reach nothing but closed local ports or a SQLite file in
    ``folder``; and the password the URL designates (None when it cannot be parsed)."""
    if "\x00" in url:
        return True, None  # no driver gets this far
    try:
        parsed = sa.make_url(url)
        port = parsed.port
    except Exception:
        return True, None  # refused before anything connects
    backend = parsed.get_backend_name()
    in_query = parsed.query.get("password")
    password = str(parsed.password) if parsed.password is not None else None
    if password is None and isinstance(in_query, str):
        password = in_query
    if "\x00" in (parsed.database or ""):
        return True, password  # refused before anything opens it
    if backend == "sqlite":
        database = parsed.database or ""
        if database.startswith("file:") or os.path.isabs(database) or ".." in database:
            return False, password
        return (folder / database).resolve().is_relative_to(folder.resolve()), password
    if parsed.host not in LOCAL_HOSTS or port is None or port in SERVER_PORTS:
        return False, password
    if any(key.lower() in ("host", "hostaddr", "unix_socket", "service") for key in parsed.query):
        return False, password
    return True, password


def _check_url(url: str, password: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    safe, designated = _safe(url, folder)
    assume(safe)
    parsable = designated is not None or _parses(url)
    secret = password if (designated == password or not parsable) else None
    monkeypatch.chdir(folder)
    for command in URL_COMMANDS:
        result = CliRunner().invoke(cli, [*command, "--storage", url])
        assert result.exit_code in (0, 1, 2), (url, command, result.output, result.exception)
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), (url, command, repr(result.exception))
        assert "Traceback" not in result.output
        if secret is not None:
            assert secret not in result.output, (url, command, result.output)
        if result.exit_code != 0:
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert len(lines) == 1, (url, command, result.output)
            assert lines[0].startswith("Error: "), (url, command, result.output)
            assert_one_sentence(lines[0])


def _parses(url: str) -> bool:
    try:
        sa.make_url(url).port  # noqa: B018 (the port is parsed on access)
    except Exception:
        return False
    return True


@_fuzz(SMALL_URLS)
@given(case=storage_urls())
def test_generated_and_malformed_storage_urls_get_one_sentence_and_never_print_the_password(
    case: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_url(*case, tmp_path_factory.mktemp("url"), monkeypatch)


@pytest.mark.reliability
@_fuzz(LARGE_URLS)
@given(case=storage_urls())
def test_many_generated_and_malformed_storage_urls_get_one_sentence_without_the_password(
    case: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_url(*case, tmp_path_factory.mktemp("url"), monkeypatch)


# --- damaged database files --------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_database(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real results database holding a finished one-trial sweep, copied on
    its own (no WAL file beside it), as a file moved or downloaded would be."""
    folder = tmp_path_factory.mktemp("valid")
    spec = folder / "tiny.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, ["worker", str(spec), "--storage", f"sqlite:///{folder}/w.db"])
    assert result.exit_code == 0, result.output
    copy = folder / "copy.db"
    with closing(sqlite3.connect(folder / "w.db")) as source, closing(sqlite3.connect(copy)) as to:
        source.backup(to)
    return copy.read_bytes()


def _other_application_files() -> dict[str, bytes]:
    """Valid files of other programs: a PNG, a ZIP archive, gzip, JSON, a PDF, a TOML spec."""
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
        b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("results.csv", "trial,value\n0,0.5\n")
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    return {
        "png": png,
        "zip": archive.getvalue(),
        "gzip": gzip.compress(b"SQLite format 3\x00 but compressed"),
        "json": json.dumps({"sweep": "tiny", "value": 0.5}).encode(),
        "pdf": pdf,
        "toml": SPEC.encode(),
    }


OTHER_FILES = _other_application_files()


@st.composite
def damaged_files(draw: st.DrawFn, valid: bytes) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["random", "random with header", "truncated", "other"]))
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=9000))
    if kind == "random with header":
        return kind, b"SQLite format 3\x00" + draw(st.binary(min_size=0, max_size=9000))
    if kind == "truncated":
        return kind, valid[: draw(st.integers(1, len(valid) - 1))]
    name = draw(st.sampled_from(sorted(OTHER_FILES)))
    return f"{name} file", OTHER_FILES[name]


def _check_file(content: bytes, folder: Path) -> None:
    database = folder / "damaged.db"
    database.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    spec = folder / "tiny.toml"
    spec.write_text(SPEC)
    url = f"sqlite:///{database}"
    commands = [
        *URL_COMMANDS[:3],
        ("report", "tiny", "--out", str(folder / "report")),
        ("run", str(spec), "--workers", "1", "--no-progress"),
        ("worker", str(spec)),
        ("db", "upgrade"),
    ]
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--storage", url])
        assert result.exit_code in (1, 2), (command, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (command, repr(result.exception))
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, (command, result.output)
        assert lines[0].startswith("Error: "), (command, result.output)
        assert_one_sentence(lines[0])
        assert hashlib.sha256(database.read_bytes()).hexdigest() == digest, command
    assert not (folder / "report").exists()


@_fuzz(SMALL_FILES)
@given(data=st.data())
def test_damaged_database_files_get_one_sentence_in_every_command_and_stay_unchanged(
    data: st.DataObject, valid_database: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, content = data.draw(damaged_files(valid_database))
    _check_file(content, tmp_path_factory.mktemp("file"))


@pytest.mark.reliability
@_fuzz(LARGE_FILES)
@given(data=st.data())
def test_many_damaged_database_files_get_one_sentence_in_every_command_and_stay_unchanged(
    data: st.DataObject, valid_database: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, content = data.draw(damaged_files(valid_database))
    _check_file(content, tmp_path_factory.mktemp("file"))


@pytest.mark.parametrize("name", sorted(OTHER_FILES))
def test_a_valid_file_of_another_application_is_refused_unchanged(
    name: str, tmp_path: Path
) -> None:
    _check_file(OTHER_FILES[name], tmp_path)
