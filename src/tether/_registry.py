"""Choosing a store: by URL, by environment, or by a configuration mapping.

Store modules are imported only when their scheme is used, so ``import tether`` never imports
a driver. A store that needs a driver which is not installed names the extra to install.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._urls import StoreOptions, redact
from .errors import ConfigurationError
from .stores.base import AsyncStore, Store

__all__ = [
    "DEFAULT_URL",
    "async_store_from_config",
    "open_async_store",
    "open_store",
    "register_store",
    "store_from_config",
]

DEFAULT_URL = "sqlite:///.tether/sessions.db"
"""The embedded default: a SQLite file under ``.tether/`` in the working directory."""

# scheme -> (sync "module:Class", async "module:Class", extra that installs its driver or None)
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("tether.stores.memory:MemoryStore", "tether.stores.memory:AsyncMemoryStore", None),
    "file": ("tether.stores.file:FileStore", "tether.stores.file:AsyncFileStore", None),
    "sqlite": ("tether.stores.sqlite:SQLiteStore", "tether.stores.sqlite:AsyncSQLiteStore", None),
    "redis": (
        "tether.stores.redis:RedisStore",
        "tether.stores.redis:AsyncRedisStore",
        "redis",
    ),
    "rediss": (
        "tether.stores.redis:RedisStore",
        "tether.stores.redis:AsyncRedisStore",
        "redis",
    ),
    "kv-memory": (
        "tether.stores.kv_memory:DictKVStore",
        "tether.stores.kv_memory:AsyncDictKVStore",
        None,
    ),
    "nats": (
        "tether.stores.nats_sync:NatsStore",
        "tether.stores.nats_async:AsyncNatsStore",
        "nats",
    ),
    "postgresql": (
        "tether.stores.postgres:PostgresStore",
        "tether.stores.postgres:AsyncPostgresStore",
        "postgres",
    ),
    "postgres": (
        "tether.stores.postgres:PostgresStore",
        "tether.stores.postgres:AsyncPostgresStore",
        "postgres",
    ),
}


def register_store(
    scheme: str, sync_class: str, async_class: str, *, extra: str | None = None
) -> None:
    """Make ``scheme://...`` URLs open your store. Classes are given as ``"module:Class"``
    (imported on first use) and must have a ``from_url(url)`` classmethod."""
    if not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme):
        raise ConfigurationError(
            f"scheme {scheme!r} is not a URL scheme: a lowercase letter, then letters, digits, "
            "'+', '-' or '.'"
        )
    _SCHEMES[scheme] = (sync_class, async_class, extra)


def _resolve_url(url: str | None) -> str:
    if url is None:
        url = os.environ.get("TETHER_URL") or DEFAULT_URL
    if not isinstance(url, str) or ":" not in url:
        shown = redact(url) if isinstance(url, str) else url
        raise ConfigurationError(
            f"{shown!r} is not a store URL; use one of: memory://, file:///abs/dir, "
            "file:relative/dir, sqlite:///relative.db, sqlite:////abs/path.db"
        )
    return url


def _load_class(url: str, index: int) -> Any:
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unknown store scheme {scheme!r} in {redact(url)!r}; valid schemes: "
            f"{', '.join(sorted(_SCHEMES))} (or register_store() your own)"
        )
    sync_target, async_target, extra = _SCHEMES[scheme]
    target = async_target if index else sync_target
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" Install it with: pip install 'tether[{extra}]'" if extra else ""
        raise ConfigurationError(
            f"the {scheme} store needs a package that is not installed ({exc.name}).{hint}"
        ) from exc
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ConfigurationError(
            f"the {scheme} store is registered as {target!r}, but {module_name} has no "
            f"{class_name}; fix the register_store() call"
        ) from None


def _open(cls: Any, url: str, create: bool) -> Any:
    if create:
        return cls.from_url(url)
    try:
        takes_create = "create" in inspect.signature(cls.from_url).parameters
    except (TypeError, ValueError):
        takes_create = False
    # A store that cannot tell "missing" from "empty" (memory, the servers, most of your own)
    # opens as usual.
    return cls.from_url(url, create=False) if takes_create else cls.from_url(url)


_KEYS_ENV = "encryption_keys_env"
"""The URL option (and configuration key) naming the environment variable with the keyring."""


def _split_keys_env(url: str) -> tuple[str, str | None]:
    """``url`` without its ``encryption_keys_env=NAME`` option, and NAME (None if absent).
    The option is tether's, not the store's, so it is taken out before the store sees it."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    kept: list[str] = []
    names: list[str] = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        (names if name == _KEYS_ENV else kept).append(value if name == _KEYS_ENV else part)
    if not names:
        return url, None
    if len(names) > 1 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", names[0]):
        raise ConfigurationError(
            f"{_KEYS_ENV} must appear once and name an environment variable ([A-Za-z_] then "
            f"[A-Za-z0-9_]), not {names!r}"
        )
    return base + (f"?{'&'.join(kept)}" if kept else ""), names[0]


