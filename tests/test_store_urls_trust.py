"""Store URLs a user gets wrong: secrets never echoed, missing stores not created, refusals
reported at once.

The servers are the real ones the other tests use (see conftest.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest

import tether
from tether._urls import redact, scrub
from tether.errors import ConfigurationError, StoreError, TetherError

from .conftest import require_server, with_options

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0?namespace=app", "redis://:***@h:6379/0?namespace=app"),
        ("rediss://user:p%40ss@h/0", "rediss://user:***@h/0"),
        ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("postgresql://u@h/db?sslpassword=pw;passwd=x", "postgresql://u@h/db?sslpassword=***;passwd=***"),
        ("x://h/p?Token=a&api_key=b&pass=c&secret=d&key=e&ttl=5", "x://h/p?Token=***&api_key=***&pass=***&secret=***&key=***&ttl=5"),
        ("host=h password='a b' user=u", "host=h password=*** user=u"),
        ("ftp://u:pw@host/x", "ftp://u:***@host/x"),
        ("sqlite:///app.db?synchronous=full", "sqlite:///app.db?synchronous=full"),
        ("memory://", "memory://"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("bad URL 'redis://u:pw@h/0?token=t': no", "bad URL 'redis://u:***@h/0?token=***': no"),
    ],
)  # fmt: skip
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_scrub_removes_a_urls_secrets_however_a_message_quotes_them() -> None:
    url = f"redis://user:{SECRET}%21@h/0?token=tok-123"
    message = f"driver said: auth {SECRET}! failed; token tok-123; url {url}"
    cleaned = scrub(message, url)
    assert SECRET not in cleaned
    assert "tok-123" not in cleaned
    assert "driver said: auth ***" in cleaned


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://u:{SECRET}@host/x",
        f"mysql://u:{SECRET}@host/db",
        f"u:{SECRET}@host",
        f"sqlite://u:{SECRET}@host/x.db",
        f"sqlite:///x.db?token={SECRET}",
        f"file:sessions?password={SECRET}",
        f"redis://:{SECRET}@127.0.0.1:6379/0?bogus=1",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"redis://:{SECRET}@127.0.0.1:6379/x",
        f"rediss://u:{SECRET}@127.0.0.1:6379/0?ttl=-1",
        f"postgresql://u:{SECRET}@127.0.0.1/db?bogus=1",
        f"postgresql://u@127.0.0.1/db?password={SECRET}&bogus=1",
        f"postgresql://u@127.0.0.1/db?password={SECRET}&pool_timeout=x",
        f"postgres://u:{SECRET}@127.0.0.1/db?schema=no-dashes",
        f"redis://:{SECRET}@127.0.0.1:port/0",
        f"rediss://:{SECRET}@[::1/0",
    ],
)
def test_no_configuration_error_quotes_a_password(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        tether.open_store(url)
    assert SECRET not in str(info.value)
    assert "***" in str(info.value) or "u:" not in url  # the URL is still named, redacted


# --- reading never creates --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_create_false_refuses_a_missing_store_and_creates_nothing(
    kind: str, tmp_path: Path
) -> None:
    where = tmp_path / "typo" / ("app.db" if kind == "sqlite" else "sessions")
    url = f"sqlite:///{where}" if kind == "sqlite" else f"file:{where}"
    for opener in (tether.open_store, tether.open_async_store):
        with pytest.raises(ConfigurationError) as info:
            opener(url, create=False)
        assert str(where) in str(info.value)
        assert "nothing was created" in str(info.value)
    assert not (tmp_path / "typo").exists()
    with tether.open_store(url) as store:  # writers still create it
        store.create(tether.Session(id="s1"))
    with tether.open_store(url, create=False) as store:
        assert store.exists("s1")


def test_create_false_is_ignored_by_stores_that_cannot_tell() -> None:
    with tether.open_store("memory://", create=False) as store:
        assert store.list().sessions == []


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_tilde_is_the_home_directory(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    url = "sqlite:///~/app.db" if kind == "sqlite" else "file:~/sessions"
    with tether.open_store(url) as store:
        store.create(tether.Session(id="s1"))
    assert (home / ("app.db" if kind == "sqlite" else "sessions")).exists()
    assert not (work / "~").exists()


# --- servers: a refusal that retrying cannot fix is a ConfigurationError, at once -------------


def test_postgres_missing_database_is_one_configuration_error_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = require_server("postgres")
    host = base.split("@", 1)[1].split("/", 1)[0]
    missing = f"tether_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres:{SECRET}@{host}/{missing}?pool_timeout=5"
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with tether.open_store(url) as store, pytest.raises(ConfigurationError) as info:
        store.exists("x")
    assert time.monotonic() - started < 2  # not pool_timeout (5 s)
    message = str(info.value)
    assert f'database "{missing}" does not exist' in message
    assert "busy" not in message
    assert SECRET not in message
    assert "\n" not in message
    pool_lines = [r for r in caplog.records if r.name.startswith("psycopg")]
    assert pool_lines == [], [r.getMessage() for r in pool_lines]


def test_postgres_unknown_role_is_a_configuration_error() -> None:
    base = require_server("postgres")
    host = base.split("@", 1)[1].split("/", 1)[0]
    url = f"postgresql://nobody_{uuid.uuid4().hex[:6]}@{host}/test?password={SECRET}"
    with tether.open_store(url) as store, pytest.raises(ConfigurationError) as info:
        store.exists("x")
    assert "role" in str(info.value)
    assert SECRET not in str(info.value)


def test_postgres_nothing_listening_is_still_unavailable_at_once() -> None:
    with tether.open_store("postgresql://postgres@127.0.0.1:1/test") as store:
        started = time.monotonic()
        with pytest.raises(tether.StoreUnavailable):
            store.exists("x")
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("userinfo", "path", "fragment"),
    [(f"nobody:{SECRET}@", "/0", "username-password"), ("", "/99", "DB index is out of range")],
)
def test_redis_wrong_password_or_database_is_a_configuration_error(
    userinfo: str, path: str, fragment: str
) -> None:
    base = require_server("redis")
    host = base.split("//", 1)[1].split("/", 1)[0].rpartition("@")[2]
    url = with_options(f"redis://{userinfo}{host}{path}", namespace=f"t{uuid.uuid4().hex}")
    with tether.open_store(url) as store, pytest.raises(ConfigurationError) as info:
        store.exists("x")
    assert fragment in str(info.value)
    assert "retrying will not help" in str(info.value)
    assert SECRET not in str(info.value)
    assert not isinstance(info.value, StoreError)
    assert isinstance(info.value, TetherError)
