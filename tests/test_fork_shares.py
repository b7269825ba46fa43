"""Forks that share their parent's items on the server stores (issue 18): Redis and PostgreSQL.

``fork_session`` records where the child's items are instead of copying them; these tests
check what the conformance suite's fork clauses do not reach: a parent deleted, purged,
expired or rewritten while its forks live, forks of forks, windows and keyed reads across the
fork point, a fork racing commits to its parent, an exported child, and (Redis) native expiry
never taking a parent's keys before its forks'. Each test works in its own namespace / schema.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import tether
from tether import KeyedItem, Session, Store
from tether.stores.postgres import PostgresStore
from tether.stores.redis import RedisStore
from tether.testing import FakeClock

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options


def _items(n: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{prefix}{i}"} for i in range(n)]


def _texts(store: Store, session_id: str, **window: Any) -> list[str]:
    return [item["content"] for item in store.load(session_id, **window).history]


@pytest.fixture(params=["redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(kind: str) -> Iterator[str]:
    base = require_server(kind)
    if kind == "redis":
        namespace = f"t{uuid.uuid4().hex}"
        yield with_options(base, namespace=namespace)
        wipe_redis_namespace(base, namespace)
    else:
        schema = f"tether_t_{uuid.uuid4().hex}"
        yield with_options(base, schema=schema)
        drop_postgres_schema(base, schema)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(kind: str, store_url: str, clock: FakeClock) -> Iterator[Store]:
    opener = RedisStore if kind == "redis" else PostgresStore
    with opener.from_url(store_url, clock=clock) as opened:
        yield opened


def _fork(store: Store, parent_id: str, at: int, child_id: str) -> None:
    store.fork_session(Session(id=child_id, parent_id=parent_id), at)  # type: ignore[attr-defined]


def test_a_child_reads_its_parents_items_after_the_parent_is_deleted(store: Store) -> None:
    parent = store.create(Session(history=_items(6)))
    _fork(store, parent.id, 4, "child")
    store.commit("child", 1, append=_items(1, "c"))
    before = store.load("child")
    assert store.delete(parent.id)
    after = store.load("child")
    assert after.items == before.items, "the same items, seqs and timestamps"
    assert [i["content"] for i in after.history] == ["m0", "m1", "m2", "m3", "c0"]
    assert after.version == before.version, "a detach is not a write of the child"
    store.commit("child", 2, append=_items(1, "d"))
    assert _texts(store, "child")[-2:] == ["c0", "d0"]


def test_a_fork_of_a_fork_survives_either_ancestor(store: Store) -> None:
    root = store.create(Session(history=_items(5)))
    _fork(store, root.id, 5, "middle")
    store.commit("middle", 1, append=_items(3, "mid"))
    _fork(store, "middle", 7, "leaf")  # 5 of the root's, 2 of the middle's own
    store.commit("leaf", 1, append=_items(1, "leaf"))
    want = ["m0", "m1", "m2", "m3", "m4", "mid0", "mid1", "leaf0"]
    assert _texts(store, "leaf") == want
    assert [i["seq"] for i in store.load("leaf").history] == list(range(1, 9))
    assert store.delete(root.id)
    assert _texts(store, "leaf") == want
    assert _texts(store, "middle") == [*want[:5], "mid0", "mid1", "mid2"]
    assert store.delete("middle")
    assert _texts(store, "leaf") == want
    _fork(store, "leaf", 8, "again")  # a fork of a detached fork shares again
    assert _texts(store, "again") == want


def test_windows_across_the_fork_point(store: Store) -> None:
    parent = store.create(Session(history=_items(10)))
    _fork(store, parent.id, 6, "child")
    store.commit("child", 1, append=_items(4, "c"))
    whole = ["m0", "m1", "m2", "m3", "m4", "m5", "c0", "c1", "c2", "c3"]
    assert _texts(store, "child") == whole
    assert _texts(store, "child", last=5) == whole[-5:]
    assert _texts(store, "child", after=4, limit=3) == whole[4:7]
    assert _texts(store, "child", after=6) == whole[6:]
    assert _texts(store, "child", last=7, limit=2) == whole[3:5]
    assert _texts(store, "child", after=2, limit=2) == whole[2:4]
    for last in (0, 1, 4, 10, 40):  # windows inside the history and past its start
        assert _texts(store, "child", last=last) == whole[len(whole) - min(last, 10) :]
    pages = [item["content"] for item in store.iter_history("child", page_size=3)]
    assert pages == whole


def test_keyed_items_of_the_parent_read_from_the_child(store: Store) -> None:
    parent = store.create(Session(history=_items(2)))
    store.commit(parent.id, 1, append=[KeyedItem("a", {"n": 1}), KeyedItem("b", {"n": 2})])
    _fork(store, parent.id, 4, "child")
    store.commit(parent.id, 2, append=[KeyedItem("c", {"n": 3})])
    assert {k: v.item for k, v in store.items_by_key("child", ["a", "b", "c"]).items()} == {
        "a": {"n": 1},
        "b": {"n": 2},
    }
    assert store.delete(parent.id)
    found = store.items_by_key("child", ["a", "b"])
    assert (found["a"].seq, found["b"].seq) == (3, 4)
    with pytest.raises(tether.DuplicateItemKey):
        store.commit("child", 1, append=[KeyedItem("a", {})])


def test_tail_replaced_below_the_fork_point_on_either_side(store: Store) -> None:
    parent = store.create(Session(history=_items(6)))
    _fork(store, parent.id, 6, "child")
    _fork(store, parent.id, 6, "sibling")
    # the parent rewrites below the fork point: its forks keep what they had
    assert store.replace_tail(parent.id, 1, 2, _items(2, "p")) == 2
    assert _texts(store, parent.id) == ["m0", "m1", "p0", "p1"]
    assert _texts(store, "child") == _texts(store, "sibling") == [f"m{i}" for i in range(6)]
    # the child rewrites below its fork point: only its own history changes
    assert store.replace_tail("child", 1, 3, _items(1, "c")) == 2
    assert _texts(store, "child") == ["m0", "m1", "m2", "c0"]
    assert [i["seq"] for i in store.load("child").history] == [1, 2, 3, 4]
    assert store.replace_tail("sibling", 1, 0, _items(2, "s")) == 2
    assert _texts(store, "sibling") == ["s0", "s1"]
    assert store.replace_tail("child", 2, 4, _items(1, "x")) == 3  # at its own rows
    assert _texts(store, "child") == ["m0", "m1", "m2", "c0", "x0"]


def test_history_replaced_on_the_parent_or_the_child(store: Store) -> None:
    parent = store.create(Session(history=_items(5)))
    _fork(store, parent.id, 5, "child")
    _fork(store, "child", 3, "grandchild")
    store.replace_history("child", 1, _items(1, "compacted"))
    assert _texts(store, "child") == ["compacted0"]
    assert _texts(store, "grandchild") == ["m0", "m1", "m2"]
    store.replace_history(parent.id, 1, _items(1, "p"))
    assert _texts(store, "grandchild") == ["m0", "m1", "m2"]


def test_an_expired_parent_purged_or_reused_keeps_its_forks_whole(
    store: Store, clock: FakeClock
) -> None:
    expires = clock() + timedelta(minutes=5)
    parent = store.create(Session(history=_items(4), expires_at=expires))
    _fork(store, parent.id, 4, "child")
    _fork(store, parent.id, 2, "short")
    clock.advance(600)
    assert not store.exists(parent.id)
    assert _texts(store, "child") == ["m0", "m1", "m2", "m3"], "an expired parent's rows stay"
    assert store.purge_expired() == 1  # type: ignore[attr-defined]
    assert _texts(store, "child") == ["m0", "m1", "m2", "m3"]
    assert _texts(store, "short") == ["m0", "m1"]
    soon = clock() + timedelta(minutes=5)
    expired = store.create(Session(id="again", history=_items(3), expires_at=soon))
    _fork(store, expired.id, 3, "kept")
    clock.advance(600)
    store.create(Session(id="again", history=_items(1, "new")))  # the expired one goes
    assert _texts(store, "kept") == ["m0", "m1", "m2"]
    assert _texts(store, "again") == ["new0"]


def test_an_exported_child_is_its_whole_history(store_url: str, store: Store) -> None:
    parent = store.create(Session(history=_items(4)))
    store.commit(parent.id, 1, append=[KeyedItem("k", {"n": 1})])
    _fork(store, parent.id, 5, "child")
    store.commit("child", 1, append=_items(1, "c"))
    loaded = store.load("child")
    assert len(loaded.items) == 6
    with tether.open_store("memory://") as other:
        other.restore(loaded)  # type: ignore[attr-defined]
        assert other.load("child").items == loaded.items
    store.restore(loaded, replace=True)  # type: ignore[attr-defined]
    assert store.load("child").items == loaded.items
    assert store.items_by_key("child", ["k"])["k"].item == {"n": 1}
    assert store.delete(parent.id)
    assert store.load("child").items == loaded.items


def test_commits_to_the_parent_while_it_is_forked(store_url: str, kind: str) -> None:
    with tether.open_store(store_url) as store:
        parent = store.create(Session(history=_items(40)))
        stop = threading.Event()
        failures: list[BaseException] = []

        def commit() -> None:
            try:
                with tether.open_store(store_url) as other:
                    while not stop.is_set():
                        other.append(parent.id, _items(1, "late"))
            except BaseException as exc:  # reported below
                failures.append(exc)

        writer = threading.Thread(target=commit)
        writer.start()
        forks = []
        try:
            for n in range(25):
                at = store.load(parent.id, last=0).last_seq
                _fork(store, parent.id, at, f"child-{n}")
                forks.append((f"child-{n}", at))
        finally:
            stop.set()
            writer.join()
        assert not failures
        whole = store.load(parent.id).items
        for child_id, at in forks:
            assert store.load(child_id).items == whole[:at]
        assert store.delete(parent.id)
        for child_id, at in forks:
            assert store.load(child_id).items == whole[:at]


def test_redis_never_expires_a_parents_keys_before_its_forks(redis_url: str) -> None:
    import redis

    namespace = f"t{uuid.uuid4().hex}"
    url = with_options(redis_url, namespace=namespace)
    client = redis.Redis.from_url(redis_url)
    try:
        with tether.open_store(url) as store:
            soon = datetime.now(timezone.utc) + timedelta(hours=1)
            parent = store.create(Session(history=_items(3), expires_at=soon))
            base = f"tether:{{{namespace}}}:"
            assert 0 < client.pttl(base + "h:" + parent.id) <= 3_600_000
            _fork(store, parent.id, 3, "forever")  # no expiry: the parent's keys stay too
            assert client.pttl(base + "s:" + parent.id) == -1
            assert client.pttl(base + "h:" + parent.id) == -1
            store.delete("forever")
            later = datetime.now(timezone.utc) + timedelta(hours=5)
            other = store.create(Session(history=_items(2), expires_at=soon))
            child = Session(id="later", parent_id=other.id, expires_at=later)
            store.fork_session(child, 2)  # type: ignore[attr-defined]
            assert client.pttl(base + "h:" + other.id) > 4 * 3_600_000
            store.commit("later", 1, changes={"expires_at": later + timedelta(hours=1)})
            assert client.pttl(base + "s:" + other.id) > 5 * 3_600_000
            assert store.delete(other.id)
            assert _texts(store, "later") == ["m0", "m1"]
            # the copy it got lives as long as its header
            assert client.pttl(base + "h:later") > 4 * 3_600_000
    finally:
        client.close()
        wipe_redis_namespace(redis_url, namespace)


@pytest.mark.asyncio
async def test_async_fork_of_a_fork_after_the_parent_is_gone(store_url: str) -> None:
    async with tether.open_async_store(store_url) as store:
        parent = await store.create(Session(history=_items(3)))
        await store.fork_session(Session(id="a", parent_id=parent.id), 3)  # type: ignore[attr-defined]
        await store.fork_session(Session(id="b", parent_id="a"), 2)  # type: ignore[attr-defined]
        assert await store.delete(parent.id)
        assert [i["content"] for i in (await store.load("b")).history] == ["m0", "m1"]
        assert [i["content"] for i in (await store.load("a")).history] == ["m0", "m1", "m2"]


def test_a_fork_too_deep_to_share_is_a_copy_of_the_same_items(store: Store) -> None:
    # past the deepest chain a read follows, fork_session copies (through restore) instead:
    # the child must hold the same items, keys and commit times as a shared fork would
    store.create(Session(id="f0", history=_items(3)))
    store.commit("f0", 1, append=[KeyedItem("k", {"n": 0})])
    for depth in range(1, 40):
        _fork(store, f"f{depth - 1}", 4, f"f{depth}")
    first, last = store.load("f1"), store.load("f39")
    assert len(last.items) == 4
    assert [(i.seq, i.key, i.timestamp) for i in last.items] == [
        (i.seq, i.key, i.timestamp) for i in first.items
    ]
    assert store.items_by_key("f39", ["k"])["k"].item == {"n": 0}
    assert (last.parent_id, last.fork_seq, last.version) == ("f38", 4, 1)
