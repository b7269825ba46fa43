"""Shared test plumbing: the real Redis, PostgreSQL and NATS servers the server-backed tests
need.

URLs come from ``TETHER_TEST_REDIS_URL`` / ``TETHER_TEST_POSTGRES_URL`` /
``TETHER_TEST_NATS_URL`` (defaults: the local
servers that ``.ci/ensure-services`` starts). When a server does not answer, its tests skip with a
one-line reason; under ``CI=true`` a skip would hide a broken setup, so they fail instead.
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
NATS_URL = os.environ.get("TETHER_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("TETHER_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_answers: dict[str, str | None] = {}


def _reachable(url: str, default_port: int) -> str | None:
    """None if something listens at the URL's host and port, else why not (cached)."""
    if url not in _answers:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        try:
            with socket.create_connection((host, port), timeout=1.0):
                _answers[url] = None
        except OSError as exc:
            _answers[url] = f"nothing answers at {host}:{port} ({exc})"
    return _answers[url]


def require_server(kind: str) -> str:
    """The test URL of ``kind`` ("redis", "postgres", "nats" or "rabbitmq"); skip (or fail in
    CI) if it is down."""
    url, port, env = {
        "redis": (REDIS_URL, 6379, "TETHER_TEST_REDIS_URL"),
        "postgres": (POSTGRES_URL, 5432, "TETHER_TEST_POSTGRES_URL"),
        "nats": (NATS_URL, 4222, "TETHER_TEST_NATS_URL"),
        "rabbitmq": (RABBITMQ_URL, 5672, "TETHER_TEST_RABBITMQ_URL"),
    }[kind]
    why = _reachable(url, port)
    if why is not None:
        message = f"{kind} server not reachable: {why}; start it or set {env}"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return url


def require_module(name: str, extra: str) -> None:
    """Import ``name`` or skip the module (fail it under ``CI=true``, where the dev extras are
    installed: a missing driver there is a broken setup, not a reason to skip)."""
    try:
        importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({exc}): pip install 'tether[{extra}]'"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)


@pytest.fixture
def redis_url() -> str:
    return require_server("redis")


@pytest.fixture
def postgres_url() -> str:
    return require_server("postgres")


@pytest.fixture
def nats_server() -> str:
    """The NATS server's URL (``TETHER_TEST_NATS_URL``), with the driver installed."""
    require_module("nats", "nats")
    return require_server("nats")


@pytest.fixture
def nats_bucket(nats_server: str) -> Iterator[str]:
    """A bucket of the test's own (``tether_t...``), deleted afterwards: the server is never
    wiped."""
    name = f"tether_t{uuid.uuid4().hex[:12]}"
    yield name
    delete_nats_bucket(nats_server, name)


@pytest.fixture
def rabbitmq_url() -> str:
    """The AMQP broker URL for Celery tests (``TETHER_TEST_RABBITMQ_URL``)."""
    return require_server("rabbitmq")


# --- isolated namespaces and schemas on the shared servers -------------------------------------


def with_options(base: str, **options: str) -> str:
    """``base`` with tether options added to its query string."""
    from urllib.parse import parse_qsl, urlencode, urlunsplit

    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit(parts._replace(query=urlencode(query)))


def wipe_redis_namespace(url: str, namespace: str) -> None:
    """Delete one namespace's keys: SCAN MATCH on its validated prefix, never FLUSH*."""
    import redis

    from tether.stores.redis._keys import Keys

    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        pattern = Keys.for_namespace(namespace).pattern
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def delete_nats_bucket(url: str, bucket: str) -> None:
    """Delete one test bucket (never another: test buckets are named ``tether_t...``)."""
    import asyncio

    import nats
    import nats.js.errors

    assert bucket.startswith("tether_t"), bucket

    async def drop() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_key_value(bucket)
        except nats.js.errors.NotFoundError:
            pass  # never created: the test skipped or failed before it opened the store
        finally:
            await nc.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running here: the usual case
        asyncio.run(drop())
        return
    # an async fixture's teardown, inside its event loop: on a thread (and a loop) of its own
    import threading

    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(drop())
        except BaseException as exc:  # re-raised on the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop one test schema (never a shared database or ``public``)."""
    import psycopg
    from psycopg import sql

    assert schema.startswith("tether_t"), schema
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- a pool of migrated PostgreSQL schemas, one test at a time on each ------------------------
# Creating a schema, running the store's migrations in it and dropping it again costs about
# 0.15 s a test on a quiet machine; emptying the tables of a schema that is already migrated
# costs a hundredth of that, and the store's own check that the schema is current is one query.
# So each test process keeps the schemas its tests gave back and hands them out again, one test
# at a time, empty. A schema comes back into the pool only if its layout (tables, columns,
# indexes, constraints, functions, operators, types, the migrations it records) is exactly
# what the migrations made: a test that changed it (a migration test, a planted operator)
# gets it dropped, as before. The tests that are about migrations or fresh schemas make their
# own with a fresh name instead.

