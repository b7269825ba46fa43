"""``commit_stamped`` on PostgreSQL: the commit statement returns what it stamped (the version,
last_seq, updated_at, the lease fields), so the stamp costs no round trip of its own, and the
rows it reports are the stored rows byte for byte. ``Sessions.execute`` on a cached session is
then the commit alone: one round trip, where reading the commit back made it two.

Round trips are counted on the wire, as in test_postgres_store.py (libpq's protocol trace of a
one-connection store). Every test works in its own schema and drops it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

import tether
from tether import AppendMessages, KeyedItem, Session, Sessions, _core
from tether.stores.postgres import AsyncPostgresStore, PostgresStore
from tether.testing import FakeClock

from .conftest import drop_postgres_schema, with_options
from .test_postgres_store import _one_connection_store, _pgconn, _raw, _round_trips, _traced


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = f"tether_t_{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(postgres_url, name)


def _stored_rows(url: str, schema_name: str, session_id: str, after: int) -> list[bytes]:
    with _raw(url) as conn:
        table = sql.SQL("{}.tether_items").format(sql.Identifier(schema_name))
        query = sql.SQL(
            "SELECT data::text FROM {} WHERE session_id = %s AND seq > %s ORDER BY seq"
        ).format(table)
        return [row[0].encode() for row in conn.execute(query, (session_id, after)).fetchall()]


ITEMS: list[Any] = [
    {"role": "user", "content": 'é \u2028 \\u0000 "quoted" {braces}', "n": [1, 2.5, None]},
    {"role": "assistant", "content": "its own time", "timestamp": "2020-01-01T00:00:00+00:00"},
    KeyedItem("call-1", {"role": "tool", "content": {}}),
    {},  # an empty item is still a row with an "item"
]


@pytest.mark.parametrize("clocked", [False, True], ids=["server-clock", "injected-clock"])
def test_commit_stamped_reports_the_stored_rows_and_header(
    postgres_url: str, pg_schema: str, clocked: bool
) -> None:
    clock = FakeClock() if clocked else None
    with _one_connection_store(postgres_url, pg_schema, clock=clock) as store:
        sid = store.create(Session(history=[{"role": "user", "content": "a"}])).id
        lease = store.claim(sid, "runner-1", 60)
        stamp = store.commit_stamped(sid, 1, append=ITEMS, lease=lease)
        loaded = store.load(sid)
        assert stamp.reported
        assert stamp.updated_at is not None
        assert stamp.version == loaded.version == 2
        assert stamp.updated_at == loaded.updated_at
        assert (stamp.lease_owner, stamp.lease_fence, stamp.lease_expires_at) == (
            loaded.lease_owner,
            loaded.lease_fence,
            loaded.lease_expires_at,
        )
        assert stamp.rows == tuple(_stored_rows(postgres_url, pg_schema, sid, 1))
        _, stored = _core.item_views(sid, _core.decode_items(sid, stamp.rows))
        assert stored == loaded.items[1:]
        assert [item.timestamp for item in stored[:2]] == [
            stamp.updated_at.isoformat(timespec="microseconds"),
            "2020-01-01T00:00:00+00:00",
        ]


def test_commit_stamped_is_one_round_trip(postgres_url: str, pg_schema: str) -> None:
    with _one_connection_store(postgres_url, pg_schema) as store:
        sid = store.create(Session()).id
        for version in range(1, 9):  # past psycopg's prepare threshold
            store.commit_stamped(sid, version, append=[{"role": "user"}])
        with _traced(_pgconn(store)) as sent:
            for version in range(9, 19):
                store.commit_stamped(sid, version, append=[{"role": "user"}])
        assert _round_trips(sent) == 10


def test_a_commit_without_header_changes_sends_only_the_writes_parameters(
    postgres_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat turn's commit changes nothing in the header and appends no keyed item: it runs
    the statement without the changes and without the item-key CTE (APPEND_PLAIN), and none of
    their parameters is converted; one with a keyed item runs APPEND, one that changes the
    header COMMIT. All stamp what they stored, and the lease and version guards hold for all."""
    with _one_connection_store(postgres_url, pg_schema) as store:
        sent: list[tuple[bytes, dict[str, Any]]] = []
        keyed_write = store._keyed_write

        def recorded(what: str, statement: bytes, params: dict[str, Any], *a: Any, **k: Any) -> Any:
            sent.append((statement, dict(params)))
            return keyed_write(what, statement, params, *a, **k)

        monkeypatch.setattr(store, "_keyed_write", recorded)
        sid = store.create(Session()).id
        plain = store.commit_stamped(sid, 1, append=[{"role": "user", "content": "a"}])
        changed = store.commit_stamped(
            sid, 2, append=[{"role": "assistant"}], changes={"status": "running"}
        )
        with pytest.raises(tether.ConflictError):
            store.commit(sid, 2, append=[{"role": "user"}])  # stale: refused, as by COMMIT
        lease = store.claim(sid, "runner-1", 60)
        with pytest.raises(tether.AlreadyClaimed):
            store.commit(sid, 3, append=[{"role": "user"}])  # another's live lease
        assert store.commit(sid, 3, append=[{"role": "user"}], lease=lease) == 4
        keyed = store.commit_stamped(sid, 4, append=[KeyedItem("k", {"role": "tool"})], lease=lease)
        assert [statement for statement, _ in sent[:2]] == [
            store._sql.append_plain,
            store._sql.commit,
        ]
        assert [statement for statement, _ in sent[-2:]] == [
            store._sql.append_plain,
            store._sql.append,
        ]
        assert b"tether_item_keys" not in store._sql.append_plain
        assert b"item_keys" not in store._sql.append_plain
        assert b"tether_item_keys" in store._sql.append
        assert "set_status" not in sent[0][1]
        assert "metadata" not in sent[0][1]
        assert sent[1][1]["set_status"] is True
        loaded = store.load(sid)
        assert (plain.version, changed.version) == (2, 3)
        assert stamps_match(plain, loaded, 0)
        assert stamps_match(changed, loaded, 1)
        assert stamps_match(keyed, loaded, 3)
        assert loaded.status == "running"
        assert [item.item for item in loaded.items] == [
            {"role": "user", "content": "a"},
            {"role": "assistant"},
            {"role": "user"},
            {"role": "tool"},
        ]
        assert loaded.items[3].key == "k"
        assert list(store.items_by_key(sid, ["k"])) == ["k"]
        with pytest.raises(tether.DuplicateItemKey):
            store.commit(sid, 5, append=[KeyedItem("k", {})], lease=lease)
        # a write mixing plain and keyed items runs APPEND: both kinds stored, in order
        store.commit(sid, 5, append=[{"role": "user"}, KeyedItem("j", {})], lease=lease)
        assert sent[-1][0] == store._sql.append
        mixed = store.load(sid, after=4)
        assert [(item.key, item.item) for item in mixed.items] == [
            (None, {"role": "user"}),
            ("j", {}),
        ]


