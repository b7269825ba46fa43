"""Choosing a store (URLs, environment, config mappings), the public API, errors and models."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest

import tether
import tether.errors
from tether import (
    AsyncStore,
    ConfigurationError,
    ConflictError,
    CorruptSession,
    InvalidRequest,
    InvalidSessionData,
    InvalidSessionId,
    LockTimeout,
    Session,
    SessionExists,
    SessionHeader,
    SessionNotFound,
    SessionStatus,
    Store,
    StoreError,
    TetherError,
    UnsupportedSchemaVersion,
    async_store_from_config,
    open_async_store,
    open_store,
    register_store,
    store_from_config,
    validate_session_id,
)
from tether._registry import _SCHEMES
from tether.schema import schema
from tether.stores.file import AsyncFileStore, FileStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore

BUILTIN_SCHEMES = [
    "file", "kv-memory", "memory", "nats", "postgres", "postgresql", "redis", "rediss", "sqlite",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here depends on the machine's TETHER_URL or writes to the working directory."""
    monkeypatch.delenv("TETHER_URL", raising=False)
    monkeypatch.chdir(tmp_path)


def _sqlite_synchronous(store: SQLiteStore) -> int:
    row = store._conn.execute("PRAGMA synchronous").fetchone()
    return int(row[0])


# --- open_store / open_async_store -------------------------------------------------------------


def test_open_store_memory() -> None:
    with open_store("memory://") as store:
        assert type(store) is MemoryStore
        assert isinstance(store, Store)
        created = store.create(Session())
        assert store.load(created.id).version == 1


@pytest.mark.parametrize("form", ["file:{}", "file://{}"])
def test_open_store_file(tmp_path: Path, form: str) -> None:
    directory = tmp_path / "sessions"
    with open_store(form.format(directory)) as store:
        assert type(store) is FileStore
        assert store.directory == directory
        assert store.fsync is True
    assert directory.is_dir()


def test_open_store_file_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("file:var/sessions?fsync=false&lock_timeout=1.5") as store:
        assert type(store) is FileStore
        assert store.fsync is False
        assert store.lock_timeout == 1.5
    assert (tmp_path / "var" / "sessions").is_dir()


def test_open_store_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "db" / "sessions.db"
    with open_store(f"sqlite:///{path}?synchronous=full") as store:
        assert type(store) is SQLiteStore
        assert store.path == str(path)
        assert _sqlite_synchronous(store) == 2  # FULL
    assert path.is_file()


def test_open_store_sqlite_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///app.db") as store:
        assert type(store) is SQLiteStore
        assert store.path == "app.db"
    assert (tmp_path / "app.db").is_file()


async def test_open_async_store_classes(tmp_path: Path) -> None:
    async with open_async_store("memory://") as memory:
        assert type(memory) is AsyncMemoryStore
        assert isinstance(memory, AsyncStore)
        assert not isinstance(memory, Store)
        created = await memory.create(Session())
        assert (await memory.load(created.id)).version == 1
    async with open_async_store(f"file:{tmp_path / 'files'}?fsync=false") as files:
        assert type(files) is AsyncFileStore
        assert type(files.sync) is FileStore
        assert files.sync.fsync is False
    async with open_async_store(f"sqlite:///{tmp_path / 'a.db'}") as db:
        assert type(db) is AsyncSQLiteStore
        assert type(db.sync) is SQLiteStore
        assert db.sync.path == str(tmp_path / "a.db")


def test_open_store_uses_tether_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_URL", "memory://")
    with open_store() as store:
        assert type(store) is MemoryStore
    monkeypatch.setenv("TETHER_URL", f"file:{tmp_path / 'env'}")
    with open_store() as file_store:
        assert type(file_store) is FileStore
        assert file_store.directory == tmp_path / "env"
    # an explicit URL wins over the environment
    with open_store("memory://") as explicit:
        assert type(explicit) is MemoryStore


async def test_open_async_store_uses_tether_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_URL", f"file:{tmp_path / 'env'}")
    async with open_async_store() as store:
        assert type(store) is AsyncFileStore


