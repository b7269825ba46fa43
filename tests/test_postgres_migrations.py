"""The PostgreSQL store's tables on the one migration runner (stores/_migration_runner.py):
databases left at an older migration by an older tether are brought up to date with their
sessions intact, a newer one is refused with a message that says where and what, a failed step
leaves nothing half done, and migrators that start together apply each step once.

An old database is built as an older tether left it: the first ``k`` steps of the store's own
``MIGRATIONS`` applied and recorded, and a session written in the tables those steps made.
Every test works in its own schema and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import tether
from tether import KeyedItem, Session, Sessions, StoreError
from tether.schema import schema
from tether.stores.postgres import (
    AsyncPostgresStore,
    PostgresStore,
    _conn_sync,
    _options,
    _rows,
    _sql,
)

from .conftest import drop_postgres_schema, with_options

SCHEMA_PREFIX = "tether_t_"
TARGET = len(_sql.Statements.for_schema("public").migrations)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = f"{SCHEMA_PREFIX}{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(postgres_url, name)


def _raw(url: str) -> psycopg.Connection[Any]:
    conninfo, _ = _options.parse_url(url)
    return psycopg.connect(conninfo, autocommit=True)


def _recorded(url: str, name: str) -> list[int]:
    with _raw(url) as conn:
        table = sql.SQL("{}.tether_schema_migrations").format(sql.Identifier(name))
        rows = conn.execute(sql.SQL("SELECT version FROM {} ORDER BY 1").format(table)).fetchall()
    return [int(row[0]) for row in rows]


def _table_exists(url: str, name: str, table: str) -> bool:
    with _raw(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f'"{name}".{table}',)).fetchone()
    return row is not None and row[0] is not None


def _indexes(url: str, name: str) -> dict[str, str]:
    with _raw(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (name,)
        ).fetchall()
    return {str(index): str(definition) for index, definition in rows}


OLD_ITEMS = (
    '{"seq":1,"timestamp":"2024-05-01T10:00:00.000000+00:00","item":{"role":"user","content":"a"}}',
    '{"seq":2,"timestamp":"2024-05-01T10:00:01.000000+00:00","item":{"role":"assistant",'
    '"content":"b"}}',
)


def _old_database(url: str, name: str, steps: int) -> None:
    """``name`` as a tether that knew ``steps`` migrations left it, holding session "old"."""
    statements = _sql.Statements.for_schema(name)
    with _raw(url) as conn, conn.transaction():
        conn.execute(statements.create_schema)
        conn.execute(statements.create_migrations_table)
        for version in range(1, steps + 1):
            for statement in statements.migrations[version - 1]:
                conn.execute(statement)
            conn.execute(statements.record_migration, {"v": version})
        # The columns of migration 1 only: what every older tether wrote.
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.tether_sessions (id, owner, agent, status, metadata, state, "
                "options, parent_id, fork_seq, version, schema_version, created_at, updated_at, "
                "expires_at, last_seq, history_len, lease_owner, lease_token, lease_fence, "
                "lease_expires_at) VALUES ('old', 'alice', NULL, 'running', '{{\"team\":\"red\"}}',"
                " '{{\"k\":1}}', '{{}}', NULL, NULL, 3, %s, '2024-05-01T10:00:00Z', "
                "'2024-05-01T10:00:01Z', NULL, 2, 2, NULL, NULL, 0, NULL)"
            ).format(sql.Identifier(name)),
            (schema.current,),
        )
        meta = _rows.metadata_rows({"team": "red"})  # the index rows every tether wrote
        for row in zip(meta["meta_keys"], meta["meta_values"], meta["meta_hashes"], strict=True):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.tether_session_meta (session_id, key, value, kv_hash) "
                    "VALUES ('old', %s, %s, %s)"
                ).format(sql.Identifier(name)),
                row,
            )
        for seq, data in enumerate(OLD_ITEMS, 1):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.tether_items (session_id, seq, data) VALUES ('old', %s, %s)"
                ).format(sql.Identifier(name)),
                (seq, data),
            )


@pytest.mark.parametrize("steps", range(1, TARGET))
def test_an_old_database_is_migrated_and_its_sessions_kept(
    postgres_url: str, pg_schema: str, steps: int, caplog: pytest.LogCaptureFixture
) -> None:
    _old_database(postgres_url, pg_schema, steps)
    url = with_options(postgres_url, schema=pg_schema)
    with (
        caplog.at_level(logging.INFO, "tether.stores.migrations"),
        PostgresStore.from_url(url) as store,
    ):
        old = store.load("old")
        assert [item.item for item in old.items] == [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
        ]
        assert (old.version, old.owner, old.state, old.metadata) == (
            3,
            "alice",
            {"k": 1},
            {"team": "red"},
        )
        assert [h.id for h in store.list(metadata={"team": "red"}).sessions] == ["old"]
        assert [h.id for h in store.list(owner="alice").sessions] == ["old"]
        assert [h.id for h in store.list().sessions] == ["old"]  # each status's page merged
        assert [h.id for h in store.list(status=["running", "new"]).sessions] == ["old"]
        # what the later migrations added works on the session an older tether wrote
        store.commit("old", 3, append=[KeyedItem("call-1", {"role": "tool"})])  # migration 2
        assert store.items_by_key("old", ["call-1"])["call-1"].seq == 3
        sessions = Sessions(store)
        child = sessions.fork("old", at=2)  # migration 3: the child shares the parent's rows
        assert [item.item["content"] for item in sessions.get(child.id).items] == ["a", "b"]
    assert _recorded(postgres_url, pg_schema) == list(range(1, TARGET + 1))
    indexes = _indexes(postgres_url, pg_schema)  # migration 4: fewer entries per commit
    assert "tether_sessions_updated" not in indexes
    assert indexes["tether_sessions_owner"].endswith("WHERE (owner IS NOT NULL)")
    assert indexes["tether_sessions_agent"].endswith("WHERE (agent IS NOT NULL)")
    applied = [r.getMessage() for r in caplog.records if "applied database migration" in r.msg]
    assert applied == [
        f"schema {pg_schema!r} at {_options.describe(_options.parse_url(url)[0])}: "
        f"applied database migration {version}"
        for version in range(steps + 1, TARGET + 1)
    ]
    # up to date now: opening again applies nothing
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, "tether.stores.migrations"),
        PostgresStore.from_url(url) as again,
    ):
        assert again.load("old").version == 4
    assert not [r for r in caplog.records if "applied database migration" in r.msg]


async def test_the_async_store_migrates_an_old_database(postgres_url: str, pg_schema: str) -> None:
    _old_database(postgres_url, pg_schema, 1)
    url = with_options(postgres_url, schema=pg_schema)
    async with AsyncPostgresStore.from_url(url) as store:
        await store.commit("old", 3, append=[KeyedItem("k", {"role": "tool"})])
        assert (await store.items_by_key("old", ["k"]))["k"].seq == 3
    assert _recorded(postgres_url, pg_schema) == list(range(1, TARGET + 1))


def test_a_newer_database_is_refused_saying_where_and_which(
    postgres_url: str, pg_schema: str
) -> None:
    url = with_options(postgres_url, schema=pg_schema)
    with PostgresStore.from_url(url) as first:
        first.open()
    with _raw(postgres_url) as conn:
        table = sql.SQL("{}.tether_schema_migrations").format(sql.Identifier(pg_schema))
        conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(table), (TARGET + 7,))
    with PostgresStore.from_url(url) as second, pytest.raises(StoreError) as caught:
        second.exists("x")
    message = str(caught.value)
    assert f"schema {pg_schema!r} at " in message
    assert f"has database migration {TARGET + 7}, newer than this tether knows ({TARGET})" in (
        message
    )
    assert "upgrade tether" in message
    assert _recorded(postgres_url, pg_schema)[-1] == TARGET + 7  # nothing was written


def test_a_failed_step_leaves_the_database_as_it_was(postgres_url: str, pg_schema: str) -> None:
    _old_database(postgres_url, pg_schema, 1)
    statements = _sql.Statements.for_schema(pg_schema)
    failing = dataclasses.replace(
        statements, migrations=(*statements.migrations, (b"SELECT 1 / 0",))
    )
    conninfo, _ = _options.parse_url(postgres_url)
    with (
        psycopg.connect(conninfo, **_options.connection_kwargs(conninfo)) as conn,
        pytest.raises(psycopg.errors.DivisionByZero),
    ):
        _conn_sync.migrate(conn, failing, pg_schema, "here")
    # steps 2 and 3 ran in the same transaction as the failing one: rolled back with it
    assert _recorded(postgres_url, pg_schema) == [1]
    assert not _table_exists(postgres_url, pg_schema, "tether_item_keys")
    with PostgresStore.from_url(with_options(postgres_url, schema=pg_schema)) as store:
        assert store.load("old").version == 3  # and the real steps still apply afterwards
    assert _recorded(postgres_url, pg_schema) == list(range(1, TARGET + 1))


def test_migrators_opening_an_old_database_at_once_apply_each_step_once(
    postgres_url: str, pg_schema: str
) -> None:
    _old_database(postgres_url, pg_schema, 1)
    url = with_options(postgres_url, schema=pg_schema)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            with tether.open_store(url) as store:
                start.wait(timeout=30)
                store.open()  # type: ignore[attr-defined]
                assert store.load("old").version == 3
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert _recorded(postgres_url, pg_schema) == list(range(1, TARGET + 1))


async def test_async_migrators_on_a_new_schema_apply_each_step_once(
    postgres_url: str, pg_schema: str
) -> None:
    url = with_options(postgres_url, schema=pg_schema)
    stores = [AsyncPostgresStore.from_url(url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await stores[0].create(Session(id="s")) is not None
    finally:
        for store in stores:
            await store.close()
    assert _recorded(postgres_url, pg_schema) == list(range(1, TARGET + 1))
