"""PostgreSQL connections, with no I/O of their own: what a driver error means, and whether an
idle pooled connection still has its server."""

from __future__ import annotations

import re
import select
from typing import Final

import psycopg
from psycopg import pq

from ..._urls import scrub
from ...errors import (
    ConfigurationError,
    StoreError,
    StoreUnavailable,
    TetherError,
)

# --- errors --------------------------------------------------------------------------------------

# SQLSTATE classes that mean "the server cannot serve this connection": connection exceptions,
# and the server shutting down, crashing or starting up.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def is_connection_error(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(_UNAVAILABLE_STATES)


def driver_error(exc: psycopg.Error, where: str, what: str) -> StoreError:
    """The tether error for a driver error during ``what`` (raise it ``from exc``)."""
    if is_connection_error(exc):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(
            f"PostgreSQL at {where} is unavailable ({what}: {detail}). Check that the server "
            "is running and reachable; retry when it is back. If this was a write, it may or "
            "may not have been applied: reload the session before you retry it."
        )
    return StoreError(f"PostgreSQL {what} on {where} failed: {exc}")


# What a server says when it refuses a connection for a reason that every retry will meet
# again: the URL names a database, user or password it does not have. libpq gives these
# without a SQLSTATE, so the text decides (the server's own words, English unless its
# lc_messages is set otherwise; an unrecognized refusal stays StoreUnavailable).
_PERMANENT_REFUSALS = re.compile(
    r'database ".*" does not exist|role ".*" does not exist|password authentication failed|'
    r"no password supplied|password is required|no pg_hba\.conf entry|"
    r"authentication failed|permission denied for database|server does not support SSL",
    re.IGNORECASE,
)


def connect_error(exc: psycopg.Error, where: str, conninfo: str) -> TetherError:
    """The tether error for a failed first connection (raise it ``from exc``): a
    :class:`ConfigurationError` when the server refused what the URL says (retrying cannot
    help), else what :func:`driver_error` says. Never quotes the password."""
    text = scrub(str(exc).strip(), conninfo)
    if isinstance(exc, psycopg.OperationalError) and _PERMANENT_REFUSALS.search(text):
        reason = text.rpartition("FATAL:")[2].strip() or text
        reason = " ".join(reason.split())
        return ConfigurationError(
            f"PostgreSQL at {where} refused the connection: {reason}. Fix the store URL "
            "(host, database, user, password) or create what it names; retrying will not help."
        )
    return driver_error(exc, where, "connect")


def pool_timeout_error(where: str, timeout: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"PostgreSQL at {where} is unavailable: no connection within {timeout:g} s "
        "(pool_timeout). The server is down, unreachable or refusing connections, or every "
        "pooled connection is busy (raise pool_max_size). Nothing was written; retry later."
    )


def idle_connection_alive(pgconn: pq.abc.PGconn) -> bool:
    """Whether an idle pooled connection still has its server, found out with no round trip.

    An idle connection has nothing to read. One whose server went away has: the server's
    goodbye (an error message) and then EOF. Reading until EOF makes libpq mark it bad.
    """
    for _ in range(3):
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if not _socket_readable(pgconn.socket):
            return True
        try:
            pgconn.consume_input()
        except psycopg.OperationalError:  # EOF: the server closed the connection
            return False
    return False  # it keeps talking while idle: do not trust it


def _socket_readable(fd: int) -> bool:
    """A poll with no wait: is there anything (data, EOF, an error) to read on ``fd``?"""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows has no poll()
    return bool(readable)


# Every connection tether opens runs this first. Its statements name their tables by schema, but
# operators and functions (=, ||, *, now(), substr, ...) are resolved through the connection's
# search_path, which by default includes "public" and whatever the server or role adds. Anyone
# who can create objects in such a schema could plant an operator that matches tether's
# argument types better than pg_catalog's (an `||(text, bigint)`, a `*(numeric, integer)`) and
# have it run with tether's privileges (CVE-2018-1058). With only pg_catalog (and the session's
# own temporary schema, last) on the path, nothing else is ever looked up.
SAFE_SEARCH_PATH: Final = b"SET search_path = pg_catalog, pg_temp"
