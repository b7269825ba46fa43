"""The core contract's clauses on rewriting and adding to a history, items as given, keyed
items, listing and bad input; async side; tools/unasync.py writes the sync side from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from .. import (
    AlreadyClaimed,
    AsyncStore,
    ConflictError,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionData,
    InvalidSessionId,
    KeyedItem,
    LeaseLost,
    Session,
    SessionHeader,
    SessionNotFound,
    SessionStatus,
    StoredItem,
)
from ..models import HistoryItem
from ._async_abilities import ConformanceBase
from ._suite_data import FRAMEWORK_ITEMS
from ._suite_data import items as _items
from ._workers import gather_tasks

__all__ = ["AsyncHistoryClauses", "take"]


async def take(pages: AsyncIterator[HistoryItem], count: int | None = None) -> list[HistoryItem]:
    """The next ``count`` items of an ``iter_history`` (fewer if it ends; None: all that are
    left); the iteration stays where it is, to be resumed."""
    taken: list[HistoryItem] = []
    async for item in pages:
        taken.append(item)
        if len(taken) == count:
            break
    return taken


class AsyncHistoryClauses(ConformanceBase):
    """Part of :class:`~tether.testing.AsyncCoreConformance`: replace_history, items as given,
    keyed items, the tail, blind appends, listing and bad input."""

    # --- replace_history -----------------------------------------------------------------------

    async def test_replace_history_compare_and_replace(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(6)))
        version = await store.replace_history(created.id, 1, [{"role": "system", "content": "sum"}])
        assert version == 2
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(7, "sum")]
        assert (loaded.first_seq, loaded.last_seq, loaded.history_len) == (7, 7, 1)
        with pytest.raises(ConflictError):
            await store.replace_history(created.id, 1, [])
        await store.commit(created.id, 2, append=_items(1, "after"))
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(7, "sum"), (8, "after0")]
        assert [i["seq"] for i in (await store.load(created.id, last=1)).history] == [8]
        await store.replace_history(created.id, 3, [])
        emptied = await store.load(created.id)
        assert (emptied.history, emptied.history_len, emptied.last_seq) == ([], 0, 8)

    async def test_replace_history_changes_the_header_in_the_same_write(
        self, store: AsyncStore
    ) -> None:
        self._needs(store, "replace_history:changes")
        created = await store.create(Session(history=_items(3), state={"n": 1}))
        version = await store.replace_history(
            created.id, 1, [{"role": "system", "content": "sum"}], changes={"state": {"n": 2}}
        )
        assert version == 2
        loaded = await store.load(created.id)
        assert loaded.state == {"n": 2}
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(4, "sum")]
        with pytest.raises(InvalidRequest):
            await store.replace_history(created.id, 2, [], changes={"version": 9})
        with pytest.raises(ConflictError):
            await store.replace_history(created.id, 1, [], changes={"state": {}})
        assert await store.load(created.id) == loaded

    # --- items as given --------------------------------------------------------------------------

    async def test_items_are_stored_exactly_as_given(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=FRAMEWORK_ITEMS[:2]))
        assert [entry.item for entry in created.items] == FRAMEWORK_ITEMS[:2]
        await store.commit(created.id, 1, append=FRAMEWORK_ITEMS[2:])
        loaded = await store.load(created.id)
        assert [entry.item for entry in loaded.items] == FRAMEWORK_ITEMS
        assert [entry.seq for entry in loaded.items] == list(range(1, 7))
        assert all(isinstance(entry, StoredItem) for entry in loaded.items)
        assert all(entry.key is None for entry in loaded.items)
        # tether's fields beside each item, never inside it; history is the merged view
        stamp = loaded.items[2].timestamp  # the commit's time
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
        assert loaded.history[2] == {**FRAMEWORK_ITEMS[2], "seq": 3, "timestamp": stamp}
        assert loaded.items[4].item["timestamp"] == 1712345678.25
        assert loaded.items[4].timestamp == stamp  # not a str: the item's own, not tether's
        # every window gives the same exact items
        window = await store.load(created.id, after=2, limit=2)
        assert [entry.item for entry in window.items] == FRAMEWORK_ITEMS[2:4]
        assert [entry.item for entry in (await store.load(created.id, last=1)).items] == [{}]
        assert await take(store.iter_history(created.id, page_size=4)) == loaded.history

    # --- keyed items -----------------------------------------------------------------------------

    async def test_keyed_items_are_read_by_key(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session(history=_items(2)))
        event = {"type": "function_call", "call_id": "c9", "name": "f", "arguments": "{}"}
        version = await store.commit(
            created.id,
            1,
            append=[KeyedItem("evt-1", event), {"role": "user"}, KeyedItem("a b/ü", {"x": 1})],
        )
        found = await store.items_by_key(created.id, ["evt-1", "missing", "a b/ü"])
        assert sorted(found) == ["a b/ü", "evt-1"]
        assert found["evt-1"] == StoredItem(
            seq=3, timestamp=found["evt-1"].timestamp, key="evt-1", item=event
        )
        assert found["a b/ü"].seq == 5
        assert await store.items_by_key(created.id, []) == {}
        loaded = await store.load(created.id)
        assert [entry.key for entry in loaded.items] == [None, None, "evt-1", None, "a b/ü"]
        assert "key" not in loaded.history[2]  # the merged view never gets the key
        # a key is unique within its session: a second one is refused, nothing written
        with pytest.raises(DuplicateItemKey) as refused:
            await store.commit(created.id, version, append=[_items(1)[0], KeyedItem("evt-1", {})])
        assert (refused.value.session_id, refused.value.key) == (created.id, "evt-1")
        with pytest.raises(DuplicateItemKey):
            await store.commit(created.id, version, append=[KeyedItem("n", {}), KeyedItem("n", {})])
        assert await store.load(created.id) == loaded
        # but another session may use it
        other = await store.create(Session())
        await store.commit(other.id, 1, append=[KeyedItem("evt-1", {"other": True})])
        assert (await store.items_by_key(other.id, ["evt-1"]))["evt-1"].item == {"other": True}
        assert (await store.items_by_key(created.id, ["evt-1"]))["evt-1"].item == event

    async def test_keyed_reads_check_their_arguments(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session())
        with pytest.raises(SessionNotFound):
            await store.items_by_key("missing", ["k"])
        for bad in (
            "k",
            None,
            5,
            [5],
            [""],
            ["a\x00"],
            ["k" * 257],
            [f"k{i}" for i in range(1001)],
        ):
            with pytest.raises(InvalidRequest):
                await store.items_by_key(created.id, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidSessionId):
            await store.items_by_key("../x", ["k"])

    async def test_replace_history_keys_replace_the_old_ones(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session())
        await store.commit(created.id, 1, append=[KeyedItem("a", {"n": 1}), KeyedItem("b", {})])
        await store.replace_history(created.id, 2, [KeyedItem("a", {"n": 2})])
        found = await store.items_by_key(created.id, ["a", "b"])
        assert list(found) == ["a"]
        assert (found["a"].seq, found["a"].item) == (3, {"n": 2})

    # --- the tail --------------------------------------------------------------------------------

    async def test_replace_tail_truncates_and_replaces(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail")
        created = await store.create(Session(history=_items(5)))
        before = await store.load(created.id)
        version = await store.replace_tail(created.id, 1, 3, [{"type": "compaction", "n": 1}])
        assert version == 2
        loaded = await store.load(created.id)
        assert [entry.seq for entry in loaded.items] == [1, 2, 3, 4]
        assert loaded.items[:3] == before.items[:3], "kept items keep their seq and timestamp"
        assert loaded.items[3].item == {"type": "compaction", "n": 1}
        assert (loaded.last_seq, loaded.history_len, loaded.version) == (4, 4, 2)
        # truncate (pop the newest): no items
        assert await store.replace_tail(created.id, 2, 3) == 3
        assert [i["seq"] for i in (await store.load(created.id)).history] == [1, 2, 3]
        # after the newest: a plain append; after first_seq - 1: everything
        assert await store.replace_tail(created.id, 3, 3, _items(1, "x")) == 4
        assert await store.replace_tail(created.id, 4, 0, _items(2, "y")) == 5
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(1, "y0"), (2, "y1")]
        assert await store.commit(created.id, 5, append=_items(1, "z")) == 6
        assert [i["seq"] for i in (await store.load(created.id)).history] == [1, 2, 3]

    async def test_replace_tail_is_versioned_and_checked(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail", "replace_history:changes")
        created = await store.create(Session(history=_items(4)))
        await store.replace_history(created.id, 1, _items(3, "c"))  # seqs 5..7
        loaded = await store.load(created.id)
        with pytest.raises(ConflictError):
            await store.replace_tail(created.id, 1, 6)
        for outside in (3, 8, 100):
            with pytest.raises(InvalidRequest, match="after"):
                await store.replace_tail(created.id, 2, outside)
        for bad in (-1, "5", None, True, 2**63):
            with pytest.raises(InvalidRequest):
                await store.replace_tail(created.id, 2, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            await store.replace_tail(created.id, 2, 6, changes={"last_seq": 1})
        with pytest.raises(InvalidSessionData):
            await store.replace_tail(created.id, 2, 6, ["not a dict"])  # type: ignore[list-item]
        with pytest.raises(SessionNotFound):
            await store.replace_tail("missing", 1, 0)
        assert await store.load(created.id) == loaded
        assert await store.replace_tail(created.id, 2, 4, changes={"status": "finished"}) == 3
        loaded = await store.load(created.id)
        assert (loaded.status, loaded.history_len, loaded.first_seq) == ("finished", 0, 5)

    async def test_replace_tail_frees_and_checks_keys(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail", "items_by_key")
        created = await store.create(Session())
        await store.commit(
            created.id, 1, append=[KeyedItem("a", {}), KeyedItem("b", {}), KeyedItem("c", {})]
        )
        with pytest.raises(DuplicateItemKey):  # "a" is kept, so it is still taken
            await store.replace_tail(created.id, 2, 1, [KeyedItem("a", {"again": 1})])
        version = await store.replace_tail(created.id, 2, 1, [KeyedItem("c", {"new": 1})])
        found = await store.items_by_key(created.id, ["a", "b", "c"])
        assert sorted(found) == ["a", "c"]
        assert (found["c"].seq, found["c"].item) == (2, {"new": 1})
        await store.commit(created.id, version, append=[KeyedItem("b", {"back": 1})])
        assert (await store.items_by_key(created.id, ["b"]))["b"].seq == 3

    async def test_replace_tail_respects_leases(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail")
        created = await store.create(Session(history=_items(3)))
        lease = await store.claim(created.id, "runner", 60)
        with pytest.raises(AlreadyClaimed):
            await store.replace_tail(created.id, 1, 1)
        assert await store.replace_tail(created.id, 1, 1, lease=lease) == 2
        await store.release(lease)
        with pytest.raises(LeaseLost):
            await store.replace_tail(created.id, 2, 1, lease=lease)
        assert (await store.load(created.id)).history_len == 1

    # --- blind append ----------------------------------------------------------------------------

    async def test_blind_append_needs_no_version(self, store: AsyncStore) -> None:
        self._needs(store, "append", "items_by_key")
        created = await store.create(Session(history=_items(2)))
        assert await store.append(created.id, [{"type": "message", "n": 1}]) == 2
        assert await store.append(created.id, [KeyedItem("k", {"n": 2}), {"n": 3}]) == 3
        loaded = await store.load(created.id)
        assert [entry.item for entry in loaded.items[2:]] == [
            {"type": "message", "n": 1},
            {"n": 2},
            {"n": 3},
        ]
        assert [i["seq"] for i in loaded.history] == [1, 2, 3, 4, 5]
        with pytest.raises(DuplicateItemKey):
            await store.append(created.id, [KeyedItem("k", {})])
        with pytest.raises(SessionNotFound):
            await store.append("missing", [{}])
        with pytest.raises(InvalidSessionData):
            await store.append(created.id, {"n": 1})  # type: ignore[dict-item]
        with pytest.raises(InvalidRequest):
            await store.append(created.id, [{}], lease="token")  # type: ignore[arg-type]
        assert await store.load(created.id) == loaded

    async def test_blind_append_respects_leases(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "runner", 60)
        with pytest.raises(AlreadyClaimed):
            await store.append(created.id, [{"n": 1}])
        assert await store.append(created.id, [{"n": 1}], lease=lease) == 2
        await store.release(lease)
        with pytest.raises(LeaseLost):
            await store.append(created.id, [{"n": 2}], lease=lease)
        assert await store.append(created.id, [{"n": 3}]) == 3
        assert [e.item for e in (await store.load(created.id)).items] == [{"n": 1}, {"n": 3}]

    async def test_parallel_blind_appends_lose_nothing(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        tasks, count = 4, 10

        async def worker(w: int) -> list[int]:
            return [await store.append(created.id, [{"w": w, "i": i}]) for i in range(count)]

        versions = await gather_tasks([lambda w=w: worker(w) for w in range(tasks)])  # type: ignore[misc]
        everything = sorted(v for vs in versions for v in vs)
        assert everything == list(range(2, tasks * count + 2)), "each append got its own version"
        loaded = await store.load(created.id)
        assert [i["seq"] for i in loaded.history] == list(range(1, tasks * count + 1))
        for w in range(tasks):
            assert [e.item["i"] for e in loaded.items if e.item["w"] == w] == list(range(count))

    # --- listing -------------------------------------------------------------------------------

    async def test_list_returns_headers_newest_first(self, store: AsyncStore) -> None:
        ids = [(await store.create(Session(history=_items(2)))).id for _ in range(4)]
        await store.commit(ids[1], 1)  # now the most recently updated
        page = await store.list()
        assert [h.id for h in page.sessions] == [ids[1], ids[3], ids[2], ids[0]]
        assert all(type(h) is SessionHeader for h in page.sessions)
        assert page.next_cursor is None
        assert page.sessions[0].version == 2
        assert page.sessions[0].history_len == 2

    async def test_list_filters(self, store: AsyncStore) -> None:
        a = await store.create(Session(owner="ada", agent="support", metadata={"tier": "gold"}))
        b = await store.create(Session(owner="ada", agent="sales", metadata={"tier": 1}))
        c = await store.create(Session(owner="bob", agent="support", metadata={"tier": True}))
        await store.commit(c.id, 1, changes={"status": "finished"})

        async def ids(**filters: Any) -> set[str]:
            return {h.id for h in (await store.list(**filters)).sessions}

        assert await ids(owner="ada") == {a.id, b.id}
        assert await ids(agent="support") == {a.id, c.id}
        assert await ids(owner="ada", agent="support") == {a.id}
        assert await ids(status="finished") == {c.id}
        assert await ids(status=SessionStatus.NEW) == {a.id, b.id}
        assert await ids(status=["new", "finished"]) == {a.id, b.id, c.id}
        assert await ids(metadata={"tier": "gold"}) == {a.id}
        # JSON equality: 1, true and "1" are different values
        assert await ids(metadata={"tier": 1}) == {b.id}
        assert await ids(metadata={"tier": True}) == {c.id}
        assert await ids(metadata={"tier": "1"}) == set()
        assert await ids(metadata={"missing": None}) == set()
        assert await ids(owner="nobody") == set()
        b_updated = (await store.load(b.id)).updated_at
        assert b_updated is not None
        assert await ids(updated_after=b_updated) == {c.id}
        assert await ids(updated_before=b_updated) == {a.id}
        for bad in ({"status": "asleep"}, {"limit": 0}, {"limit": 10**6}, {"cursor": "junk"}):
            with pytest.raises(InvalidRequest):
                await store.list(**bad)

    async def test_list_metadata_filter_follows_commits(self, store: AsyncStore) -> None:
        created = await store.create(Session(metadata={"tag": "old"}))
        await store.commit(created.id, 1, changes={"metadata": {"tag": "new", "n": {"x": 1}}})
        assert (await store.list(metadata={"tag": "old"})).sessions == []
        assert [h.id for h in (await store.list(metadata={"n": {"x": 1}})).sessions] == [created.id]

    async def test_list_pages_have_no_gaps_or_duplicates_under_writes(
        self, store: AsyncStore
    ) -> None:
        original = [(await store.create(Session(owner="pager"))).id for _ in range(23)]
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list(owner="pager", limit=5, cursor=cursor)
            seen.extend(h.id for h in page.sessions)
            # other writers keep creating sessions while we page
            await store.create(Session(owner="pager"))
            await store.create(Session(owner="someone-else"))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)), "a session was listed twice"
        assert set(original) <= set(seen), "a session was skipped"
        assert seen[: len(original)] == list(reversed(original))

    async def test_iter_sessions_pages_through_everything(self, store: AsyncStore) -> None:
        ids = {(await store.create(Session(agent="it"))).id for _ in range(7)}
        got = [h.id async for h in store.iter_sessions(agent="it", limit=2)]
        assert set(got) == ids
        assert len(got) == 7

    # --- bad input -----------------------------------------------------------------------------

    async def test_invalid_ids_raise_before_writing(self, store: AsyncStore) -> None:
        bad_ids = ["", "../x", "a/b", "x\x00y", ".hidden", "a" * 129, "sp ace", "ünï", "a\\b"]
        for bad in bad_ids:
            with pytest.raises(InvalidSessionId):
                Session(id=bad)
            # model_construct skips the model's checks (an assignment is validated): the store
            # must check again
            sneaky = Session.model_construct(id=bad)
            with pytest.raises(InvalidSessionId):
                await store.create(sneaky)
            calls: list[Callable[[], Any]] = [
                lambda bad=bad: store.load(bad),  # type: ignore[misc]
                lambda bad=bad: store.commit(bad, 1),  # type: ignore[misc]
                lambda bad=bad: store.replace_history(bad, 1, []),  # type: ignore[misc]
                lambda bad=bad: store.delete(bad),  # type: ignore[misc]
                lambda bad=bad: store.exists(bad),  # type: ignore[misc]
            ]
            for call in calls:
                with pytest.raises(InvalidSessionId):
                    await call()
        assert (await store.list()).sessions == []
        assert Session(id="a" * 128).id == "a" * 128

    async def test_non_json_values_raise_before_writing(self, store: AsyncStore) -> None:
        bad_values: list[Any] = [
            datetime.now(timezone.utc),
            {1, 2},
            float("nan"),
            float("inf"),
            {1: "int key"},
            object(),
            Decimal("1.5"),
            b"bytes",
            2**70,
        ]
        for value in bad_values:
            for field in ("metadata", "state", "options"):
                with pytest.raises(InvalidSessionData):
                    await store.create(Session(id="bad", **{field: {"k": value}}))
            with pytest.raises(InvalidSessionData):
                await store.create(Session(id="bad", history=[{"role": "user", "content": value}]))
        assert not await store.exists("bad")
        created = await store.create(Session(id="good"))
        for value in bad_values:
            with pytest.raises(InvalidSessionData):
                await store.commit("good", 1, append=[{"role": "user", "content": value}])
            with pytest.raises(InvalidSessionData):
                await store.commit("good", 1, changes={"state": {"k": [value]}})
        with pytest.raises(InvalidSessionData):
            await store.commit("good", 1, append=["not a dict"])  # type: ignore[list-item]
        assert await store.load("good") == created
