"""The Redis store's URL and options (no I/O), and what a server's refusal means."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlunsplit

from ..._ids import validate_session_id
from ..._urls import Option, StoreOptions, as_float, as_positive_float, parse_store_url, redact
from ...errors import (
    ConfigurationError,
    InvalidSessionId,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
LIST_BUDGET = 1000
"""Index entries one list script may examine before it returns and the client resumes it:
bounds how long a selective listing can hold the Redis server (a few ms per script call)."""


def check_namespace(namespace: object) -> str:
    """A namespace follows the session id rules: safe inside a key and a SCAN MATCH pattern."""
    try:
        return validate_session_id(namespace)
    except InvalidSessionId as exc:
        raise ConfigurationError(
            f"namespace {namespace!r} is not valid: use 1-128 characters from [A-Za-z0-9._:-], "
            "not starting with '.'"
        ) from exc


def ttl_millis(ttl: float | timedelta | None) -> int:
    """The store-wide idle expiry in milliseconds (0: none)."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ConfigurationError(f"ttl must be seconds >= 0 (0 or None: no expiry), not {ttl!r}")
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


# The store's options, declared once: RedisStore.from_url and store_from_config's "redis"
# section both read this table, and the defaults below are its defaults.
OPTIONS = StoreOptions(
    Option("namespace", check_namespace, "default", "keeps apps (and tests) apart"),
    Option("ttl", as_float, 0.0, "seconds without a write before a session expires (0: never)"),
    Option(
        "socket_timeout",
        as_positive_float,
        5.0,
        "seconds a reply may take before the call fails with StoreUnavailable",
    ),
    Option(
        "socket_connect_timeout",
        as_positive_float,
        2.0,
        "seconds to open a connection before the call fails with StoreUnavailable",
    ),
)
DEFAULT_NAMESPACE: str = OPTIONS.options["namespace"].default
SOCKET_TIMEOUT: float = OPTIONS.options["socket_timeout"].default
CONNECT_TIMEOUT: float = OPTIONS.options["socket_connect_timeout"].default


@dataclass(frozen=True)
class UrlConfig:
    client_url: str
    """The URL for redis-py: scheme, credentials, host, port and database, no tether options."""
    namespace: str = DEFAULT_NAMESPACE
    ttl: float = 0.0
    socket_timeout: float = SOCKET_TIMEOUT
    socket_connect_timeout: float = CONNECT_TIMEOUT

    def __repr__(self) -> str:  # the client URL may hold a password
        return f"UrlConfig({redact(self.client_url)!r}, namespace={self.namespace!r})"


def parse_url(url: str) -> UrlConfig:
    """``redis://[user:password@]host[:port][/db]?namespace=..&ttl=..`` (or ``rediss://``)."""
    parsed = parse_store_url(url, ("redis", "rediss"), OPTIONS)
    path = parsed.path
    if path not in ("", "/") and not path.lstrip("/").isdigit():
        raise ConfigurationError(
            f"{redact(url)!r}: the path must be a database number (redis://host:6379/0), "
            f"not {path!r}"
        )
    client_url = urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))
    return UrlConfig(client_url=client_url, **parsed.options)


# A server that answers the connection's AUTH or SELECT with one of these answers every retry
# the same way: the URL is wrong (a wrong password, a user without the rights, a database
# number the server does not have), so it is a ConfigurationError, not StoreUnavailable.
_PERMANENT_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "DB index is out of range")


def is_permanent_refusal(exc: Exception) -> bool:
    return any(reply in str(exc) for reply in _PERMANENT_REPLIES)


def refused_error(where: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"Redis at {where} refused the store URL ({str(exc).strip().rstrip('.')}); fix the user, "
        "password or database number in the URL, or the user's ACL; retrying will not help"
    )


def describe_client(kwargs: Mapping[str, Any]) -> str:
    """host:port/db of a client's connection pool, for error messages."""
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