def stamps_match(stamp: Any, loaded: Session, index: int) -> bool:
    _, stored = _core.item_views(loaded.id, _core.decode_items(loaded.id, stamp.rows))
    return stored == loaded.items[index : index + 1]


def test_execute_on_a_cached_session_is_the_commit_alone(postgres_url: str, pg_schema: str) -> None:
    with _one_connection_store(postgres_url, pg_schema) as store:
        sessions = Sessions(store)
        sid = sessions.create(history=[{"role": "user", "content": "a"}]).id
        sessions.get(sid)
        for n in range(8):
            sessions.execute(sid, AppendMessages({"role": "user", "content": n}))
        with _traced(_pgconn(store)) as sent:
            for n in range(10):
                saved = sessions.execute(sid, AppendMessages({"role": "user", "content": n}))
        assert _round_trips(sent) == 10  # no read back after each commit
        assert saved == Sessions(store, cache_size=0).get(sid)


def test_a_state_holding_nul_keeps_its_block_and_the_stamp(
    postgres_url: str, pg_schema: str
) -> None:
    """The slow path (the statement cannot merge the runtime block into a stored state holding
    "\\u0000": the store reads it, merges, and commits again) reports the stamp as the one
    statement does."""
    url = with_options(postgres_url, schema=pg_schema)
    block = {"reviews": [], "n": 1}
    with PostgresStore.from_url(url) as store:
        sid = store.create(Session(state={"text": "a\x00b"})).id
        with _core.runtime_writes():
            store.commit(sid, 1, changes={"state": {"text": "a\x00b", "_tether": block}})
        reads: list[Any] = []
        load = store._load

        def counted(*args: Any, **kwargs: Any) -> Any:
            reads.append(args)
            return load(*args, **kwargs)

        store._load = counted  # type: ignore[method-assign]
        stamp = store.commit_stamped(
            sid, 2, append=[{"role": "user"}], changes={"state": {"text": "c\x00d"}}
        )
        assert len(reads) == 1  # the slow path ran
        store._load = load  # type: ignore[method-assign]
        loaded = store.load(sid)
        assert loaded.state == {"text": "c\x00d", "_tether": block}
        assert stamp.reported
        assert (stamp.version, stamp.updated_at) == (loaded.version, loaded.updated_at)
        assert stamp.rows == tuple(_stored_rows(postgres_url, pg_schema, sid, 0))


async def test_async_sessions_build_the_saved_session_from_the_stamp(
    postgres_url: str, pg_schema: str
) -> None:
    url = with_options(postgres_url, schema=pg_schema)
    async with AsyncPostgresStore.from_url(url) as store, tether.AsyncSessions(store) as sessions:
        assert AsyncPostgresStore._stamps_commits
        sid = (await sessions.create(history=[{"role": "user", "content": "a"}])).id
        await sessions.get(sid)
        loads = 0
        load = store.load

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal loads
            loads += 1
            return await load(*args, **kwargs)

        store.load = counted  # type: ignore[method-assign]
        for n in range(4):
            saved = await sessions.execute(sid, AppendMessages({"role": "user", "content": n}))
        assert loads == 0
        store.load = load  # type: ignore[method-assign]
        assert saved == await tether.AsyncSessions(store, cache_size=0).get(sid)
        stamp = await store.commit_stamped(sid, saved.version)
        assert stamp.reported
        assert stamp.version == saved.version + 1