def _keyring(keys: Any, env: str | None) -> Any:
    """The keyring to encrypt with (None: no encryption), before the store is opened."""
    if keys is None and env is None:
        return None
    if keys is not None and env is not None:
        raise ConfigurationError(
            f"keys= and the URL's {_KEYS_ENV}={env} both give keys: pass one of them"
        )
    from .encryption_codec import Keyring, resolve_keys

    return Keyring.from_env(env) if env is not None else resolve_keys(keys)


def _wrap(store: Any, ring: Any, asynchronous: bool) -> Any:
    """The store, encrypted at rest when there is a keyring."""
    if ring is None:
        return store
    if asynchronous:
        from .encryption_async import AsyncEncryptedStore

        return AsyncEncryptedStore(store, ring)
    from .encryption_sync import EncryptedStore

    return EncryptedStore(store, ring)


def open_store(url: str | None = None, *, create: bool = True, keys: Any = None) -> Store:
    """Open the store a URL names; ``TETHER_URL`` if no URL is given, else the SQLite default.

    ``memory://``, ``file:///abs/dir`` or ``file:relative/dir``, ``sqlite:///relative.db`` or
    ``sqlite:////abs/path.db``; options go in the query string (``?synchronous=full``). ``~``
    at the start of a file or SQLite path is the home directory.

    ``create=False`` is for readers: a SQLite database or file store directory that does not
    exist raises :class:`ConfigurationError` instead of being created empty. Stores whose
    ``from_url`` takes no ``create`` argument (memory, Redis, PostgreSQL) open as usual.

    Encryption at rest (``docs/encryption.md``): ``keys=`` (a ``tether.encryption.Keyring``,
    or a callable returning one) or ``?encryption_keys_env=NAME`` in the URL (the keyring in
    environment variable NAME) returns the store wrapped in an ``EncryptedStore``.
    """
    url, env = _split_keys_env(_resolve_url(url))
    ring = _keyring(keys, env)
    store: Store = _wrap(_open(_load_class(url, 0), url, create), ring, False)
    return store


def open_async_store(
    url: str | None = None, *, create: bool = True, keys: Any = None
) -> AsyncStore:
    """The async twin of :func:`open_store`: same URLs and keys, an :class:`AsyncStore`."""
    url, env = _split_keys_env(_resolve_url(url))
    ring = _keyring(keys, env)
    store: AsyncStore = _wrap(_open(_load_class(url, 1), url, create), ring, True)
    return store


_STORE_KEYS = ("store", "driver", "session_store")

# A configuration section per store: where the store declares its options ("module:NAME", a
# tether._urls.StoreOptions that its from_url reads too, so an option is accepted in a URL and
# in a configuration alike), its URL scheme, and the section key that gives the URL's base
# (None: the URL has none). A server store's base is its server URL.
_CONFIG_KINDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("tether._urls:MEMORY_OPTIONS", "memory", None),
    "kv-memory": ("tether._urls:KV_MEMORY_OPTIONS", "kv-memory", None),
    "file": ("tether._urls:FILE_OPTIONS", "file", "directory"),
    "sqlite": ("tether._urls:SQLITE_OPTIONS", "sqlite", "path"),
    "redis": ("tether.stores.redis._options:OPTIONS", "redis", "url"),
    "postgres": ("tether.stores.postgres._options:OPTIONS", "postgresql", "url"),
    "nats": ("tether._urls:NATS_OPTIONS", "nats", "url"),
}


