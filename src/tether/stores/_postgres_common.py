"""The PostgreSQL store's shared parts, with no I/O: SQL text, migrations, URLs, rows, errors.

``postgres_async.py`` (hand-written) and ``postgres_sync.py`` (generated from it) only move
bytes; every statement they send and every rule they apply to its answer lives here, once.

Every statement names its tables as ``{schema}.table``; :class:`Statements` renders them for
one schema, quoted by :class:`psycopg.sql.Identifier` after :func:`check_schema_name` accepted
the name. Every value is a bound parameter.
"""

from __future__ import annotations

import hashlib
import re
import select
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from .. import _core, _json
from .._time import from_micros
from .._urls import redact, scrub
from ..errors import (
    ConfigurationError,
    ConflictError,
    CorruptSession,
    InvalidRequest,
    InvalidSessionData,
    LeaseLost,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    TetherError,
)
from ..models import KeyedItem, Lease
from ..schema import schema

# --- options -------------------------------------------------------------------------------------

DEFAULT_SCHEMA = "public"
DEFAULT_POOL_MIN_SIZE = 1
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_POOL_TIMEOUT = 5.0
"""Seconds a call waits for a pooled connection before StoreUnavailable: short on purpose."""

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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must be an integer >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text!r} must be a number of seconds > 0")
    return value


TETHER_OPTIONS: Final = {
    "schema": check_schema_name,
    "pool_min_size": _positive_int,
    "pool_max_size": _positive_int,
    "pool_timeout": _positive_float,
}


def libpq_keywords() -> frozenset[str]:
    """Every connection parameter the installed libpq knows (no I/O: a static table)."""
    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into the libpq URL (tether's options removed) and tether's options.

    ``postgresql://user:pw@host:5432/db?schema=app&pool_max_size=20&sslmode=require``: the
    options in :data:`TETHER_OPTIONS` are tether's; every other one must be a libpq parameter
    and goes to libpq unchanged. Anything else raises :class:`ConfigurationError`.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a PostgreSQL store URL is a str, not {type(url)}")
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"expected a postgresql:// (or postgres://) URL, got {redact(url)!r}"
        )
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse the options of {redact(url)!r}: {exc}") from exc
    options: dict[str, Any] = {}
    passed: list[tuple[str, str]] = []
    known = libpq_keywords()
    for name, text in pairs:
        if name in TETHER_OPTIONS:
            if name in options:
                raise ConfigurationError(f"option {name} is given twice in {redact(url)!r}")
            try:
                options[name] = TETHER_OPTIONS[name](text)
            except (ValueError, ConfigurationError) as exc:
                raise ConfigurationError(f"option {name} in {redact(url)!r}: {exc}") from exc
        elif name in known:
            passed.append((name, text))
        else:
            raise ConfigurationError(
                f"unknown option {name!r} in {redact(url)!r}; tether's options for postgresql "
                f"are {', '.join(sorted(TETHER_OPTIONS))}, and any other option must be a "
                f"libpq connection parameter (sslmode, connect_timeout, ...: {LIBPQ_DOCS})"
            )
    # quote, not quote_plus: libpq reads %20 as a space but '+' as a plus (options=-c%20...)
    conninfo = urlunsplit(parts._replace(query=urlencode(passed, quote_via=quote)))
    check_conninfo(conninfo)
    return conninfo, options


def check_conninfo(conninfo: str) -> dict[str, str]:
    """Parse a libpq URL or ``key=value`` string (no I/O); ConfigurationError if it is wrong."""
    try:
        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    except psycopg.Error as exc:
        raise ConfigurationError(f"not a valid PostgreSQL connection string: {exc}") from exc


def connection_kwargs(conninfo: str) -> dict[str, Any]:
    """Keyword arguments for every pooled connection: tether's libpq defaults where the
    connection string sets nothing, and autocommit, so that one statement is one transaction
    and one round trip (no BEGIN / COMMIT around it)."""
    given = check_conninfo(conninfo)
    kwargs: dict[str, Any] = {k: v for k, v in LIBPQ_DEFAULTS.items() if k not in given}
    kwargs["autocommit"] = True
    return kwargs


def describe(conninfo: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    params = check_conninfo(conninfo)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    user = params.get("user")
    where = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or user or ''}"
    return f"{user}@{where}" if user else where