@pytest.mark.parametrize("env", [None, ""])
def test_default_url_is_sqlite_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    assert tether.DEFAULT_URL == "sqlite:///.tether/sessions.db"
    if env is not None:
        monkeypatch.setenv("TETHER_URL", env)  # empty means unset
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        assert type(store) is SQLiteStore
        assert Path(store.path) == Path(".tether") / "sessions.db"
    assert (tmp_path / ".tether" / "sessions.db").is_file()


async def test_async_default_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_async_store() as store:
        assert type(store) is AsyncSQLiteStore
    assert (tmp_path / ".tether" / "sessions.db").is_file()


@pytest.mark.parametrize("url", ["memory", "sessions.db", "", "./var/sessions", "/abs/dir"])
@pytest.mark.parametrize("opener", [open_store, open_async_store])
def test_non_url_is_a_configuration_error(url: str, opener: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        opener(url)
    message = str(info.value)
    assert "is not a store URL" in message
    for example in ("memory://", "file:///abs/dir", "file:relative/dir", "sqlite:///"):
        assert example in message


@pytest.mark.parametrize("url", ["mongodb://localhost", "s3://bucket", "C:\\sessions"])
@pytest.mark.parametrize("opener", [open_store, open_async_store])
def test_unknown_scheme_is_a_configuration_error(url: str, opener: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        opener(url)
    message = str(info.value)
    assert "unknown store scheme" in message
    assert (
        "valid schemes: file, kv-memory, memory, nats, postgres, postgresql, redis, rediss, "
        "sqlite" in message
    )
    assert "register_store" in message


@pytest.mark.parametrize(
    "url",
    ["memory://?x=1", "file:", "file://host/dir", "sqlite://host/x.db", "sqlite:///x.db?bogus=1"],
)
def test_bad_urls_for_known_schemes(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        open_store(url)


# --- register_store ----------------------------------------------------------------------------


class MyStore(MemoryStore):
    """A test store reachable through ``mystore://`` once registered."""

    url: str = ""

    @classmethod
    def from_url(cls, url: str) -> MyStore:
        store = cls()
        store.url = url
        return store


class MyAsyncStore(AsyncMemoryStore):
    sync: MyStore

    @classmethod
    def from_url(cls, url: str) -> MyAsyncStore:
        return cls(store=MyStore.from_url(url))


def _register(
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    sync_class: str,
    async_class: str,
    *,
    extra: str | None = None,
) -> None:
    """register_store(), undone at teardown: monkeypatch records the key as absent first."""
    assert scheme not in _SCHEMES
    monkeypatch.setitem(_SCHEMES, scheme, ("", "", None))
    register_store(scheme, sync_class, async_class, extra=extra)


def test_registered_scheme_opens_the_custom_store(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "mystore", f"{__name__}:MyStore", f"{__name__}:MyAsyncStore")
    assert _SCHEMES["mystore"] == (f"{__name__}:MyStore", f"{__name__}:MyAsyncStore", None)
    with open_store("mystore://tenant-a") as store:
        assert type(store) is MyStore
        assert store.url == "mystore://tenant-a"
        created = store.create(Session(owner="ada"))
        assert store.load(created.id).owner == "ada"


async def test_registered_scheme_opens_the_custom_async_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _register(monkeypatch, "mystore", f"{__name__}:MyStore", f"{__name__}:MyAsyncStore")
    async with open_async_store("mystore://") as store:
        assert type(store) is MyAsyncStore
        assert store.sync.url == "mystore://"


def test_registered_scheme_is_listed_in_unknown_scheme_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _register(monkeypatch, "mystore", f"{__name__}:MyStore", f"{__name__}:MyAsyncStore")
    valid = (
        "valid schemes: file, kv-memory, memory, mystore, nats, postgres, postgresql, redis, "
        "rediss, sqlite"
    )
    with pytest.raises(ConfigurationError, match=valid):
        open_store("nosuch://")


def test_registrations_are_undone_between_tests() -> None:
    # relies on the tests above having registered "mystore" through monkeypatch
    assert sorted(_SCHEMES) == BUILTIN_SCHEMES


@pytest.mark.parametrize("opener", [open_store, open_async_store])
def test_missing_module_names_the_extra(monkeypatch: pytest.MonkeyPatch, opener: Any) -> None:
    _register(
        monkeypatch,
        "fancy",
        "tether_no_such_module_xyz:FancyStore",
        "tether_no_such_module_xyz:AsyncFancyStore",
        extra="fancy",
    )
    with pytest.raises(ConfigurationError) as info:
        opener("fancy://host/db")
    message = str(info.value)
    assert "pip install 'tether[fancy]'" in message
    assert "tether_no_such_module_xyz" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_module_without_extra_gives_no_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "plain", "tether_no_such_module_xyz:S", "tether_no_such_module_xyz:A")
    with pytest.raises(ConfigurationError, match="not installed") as info:
        open_store("plain://")
    assert "pip install" not in str(info.value)


def test_missing_driver_inside_a_store_module_names_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "tether_test_plugin_needs_driver"
    (tmp_path / f"{module}.py").write_text("import tether_fake_driver_xyz\n\nclass S: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _register(monkeypatch, "needsdriver", f"{module}:S", f"{module}:S", extra="needsdriver")
    with pytest.raises(ConfigurationError) as info:
        open_store("needsdriver://")
    message = str(info.value)
    assert "(tether_fake_driver_xyz)" in message
    assert "pip install 'tether[needsdriver]'" in message
    assert module not in sys.modules


def test_missing_class_in_an_existing_module_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _register(monkeypatch, "typo", "tether.stores.memory:MemoryStor", "tether.stores.memory:X")
    with pytest.raises(ConfigurationError):
        open_store("typo://")


@pytest.mark.parametrize(
    "scheme", ["MyStore", "MYSTORE", "my_store", "", "1abc", "a b", "a:b", "-x", "a/b"]
)
def test_register_store_rejects_bad_scheme_names(scheme: str) -> None:
    before = dict(_SCHEMES)
    with pytest.raises(ConfigurationError, match="is not a URL scheme"):
        register_store(scheme, f"{__name__}:MyStore", f"{__name__}:MyAsyncStore")
    assert before == _SCHEMES


@pytest.mark.parametrize("scheme", ["my-store", "my.store", "redis+ssl", "s3"])
def test_register_store_accepts_every_valid_url_scheme(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tether._registry, "_SCHEMES", dict(_SCHEMES))
    register_store(scheme, f"{__name__}:MyStore", f"{__name__}:MyAsyncStore")
    assert scheme in tether._registry._SCHEMES


# --- store_from_config / async_store_from_config -----------------------------------------------


@pytest.mark.parametrize(
    "make_config",
    [
        lambda d: {"store": "file", "file": {"directory": d}},
        lambda d: {"driver": "file", "file": {"directory": d}},
        lambda d: {"session_store": "file", "file": {"directory": d}},
        lambda d: {"store": "file", "directory": d},
        lambda d: {"driver": "file", "directory": str(d)},
        lambda d: {"store": "file", "driver": "file", "file": {"directory": d}},
        lambda d: {"url": f"file:{d}"},
    ],
    ids=[
        "store",
        "driver",
        "session_store",
        "top-level-directory",
        "driver-str-directory",
        "store-and-driver-agree",
        "url",
    ],
)
def test_file_store_from_config(tmp_path: Path, make_config: Any) -> None:
    directory = tmp_path / "var" / "sessions"
    with store_from_config(make_config(directory)) as store:
        assert type(store) is FileStore
        assert store.directory == directory
        assert store.fsync is True
    assert directory.is_dir()


def test_file_store_from_config_passes_options(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "store": "file",
        "file": {"directory": tmp_path, "fsync": False, "lock_timeout": 2.5},
    }
    with store_from_config(config) as store:
        assert type(store) is FileStore
        assert store.fsync is False
        assert store.lock_timeout == 2.5
    config["file"]["fsync"] = True
    with store_from_config(config) as again:
        assert isinstance(again, FileStore)
        assert again.fsync is True


def test_file_store_directory_with_url_special_characters(tmp_path: Path) -> None:
    directory = tmp_path / "my sessions %20 #1 ?x=y&z"
    with store_from_config({"store": "file", "file": {"directory": directory}}) as store:
        assert isinstance(store, FileStore)
        assert store.directory == directory
    assert directory.is_dir()


def test_sqlite_store_from_config(tmp_path: Path) -> None:
    path = tmp_path / "data dir" / "app.db"
    config = {"store": "sqlite", "sqlite": {"path": path, "synchronous": "full", "timeout": 5}}
    with store_from_config(config) as store:
        assert type(store) is SQLiteStore
        assert store.path == str(path)
        assert _sqlite_synchronous(store) == 2  # FULL
    assert path.is_file()
    with store_from_config({"store": "sqlite", "sqlite": {"path": str(path)}}) as normal:
        assert type(normal) is SQLiteStore
        assert _sqlite_synchronous(normal) == 1  # NORMAL, the default


@pytest.mark.parametrize(
    "config", [{"store": "memory"}, {"driver": "memory", "memory": {}}, {"url": "memory://"}]
)
def test_memory_store_from_config(config: dict[str, Any]) -> None:
    with store_from_config(config) as store:
        assert type(store) is MemoryStore


def test_empty_config_is_the_sqlite_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with store_from_config({}) as store:
        assert type(store) is SQLiteStore
        assert Path(store.path) == Path(".tether") / "sessions.db"
    assert (tmp_path / ".tether" / "sessions.db").is_file()
    with store_from_config({"store": "sqlite"}) as named:
        assert isinstance(named, SQLiteStore)
        assert Path(named.path) == Path(".tether") / "sessions.db"


async def test_async_store_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with async_store_from_config({"store": "memory"}) as memory:
        assert type(memory) is AsyncMemoryStore
    config = {"store": "file", "file": {"directory": tmp_path / "f", "fsync": False}}
    async with async_store_from_config(config) as files:
        assert type(files) is AsyncFileStore
        assert files.sync.fsync is False
    async with async_store_from_config({"sqlite": {"path": tmp_path / "a.db"}}) as db:
        assert type(db) is AsyncSQLiteStore
        assert db.sync.path == str(tmp_path / "a.db")
    monkeypatch.chdir(tmp_path)
    async with async_store_from_config({}) as default:
        assert type(default) is AsyncSQLiteStore
    assert (tmp_path / ".tether" / "sessions.db").is_file()


CONFIG_ERRORS: dict[str, tuple[Any, list[str]]] = {
    "unknown-store": (
        {"store": "mongo"},
        ["unknown store 'mongo'", "file, kv-memory, memory, nats, postgres, redis, sqlite"],
    ),
    "unknown-driver": ({"driver": "dynamo"}, ["unknown store 'dynamo'", "file, kv-memory"]),
    "server-store-without-url": ({"store": "redis"}, ["needs redis.url"]),
    "postgres-without-url": ({"driver": "postgres", "postgres": {}}, ["needs postgres.url"]),
    "unknown-file-option": (
        {"store": "file", "file": {"directory": "d", "compress": True}},
        ["['compress']", "directory, lock_timeout, fsync"],
    ),
    "unknown-sqlite-option": (
        {"store": "sqlite", "sqlite": {"path": "x.db", "wal": True}},
        ["['wal']", "path, synchronous, timeout"],
    ),
    "memory-takes-no-options": ({"store": "memory", "memory": {"size": 1}}, ["valid: none"]),
    "sqlite-directory": ({"store": "sqlite", "directory": "d"}, ["['directory']", "path"]),
    "unknown-top-level": (
        {"store": "memory", "backend": "x"},
        ["['backend']", "store (or driver, session_store), url, directory"],
    ),
    "store-driver-disagree": (
        {"store": "file", "driver": "sqlite", "directory": "d"},
        ["store and driver disagree", "'file'", "'sqlite'"],
    ),
    "store-session-store-disagree": (
        {"store": "memory", "session_store": "file"},
        ["store and session_store disagree"],
    ),
    "url-with-store": ({"url": "memory://", "store": "memory"}, ["'url' cannot be combined"]),
    "url-with-section": ({"url": "memory://", "file": {}}, ["['file']"]),
    "file-without-directory": ({"store": "file"}, ["file.directory"]),
    "file-empty-section": ({"store": "file", "file": {}}, ["file.directory"]),
    "list": ([("store", "memory")], ["is a mapping"]),
    "str": ("memory://", ["is a mapping"]),
    "none": (None, ["is a mapping"]),
    "bad-url": ({"url": "memory"}, ["is not a store URL"]),
    "bad-sqlite-value": (
        {"store": "sqlite", "sqlite": {"path": "x.db", "synchronous": "extra"}},
        ["synchronous", "normal, full"],
    ),
    "bad-fsync-value": (
        {"store": "file", "file": {"directory": "d", "fsync": "maybe"}},
        ["fsync", "true or false"],
    ),
}


@pytest.mark.parametrize(("config", "fragments"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
@pytest.mark.parametrize("factory", [store_from_config, async_store_from_config])
def test_bad_config_is_a_configuration_error(
    config: Any,
    fragments: list[str],
    factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        factory(config)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not (tmp_path / "d").exists()  # nothing was created on the way to the error
    assert not (tmp_path / "x.db").exists()


def test_config_is_not_mutated(tmp_path: Path) -> None:
    config: dict[str, Any] = {"driver": "file", "file": {"directory": tmp_path, "fsync": False}}
    snapshot = {"driver": "file", "file": {"directory": tmp_path, "fsync": False}}
    with store_from_config(config):
        pass
    assert config == snapshot


def test_config_accepts_any_mapping(tmp_path: Path) -> None:
    class ReadOnly(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> Any:
            return self._data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    with store_from_config(ReadOnly({"store": "file", "directory": tmp_path})) as store:
        assert type(store) is FileStore


# --- the public API ----------------------------------------------------------------------------

EXPECTED_ALL = [
    "Action",
    "AlreadyClaimed",
    "AlreadyRunning",
    "AppendMessages",
    "ApprovalExpired",
    "AsyncSessions",
    "AsyncStore",
    "ChangeOptions",
    "ClearHistory",
    "ConfigurationError",
    "ConflictError",
    "ConflictingSessionIds",
    "CorruptSession",
    "DecryptionError",
    "DEFAULT_URL",
    "DeleteState",
    "Draft",
    "DuplicateItemKey",
    "Fork",
    "HistoryItem",
    "HookContext",
    "HookStage",
    "InvalidRequest",
    "InvalidSessionData",
    "InvalidSessionId",
    "InvalidToken",
    "KeyedItem",
    "Lease",
    "LeaseLost",
    "LockTimeout",
    "MissingAbility",
    "MissingKey",
    "MissingSnapshot",
    "MissingStore",
    "MissingTools",
    "ModelError",
    "Page",
    "PlaintextFound",
    "ReservedStateKey",
    "Resume",
    "ReviewMismatch",
    "Session",
    "SessionExists",
    "SessionHeader",
    "SessionNotFound",
    "SessionStatus",
    "Sessions",
    "SetState",
    "Store",
    "StoredItem",
    "StoreError",
    "StoreUnavailable",
    "Suspend",
    "TamperedCiphertext",
    "TetherError",
    "TurnCheckpointed",
    "TurnInProgress",
    "UnknownKeyId",
    "UnsupportedSchemaVersion",
    "WriteMetadata",
    "__version__",
    "async_store_from_config",
    "new_session_id",
    "open_async_store",
    "open_store",
    "register_store",
    "store_from_config",
    "validate_session_id",
]


def test_public_names_are_pinned() -> None:
    assert sorted(tether.__all__) == sorted(EXPECTED_ALL)
    assert len(set(tether.__all__)) == len(tether.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    assert getattr(tether, name) is not None
    namespace: dict[str, Any] = {}
    exec(f"from tether import {name}", namespace)
    assert namespace[name] is getattr(tether, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, Any] = {}
    exec("from tether import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


def test_version_matches_the_distribution() -> None:
    assert tether.__version__ == importlib.metadata.version("tether")


FORBIDDEN_ON_IMPORT = ["tether.stores.sqlite", "tether.stores.file", "sqlite3", "redis", "psycopg"]

_PROBE = """
import json, sys
import tether
before = [m for m in {forbidden!r} if m in sys.modules]
store = tether.open_store("sqlite:///" + sys.argv[1])
store.close()
after = [m for m in {forbidden!r} if m in sys.modules]
print(json.dumps({{"before": before, "after": after}}))
"""


def test_import_tether_imports_no_store_module_or_driver(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_URL"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE.format(forbidden=FORBIDDEN_ON_IMPORT),
            str(tmp_path / "probe.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert report["before"] == []
    # the probe can see an import: opening a SQLite store does import these
    assert {"tether.stores.sqlite", "sqlite3"} <= set(report["after"])


# --- the error tree ----------------------------------------------------------------------------

ERROR_NAMES: list[str] = list(tether.errors.__all__)


def _error(name: str) -> type[BaseException]:
    cls = getattr(tether.errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, BaseException)
    return cls


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_every_error_is_a_tether_error_and_public(name: str) -> None:
    cls = _error(name)
    assert issubclass(cls, TetherError)
    assert getattr(tether, name) is cls


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_every_error_appears_in_the_docstring_tree(name: str) -> None:
    doc = tether.errors.__doc__ or ""
    assert re.search(rf"(^\s*|── ){name}\b", doc, re.MULTILINE), name


def _docstring_tree() -> dict[str, str | None]:
    """child -> parent, read from the box-drawing tree in the module docstring."""
    lines = (tether.errors.__doc__ or "").splitlines()
    root_line = next(line for line in lines if line.strip() == "TetherError")
    root_col = root_line.index("TetherError")
    parents: dict[str, str | None] = {"TetherError": None}
    stack = ["TetherError"]
    for line in lines:
        match = re.search(r"[├└]── (\w+)", line)
        if not match:
            continue
        depth = (match.start() - root_col) // 4 + 1
        del stack[depth:]
        parents[match.group(1)] = stack[-1]
        stack.append(match.group(1))
    return parents


def test_docstring_tree_matches_the_class_hierarchy() -> None:
    tree = _docstring_tree()
    assert sorted(tree) == sorted(ERROR_NAMES)
    for name, parent in tree.items():
        cls = _error(name)
        if parent is None:
            assert cls.__bases__ == (Exception,)
        else:
            assert _error(parent) in cls.__bases__, (name, parent)


def test_specific_relations() -> None:
    assert issubclass(SessionExists, ConflictError)
    assert issubclass(InvalidSessionData, InvalidRequest)
    assert issubclass(InvalidSessionData, ValueError)
    assert issubclass(InvalidRequest, ValueError)
    assert issubclass(LockTimeout, StoreError)
    assert not issubclass(InvalidSessionId, InvalidRequest)
    assert not issubclass(SessionNotFound, ConflictError)
    assert not issubclass(ConflictError, ValueError)


def test_conflict_error_message() -> None:
    err = ConflictError("sess-1", 3, 4)
    message = str(err)
    assert "'sess-1'" in message
    assert "version 3" in message
    assert "version 4" in message
    assert "reload" in message
    assert "Nothing was written" in message
    assert (err.session_id, err.expected_version, err.actual_version) == ("sess-1", 3, 4)
    assert str(ConflictError("s", 1, 2, "custom text")) == "custom text"


def test_session_exists_message() -> None:
    err = SessionExists("sess-2", 5)
    message = str(err)
    assert "'sess-2'" in message
    assert "already exists" in message
    assert "delete it first" in message
    assert (err.session_id, err.expected_version, err.actual_version) == ("sess-2", 0, 5)


def test_session_not_found_message() -> None:
    err = SessionNotFound("sess-3")
    message = str(err)
    assert "'sess-3'" in message
    assert "not found" in message
    assert "create it first" in message
    assert err.session_id == "sess-3"


def test_corrupt_session_message() -> None:
    err = CorruptSession("sess-4", "header is truncated")
    message = str(err)
    assert "'sess-4'" in message
    assert "header is truncated" in message
    assert "delete it" in message
    assert "backup" in message
    assert (err.session_id, err.detail) == ("sess-4", "header is truncated")


def test_unsupported_schema_version_message() -> None:
    err = UnsupportedSchemaVersion("sess-5", 7, 1)
    message = str(err)
    assert "'sess-5'" in message
    assert "schema version 7" in message
    assert "up to 1" in message
    assert "upgrade tether" in message
    assert (err.session_id, err.found, err.supported) == ("sess-5", 7, 1)


def test_invalid_session_id_message() -> None:
    err = InvalidSessionId("a/b", "it contains '/'")
    assert "'a/b'" in str(err)
    assert "pass no id" in str(err)
    assert err.session_id == "a/b"


# --- the Session model -------------------------------------------------------------------------


def test_session_defaults() -> None:
    session = Session()
    assert validate_session_id(session.id) == session.id
    assert uuid.UUID(session.id).version == 7
    assert Session().id != session.id
    assert session.version == 0
    assert session.status is SessionStatus.NEW
    assert session.schema_version == schema.current
    assert session.history == []
    assert session.first_seq == 1
    assert (session.created_at, session.updated_at, session.expires_at) == (None, None, None)


@pytest.mark.parametrize(
    "kwargs", [{"id": "../x"}, {"id": ""}, {"id": "a/b"}, {"parent_id": ".hidden"}]
)
def test_session_bad_ids_raise_invalid_session_id(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidSessionId) as info:
        Session(**kwargs)
    assert not isinstance(info.value, pydantic.ValidationError)


@pytest.mark.parametrize("field", ["expires_at", "created_at", "updated_at"])
def test_session_rejects_naive_datetimes(field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        Session(**{field: datetime(2030, 1, 1)})


def test_session_rejects_unknown_fields_and_statuses() -> None:
    with pytest.raises(pydantic.ValidationError):
        Session(**{"bogus": 1})
    with pytest.raises(pydantic.ValidationError):
        Session(status="sleeping")
    assert Session(status="running").status is SessionStatus.RUNNING


@pytest.mark.parametrize(
    ("last_seq", "history_len", "first_seq"), [(0, 0, 1), (10, 4, 7), (5, 0, 6), (3, 3, 1)]
)
def test_first_seq(last_seq: int, history_len: int, first_seq: int) -> None:
    assert Session(last_seq=last_seq, history_len=history_len).first_seq == first_seq


def _full_session() -> Session:
    return Session(
        id="sess:full-1",
        owner="ada",
        agent="support",
        status=SessionStatus.WAITING,
        metadata={"channel": "web", "tags": ["a", "b"], "n": None},
        state={"counter": 2, "nested": {"x": [1.5, True]}},
        options={"model": "m", "system_prompt": "be brief ✓"},
        parent_id="parent-1",
        fork_seq=4,
        version=3,
        created_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc),
        updated_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
        last_seq=9,
        history_len=2,
        history=[
            {"role": "user", "content": "héllo", "seq": 8, "timestamp": "2024-05-01T12:00:00Z"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}], "seq": 9},
        ],
    )


def test_header_drops_history() -> None:
    session = _full_session()
    header = session.header
    assert type(header) is SessionHeader
    assert not hasattr(header, "history")
    assert "history" not in header.model_dump()
    expected = session.model_dump()
    del expected["history"]
    assert header.model_dump() == expected
    assert header.first_seq == 8


def test_session_json_round_trip() -> None:
    session = _full_session()
    again = Session.model_validate_json(session.model_dump_json())
    assert again == session
    assert again.status is SessionStatus.WAITING
    assert again.updated_at is not None
    assert again.updated_at.utcoffset() == timedelta(hours=2)
    assert again.history == session.history
    header = SessionHeader.model_validate_json(session.header.model_dump_json())
    assert header == session.header


def test_sqlite3_is_importable_for_this_suite() -> None:
    # the import probe above is only meaningful if the driver exists in this interpreter
    assert sqlite3.sqlite_version
