"""Store URLs and configuration mappings read one declaration of each store's options.

Every built-in store declares its options once (a ``tether._urls.StoreOptions``); its
``from_url`` and ``store_from_config`` both read it. These tests hold the two sides to it: an
option is accepted in a URL exactly when it is accepted in a configuration section, for every
backend, and one parser reports every mistake with the URL's secrets hidden.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from tether import async_store_from_config, open_async_store
from tether._registry import _CONFIG_KINDS, config_to_url, store_options
from tether._urls import (
    FILE_OPTIONS,
    Option,
    StoreOptions,
    StoreURL,
    as_float,
    parse_store_url,
)
from tether.errors import ConfigurationError

SECRET = "hunter2-s3cret"
KINDS = sorted(_CONFIG_KINDS)


def _base(kind: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A URL for ``kind`` with no options, and the configuration section that names the same
    store. The servers' URLs name no reachable server: nothing here connects."""
    if kind == "file":
        return f"file:{tmp_path / 'files'}", {"directory": str(tmp_path / "files")}
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'x.db'}", {"path": str(tmp_path / "x.db")}
    if kind == "redis":
        return f"redis://:{SECRET}@127.0.0.1:1/0", {"url": f"redis://:{SECRET}@127.0.0.1:1/0"}
    if kind == "postgres":
        url = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
        return url, {"url": url}
    if kind == "nats":
        return "nats://127.0.0.1:1/bucket", {"url": "nats://127.0.0.1:1/bucket"}
    return f"{kind}://", {}


def _close(store: Any) -> None:
    asyncio.run(store.close())


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _valid_in_url_message(message: str, scheme: str) -> set[str]:
    """The option names an unknown-option error lists for ``scheme``."""
    found = re.search(rf"valid options for {re.escape(scheme)}: ([\w, -]+?)(?:, and |$)", message)
    assert found is not None, message
    listed = found.group(1)
    return set() if listed == "none" else set(listed.split(", "))


@pytest.mark.parametrize("kind", KINDS)
def test_a_url_accepts_exactly_the_declared_options(kind: str, tmp_path: Path) -> None:
    """The store's own from_url, asked about an option it does not know, lists the ones it
    does: they are the declared ones, whoever wrote the store's URL parsing."""
    table = store_options(kind)
    url, _ = _base(kind, tmp_path)
    scheme = _CONFIG_KINDS[kind][1]
    with pytest.raises(ConfigurationError) as info:
        open_async_store(f"{url}?not_an_option=1")
    assert _valid_in_url_message(str(info.value), scheme) == set(table)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_every_declared_option_works_in_a_url_and_in_a_config(kind: str, tmp_path: Path) -> None:
    table = store_options(kind)
    url, section = _base(kind, tmp_path)
    for name, option in table.options.items():
        value = _text(option.default)
        assert option.parse(value) == option.default, name  # the default is a valid value
        joiner = "&" if "?" in url else "?"
        _close(open_async_store(f"{url}{joiner}{name}={value}"))
        config = {"store": kind, kind: {**section, name: option.default}}
        assert f"{name}={value}" in config_to_url(config)
        _close(async_store_from_config(config))


@pytest.mark.parametrize("kind", KINDS)
def test_an_option_refused_in_a_url_is_refused_in_a_config(kind: str, tmp_path: Path) -> None:
    _, section = _base(kind, tmp_path)
    with pytest.raises(ConfigurationError) as info:
        config_to_url({"store": kind, kind: {**section, "not_an_option": 1}})
    assert "['not_an_option']" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_declared_defaults_are_the_stores_defaults(kind: str) -> None:
    """Where the store's constructor takes an option as a keyword, its default is the
    declared one (the declaration is what a user reads)."""
    from tether._registry import _load_class

    table = store_options(kind)
    cls = _load_class(f"{_CONFIG_KINDS[kind][1]}://", 0)
    parameters = inspect.signature(cls.__init__).parameters
    checked = 0
    for name, option in table.options.items():
        given = parameters.get(name)
        if given is None or given.default in (inspect.Parameter.empty, None):
            continue
        assert given.default == option.default, name
        checked += 1
    if kind in ("postgres", "redis", "file", "sqlite"):
        assert checked >= 1


def test_postgres_pool_options_and_libpq_parameters_work_in_a_config() -> None:
    """The issue: pool_max_size was accepted in a PostgreSQL URL and refused in config."""
    base = "postgresql://app@127.0.0.1:1/db"
    config = {
        "store": "postgres",
        "postgres": {"url": base, "pool_max_size": 20, "schema": "app", "sslmode": "disable"},
    }
    url = config_to_url(config)
    assert url == f"{base}?pool_max_size=20&schema=app&sslmode=disable"
    store = async_store_from_config(config)
    try:
        assert store._pool.max_size == 20  # type: ignore[attr-defined]
        assert store.schema == "app"  # type: ignore[attr-defined]
        assert "sslmode=disable" in store._conninfo  # type: ignore[attr-defined]
    finally:
        _close(store)


def test_redis_options_in_a_config_reach_the_store() -> None:
    config = {
        "store": "redis",
        "redis": {"url": "redis://127.0.0.1:1/0", "namespace": "app", "ttl": 90},
    }
    store = async_store_from_config(config)
    try:
        assert (store.namespace, store.ttl_ms) == ("app", 90_000)  # type: ignore[attr-defined]
    finally:
        _close(store)


# --- the one parser --------------------------------------------------------------------------


def test_the_parser_returns_a_url_that_never_shows_its_password() -> None:
    parsed = parse_store_url(f"redis://u:{SECRET}@h:1/0?ttl=5", ("redis",), {"ttl": as_float})
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("redis", f"u:{SECRET}@h:1", "/0")
    netloc, path, options = parsed  # callers that unpack three values keep working
    assert (path, options) == ("/0", {"ttl": 5.0})
    assert netloc == parsed.netloc
    assert SECRET not in repr(parsed)
    assert SECRET not in str(parsed)
    assert isinstance(parsed, StoreURL)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("lock_timeout=1&lock_timeout=2", "given twice"),
        ("lock_timeout=soon", "option lock_timeout"),
        ("nope=1", "valid options for file: fsync, lock_timeout"),
        ("fsync", "cannot parse the options"),
    ],
)
def test_the_parser_reports_mistakes_without_secrets(query: str, fragment: str) -> None:
    url = f"file://u:{SECRET}@localhost/dir?{query}&token={SECRET}"
    with pytest.raises(ConfigurationError) as info:
        parse_store_url(url, "file", FILE_OPTIONS)
    assert fragment in str(info.value)
    assert SECRET not in str(info.value)


def test_an_option_table_passes_a_drivers_own_options_on() -> None:
    table = StoreOptions(
        Option("mine", int, 1, "tether's"),
        passthrough=lambda: {"theirs"},
        passthrough_doc="any other option must be the driver's",
    )
    parsed = parse_store_url("x://h/?mine=2&theirs=a%20b", "x", table)
    assert parsed.options == {"mine": 2}
    assert parsed.passed == [("theirs", "a b")]
    with pytest.raises(ConfigurationError, match="any other option must be the driver's"):
        parse_store_url("x://h/?other=1", "x", table)
    assert table.defaults() == {"mine": 1}
    assert "mine (default 1): tether's" in table.describe()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_server_store_repr_names_its_server_not_its_password(kind: str, tmp_path: Path) -> None:
    url, _ = _base(kind, tmp_path)
    store = open_async_store(url)
    try:
        shown = repr(store)
        assert SECRET not in shown
        assert "127.0.0.1" in shown
    finally:
        _close(store)