_LAYOUT = """
WITH n AS (SELECT oid, nspname, nspacl FROM pg_namespace WHERE nspname = %s),
rels AS MATERIALIZED (
  SELECT c.oid, c.relname, c.relkind FROM pg_class c, n WHERE c.relnamespace = n.oid
)
SELECT concat_ws('|',
  (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM rels),
  (SELECT string_agg(r.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                     || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                     || ':' || a.attcollation::text, ',' ORDER BY r.relname, a.attnum)
     FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ANY (ARRAY(SELECT oid FROM rels)) AND a.attnum > 0
       AND NOT a.attisdropped),
  (SELECT string_agg(replace(pg_get_indexdef(r.oid), n.nspname, '<schema>'), ','
                     ORDER BY r.relname) FROM rels r WHERE r.relkind = 'i'),
  (SELECT string_agg(conname || ':' || pg_get_constraintdef(c.oid), ',' ORDER BY conname)
     FROM pg_constraint c WHERE connamespace = n.oid),
  (SELECT count(*) FROM pg_proc WHERE pronamespace = n.oid),
  (SELECT count(*) FROM pg_operator WHERE oprnamespace = n.oid),
  (SELECT count(*) FROM pg_type WHERE typnamespace = n.oid),
  (SELECT count(*) FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid),
  (SELECT count(*) FROM pg_policy p JOIN rels r ON r.oid = p.polrelid),
  n.nspacl::text
) FROM n
"""

_pool: dict[str, list[str]] = {}  # server URL -> the empty, migrated schemas not in use
_pool_layout: dict[str, str] = {}  # server URL -> the layout a fresh migration gives
_pool_admin: dict[str, Any] = {}  # server URL -> this process's connection for the pool's work
_pool_made: dict[str, set[str]] = {}  # server URL -> every schema this process made (not dropped)


def _admin(base: str) -> Any:
    """This process's autocommit connection to the server at ``base`` (one connection, not
    one a test: each would be a new server process)."""
    import psycopg

    conn = _pool_admin.get(base)
    if conn is None or conn.closed or conn.broken:
        conn = _pool_admin[base] = psycopg.connect(base, autocommit=True)
    return conn


def _schema_layout(conn: Any, schema: str) -> str | None:
    """The schema's layout and its migration records, as one comparable string (None: no
    such schema)."""
    import psycopg
    from psycopg import sql

    row = conn.execute(_LAYOUT, (schema,)).fetchone()
    if row is None:
        return None
    try:
        versions = conn.execute(
            sql.SQL("SELECT string_agg(version::text, ',' ORDER BY version) FROM {}").format(
                sql.Identifier(schema, "tether_schema_migrations")
            )
        ).fetchone()
    except psycopg.errors.UndefinedTable:  # not a layout the pool hands out
        return None
    return f"{row[0]}|{versions[0] if versions else ''}"


def take_postgres_schema(url: str) -> str:
    """An empty schema, migrated to the current tables, that no other test is using; give it
    back with :func:`give_back_postgres_schema`."""
    base = url.split("?", 1)[0]
    free = _pool.setdefault(base, [])
    if free:
        return free.pop()
    from tether.stores.postgres import PostgresStore

    schema = f"tether_tp_{uuid.uuid4().hex}"
    _pool_made.setdefault(base, set()).add(schema)
    with PostgresStore.from_url(with_options(url, schema=schema)) as store:
        store.list()  # the first call runs the migrations
    if base not in _pool_layout:
        layout = _schema_layout(_admin(base), schema)
        assert layout is not None, schema
        _pool_layout[base] = layout
    return schema


def give_back_postgres_schema(url: str, schema: str) -> None:
    """Empty ``schema`` and put it back in the pool if its layout is still the migrated one,
    else drop it."""
    from psycopg import sql

    assert schema.startswith("tether_tp_"), schema
    base = url.split("?", 1)[0]
    conn = _admin(base)
    if _schema_layout(conn, schema) != _pool_layout.get(base):
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        _pool_made.get(base, set()).discard(schema)
        return
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s"
        " AND tablename <> 'tether_schema_migrations'",
        (schema,),
    ).fetchall()
    deletes = [sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, t)) for (t,) in tables]
    with conn.transaction():
        conn.execute(sql.SQL("; ").join(deletes))
    _pool.setdefault(base, []).append(schema)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop every schema this process made (pooled, or never given back because a fixture
    failed between taking it and handing it on) and close its pool connections."""
    from psycopg import sql

    for base, made in _pool_made.items():
        for name in sorted(made):
            _admin(base).execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )
    _pool_made.clear()
    _pool.clear()
    for conn in _pool_admin.values():
        conn.close()
    _pool_admin.clear()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An isolated tether store URL of the kind the test's parameter names (``memory``,
    ``file``, ``sqlite``, ``redis``, ``postgres``; ``sqlite`` when not parametrized): a file
    under ``tmp_path``, a fresh Redis namespace removed after, or an empty PostgreSQL schema
    of the pool above, emptied after.
    Parametrize it with ``pytest.mark.parametrize("store_url", [...], indirect=True)``; a
    module that defines its own ``store_url`` keeps it."""
    kind = getattr(request, "param", "sqlite")
    if kind == "memory":
        yield "memory://"
    elif kind == "file":
        yield f"file:{tmp_path / 'sessions'}"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
    elif kind == "redis":
        url = require_server("redis")
        namespace = f"t{uuid.uuid4().hex}"
        yield with_options(url, namespace=namespace)
        wipe_redis_namespace(url, namespace)
    elif kind == "postgres":
        url = require_server("postgres")
        schema = take_postgres_schema(url)
        yield with_options(url, schema=schema)
        give_back_postgres_schema(url, schema)
    else:
        raise ValueError(f"no store kind {kind!r}")