def store_options(kind: str) -> StoreOptions:
    """The options a configuration section (and the store's URL) takes, as the store declares
    them. Raises ConfigurationError for an unknown kind or a driver that is not installed."""
    if kind not in _CONFIG_KINDS:
        raise ConfigurationError(
            f"unknown store {kind!r}; valid stores: {', '.join(sorted(_CONFIG_KINDS))} "
            "(or give a 'url')"
        )
    module_name, _, name = _CONFIG_KINDS[kind][0].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {kind} store needs a package that is not installed ({exc.name}). Install it "
            f"with: pip install 'tether[{kind}]'"
        ) from exc
    table: StoreOptions = getattr(module, name)
    return table


def config_to_url(config: Mapping[str, Any]) -> str:
    """The store URL a configuration mapping describes (see :func:`store_from_config`)."""
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"a store configuration is a mapping, not {type(config)}")
    config = dict(config)
    env = config.pop(_KEYS_ENV, None)
    url = _config_url(config)
    if env is None:
        return url
    _split_keys_env(f"x:?{_KEYS_ENV}={env}")  # checks the name
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}{_KEYS_ENV}={env}"


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _config_url(config: dict[str, Any]) -> str:
    if "url" in config:
        url = config.pop("url")
        if config:
            raise ConfigurationError(f"'url' cannot be combined with {sorted(config)}")
        return _resolve_url(url)
    names = [key for key in _STORE_KEYS if key in config]
    kinds = {config[key] for key in names}
    if len(kinds) > 1:
        raise ConfigurationError(f"{' and '.join(names)} disagree: {sorted(map(str, kinds))}")
    kind = config.pop(names[0]) if names else "sqlite"
    for key in names[1:]:
        config.pop(key)
    table = store_options(kind)
    _, scheme, base_key = _CONFIG_KINDS[kind]
    options = dict(config.pop(kind, None) or {})
    if "directory" in config:  # the seeds' top-level alias for file.directory
        options.setdefault("directory", config.pop("directory"))
    leftover = set(config) - set(_CONFIG_KINDS)
    if leftover:
        raise ConfigurationError(
            f"unknown configuration keys {sorted(leftover)}; valid keys: store (or driver, "
            f"session_store), url, directory, and one section named after the store"
        )
    valid = ([base_key] if base_key else []) + list(table)
    unknown = [
        key for key in options if key not in valid and not table.passes(key)
    ]  # a driver's own option (libpq's sslmode) passes as it would in the URL
    if unknown:
        extra = f", and {table.passthrough_doc}" if table.passthrough_doc else ""
        raise ConfigurationError(
            f"unknown {kind} options {sorted(unknown)}; valid: {', '.join(valid) or 'none'}{extra}"
        )
    query = "&".join(
        f"{key}={quote(_option_text(value))}" for key, value in options.items() if key != base_key
    )
    if base_key == "url":
        if "url" not in options:
            raise ConfigurationError(f"the {kind} store needs {kind}.url (its server URL)")
        base = str(options["url"])
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}{query}" if query else base
    suffix = f"?{query}" if query else ""
    if base_key is None:
        return f"{scheme}://{suffix}"
    if kind == "file":
        if "directory" not in options:
            raise ConfigurationError("the file store needs file.directory (or directory)")
        return f"file:{quote(str(Path(options['directory'])))}{suffix}"
    path = Path(options.get("path", ".tether/sessions.db"))
    return f"sqlite:///{quote(str(path))}{suffix}"


def store_from_config(config: Mapping[str, Any]) -> Store:
    """Open a store from a configuration mapping, in the seeds' shape::

        {"store": "file", "file": {"directory": "var/sessions"}}
        {"store": "sqlite", "sqlite": {"path": "app.db", "synchronous": "full"}}
        {"store": "memory"}
        {"store": "postgres", "postgres": {"url": "postgresql://db/app", "pool_max_size": 20}}
        {"url": "sqlite:///app.db"}

    ``"encryption_keys_env": "NAME"`` beside any of these encrypts the store at rest with the
    keyring in environment variable NAME (``docs/encryption.md``). A section takes the options
    its store's URL takes (``store_options(kind)``; PostgreSQL's libpq parameters too), plus
    ``directory`` (file), ``path`` (SQLite) or ``url`` (Redis, PostgreSQL, NATS). ``driver`` and
    ``session_store`` are accepted for ``store``, and a top-level ``directory``
    for ``file.directory``. With no store named, the SQLite default is used.
    """
    return open_store(config_to_url(config))


def async_store_from_config(config: Mapping[str, Any]) -> AsyncStore:
    """The async twin of :func:`store_from_config`."""
    return open_async_store(config_to_url(config))
