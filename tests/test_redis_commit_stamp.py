"""``commit_stamped`` on Redis: the commit script's reply says what it stamped (the version,
the time, last_seq, the lease fields), so the stamp costs no round trip of its own, and the
rows it reports are the stored list elements byte for byte. ``Sessions.execute`` on a cached
session is then the commit script alone: one round trip, where reading the commit back made
it two. Each test works in its own namespace and removes it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import tether
from tether import AppendMessages, KeyedItem, Session, Sessions, SetState, Suspend, _core
from tether.stores.base import CommitStamp
from tether.stores.redis import AsyncRedisStore, RedisStore
from tether.testing import FakeClock

from .conftest import wipe_redis_namespace
from .test_redis_store import SCRIPT, WIRE, async_counting_store, counting_store


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex}"
    yield name
    wipe_redis_namespace(redis_url, name)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _stored_rows(raw: redis.Redis, store: RedisStore, session_id: str, first: int) -> list[bytes]:
    """The items list's elements from seq ``first`` on (the session's seqs start at 1)."""
    rows: list[bytes] = raw.lrange(store.keys.session(session_id)[1], first - 1, -1)  # type: ignore[assignment]
    return rows


ITEMS: list[Any] = [
    {"role": "user", "content": 'é \u2028 \\u0000 "quoted" {braces}', "n": [1, 2.5, None]},
    {"role": "assistant", "content": "its own time", "timestamp": "2020-01-01T00:00:00+00:00"},
    KeyedItem("call-1", {"role": "tool", "content": {}}),
    {},  # an empty item is still a row with an "item"
]


@pytest.mark.parametrize("clocked", [False, True], ids=["server-clock", "injected-clock"])
def test_commit_stamped_reports_the_stored_rows_and_header(
    redis_url: str, namespace: str, raw: redis.Redis, clocked: bool
) -> None:
    clock = FakeClock() if clocked else None
    with counting_store(redis_url, namespace, clock=clock) as store:
        sid = store.create(Session(history=[{"role": "user", "content": "a"}])).id
        lease = store.claim(sid, "runner-1", 60)
        WIRE.reset()
        stamp = store.commit_stamped(sid, 1, append=ITEMS, lease=lease)
        assert WIRE.one_round_trip() == SCRIPT
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
        assert stamp.rows == tuple(_stored_rows(raw, store, sid, 2))
        _, stored = _core.item_views(sid, _core.decode_items(sid, stamp.rows))
        assert stored == loaded.items[1:]
        assert [item.timestamp for item in stored[:2]] == [
            stamp.updated_at.isoformat(timespec="microseconds"),
            "2020-01-01T00:00:00+00:00",
        ]


def test_a_client_that_decodes_replies_gets_the_stamp_too(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with RedisStore(client, namespace=namespace, close_client=True) as store:
        sid = store.create(Session()).id
        stamp = store.commit_stamped(sid, 1, append=[{"role": "user"}])
        loaded = store.load(sid)
        assert stamp.reported
        assert (stamp.version, stamp.updated_at, stamp.lease_fence) == (2, loaded.updated_at, 0)
        _, stored = _core.item_views(sid, _core.decode_items(sid, stamp.rows or ()))
        assert stored == loaded.items


def test_a_retried_commit_whose_reply_was_lost_reports_the_version_alone(
    redis_url: str, namespace: str
) -> None:
    """The script sees its write already applied (the nonce): it says the version, and the
    caller reads the rest back instead of trusting a stamp of a later state."""
    with counting_store(redis_url, namespace) as store:
        sessions = Sessions(store)
        sid = sessions.create().id
        sessions.get(sid)
        WIRE.lose_next_reply = True
        stamp = store.commit_stamped(sid, 1, append=[{"role": "user"}])
        assert not WIRE.lose_next_reply, "the reply was lost and the call retried"
        assert stamp == CommitStamp(2)
        assert not stamp.reported
        assert store.load(sid).history_len == 1
        sessions.get(sid)
        WIRE.lose_next_reply = True
        saved = sessions.execute(sid, AppendMessages({"role": "user", "content": "b"}))
        assert saved == Sessions(store, cache_size=0).get(sid)


def test_execute_on_a_cached_session_is_the_commit_alone(redis_url: str, namespace: str) -> None:
    with counting_store(redis_url, namespace) as store:
        sessions = Sessions(store)
        sid = sessions.create(history=[{"role": "user", "content": "a"}]).id
        sessions.get(sid)
        sessions.execute(sid, Suspend())  # the runtime's block, kept by the next state write
        for action in (AppendMessages({"role": "user", "content": "b"}), SetState(k=1)):
            WIRE.reset()
            saved = sessions.execute(sid, action)
            assert WIRE.one_round_trip() == SCRIPT  # no read back after the commit
            assert saved == Sessions(store, cache_size=0).get(sid)


async def test_async_sessions_build_the_saved_session_from_the_stamp(
    redis_url: str, namespace: str
) -> None:
    async with (
        async_counting_store(redis_url, namespace) as store,
        tether.AsyncSessions(store) as sessions,
    ):
        assert AsyncRedisStore._stamps_commits
        sid = (await sessions.create(history=[{"role": "user", "content": "a"}])).id
        await sessions.get(sid)
        for n in range(4):
            WIRE.reset()
            saved = await sessions.execute(sid, AppendMessages({"role": "user", "content": n}))
            assert WIRE.one_round_trip() == SCRIPT
        assert saved == await tether.AsyncSessions(store, cache_size=0).get(sid)
        stamp = await store.commit_stamped(sid, saved.version)
        assert stamp.reported
        assert stamp.version == saved.version + 1
