"""The PostgreSQL store: the whole conformance suite (sync and async), then what its design
promises on top (see the docstring of tether.stores.postgres.store_async): one round trip per
commit, migrations under an advisory lock, indexed listings, schema isolation, URL options,
and StoreUnavailable from a real server that stops and comes back.

Every test works in its own schema (``tether_t_<uuid>``) and drops it afterwards; the conformance
suite's tests each take an empty, migrated one from conftest's pool instead. The tests
that need the shared server skip when it is down (fail under CI=true, see conftest.py); the
fault test starts a throwaway server of its own from the PostgreSQL binaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import multiprocessing
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql

import tether
from tether import (
    AlreadyClaimed,
    ConfigurationError,
    InvalidRequest,
    InvalidSessionData,
    Session,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    _core,
)
from tether.stores.postgres import AsyncPostgresStore, PostgresStore, _migrations, _options, _sql
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

from .conftest import (
    IN_CI,
    drop_postgres_schema,
    give_back_postgres_schema,
    take_postgres_schema,
    with_options,
)

SCHEMA_PREFIX = "tether_t_"


def _new_schema() -> str:
    return f"{SCHEMA_PREFIX}{uuid.uuid4().hex}"


def _drop_schema(url: str, name: str) -> None:
    assert name.startswith(SCHEMA_PREFIX), "tests drop only the schemas they made"
    drop_postgres_schema(url, name)


def _raw(url: str) -> psycopg.Connection[Any]:
    conninfo, _ = _options.parse_url(url)
    return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = _new_schema()
    yield name
    _drop_schema(postgres_url, name)


# --- the conformance suite -------------------------------------------------------------------


@pytest.fixture
def pooled_schema(postgres_url: str) -> Iterator[str]:
    """An empty, migrated schema from conftest's pool: the conformance suite only reads and
    writes sessions, so it needs no fresh schema (the tests below that do use pg_schema)."""
    name = take_postgres_schema(postgres_url)
    yield name
    give_back_postgres_schema(postgres_url, name)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(
        self, postgres_url: str, pooled_schema: str, clock: FakeClock
    ) -> Iterator[PostgresStore]:
        conninfo, _ = _options.parse_url(postgres_url)
        with PostgresStore(conninfo, schema=pooled_schema, clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, postgres_url: str, pooled_schema: str) -> Callable[[], Any]:
        return functools.partial(
            tether.open_store, with_options(postgres_url, schema=pooled_schema)
        )


class TestAsyncPostgresStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(
        self, postgres_url: str, pooled_schema: str, clock: FakeClock
    ) -> AsyncIterator[AsyncPostgresStore]:
        url = with_options(postgres_url, schema=pooled_schema)
        async with AsyncPostgresStore.from_url(url, clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, postgres_url: str, pooled_schema: str) -> Callable[[], Any]:
        url = with_options(postgres_url, schema=pooled_schema)
        return functools.partial(tether.open_async_store, url)


@pytest.fixture
def store(postgres_url: str, pg_schema: str) -> Iterator[PostgresStore]:
    """A store on the server's clock (no clock injected), as applications run it."""
    with PostgresStore.from_url(with_options(postgres_url, schema=pg_schema)) as opened:
        yield opened


# --- one round trip ---------------------------------------------------------------------------
# Proof by the wire: libpq's protocol trace of the store's only pooled connection records every
# message the client sends. A round trip ends with a Sync (extended protocol: Parse / Bind /
# Execute / Sync) or is a simple Query; anything else the store did (a BEGIN, a read before the
# write, the pool's check of a connection) would show up as another one.


