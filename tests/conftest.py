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

    asyncio.run(drop())


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop one test schema (never a shared database or ``public``)."""
    import psycopg
    from psycopg import sql

    assert schema.startswith("tether_t"), schema
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An isolated tether store URL of the kind the test's parameter names (``memory``,
    ``file``, ``sqlite``, ``redis``, ``postgres``; ``sqlite`` when not parametrized): a file
    under ``tmp_path``, or a fresh Redis namespace or PostgreSQL schema, removed after.
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
        schema = f"tether_t_{uuid.uuid4().hex}"
        yield with_options(url, schema=schema)
        drop_postgres_schema(url, schema)
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
        "walks every object of the test process (gc.get_objects) around each command",
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
    "test_worker_example.py::test_web_endpoint_tether_worker_and_client": (
        "starts the worker and the web app as OS processes",
        frozenset(),
    ),
    "test_cli_trust.py::test_python_dash_m_tether_runs_the_command": (
        "starts a Python process",
        frozenset(),
    ),
    "test_cli_trust.py::test_without_the_cli_extra_tether_names_it": (
        "starts a Python process a case",
        frozenset(),
    ),
    "test_redis_store.py::test_namespaces_never_see_each_other": (
        "SCANs every key on the shared Redis server, whatever other tests left there",
        frozenset(),
    ),
    "test_kv_docs_example.py::TestDocsExampleKVStore::"
    "test_concurrent_appends_with_retry_lose_nothing": (
        "a race of threads retrying through the docs' example backend, seconds on its own",
        frozenset(),
    ),
    "test_web.py::test_the_benchmark_runs": (
        "a benchmark smoke run (benchmarks/inspector.py) in a Python process",
        frozenset(),
    ),
    "test_registry_and_api.py::test_import_tether_imports_no_store_module_or_driver": (
        "starts a Python process",
        frozenset(),
    ),
    "test_sqlite_store.py::test_commit_survives_the_process_being_killed": (
        "starts a Python process and kills it mid-commit",
        frozenset(),
    ),
    "test_file_store.py::test_commit_survives_the_process_being_killed": (
        "starts a Python process and kills it mid-commit",
        frozenset(),
    ),
    "test_nats_store.py::"
    "test_a_server_that_goes_away_mid_run_gives_store_unavailable_then_works_again": (
        "waits out the timeouts of a cut connection, then reconnects",
        frozenset(),
    ),
    "test_nats_store.py::test_the_async_store_gives_store_unavailable_when_the_server_goes_away": (
        "waits out the timeouts of a frozen, then cut connection",
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The conformance suite's multi-process clauses are ``slow`` where they really start OS
    processes (a class with a store_opener): ``make check`` leaves them out, ``make test``
    runs them. On a class without one they race tasks or threads in-process and stay fast.
    The tests of ``_HEAVY`` are ``heavy``: make check leaves them out too."""
    for item in items:
        if _heavy_here(item):
            item.add_marker(pytest.mark.heavy)
        cls = getattr(item, "cls", None)
        clauses = getattr(cls, "multi_process_clauses", ())
        named = getattr(item, "originalname", None) in clauses
        if cls is not None and named and _opens_processes(cls):
            item.add_marker(pytest.mark.slow)