def lock_key(schema_name: str) -> int:
    """The advisory lock that serializes migrations of one schema, as a signed 64-bit key."""
    digest = hashlib.blake2b(f"tether-migrations:{schema_name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


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


# --- values --------------------------------------------------------------------------------------


def check_text(name: str, value: str | None, error: type[InvalidRequest]) -> None:
    """PostgreSQL text cannot hold NUL or unpaired surrogates: refuse them before any I/O."""
    if value is None:
        return
    if "\x00" in value:
        raise error(f"{name} contains a NUL character, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{name} is not valid Unicode text ({exc})") from exc


def cannot_merge_block(params: Mapping[str, Any], exc: StoreError) -> bool:
    """Whether a commit failed only because the statement could not read the stored state to
    keep its runtime block: PostgreSQL's json operators decode strings, and refuse "\\u0000"
    (SQLSTATE 22P05). Nothing was written; the store then merges the block client-side."""
    return bool(params.get("keep_block")) and isinstance(
        exc.__cause__, psycopg.errors.UntranslatableCharacter
    )


def encode_new_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> tuple[list[str], list[bool], list[str | None]]:
    """Check and encode items to append: their JSON texts, which need a timestamp, and their
    keys (None for an item without one).

    The statement that stores them puts ``seq`` (and a missing timestamp) in front of each
    one: only it knows the session's ``last_seq`` and the server's time. The texts are never
    "{}" (a row always has its "item"), so the statement can splice after the "{".
    """
    encoded = _core.encode_unnumbered_items(items)
    keys: list[str | None] = [None] * len(encoded)
    for key, offset in encoded.keys:
        keys[offset] = key
    return [data.decode() for _, data in encoded], [stamp for stamp, _ in encoded], keys


def write_params(
    session_id: str,
    expected_version: int | None,
    lease: Lease | None,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    now: datetime | None,
) -> dict[str, Any]:
    """The parameters every versioned write (commit, replace_history, replace_tail, a blind
    append with ``expected_version`` None) starts from: the session, the version and lease it
    expects, and its new items (see encode_new_items)."""
    texts, stamps, keys = encode_new_items(items)
    return {
        "id": session_id,
        "version": expected_version,
        "now": now,
        "schema": schema.current,
        "token": None if lease is None else lease.token,
        "n": len(texts),
        "items": texts,
        "stamps": stamps,
        "item_keys": keys,
    }


def changes_params(changes: _core.Doc) -> dict[str, Any]:
    """The ``set_<field>`` / ``<field>`` parameters of a write's header changes."""
    params: dict[str, Any] = {}
    for name in sorted(_core.CHANGEABLE_FIELDS):
        given = name in changes
        value = changes.get(name)
        if given and name in _core.JSON_FIELDS:
            value = json_text(value, name)
        elif name == "expires_at":
            value = as_time(value)
        params[f"set_{name}"] = given
        params[name] = value
    # replacing state keeps the runtime's block: the statement merges it (see COMMIT)
    params["keep_block"] = _core.needs_runtime_block(changes)
    params.update(metadata_rows(changes.get("metadata") or {}))
    return params


def is_duplicate_key(exc: StoreError) -> bool:
    """Whether a write failed on tether_item_keys' primary key (a key the session holds)."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.UniqueViolation) and (
        cause.diag.constraint_name == "tether_item_keys_pkey"
    )


def judge_tail(
    session_id: str, found: Found, expected_version: int, lease: Lease | None, after: int
) -> None:
    """replace_tail: the checks of a write, then ``after`` within the history."""
    judge_write(session_id, found, expected_version, lease)
    assert found is not None
    _core.items_kept(found[0], after, "replace_tail")


def stored_items(
    texts: Sequence[str], stamps: Sequence[bool], first_seq: int, iso: str
) -> list[Any]:  # the rows create stored (keyed items are refused there)
    """The items as the create statement stored them, decoded afresh (copies for the caller)."""
    items = []
    for offset, (text, stamp) in enumerate(zip(texts, stamps, strict=True)):
        item = _json.loads(text)
        item["seq"] = first_seq + offset
        if stamp:
            item["timestamp"] = iso
        items.append(item)
    return items


def json_text(value: Any, what: str) -> str:
    return _json.dumps(value, what=what).decode()


def metadata_rows(metadata: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The rows of the metadata index for a session: key, value, and their hash.

    Keys are stored as JSON strings (so any key, even one holding a NUL, fits in a text
    column) and values as canonical JSON, so equal JSON values are equal strings. The index is
    on the 64-bit hash of both: a btree cannot hold entries larger than ~2.7 kB, and a long
    metadata value must not make a write fail.
    """
    keys, values, hashes = [], [], []
    for key, value in _core.metadata_index(metadata):
        key_json = json_text(key, "metadata key")
        keys.append(key_json)
        values.append(value)
        hashes.append(kv_hash(key_json, value))
    return {"meta_keys": keys, "meta_values": values, "meta_hashes": hashes}


def kv_hash(key_json: str, value_json: str) -> int:
    # a JSON string token has one end, so key_json + value_json is unambiguous
    digest = hashlib.blake2b((key_json + value_json).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def as_time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


# --- rows ----------------------------------------------------------------------------------------

Found = tuple[_core.Doc, int] | None
"""A session's stored header document (with its lease token) and the statement's now, or
None when no row has the id."""


def decode_header(session_id: str, text: str) -> _core.Doc:
    try:
        doc = _json.loads(text)
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"its header is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CorruptSession(session_id, "its header is not a JSON object")
    return doc


def cursor_fields(text: str) -> tuple[int, str]:
    """(updated_at, id) of a listed header: where the next page starts."""
    doc = decode_header("(listed)", text)
    return int(doc["updated_at"]), str(doc["id"])


def decode_found(session_id: str, row: Sequence[Any] | None) -> Found:
    """The answer of :data:`SNAPSHOT` / :data:`SNAPSHOT_FOR_UPDATE`."""
    if row is None:
        return None
    doc = decode_header(session_id, row[0])
    doc["lease_token"] = row[1]
    return doc, int(row[2])


# --- why a guarded statement changed nothing -----------------------------------------------------
# A guarded statement that matches no row says nothing about why. These read the session as it
# is now and raise the error that explains it; returning means nothing does (the session
# changed in between, or it needs an upgrade first), and the store retries under a row lock.


def _live(session_id: str, found: Found) -> tuple[_core.Doc, int]:
    if found is None or not _core.is_live(found[0], found[1]):
        raise SessionNotFound(session_id)
    return found


def judge_write(
    session_id: str, found: Found, expected_version: int | None, lease: Lease | None
) -> None:
    """commit and replace_history: the checks, in the order every store makes them."""
    doc, now = _live(session_id, found)
    _core.check_writable(session_id, doc)
    _core.check_write_lease(doc, lease, now)  # the lease before the version
    if expected_version is not None and doc["version"] != expected_version:
        raise ConflictError(session_id, expected_version, doc["version"])


def judge_create(session_id: str, found: Found) -> None:
    if found is None:
        return  # deleted in between: the locked retry creates it
    doc, now = found
    _core.check_writable(session_id, doc)
    if _core.is_live(doc, now):
        raise SessionExists(session_id, doc["version"])


def judge_restore(
    session_id: str, found: Found, replace: bool, expected_version: int | None = None
) -> bool:
    """restore: whether a stored row must go first; raise if it may not be written over (see
    ``_core.restore_over``: the row is locked, so nothing moves until the insert)."""
    if found is None:
        return _core.restore_over(session_id, None, 0, expected_version=expected_version)
    doc, now = found
    return _core.restore_over(
        session_id, doc, now, replace=replace, expected_version=expected_version
    )


def restore_params(doc: _core.Doc, encoded: _core.PreparedItems) -> dict[str, Any]:
    """The parameters of :data:`RESTORE` for the checked document and items of a restore."""
    for name in ("owner", "agent", "lease_owner"):
        check_text(name, doc[name], InvalidSessionData)
    plain = (
        "id", "owner", "agent", "status", "parent_id", "fork_seq", "version", "schema_version",
        "last_seq", "history_len", "lease_owner", "lease_fence",
    )  # fmt: skip
    return {
        **{name: doc[name] for name in plain},
        **{name: json_text(doc[name], name) for name in _core.JSON_FIELDS},
        **{name: as_time(doc[name]) for name in ("created_at", "updated_at", "expires_at")},
        "seqs": [seq for seq, _ in encoded],
        "datas": [data.decode() for _, data in encoded],
        "key_names": [key for key, _ in encoded.keys],
        "key_seqs": [seq for _, seq in encoded.keys],
        **metadata_rows(doc["metadata"]),
    }


def judge_delete(
    session_id: str,
    found: Found,
    expected_version: int | None,
    lease: Lease | None = None,
    force: bool = False,
) -> None:
    """delete: a newer schema is never deleted; a live session follows the lease rules
    (unless ``force``), then conflicts at another version."""
    if found is None:
        return
    doc, now = found
    _core.check_writable(session_id, doc)
    if not _core.is_live(doc, now):
        return
    _core.check_delete_lease(doc, lease, force, now)
    if expected_version not in (None, doc["version"]):
        raise ConflictError(session_id, expected_version, doc["version"])


def judge_claim(session_id: str, found: Found, owner: str) -> None:
    doc, now = _live(session_id, found)
    _core.check_writable(session_id, doc)
    _core.claim_fields(doc, owner, 1, now)  # raises AlreadyClaimed; the fields are not used


def judge_lease(lease: Lease, found: Found) -> None:
    if found is None or not _core.is_live(found[0], found[1]):
        raise LeaseLost(lease.session_id, "the session no longer exists")
    _core.check_lease(found[0], lease, found[1])


# --- SQL -----------------------------------------------------------------------------------------
# Conventions: {schema} is the quoted schema; %(now)s is the injected clock's time or NULL for
# the server's clock (now(): the statement's transaction start, constant within one); times
# leave as integer microseconds since the epoch (_core's unit), headers as one JSON object.


def _us(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def _header_json(alias: str) -> str:
    """A session header as one JSON object (never the lease token): one value to decode."""
    fields = [
        "id", "owner", "agent", "status", "metadata", "state", "options", "parent_id",
        "fork_seq", "version", "schema_version",
    ]  # fmt: skip
    parts = [f"'{name}', {alias}.{name}" for name in fields]
    parts += [
        f"'{name}', {_us(f'{alias}.{name}')}" for name in ("created_at", "updated_at", "expires_at")
    ]
    parts += [f"'{name}', {alias}.{name}" for name in ("last_seq", "history_len")]
    parts += [f"'lease_owner', {alias}.lease_owner", f"'lease_fence', {alias}.lease_fence"]
    parts.append(f"'lease_expires_at', {_us(f'{alias}.lease_expires_at')}")
    return f"json_build_object({', '.join(parts)})::text"


_NOW = "COALESCE(%(now)s::timestamptz, now())"
_TIME_CTE = (
    "t AS (SELECT c.now, to_char(c.now AT TIME ZONE 'UTC', "
    """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS iso """
    f"FROM (SELECT {_NOW} AS now) AS c)"
)
_LIVE = "(s.expires_at IS NULL OR s.expires_at > t.now)"
_LEASE_FREE = "(s.lease_token IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= t.now)"
_LEASE_HELD = "(s.lease_token = %(token)s::text AND s.lease_expires_at > t.now)"
_LEASE_OK = f"(CASE WHEN %(token)s::text IS NULL THEN {_LEASE_FREE} ELSE {_LEASE_HELD} END)"
_TTL = "%(ttl)s::bigint * interval '1 microsecond'"


def _item(seq: str, alias: str = "i", time: str = "t") -> str:
    # seq and (if the item had none) the timestamp go in front of the item's own keys
    return (
        f"""('{{"seq":' || ({seq}) || CASE WHEN {alias}.stamp """
        f"""THEN ',"timestamp":"' || {time}.iso || '"' ELSE '' END """
        f"|| ',' || substr({alias}.data, 2))::json"
    )


_NEW_ITEMS = (
    "unnest(%(items)s::text[], %(stamps)s::boolean[], %(item_keys)s::text[]) "
    "WITH ORDINALITY AS i(data, stamp, key, ord)"
)
_NEW_SEQ = "u.last_seq - %(n)s::bigint + i.ord"  # after the UPDATE, last_seq counts the new items
_NEW_META = (
    "unnest(%(meta_keys)s::text[], %(meta_values)s::text[], %(meta_hashes)s::bigint[]) "
    "AS m(key, value, kv_hash)"
)

CREATE = f"""
WITH {_TIME_CTE},
ins AS (
    INSERT INTO {{schema}}.tether_sessions (
        id, owner, agent, status, metadata, state, options, parent_id, fork_seq, version,
        schema_version, created_at, updated_at, expires_at, last_seq, history_len,
        lease_owner, lease_token, lease_fence, lease_expires_at)
    SELECT %(id)s::text, %(owner)s::text, %(agent)s::text, %(status)s::text,
        %(metadata)s::json, %(state)s::json, %(options)s::json, %(parent_id)s::text,
        %(fork_seq)s::bigint, 1, %(schema)s::integer, t.now, t.now,
        %(expires_at)s::timestamptz, %(n)s::bigint, %(n)s::bigint, NULL, NULL, 0, NULL
    FROM t
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT ins.id, i.ord, {_item("i.ord")}
    FROM ins, t, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, i.key, i.ord FROM ins, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {_NEW_META}
)
SELECT {_us("t.now")}, t.iso FROM ins, t
"""

# The guard every data write shares: the version, a live session in the current schema (an
# older one is upgraded first, on the slow path), and the lease rules. A NULL version is a
# blind append: any version.
_WRITE_GUARD = f"""
    s.id = %(id)s::text AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
    AND s.schema_version = %(schema)s::integer AND {_LIVE} AND {_LEASE_OK}
"""


def _changed(column: str, cast: str) -> str:
    """``column = <the new value>`` if the commit changes it, else the stored value."""
    given = f"%(set_{column})s::boolean"
    return f"{column} = CASE WHEN {given} THEN %({column})s{cast} ELSE s.{column} END"


# An application's new state keeps the stored runtime block (_core.keep_runtime_block), merged
# here, in the one statement, under the row lock of the UPDATE: no read first, and no write can
# come in between. ``->`` on a json value returns the member's stored text unchanged, and the
# new state's text is compact JSON without that key (_core refused it), so the block is
# spliced in as the last member, byte for byte, as the other stores place it.
_BLOCK = _core.RUNTIME_KEY
assert re.fullmatch(r"\w+", _BLOCK)  # a plain key: written as it is inside the literals below
_NEW_STATE = f"""state = CASE
            WHEN NOT %(set_state)s::boolean THEN s.state
            WHEN %(keep_block)s::boolean AND (s.state -> '{_BLOCK}') IS NOT NULL THEN
                (left(%(state)s::text, -1)
                 || CASE WHEN %(state)s::text = '{{}}' THEN '' ELSE ',' END
                 || '"{_BLOCK}":' || (s.state -> '{_BLOCK}')::text || '}}')::json
            ELSE %(state)s::json END"""

_SET_CHANGES = f"""{_changed("owner", "::text")},
        {_changed("agent", "::text")},
        {_changed("status", "::text")},
        {_changed("expires_at", "::timestamptz")},
        {_changed("metadata", "::json")},
        {_NEW_STATE},
        {_changed("options", "::json")}"""
_META_CHANGES = f"""meta_gone AS (
    DELETE FROM {{schema}}.tether_session_meta AS m USING upd AS u
    WHERE %(set_metadata)s::boolean AND m.session_id = u.id
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT u.id, m.key, m.value, m.kv_hash FROM upd AS u, {_NEW_META}
    WHERE %(set_metadata)s::boolean
)"""

COMMIT = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = s.last_seq + %(n)s::bigint,
        history_len = s.history_len + %(n)s::bigint,
        {_SET_CHANGES}
    FROM t
    WHERE {_WRITE_GUARD}
    RETURNING s.id, s.version, s.last_seq, t.iso
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {_NEW_SEQ}, {_item(_NEW_SEQ, time="u")}
    FROM upd AS u, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, {_NEW_SEQ} FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
"""

# New seqs continue after the old last_seq, so the rows deleted and inserted never share a key.
# An item key may move from a deleted row to a new one: tether_item_keys' primary key is checked
# at the end of the statement (DEFERRABLE INITIALLY DEFERRED), when the old one is gone.
REPLACE = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = s.last_seq + %(n)s::bigint,
        history_len = %(n)s::bigint,
        {_SET_CHANGES}
    FROM t
    WHERE {_WRITE_GUARD}
    RETURNING s.id, s.version, s.last_seq, t.iso
),
gone AS (
    DELETE FROM {{schema}}.tether_items AS old USING upd AS u WHERE old.session_id = u.id
),
keys_gone AS (
    DELETE FROM {{schema}}.tether_item_keys AS old USING upd AS u WHERE old.session_id = u.id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {_NEW_SEQ}, {_item(_NEW_SEQ, time="u")}
    FROM upd AS u, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, {_NEW_SEQ} FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
"""

# replace_tail: the items after %(after)s replaced by the new ones, numbered from after + 1, in
# one statement that touches only the suffix. Rows whose seq the new items reuse are updated
# in place, the rest past the new end deleted, the rest of the new items inserted: three
# disjoint seq ranges, so the primary key never sees two rows at once. o.old_last is read in
# the UPDATE's own snapshot; the version guard makes it the locked row's.
TAIL = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = %(after)s::bigint + %(n)s::bigint,
        history_len = %(after)s::bigint - (s.last_seq - s.history_len) + %(n)s::bigint,
        {_SET_CHANGES}
    FROM t, (SELECT last_seq AS old_last FROM {{schema}}.tether_sessions
             WHERE id = %(id)s::text) AS o
    WHERE {_WRITE_GUARD}
      AND %(after)s::bigint BETWEEN s.last_seq - s.history_len AND s.last_seq
    RETURNING s.id, s.version, o.old_last, t.iso
),
reused AS (
    UPDATE {{schema}}.tether_items AS old
    SET data = {_item("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {_NEW_ITEMS}
    WHERE old.session_id = u.id AND old.seq = %(after)s::bigint + i.ord
),
gone AS (
    DELETE FROM {{schema}}.tether_items AS old USING upd AS u
    WHERE old.session_id = u.id AND old.seq > %(after)s::bigint + %(n)s::bigint
),
keys_gone AS (
    DELETE FROM {{schema}}.tether_item_keys AS old USING upd AS u
    WHERE old.session_id = u.id AND old.seq > %(after)s::bigint
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, %(after)s::bigint + i.ord, {_item("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {_NEW_ITEMS}
    WHERE %(after)s::bigint + i.ord > u.old_last
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, %(after)s::bigint + i.ord
    FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
"""

# items_by_key: the header's schema version (no row: missing or expired) and the keyed rows, by
# the (session_id, key) primary key and then the items' (session_id, seq) one.
ITEMS_BY_KEY = f"""
WITH t AS (SELECT {_NOW} AS now)
SELECT s.schema_version, ARRAY(
    SELECT i.data::text FROM {{schema}}.tether_item_keys AS k
    JOIN {{schema}}.tether_items AS i ON i.session_id = k.session_id AND i.seq = k.seq
    WHERE k.session_id = s.id AND k.key = ANY(%(keys)s::text[])
    ORDER BY k.seq)
FROM {{schema}}.tether_sessions AS s, t
WHERE s.id = %(id)s::text AND {_LIVE}
"""

# restore: the session exactly as given, unclaimed. The store first removes (under the row lock)
# any row it may write over; a row inserted since then makes this insert nothing.
RESTORE = f"""
WITH ins AS (
    INSERT INTO {{schema}}.tether_sessions (
        id, owner, agent, status, metadata, state, options, parent_id, fork_seq, version,
        schema_version, created_at, updated_at, expires_at, last_seq, history_len,
        lease_owner, lease_token, lease_fence, lease_expires_at)
    VALUES (%(id)s::text, %(owner)s::text, %(agent)s::text, %(status)s::text,
        %(metadata)s::json, %(state)s::json, %(options)s::json, %(parent_id)s::text,
        %(fork_seq)s::bigint, %(version)s::bigint, %(schema_version)s::integer,
        %(created_at)s::timestamptz, %(updated_at)s::timestamptz, %(expires_at)s::timestamptz,
        %(last_seq)s::bigint, %(history_len)s::bigint, %(lease_owner)s::text, NULL,
        %(lease_fence)s::bigint, NULL)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT ins.id, i.seq, i.data::json
    FROM ins, unnest(%(seqs)s::bigint[], %(datas)s::text[]) AS i(seq, data)
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, k.key, k.seq
    FROM ins, unnest(%(key_names)s::text[], %(key_seqs)s::bigint[]) AS k(key, seq)
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {_NEW_META}
)
SELECT count(*) FROM ins
"""

# The header and the window in one statement (one snapshot, one round trip): the header row
# first (seq NULL), then one row per item. The window is a seq range: seqs are contiguous, so
# a page (``limit``: the oldest items of the window) is the range (floor, floor + limit], one
# bounded index range scan. GREATEST and LEAST ignore NULLs: a NULL ``last``, ``after`` or
# ``limit`` bounds nothing.
LOAD = f"""
WITH t AS (SELECT {_NOW} AS now),
f AS (
    SELECT s.*, GREATEST(s.last_seq - s.history_len, %(after)s::bigint,
                         s.last_seq - %(last)s::bigint) AS floor
    FROM {{schema}}.tether_sessions AS s, t
    WHERE s.id = %(id)s::text AND {_LIVE}
),
h AS (SELECT f.*, LEAST(f.last_seq, f.floor + %(limit)s::bigint) AS ceiling FROM f)
SELECT NULL::bigint AS seq, {_header_json("h")} AS data FROM h
UNION ALL
SELECT i.seq, i.data::text FROM h
JOIN {{schema}}.tether_items AS i
    ON i.session_id = h.id AND i.seq > h.floor AND i.seq <= h.ceiling
WHERE h.schema_version <= %(schema)s::integer
ORDER BY seq NULLS FIRST
"""

EXISTS = f"""
SELECT EXISTS (
    SELECT 1 FROM {{schema}}.tether_sessions AS s
    WHERE s.id = %(id)s::text AND (s.expires_at IS NULL OR s.expires_at > {_NOW})
)
"""

_SNAPSHOT = f"""
WITH t AS (SELECT {_NOW} AS now)
SELECT {_header_json("s")}, s.lease_token, {_us("t.now")}
FROM {{schema}}.tether_sessions AS s, t WHERE s.id = %(id)s::text
"""
SNAPSHOT = _SNAPSHOT
SNAPSHOT_FOR_UPDATE = _SNAPSHOT + "FOR UPDATE OF s\n"

_CHILDREN_GONE = """
items AS (DELETE FROM {schema}.tether_items AS i USING gone AS g WHERE i.session_id = g.id),
item_keys AS (
    DELETE FROM {schema}.tether_item_keys AS k USING gone AS g WHERE k.session_id = g.id
),
meta AS (DELETE FROM {schema}.tether_session_meta AS m USING gone AS g WHERE m.session_id = g.id)
"""

DELETE = f"""
WITH t AS (SELECT {_NOW} AS now),
gone AS (
    DELETE FROM {{schema}}.tether_sessions AS s USING t
    WHERE s.id = %(id)s::text AND {_LIVE} AND s.schema_version <= %(schema)s::integer
      AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
      AND (%(force)s::boolean OR {_LEASE_OK})
    RETURNING s.id
),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

PURGE_ONE = f"""
WITH gone AS (DELETE FROM {{schema}}.tether_sessions WHERE id = %(id)s::text RETURNING id),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

PURGE_EXPIRED = f"""
WITH gone AS (
    DELETE FROM {{schema}}.tether_sessions
    WHERE expires_at IS NOT NULL AND expires_at <= {_NOW}
      AND schema_version <= %(schema)s::integer
    RETURNING id
),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

# A claim is one atomic UPDATE: it matches only a live session whose lease is free or expired
# (never one held under the same owner name: names are public, only the token acts on a live
# lease); the row lock orders racing claims, and the losers match nothing.
CLAIM = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET
    lease_owner = %(owner)s::text,
    lease_token = %(new_token)s::text,
    lease_fence = s.lease_fence + 1,
    lease_expires_at = t.now + {_TTL}
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND s.schema_version <= %(schema)s::integer
  AND {_LEASE_FREE}
RETURNING s.lease_fence, {_us("s.lease_expires_at")}
"""

RENEW = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_expires_at = t.now + {_TTL}
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND {_LEASE_HELD}
RETURNING s.lease_owner, s.lease_fence, {_us("s.lease_expires_at")}
"""

RELEASE = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_token = NULL, lease_expires_at = NULL
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND {_LEASE_HELD}
RETURNING s.lease_fence
"""

# Writing back a session stored by an older tether (the slow path, once per session).
UPGRADE_HEADER = """
UPDATE {schema}.tether_sessions SET
    owner = %(owner)s::text, agent = %(agent)s::text, status = %(status)s::text,
    metadata = %(metadata)s::json, state = %(state)s::json, options = %(options)s::json,
    parent_id = %(parent_id)s::text, fork_seq = %(fork_seq)s::bigint,
    expires_at = %(expires_at)s::timestamptz, schema_version = %(schema_version)s::integer
WHERE id = %(id)s::text
"""
REWRITE_META = f"""
WITH gone AS (DELETE FROM {{schema}}.tether_session_meta WHERE session_id = %(id)s::text)
INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
SELECT %(id)s::text, m.key, m.value, m.kv_hash FROM {_NEW_META}
"""
SELECT_ITEMS = """
SELECT seq, data::text FROM {schema}.tether_items WHERE session_id = %(id)s::text ORDER BY seq
"""
REWRITE_ITEMS = """
UPDATE {schema}.tether_items AS i SET data = u.data::json
FROM unnest(%(seqs)s::bigint[], %(datas)s::text[]) AS u(seq, data)
WHERE i.session_id = %(id)s::text AND i.seq = u.seq
"""

# --- migrations of the database (not of session documents) ---------------------------------------
# Applied in order, each once, recorded in {schema}.tether_schema_migrations, all in one
# transaction under pg_advisory_xact_lock (see the store's _migrate). Never CREATE INDEX
# CONCURRENTLY here: it cannot run inside a transaction. Text columns that are compared or
# sorted use the "C" collation: bytewise, fast, and the same order as Python's str.

MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (  # 1: sessions with leases, items, the metadata index
        """CREATE TABLE {schema}.tether_sessions (
            id text COLLATE "C" PRIMARY KEY,
            owner text COLLATE "C",
            agent text COLLATE "C",
            status text COLLATE "C" NOT NULL,
            metadata json NOT NULL,
            state json NOT NULL,
            options json NOT NULL,
            parent_id text COLLATE "C",
            fork_seq bigint,
            version bigint NOT NULL,
            schema_version integer NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            expires_at timestamptz,
            last_seq bigint NOT NULL,
            history_len bigint NOT NULL,
            lease_owner text,
            lease_token text,
            lease_fence bigint NOT NULL DEFAULT 0,
            lease_expires_at timestamptz
        )""",
        """CREATE TABLE {schema}.tether_items (
            session_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            data json NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        """CREATE TABLE {schema}.tether_session_meta (
            session_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value text COLLATE "C" NOT NULL,
            kv_hash bigint NOT NULL
        )""",
        "CREATE INDEX tether_session_meta_session ON {schema}.tether_session_meta (session_id)",
        "CREATE INDEX tether_session_meta_kv ON {schema}.tether_session_meta (kv_hash, session_id)",
        "CREATE INDEX tether_sessions_updated ON {schema}.tether_sessions (updated_at, id)",
        "CREATE INDEX tether_sessions_owner ON {schema}.tether_sessions (owner, updated_at, id)",
        "CREATE INDEX tether_sessions_agent ON {schema}.tether_sessions (agent, updated_at, id)",
        "CREATE INDEX tether_sessions_status ON {schema}.tether_sessions (status, updated_at, id)",
        """CREATE INDEX tether_sessions_expires ON {schema}.tether_sessions (expires_at)
            WHERE expires_at IS NOT NULL""",
    ),
    (  # 2: keyed history items (KeyedItem): key -> seq, unique within a session. Checked at
        # the end of each statement, so one statement may move a key from a row it deletes
        # to a row it inserts (replace_history, replace_tail).
        """CREATE TABLE {schema}.tether_item_keys (
            session_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            CONSTRAINT tether_item_keys_pkey PRIMARY KEY (session_id, key)
                DEFERRABLE INITIALLY DEFERRED
        )""",
        "CREATE INDEX tether_item_keys_seq ON {schema}.tether_item_keys (session_id, seq)",
    ),
)

MIGRATIONS_APPLIED = "SELECT max(version) FROM {schema}.tether_schema_migrations"
MIGRATIONS_LOCK = "SELECT pg_advisory_xact_lock(%(key)s::bigint)"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(name)s::text)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {schema}.tether_schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
RECORD_MIGRATION = "INSERT INTO {schema}.tether_schema_migrations (version) VALUES (%(v)s::integer)"


# Every connection tether opens runs this first. Its statements name their tables by schema, but
# operators and functions (=, ||, *, now(), substr, ...) are resolved through the connection's
# search_path, which by default includes "public" and whatever the server or role adds. Anyone
# who can create objects in such a schema could plant an operator that matches tether's
# argument types better than pg_catalog's (an `||(text, bigint)`, a `*(numeric, integer)`) and
# have it run with tether's privileges (CVE-2018-1058). With only pg_catalog (and the session's
# own temporary schema, last) on the path, nothing else is ever looked up.
SAFE_SEARCH_PATH: Final = b"SET search_path = pg_catalog, pg_temp"


def render(template: str, schema_name: str) -> bytes:
    """``template`` with ``{schema}`` replaced by the quoted schema identifier."""
    quoted = sql.Identifier(check_schema_name(schema_name)).as_string(None)
    return template.replace("{schema}", quoted).encode()


@dataclass(frozen=True)
class Statements:
    """Every statement, rendered once for one schema (bytes: psycopg sends them as they are,
    and prepares the frequent ones on each connection)."""

    create: bytes
    commit: bytes
    replace: bytes
    tail: bytes
    items_by_key: bytes
    restore: bytes
    load: bytes
    exists: bytes
    snapshot: bytes
    snapshot_for_update: bytes
    delete: bytes
    purge_one: bytes
    purge_expired: bytes
    claim: bytes
    renew: bytes
    release: bytes
    upgrade_header: bytes
    rewrite_meta: bytes
    select_items: bytes
    rewrite_items: bytes
    migrations_applied: bytes
    migrations_lock: bytes
    schema_exists: bytes
    create_schema: bytes
    create_migrations_table: bytes
    record_migration: bytes
    migrations: tuple[tuple[bytes, ...], ...]
    quoted_schema: str

    @classmethod
    def for_schema(cls, schema_name: str) -> Statements:
        def r(template: str) -> bytes:
            return render(template, schema_name)

        return cls(
            create=r(CREATE),
            commit=r(COMMIT),
            replace=r(REPLACE),
            tail=r(TAIL),
            items_by_key=r(ITEMS_BY_KEY),
            restore=r(RESTORE),
            load=r(LOAD),
            exists=r(EXISTS),
            snapshot=r(SNAPSHOT),
            snapshot_for_update=r(SNAPSHOT_FOR_UPDATE),
            delete=r(DELETE),
            purge_one=r(PURGE_ONE),
            purge_expired=r(PURGE_EXPIRED),
            claim=r(CLAIM),
            renew=r(RENEW),
            release=r(RELEASE),
            upgrade_header=r(UPGRADE_HEADER),
            rewrite_meta=r(REWRITE_META),
            select_items=r(SELECT_ITEMS),
            rewrite_items=r(REWRITE_ITEMS),
            migrations_applied=r(MIGRATIONS_APPLIED),
            migrations_lock=r(MIGRATIONS_LOCK),
            schema_exists=r(SCHEMA_EXISTS),
            create_schema=r(CREATE_SCHEMA),
            create_migrations_table=r(CREATE_MIGRATIONS_TABLE),
            record_migration=r(RECORD_MIGRATION),
            migrations=tuple(tuple(r(s) for s in step) for step in MIGRATIONS),
            quoted_schema=sql.Identifier(schema_name).as_string(None),
        )


# --- listing -------------------------------------------------------------------------------------


def list_statement(
    statements: Statements, query: _core.ListQuery, now: datetime | None
) -> tuple[bytes, dict[str, Any]]:
    """The listing statement for a checked query: fixed fragments joined, values bound.

    Every filter has an index whose order is the listing's, so a page reads ~limit rows: owner,
    agent and one status use (column, updated_at, id); no filter uses (updated_at, id); a
    metadata filter probes (kv_hash, session_id) of the metadata table.
    """
    where = [f"(s.expires_at IS NULL OR s.expires_at > {_NOW})"]
    params: dict[str, Any] = {"now": now, "limit": query.limit + 1}
    for column, value in (("owner", query.owner), ("agent", query.agent)):
        if value is not None:
            where.append(f"s.{column} = %({column})s::text")
            params[column] = value
    if query.statuses is not None:
        statuses = sorted(query.statuses)
        if len(statuses) == 1:  # equality keeps the (status, updated_at, id) order for LIMIT
            where.append("s.status = %(status)s::text")
            params["status"] = statuses[0]
        else:
            where.append("s.status = ANY(%(statuses)s::text[])")
            params["statuses"] = statuses
    if query.updated_after is not None:
        where.append("s.updated_at > %(updated_after)s::timestamptz")
        params["updated_after"] = from_micros(query.updated_after)
    if query.updated_before is not None:
        where.append("s.updated_at < %(updated_before)s::timestamptz")
        params["updated_before"] = from_micros(query.updated_before)
    if query.cursor is not None:
        where.append("(s.updated_at, s.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::text)")
        params["cursor_at"] = from_micros(query.cursor[0])
        params["cursor_id"] = query.cursor[1]
    for index, (key, value) in enumerate(query.metadata):
        key_json = json_text(key, "metadata filter key")
        where.append(
            f"s.id IN (SELECT m.session_id FROM {{schema}}.tether_session_meta AS m "
            f"WHERE m.kv_hash = %(h{index})s::bigint AND m.key = %(k{index})s::text "
            f"AND m.value = %(v{index})s::text)"
        )
        params.update({f"h{index}": kv_hash(key_json, value), f"k{index}": key_json})
        params[f"v{index}"] = value
    text = (
        f"SELECT {_header_json('s')} FROM {{schema}}.tether_sessions AS s "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY s.updated_at DESC, s.id DESC LIMIT %(limit)s::integer"
    )
    return text.replace("{schema}", statements.quoted_schema).encode(), params