@contextmanager
def _traced(pgconn: pq.abc.PGconn) -> Iterator[list[str]]:
    """Yields a list that holds, once the block is over, the messages the client sent."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield sent
        finally:
            pgconn.untrace()  # flushes libpq's buffer
            trace.seek(0)
            sent.extend(m.group(1) for m in re.finditer(r"^F\t\d+\t(\w+)", trace.read(), re.M))


def _round_trips(sent: list[str]) -> int:
    return sum(1 for message in sent if message in ("Sync", "Query"))


def _one_connection_store(url: str, schema_name: str, **kwargs: Any) -> PostgresStore:
    conninfo, _ = _options.parse_url(url)
    return PostgresStore(conninfo, schema=schema_name, pool_min_size=1, pool_max_size=1, **kwargs)


def _pgconn(store: PostgresStore) -> pq.abc.PGconn:
    with store._pool.connection() as conn:  # the pool's only connection
        return conn.pgconn


def test_every_operation_is_one_round_trip(postgres_url: str, pg_schema: str) -> None:
    with _one_connection_store(postgres_url, pg_schema) as store:
        ids = [store.create(Session(owner="rt", metadata={"m": 1})).id for _ in range(3)]
        operations: dict[str, Callable[[int], Any]] = {
            "create": lambda i: store.create(Session(owner="rt", history=[{"role": "user"}])),
            "commit": lambda i: store.commit(
                ids[0],
                i + 1,
                append=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                changes={"state": {"turn": i}, "metadata": {"m": i}, "status": "running"},
            ),
            "load": lambda i: store.load(ids[0]),
            "load_after": lambda i: store.load(ids[0], after=i),
            "exists": lambda i: store.exists(ids[1]),
            "list": lambda i: store.list(owner="rt", metadata={"m": 1}, limit=2),
            "claim_release": lambda i: store.release(store.claim(ids[1], "w", 30)),
            "replace_history": lambda i: store.replace_history(ids[2], i + 1, [{"role": "s"}]),
            "delete": lambda i: store.delete(store.create(Session()).id),
        }
        per_call = {"claim_release": 2, "delete": 2}  # two store calls each
        offsets = dict.fromkeys(operations, 0)
        for name, operation in operations.items():
            for i in range(8):  # past psycopg's prepare threshold: statements are prepared
                operation(i)
            offsets[name] = 8
        pgconn = _pgconn(store)
        for name, operation in operations.items():
            calls = 10
            with _traced(pgconn) as sent:
                for i in range(offsets[name], offsets[name] + calls):
                    operation(i)
            assert _round_trips(sent) == calls * per_call.get(name, 1), (name, sent[:12])
        assert store.load(ids[0]).version == 1 + 18


def test_a_state_commit_keeps_the_runtime_block_in_one_round_trip(
    postgres_url: str, pg_schema: str
) -> None:
    """The statement merges the stored state["_tether"] into an application's new state: no
    read first. (A stored state holding "\\u0000" takes a read: see the conformance suite.)"""
    block = {"reviews": [{"id": "rv_1", "note": 'a "}" and {}'}], "n": 2**63 - 1}
    with _one_connection_store(postgres_url, pg_schema) as store:
        created = store.create(Session())
        with _core.runtime_writes():
            store.commit(created.id, 1, changes={"state": {"_tether": block}})
        for version in range(2, 10):  # past psycopg's prepare threshold
            store.commit(created.id, version, changes={"state": {"turn": version}})
        with _traced(_pgconn(store)) as sent:
            for version in range(10, 20):
                store.commit(created.id, version, changes={"state": {"turn": version}})
        assert _round_trips(sent) == 10
        assert store.load(created.id, last=0).state == {"turn": 19, "_tether": block}


def test_a_failed_commit_costs_one_more_round_trip_to_say_why(
    postgres_url: str, pg_schema: str
) -> None:
    with _one_connection_store(postgres_url, pg_schema) as store:
        created = store.create(Session())
        store.commit(created.id, 1)
        pgconn = _pgconn(store)
        with _traced(pgconn) as sent, pytest.raises(tether.ConflictError):
            store.commit(created.id, 1, append=[{"role": "user"}])
        assert _round_trips(sent) == 2  # the guarded statement, then the read that explains it


async def test_async_commit_is_one_round_trip(postgres_url: str, pg_schema: str) -> None:
    conninfo, _ = _options.parse_url(postgres_url)
    async with AsyncPostgresStore(
        conninfo, schema=pg_schema, pool_min_size=1, pool_max_size=1
    ) as store:
        created = await store.create(Session())
        for version in range(1, 9):
            await store.commit(created.id, version, append=[{"role": "user"}])
        async with store._pool.connection() as conn:
            pgconn = conn.pgconn
        with _traced(pgconn) as sent:
            for version in range(9, 19):
                await store.commit(created.id, version, append=[{"role": "user"}])
        assert _round_trips(sent) == 10


def test_commit_never_rewrites_earlier_items(store: PostgresStore, postgres_url: str) -> None:
    created = store.create(Session(history=[{"role": "user", "content": "first"}]))
    with _raw(postgres_url) as conn:
        table = sql.SQL("{}.tether_items").format(sql.Identifier(store.schema))
        query = sql.SQL("SELECT xmin::text FROM {} WHERE session_id = %s AND seq = 1").format(table)
        before = conn.execute(query, (created.id,)).fetchone()
        for version in range(1, 6):
            store.commit(created.id, version, append=[{"role": "user"}])
        assert conn.execute(query, (created.id,)).fetchone() == before  # same row version


# --- listing uses the indexes ----------------------------------------------------------------


@pytest.mark.heavy  # fills a table big enough for the planner to pick the indexes
def test_list_filters_use_their_indexes(postgres_url: str, pg_schema: str) -> None:
    with _one_connection_store(postgres_url, pg_schema) as store:
        for i in range(3000):
            store.create(
                Session(
                    owner=f"owner-{i % 300}",
                    agent=f"agent-{i % 100}",
                    status="finished" if i % 100 == 0 else "running",
                    metadata={"tenant": f"t{i % 500}", "i": i},
                )
            )
        with _raw(postgres_url) as conn:
            for table in ("tether_sessions", "tether_session_meta"):
                names = sql.Identifier(pg_schema), sql.Identifier(table)
                conn.execute(sql.SQL("ANALYZE {}.{}").format(*names))
            expected: list[tuple[str, dict[str, Any]]] = [
                ("tether_sessions_status", {}),  # each status's page, merged (migration 4)
                ("tether_sessions_owner", {"owner": "owner-7"}),
                ("tether_sessions_agent", {"agent": "agent-7"}),
                ("tether_sessions_status", {"status": "finished"}),
                ("tether_sessions_status", {"status": ["finished", "new"]}),  # merged
                ("tether_session_meta_kv", {"metadata": {"tenant": "t7"}}),
            ]
            for index, filters in expected:
                query = _core.build_list_query(**filters, limit=20)
                statement, params = _sql.list_statement(store._sql, query, None)
                plan = "\n".join(
                    row[0] for row in conn.execute(b"EXPLAIN " + statement, params).fetchall()
                )
                assert index in plan, (filters, plan)
                assert "Seq Scan" not in plan, (filters, plan)
        assert len(store.list(metadata={"tenant": "t7"}).sessions) == 6
        assert len(store.list(owner="owner-7", limit=1000).sessions) == 10


# --- migrations -------------------------------------------------------------------------------


def _open_in_process(url: str, start: Any) -> None:
    start.wait()
    with tether.open_store(url) as opened:
        assert not opened.exists("anything")


@pytest.mark.slow  # six processes racing to migrate one schema
def test_processes_opening_a_new_schema_at_once_migrate_it_once(
    postgres_url: str, pg_schema: str
) -> None:
    url = with_options(postgres_url, schema=pg_schema)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_open_in_process, args=(url, start)) for _ in range(6)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
    with _raw(postgres_url) as conn:
        table = sql.SQL("{}.tether_schema_migrations").format(sql.Identifier(pg_schema))
        rows = conn.execute(sql.SQL("SELECT version FROM {} ORDER BY 1").format(table)).fetchall()
        assert rows == [(v,) for v in range(1, len(_migrations.MIGRATIONS) + 1)]


def test_a_database_migrated_by_a_newer_tether_is_refused(
    postgres_url: str, pg_schema: str
) -> None:
    url = with_options(postgres_url, schema=pg_schema)
    with PostgresStore.from_url(url) as first:
        first.open()
    with _raw(postgres_url) as conn:
        table = sql.SQL("{}.tether_schema_migrations").format(sql.Identifier(pg_schema))
        conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (99)").format(table))
    with PostgresStore.from_url(url) as second, pytest.raises(StoreError, match="upgrade tether"):
        second.exists("x")


def test_migrations_never_create_indexes_concurrently() -> None:
    # CREATE INDEX CONCURRENTLY cannot run in the migration transaction
    for step in _migrations.MIGRATIONS:
        for statement in step:
            assert "CONCURRENTLY" not in statement.upper()


# --- schemas, server clock, values -------------------------------------------------------------


def test_two_schemas_never_see_each_other(postgres_url: str, pg_schema: str) -> None:
    other_schema = _new_schema()
    try:
        with (
            PostgresStore.from_url(with_options(postgres_url, schema=pg_schema)) as one,
            PostgresStore.from_url(with_options(postgres_url, schema=other_schema)) as two,
        ):
            one.create(Session(id="shared-id", owner="one", state={"in": "one"}))
            assert not two.exists("shared-id")
            assert two.list().sessions == []
            with pytest.raises(SessionNotFound):
                two.load("shared-id")
            two.create(Session(id="shared-id", owner="two", state={"in": "two"}))
            assert one.load("shared-id").state == {"in": "one"}
            assert [h.owner for h in two.list().sessions] == ["two"]
            assert two.delete("shared-id")
            assert one.exists("shared-id")
    finally:
        _drop_schema(postgres_url, other_schema)


def test_server_clock_stamps_writes_and_drives_leases(
    store: PostgresStore, postgres_url: str
) -> None:
    with _raw(postgres_url) as conn:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        server_now: datetime = row[0]
    created = store.create(Session(history=[{"role": "user"}]))
    assert created.created_at is not None
    assert abs(created.created_at - server_now) < timedelta(seconds=30)
    # the item's timestamp is the write's own time, from the same clock
    assert created.history[0]["timestamp"] == created.created_at.isoformat(timespec="microseconds")
    assert store.load(created.id) == created
    lease = store.claim(created.id, "worker-1", 0.5)
    with pytest.raises(AlreadyClaimed):
        store.claim(created.id, "worker-2", 10)
    time.sleep(0.6)
    assert store.claim(created.id, "worker-2", 10).fence == lease.fence + 1
    gone = store.create(Session(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert not store.exists(gone.id)


def test_purge_expired_removes_the_rows(store: PostgresStore, postgres_url: str) -> None:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    gone = [store.create(Session(expires_at=past, history=[{"role": "user"}])).id for _ in range(3)]
    kept = store.create(Session(history=[{"role": "user"}])).id
    assert store.purge_expired() == 3
    assert store.purge_expired() == 0
    with _raw(postgres_url) as conn:
        for table in ("tether_items", "tether_session_meta"):
            query = sql.SQL("SELECT count(*) FROM {}.{} WHERE session_id = ANY(%s)").format(
                sql.Identifier(store.schema), sql.Identifier(table)
            )
            assert conn.execute(query, (gone,)).fetchone() == (0,)
    assert store.exists(kept)


def test_values_postgres_text_cannot_hold_are_refused(store: PostgresStore) -> None:
    with pytest.raises(InvalidSessionData):
        store.create(Session(owner="nul\x00owner"))
    created = store.create(Session(metadata={"nul\x00key": "v\x00"}))
    with pytest.raises(InvalidRequest):
        store.commit(created.id, 1, changes={"agent": "a\x00"})
    with pytest.raises(InvalidRequest):
        store.claim(created.id, "owner\x00", 10)
    # JSON may hold NUL anywhere: the json columns keep it (JSONB could not)
    assert store.load(created.id).metadata == {"nul\x00key": "v\x00"}
    assert [h.id for h in store.list(metadata={"nul\x00key": "v\x00"}).sessions] == [created.id]


def test_long_metadata_values_are_indexed_and_filtered(store: PostgresStore) -> None:
    long_value = "x" * 50_000  # far past a btree entry's limit: the index holds a hash
    created = store.create(Session(metadata={"summary": long_value}))
    store.create(Session(metadata={"summary": long_value + "y"}))
    assert [h.id for h in store.list(metadata={"summary": long_value}).sessions] == [created.id]


def test_key_value_conninfo_and_close(postgres_url: str, pg_schema: str) -> None:
    params = _options.check_conninfo(_options.parse_url(postgres_url)[0])
    conninfo = " ".join(f"{key}={value}" for key, value in params.items())
    store = PostgresStore(conninfo, schema=pg_schema)
    created = store.create(Session())
    assert store.exists(created.id)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.exists(created.id)


# --- URLs and options (no server needed) ------------------------------------------------------


def test_url_options_are_split_between_tether_and_libpq() -> None:
    conninfo, options = _options.parse_url(
        "postgresql://ada:secret@db.example:5433/app?schema=tenant_a&sslmode=disable"
        "&pool_min_size=0&pool_max_size=3&pool_timeout=2.5&connect_timeout=2"
    )
    assert conninfo == (
        "postgresql://ada:secret@db.example:5433/app?sslmode=disable&connect_timeout=2"
    )
    assert options == {
        "schema": "tenant_a",
        "pool_min_size": 0,
        "pool_max_size": 3,
        "pool_timeout": 2.5,
    }
    assert _options.parse_url("postgres://h/db")[1] == {}
    kwargs = _options.connection_kwargs(conninfo)
    assert "connect_timeout" not in kwargs  # the URL's own value wins
    assert kwargs["autocommit"] is True
    assert _options.connection_kwargs("postgresql://h/db")["connect_timeout"] == "5"
    assert _options.describe(conninfo) == "ada@db.example:5433/app"


def test_a_libpq_option_with_a_space_reaches_the_server_as_a_space(postgres_url: str) -> None:
    """``options=-c%20...``: libpq reads ``%20`` as a space and ``+`` as a plus sign."""
    conninfo, _ = _options.parse_url("postgresql://h/db?options=-c%20statement_timeout%3D1234")
    assert conninfo == "postgresql://h/db?options=-c%20statement_timeout%3D1234"
    with _raw(with_options(postgres_url, options="-c statement_timeout=1234")) as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
    assert row is not None
    assert row[0] == "1234ms"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://ada:secret@h/db?namespace=x", "unknown option 'namespace'"),
        ("postgresql://h/db?schema=bad-name", "not a valid schema name"),
        ("postgresql://h/db?schema=1abc", "not a valid schema name"),
        ("postgresql://h/db?schema=pg_temp", "reserved"),
        ("postgresql://h/db?pool_max_size=lots", "pool_max_size"),
        ("postgresql://h/db?pool_timeout=0", "pool_timeout"),
        ("mysql://h/db", "expected a postgresql://"),
        ("postgresql://h/db?schema=a&schema=b", "given twice"),
    ],
)
def test_bad_urls_raise_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as info:
        PostgresStore.from_url(url)
    assert "secret" not in str(info.value)
    if "unknown option" in message:
        assert "pool_max_size, pool_min_size, pool_timeout, schema" in str(info.value)


def test_bad_schema_names_and_pool_sizes_are_refused() -> None:
    for name in ('x"; DROP TABLE y; --', "", "a" * 64, "sp ace", 5):
        with pytest.raises(ConfigurationError):
            PostgresStore("postgresql://h/db", schema=name)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://h/db", pool_min_size=5, pool_max_size=2)
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://h/db", pool_timeout=0)


def test_open_store_picks_the_postgres_store_without_connecting() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?schema=app&pool_timeout=1"
    with tether.open_store(url) as opened:
        assert isinstance(opened, PostgresStore)
        assert opened.schema == "app"
    assert type(tether.open_async_store(url.replace("postgresql", "postgres"))).__name__ == (
        "AsyncPostgresStore"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_nothing_listening_raises_store_unavailable_quickly() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/test?pool_timeout=1&schema=x"
    with tether.open_store(url) as opened:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            opened.exists("anything")
        assert time.monotonic() - started < 10
    assert isinstance(info.value, StoreError)
    assert "unavailable" in str(info.value)


# --- a real server stops and comes back -------------------------------------------------------


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class ThrowawayServer:
    """A PostgreSQL cluster in a temporary directory, on a free port, for fault tests.

    initdb refuses to run as root, so under root every command runs as the ``postgres`` OS
    user (runuser) in a directory that user owns.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.prefix, str(self.bin / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=20"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop()  # fails if it is not running: fine
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def throwaway() -> Iterator[ThrowawayServer]:
    bin_dir = _pg_bin()
    reason = None
    if bin_dir is None:
        reason = "no PostgreSQL binaries (pg_ctl) found"
    elif os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        reason = "running as root without runuser and a postgres user to run initdb as"
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    assert bin_dir is not None
    server = ThrowawayServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.heavy
def test_server_down_gives_store_unavailable_and_the_next_call_after_works(
    throwaway: ThrowawayServer,
) -> None:
    url = with_options(throwaway.url, schema="tether_t_fault_sync", pool_timeout="3")
    with PostgresStore.from_url(url) as store:
        created = store.create(Session(history=[{"role": "user", "content": "hi"}]))
        # restarted while idle: the pool's dead connection is noticed and replaced
        throwaway.stop()
        throwaway.start()
        assert store.load(created.id) == created
        throwaway.stop()
        for call in (lambda: store.load(created.id), lambda: store.commit(created.id, 1)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="unavailable"):
                call()
            assert time.monotonic() - started < 15, "a hang guard, not a speed target"
        # a store whose first call meets the server down opens once it is back
        late_url = with_options(throwaway.url, schema="tether_t_fault_late", pool_timeout="2")
        late = PostgresStore.from_url(late_url)
        with pytest.raises(StoreUnavailable):
            late.exists("x")
        throwaway.start()
        assert store.load(created.id) == created  # nothing was written while it was down
        assert store.commit(created.id, 1, append=[{"role": "user"}]) == 2
        assert not late.exists("x")
        late.close()


@pytest.mark.heavy
async def test_async_server_down_gives_store_unavailable_and_the_next_call_after_works(
    throwaway: ThrowawayServer,
) -> None:
    url = with_options(throwaway.url, schema="tether_t_fault_async", pool_timeout="3")
    async with AsyncPostgresStore.from_url(url) as store:
        created = await store.create(Session(history=[{"role": "user", "content": "hi"}]))
        await asyncio.to_thread(throwaway.stop)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.load(created.id)
        assert time.monotonic() - started < 15
        await asyncio.to_thread(throwaway.start)
        assert await store.load(created.id) == created
        assert await store.commit(created.id, 1, append=[{"role": "user"}]) == 2


# --- search_path: the statements resolve operators and functions in pg_catalog only -------------


_HOSTILE = """
CREATE FUNCTION {s}.evil_mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile * called'; END $$;
CREATE OPERATOR {s}.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = {s}.evil_mul);
CREATE FUNCTION {s}.evil_cat(text, bigint) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile || called'; END $$;
CREATE OPERATOR {s}.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = {s}.evil_cat);
"""


@pytest.mark.parametrize("asynchronous", [False, True])
def test_operators_planted_on_the_search_path_are_never_called(
    postgres_url: str, pg_schema: str, asynchronous: bool
) -> None:
    # CVE-2018-1058: whoever can create objects in a schema on the connection's search_path
    # can plant operators that match tether's argument types better than pg_catalog's.
    hostile = _new_schema()
    try:
        with _raw(postgres_url) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(hostile)))
            conn.execute(_HOSTILE.replace("{s}", hostile).encode())
            conn.execute(f"SET search_path = {hostile}, public".encode())
            with pytest.raises(psycopg.errors.RaiseException, match="hostile"):
                conn.execute("SELECT (extract(epoch FROM now()) * 1000000)::bigint")
            with pytest.raises(psycopg.errors.RaiseException, match="hostile"):
                conn.execute("""SELECT '{"seq":' || 5::bigint""")
        url = with_options(
            postgres_url, schema=pg_schema, options=f"-csearch_path={hostile},public"
        )

        def run(store: PostgresStore) -> None:
            created = store.create(Session(history=[{"role": "user", "content": "a"}]))
            store.commit(created.id, 1, append=[{"role": "assistant", "content": "b"}])
            lease = store.claim(created.id, "worker-1", 30)
            assert [i["seq"] for i in store.load(created.id).history] == [1, 2]
            assert [h.id for h in store.list().sessions] == [created.id]
            store.replace_history(created.id, 2, [{"role": "system", "content": "c"}], lease=lease)
            assert store.delete(created.id, lease=lease)

        async def run_async() -> None:
            async with AsyncPostgresStore.from_url(url) as store:
                created = await store.create(Session(history=[{"role": "user", "content": "a"}]))
                await store.commit(created.id, 1, append=[{"role": "assistant", "content": "b"}])
                await store.claim(created.id, "worker-1", 30)
                assert [i["seq"] for i in (await store.load(created.id)).history] == [1, 2]
                assert [h.id for h in (await store.list()).sessions] == [created.id]

        if asynchronous:
            asyncio.run(run_async())
        else:
            with PostgresStore.from_url(url) as store:
                run(store)
    finally:
        _drop_schema(postgres_url, hostile)