def _opens_processes(cls: type) -> bool:
    """Whether a conformance class gives its own ``store_opener`` (the suite's returns None)."""
    return any(
        "store_opener" in vars(klass)
        for klass in cls.__mro__
        if not klass.__module__.startswith("tether.testing")
    )


# Tests ``make check`` leaves out (marked ``heavy`` here, in one place, with the reason) and
# ``make test`` runs: the slowest of the fast loop (``pytest --durations=30``) whose cost is
# the case itself, not tether. The value is (reason, the parameter ids make check still runs).
_HEAVY: dict[str, tuple[str, frozenset[str]]] = {
    "test_sqlite_fork_shares.py::"
    "test_random_forks_writes_rewrites_and_deletes_match_a_copying_store": (
        "fuzzing: 120 random steps a seed on two stores; make check runs two seeds",
        frozenset({"0", "1"}),
    ),
    "test_cli_closes.py::test_a_command_closes_the_store_it_opened": (
        "walks every object of the test process (gc.get_objects) around each command: seconds"
        " in a worker whose heap holds every module and fixture it has run",
        frozenset(),
    ),
    "test_integration_langgraph_encoding.py::"
    "test_the_renderer_shows_compressed_values_and_refuses_bombs": (
        "compresses 200 MiB of zeros to build the bomb it refuses",
        frozenset(),
    ),
    "test_integration_langgraph_conformance.py::test_async_saver_full_conformance": (
        "LangGraph's whole saver suite again on each server store; make check runs the local ones",
        frozenset({"memory", "file", "sqlite"}),
    ),
    "test_kv_docs_example.py::TestDocsExampleKVStore::"
    "test_concurrent_appends_with_retry_lose_nothing": (
        "a race of threads retrying through the docs' example backend, seconds on its own",
        frozenset(),
    ),
    "test_integration_langgraph_deltas.py::"
    "test_a_chat_reads_back_as_langgraph_stores_it_in_a_fraction_of_the_bytes": (
        "a long chat written and read back on each store; make check runs SQLite",
        frozenset({"sqlite"}),
    ),
    "test_integration_langgraph_deltas.py::test_no_delta_names_a_snapshot_a_rewrite_removed": (
        "many checkpoints rewritten on each store; make check runs SQLite",
        frozenset({"sqlite"}),
    ),
}


def _heavy_here(item: pytest.Item) -> bool:
    name, _, param = item.nodeid.removeprefix("tests/").partition("[")
    entry = _HEAVY.get(name)
    return entry is not None and param.rstrip("]") not in entry[1]


# The files that take longest (pytest --durations=0, summed by file), longest first. They are
# collected first, so that pytest-xdist (--dist loadfile hands out whole files in collection
# order) starts them first and ends on short files, instead of one worker finishing a long
# file alone while the other waits. Only the order changes; a file missing here goes after.
_LONGEST_FILES = (
    "tests/test_encryption_conformance.py",
    "tests/test_postgres_store.py",
    "tests/test_web.py",
    "tests/test_integration_adk.py",
    "tests/test_listing_differential.py",
    "tests/test_agent_async.py",
    "tests/test_nats_store.py",
    "tests/test_conformance.py",
    "tests/test_agent_sync.py",
    "tests/test_agent_models.py",
    "tests/test_runtime_async.py",
    "tests/test_runtime_sync.py",
    "tests/test_redis_store.py",
    "tests/test_audited_store_example.py",
    "tests/test_wrapping_store.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The conformance suite's multi-process clauses are ``slow`` where they really start OS
    processes (a class with a store_opener): ``make check`` leaves them out, ``make test``
    runs them. On a class without one they race tasks or threads in-process and stay fast.
    The tests of ``_HEAVY`` are ``heavy``: make check leaves them out too. The files of
    ``_LONGEST_FILES`` go first, in that order (a stable sort: each file's own order kept)."""
    rank = {name: n for n, name in enumerate(_LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))
    for item in items:
        if _heavy_here(item):
            item.add_marker(pytest.mark.heavy)
        cls = getattr(item, "cls", None)
        clauses = getattr(cls, "multi_process_clauses", ())
        named = getattr(item, "originalname", None) in clauses
        if cls is not None and named and _opens_processes(cls):
            item.add_marker(pytest.mark.slow)
