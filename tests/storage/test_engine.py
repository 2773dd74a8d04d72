"""URLs: the default, driver normalisation, hidden passwords, unreachable servers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from storage.engine import create_engine, default_url, hide_password, normalize_url
from storage.errors import StorageUnavailableError, StorageUsageError
from storage.schema import ensure_current

SECRET = "pa55-w0rd-XYZ"


def test_default_url_is_the_local_sqlite_file_unless_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWEEPS_STORAGE", raising=False)
    assert default_url() == "sqlite:///sweeps.db"
    monkeypatch.setenv("SWEEPS_STORAGE", "postgresql://db.example/sweeps")
    assert default_url() == "postgresql://db.example/sweeps"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("mysql://root@h/test", "mysql+pymysql://root@h/test"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///sweeps.db", "sqlite:///sweeps.db"),
    ],
)
def test_normalize_url_picks_the_project_driver(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_hide_password_masks_valid_and_malformed_urls() -> None:
    assert hide_password(f"postgresql://alice:{SECRET}@h/db") == "postgresql://alice:***@h/db"
    assert SECRET not in hide_password(f"not a url://alice:{SECRET}@h/db")


def test_a_malformed_url_is_a_usage_error() -> None:
    with pytest.raises(StorageUsageError, match="not a database URL"):
        create_engine("sweeps.db")


def test_an_unreachable_server_is_one_sentence_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = create_engine(f"postgresql://alice:{SECRET}@127.0.0.1:1/sweeps")
    with pytest.raises(StorageUnavailableError) as raised:
        ensure_current(engine)
    message = str(raised.value)
    assert message.startswith(
        "Cannot reach the results database at postgresql+psycopg://alice:***@"
    )
    assert SECRET not in message
    assert "\n" not in message
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql//alice:hunter2@127.0.0.1/db", "postgresql//***@127.0.0.1/db"),
        ("mysql:alice:hunter2@host/db", "mysql:***@host/db"),
        ("alice:hunter2@host", "alice:***@host"),
        ("postgresql://alice:hunter2@host:port/db", "postgresql://***@host:port/db"),
        ("postgresql://u@host/db?password=hunter2&x=1", "postgresql://u@host/db?password=***&x=1"),
    ],
)
def test_hide_password_masks_credentials_whatever_surrounds_them(text: str, shown: str) -> None:
    assert hide_password(text) == shown


def test_trials_frame_of_a_missing_sqlite_file_names_the_url_and_creates_nothing(
    tmp_path: Path,
) -> None:
    from storage import trials_frame
    from storage.errors import DatabaseNotFoundError

    url = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(DatabaseNotFoundError, match=r"No results database at sqlite:///.*missing"):
        trials_frame(url)
    assert list(tmp_path.iterdir()) == []


def test_trials_frame_of_a_database_without_results_says_so(tmp_path: Path) -> None:
    import sqlite3

    from storage import trials_frame
    from storage.errors import DatabaseNotFoundError

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(DatabaseNotFoundError, match="holds no sweep results"):
        trials_frame(f"sqlite:///{path}")
