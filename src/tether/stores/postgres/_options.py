"""The PostgreSQL store's URL and options (no I/O): tether's options, libpq's parameters, the
connection string, and how a server is named in messages (never with its password)."""

from __future__ import annotations

import functools
import re
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from ..._urls import Option, StoreOptions, as_positive_float, as_size, parse_store_url
from ...errors import (
    ConfigurationError,
)

# --- options -------------------------------------------------------------------------------------

# libpq parameters tether sets when the connection string does not: fail fast when the server
# is down (connect_timeout), and notice a server host that vanished without closing its
# sockets, while a request is unanswered (tcp_user_timeout, Linux) or while idle or waiting
# (keepalives: ~25 s); say who is connected (fallback_application_name). All in seconds but
# tcp_user_timeout (milliseconds).
LIBPQ_DEFAULTS: Final = {
    "connect_timeout": "5",
    "tcp_user_timeout": "10000",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "fallback_application_name": "tether",
}
LIBPQ_DOCS = "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"
MIN_SERVER_VERSION = 140000  # extract(epoch ...) is exact (numeric) from PostgreSQL 14

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_schema_name(name: object) -> str:
    """The schema name if it is a plain identifier; it is quoted wherever it is used anyway."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ConfigurationError(
            f"schema {name!r} is not a valid schema name: use 1-63 letters, digits and '_', "
            "not starting with a digit (e.g. schema=tether or schema=app_sessions)"
        )
    if name.lower().startswith("pg_"):
        raise ConfigurationError(f"schema {name!r}: names starting with 'pg_' are reserved")
    return name


@functools.cache
def libpq_keywords() -> frozenset[str]:
    """Every connection parameter the installed libpq knows (no I/O: a static table)."""
    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


# The store's options, declared once: PostgresStore.from_url and store_from_config's
# "postgres" section both read this table (and any libpq parameter, handed to libpq).
OPTIONS = StoreOptions(
    Option("schema", check_schema_name, "public", "the schema that holds the store's tables"),
    Option("pool_min_size", as_size, 1, "connections the pool keeps open"),
    Option("pool_max_size", as_size, 10, "connections the pool may open"),
    Option(
        "pool_timeout",
        as_positive_float,
        5.0,
        "seconds a call waits for a pooled connection before StoreUnavailable",
    ),
    passthrough=libpq_keywords,
    passthrough_doc=(
        "any other option must be a libpq connection parameter (sslmode, connect_timeout, "
        f"...: {LIBPQ_DOCS})"
    ),
)
DEFAULT_SCHEMA: str = OPTIONS.options["schema"].default
DEFAULT_POOL_MIN_SIZE: int = OPTIONS.options["pool_min_size"].default
DEFAULT_POOL_MAX_SIZE: int = OPTIONS.options["pool_max_size"].default
DEFAULT_POOL_TIMEOUT: float = OPTIONS.options["pool_timeout"].default
"""Seconds a call waits for a pooled connection before StoreUnavailable: short on purpose."""


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into the libpq URL (tether's options removed) and tether's options.

    ``postgresql://user:pw@host:5432/db?schema=app&pool_max_size=20&sslmode=require``: the
    options in :data:`OPTIONS` are tether's; every other one must be a libpq parameter
    and goes to libpq unchanged. Anything else raises :class:`ConfigurationError`.
    """
    parsed = parse_store_url(url, ("postgresql", "postgres"), OPTIONS)
    # quote, not quote_plus: libpq reads %20 as a space but '+' as a plus (options=-c%20...)
    parts = urlsplit(url)
    conninfo = urlunsplit(parts._replace(query=urlencode(parsed.passed, quote_via=quote)))
    check_conninfo(conninfo)
    return conninfo, parsed.options


def check_conninfo(conninfo: str) -> dict[str, str]:
    """Parse a libpq URL or ``key=value`` string (no I/O); ConfigurationError if it is wrong."""
    try:
        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    except psycopg.Error as exc:
        raise ConfigurationError(f"not a valid PostgreSQL connection string: {exc}") from exc


def connection_kwargs(conninfo: str) -> dict[str, Any]:
    """Keyword arguments for every pooled connection: tether's libpq defaults where the
    connection string sets nothing, autocommit, so that one statement is one transaction and
    one round trip (no BEGIN / COMMIT around it), and UTF-8 on the wire whatever the
    connection string or ``PGCLIENTENCODING`` says: tether's texts are Unicode JSON, and in
    another client encoding a text it cannot hold would fail in the driver's encoder, not as
    a tether error (the server still converts to the database's encoding, and says so when it
    cannot)."""
    given = check_conninfo(conninfo)
    kwargs: dict[str, Any] = {k: v for k, v in LIBPQ_DEFAULTS.items() if k not in given}
    kwargs["autocommit"] = True
    kwargs["client_encoding"] = "UTF8"
    return kwargs


def describe(conninfo: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    params = check_conninfo(conninfo)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    user = params.get("user")
    where = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or user or ''}"
    return f"{user}@{where}" if user else where
