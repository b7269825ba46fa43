"""The core contract's clauses on deletion, expiry, schema versions, concurrency and claims;
async side; tools/unasync.py writes the sync side from it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from .. import (
    AlreadyClaimed,
    AsyncStore,
    ConflictError,
    InvalidRequest,
    InvalidSessionId,
    Lease,
    LeaseLost,
    Session,
    SessionNotFound,
    UnsupportedSchemaVersion,
)
from ..schema import schema
from ..stores.abilities import AsyncPurges, AsyncRestores
from ._async_abilities import ConformanceBase
from ._clock import FakeClock
from ._suite_data import future as _future
from ._suite_data import items as _items
from ._suite_data import past as _past
from ._workers import (
    append_process,
    append_with_retry_async,
    claim_race_process,
    claim_race_tasks,
    gather_tasks,
    race_process,
    race_tasks,
    run_processes,
)

__all__ = ["AsyncLifecycleClauses"]


class AsyncLifecycleClauses(ConformanceBase):
    """Part of :class:`~tether.testing.AsyncCoreConformance`: delete, expiry, schema versions,
    racing writers and claims (leases with fencing)."""

    race_rounds = 20
    writers = 8
    appends_per_writer = 200
    claim_racers = 16
    claim_rounds = 200
    multi_process_clauses = (
        "test_racing_writers_from_one_version_exactly_one_wins",
        "test_concurrent_appends_with_retry_lose_nothing",
        "test_racing_claims_have_exactly_one_winner_per_round",
    )
    """The clauses that start OS processes when ``store_opener`` is given: the slow ones. A
    fast loop can leave them out by name (tether's own tests mark them ``slow``)."""

    # --- delete, exists, expiry ----------------------------------------------------------------

    async def test_delete(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(3)))
        with pytest.raises(ConflictError):
            await store.delete(created.id, expected_version=7)
        assert await store.exists(created.id)
        assert await store.delete(created.id, expected_version=1) is True
        assert not await store.exists(created.id)
        with pytest.raises(SessionNotFound):
            await store.load(created.id)
        assert await store.delete(created.id) is False
        with pytest.raises(SessionNotFound):
            await store.delete(created.id, expected_version=1)
        recreated = await store.create(Session(id=created.id))
        assert recreated.version == 1
        assert (await store.load(created.id)).history == []

    async def test_delete_respects_a_live_lease(self, store: AsyncStore, clock: FakeClock) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "worker-1", 30)
        with pytest.raises(AlreadyClaimed) as info:
            await store.delete(created.id)
        assert info.value.holder == "worker-1"
        with pytest.raises(AlreadyClaimed):
            await store.delete(created.id, expected_version=1)
        assert (await store.load(created.id)).history_len == 2
        # with the lease: deleted, and only while it is the current, live one
        other = await store.create(Session())
        with pytest.raises(LeaseLost):
            await store.delete(other.id, lease=lease)
        assert await store.exists(other.id)
        assert await store.delete(created.id, lease=lease) is True
        assert not await store.exists(created.id)
        # a lease that lapsed deletes nothing; a lapsed lease no longer blocks a plain delete
        late = await store.claim(other.id, "worker-2", 10)
        clock.advance(11)
        with pytest.raises(LeaseLost):
            await store.delete(other.id, lease=late)
        assert await store.exists(other.id)
        assert await store.delete(other.id) is True
        for bad in ({"force": "yes"}, {"force": 1}, {"lease": "token"}):
            with pytest.raises(InvalidRequest):
                await store.delete("no-such-session", **bad)

    async def test_forced_delete_overrides_a_live_lease(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "stuck-runner", 300)
        with pytest.raises(ConflictError):
            await store.delete(created.id, expected_version=7, force=True)
        assert await store.delete(created.id, force=True) is True
        assert not await store.exists(created.id)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 30)
        assert await store.delete(created.id, force=True) is False

    async def test_expired_session_behaves_as_missing(self, store: AsyncStore) -> None:
        gone = await store.create(Session(id="gone", owner="ttl", expires_at=_past()))
        kept = await store.create(Session(id="kept", owner="ttl", expires_at=_future()))
        assert not await store.exists(gone.id)
        with pytest.raises(SessionNotFound):
            await store.load(gone.id)
        with pytest.raises(SessionNotFound):
            await store.commit(gone.id, 1)
        assert [h.id for h in (await store.list(owner="ttl")).sessions] == [kept.id]
        # expiring by commit works the same way
        await store.commit(kept.id, 1, changes={"expires_at": _past()})
        assert not await store.exists(kept.id)
        # an expired session's id is free again, with nothing of the old one left
        again = await store.create(Session(id="gone", history=_items(1)))
        assert again.version == 1
        assert len((await store.load("gone")).history) == 1

    # --- schema versions -----------------------------------------------------------------------

    async def test_newer_schema_version_is_refused_and_left_untouched(
        self, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(schema, "current", schema.current + 1)
        future = await store.create(Session(id="from-the-future", state={"k": 1}))
        monkeypatch.setattr(schema, "current", schema.current - 1)
        with pytest.raises(UnsupportedSchemaVersion) as info:
            await store.load(future.id)
        assert info.value.found == schema.current + 1
        writes: list[Callable[[], Any]] = [
            lambda: store.commit(future.id, 1, append=_items(1), changes={"state": {}}),
            lambda: store.replace_history(future.id, 1, []),
            lambda: store.delete(future.id),
            lambda: store.create(Session(id=future.id)),
        ]
        for write in writes:
            with pytest.raises(UnsupportedSchemaVersion):
                await write()
        monkeypatch.setattr(schema, "current", schema.current + 1)
        assert await store.load(future.id) == future

    async def test_an_expired_newer_schema_session_is_never_deleted_or_overwritten(
        self, store: AsyncStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Expired, it behaves as missing; but only a tether that knows its schema may delete
        # it, so no call of this one (purge, list, writes, creates over it) removes it.
        monkeypatch.setattr(schema, "current", schema.current + 1)
        future = await store.create(
            Session(
                id="future-expiring",
                owner="future",
                expires_at=clock() + timedelta(seconds=60),
                history=_items(2),
            )
        )
        monkeypatch.setattr(schema, "current", schema.current - 1)
        clock.advance(61)
        purge = store.purge_expired if isinstance(store, AsyncPurges) else None
        if purge is not None:
            await purge()
        assert (await store.list(owner="future")).sessions == []
        assert (await store.list()).sessions == []
        for _ in range(3):  # a store may tidy up expired sessions while it creates others
            await store.create(Session(owner="other"))
        either = (SessionNotFound, UnsupportedSchemaVersion)
        calls: list[tuple[Callable[[], Any], Any]] = [
            (lambda: store.load(future.id), either),
            (lambda: store.commit(future.id, 1, append=_items(1)), either),
            (lambda: store.replace_history(future.id, 1, []), either),
            (lambda: store.claim(future.id, "worker-1", 10), either),
            (lambda: store.delete(future.id), UnsupportedSchemaVersion),
            (lambda: store.delete(future.id, force=True), UnsupportedSchemaVersion),
            (lambda: store.create(Session(id=future.id)), UnsupportedSchemaVersion),
        ]
        restore = store.restore if isinstance(store, AsyncRestores) else None
        if restore is not None:
            mine = await store.create(Session(id="mine"))
            stand_in = mine.model_copy(update={"id": future.id})
            calls.append((lambda: restore(stand_in, replace=True), UnsupportedSchemaVersion))
        for call, error in calls:
            with pytest.raises(error):
                await call()
        if purge is not None:
            await purge()
        clock.advance(-61)
        monkeypatch.setattr(schema, "current", schema.current + 1)
        assert await store.load(future.id) == future

    async def test_older_schema_version_is_migrated_and_written_back(
        self, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        old = await store.create(Session(id="old", metadata={"v": 1}, history=_items(2)))
        assert old.schema_version == schema.current
        new_version = schema.current + 1

        def header_step(doc: dict[str, Any]) -> dict[str, Any]:
            doc["metadata"] = {**doc["metadata"], "migrated": True}
            return doc

        def item_step(row: dict[str, Any]) -> dict[str, Any]:
            # from schema 3 an item migration gets the stored row: the item is row["item"]
            return {**row, "item": {**row["item"], "migrated": True}}

        monkeypatch.setattr(schema, "current", new_version)
        monkeypatch.setitem(schema.header_migrations, new_version - 1, header_step)
        monkeypatch.setitem(schema.item_migrations, new_version - 1, item_step)
        loaded = await store.load("old")
        assert loaded.schema_version == new_version
        assert loaded.metadata == {"v": 1, "migrated": True}
        assert all(item["migrated"] for item in loaded.history)
        await store.commit("old", loaded.version, append=_items(1, "new"))
        # with the migrations gone, the upgraded form must be what is stored
        monkeypatch.delitem(schema.header_migrations, new_version - 1)
        monkeypatch.delitem(schema.item_migrations, new_version - 1)
        stored = await store.load("old")
        assert stored.schema_version == new_version
        assert stored.metadata == {"v": 1, "migrated": True}
        assert [item.get("migrated") for item in stored.history] == [True, True, None]
        assert [item["seq"] for item in stored.history] == [1, 2, 3]

    # --- concurrency ---------------------------------------------------------------------------

    async def test_racing_writers_from_one_version_exactly_one_wins(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        rounds = self.race_rounds
        if store_opener is None:
            wins = await race_tasks(store, created.id, rounds, racers=2)
        else:
            ctx = multiprocessing.get_context("spawn")
            barrier = ctx.Barrier(2)
            counter = ctx.Value("i", 0)
            run_processes(
                race_process,
                [(store_opener, self.is_async, created.id, rounds, barrier, counter)] * 2,
            )
            wins = counter.value
        assert wins == rounds, f"{wins} commits won in {rounds} rounds of two racing writers"
        loaded = await store.load(created.id)
        assert loaded.version == rounds + 1
        assert [i["seq"] for i in loaded.history] == list(range(1, rounds + 1))

    async def test_concurrent_appends_with_retry_lose_nothing(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        writers, count = self.writers, self.appends_per_writer
        if store_opener is None:
            await gather_tasks(
                [
                    lambda w=w: append_with_retry_async(store, created.id, w, count)  # type: ignore[misc]
                    for w in range(writers)
                ]
            )
        else:
            ctx = multiprocessing.get_context("spawn")
            start = ctx.Event()
            args = [
                (store_opener, self.is_async, created.id, w, count, start) for w in range(writers)
            ]
            procs = [ctx.Process(target=append_process, args=a) for a in args]
            for proc in procs:
                proc.start()
            start.set()  # all at once, after every process has started
            for proc in procs:
                proc.join(timeout=300)
            assert [p.exitcode for p in procs] == [0] * writers
        loaded = await store.load(created.id)
        total = writers * count
        assert loaded.history_len == total
        assert loaded.version == total + 1
        assert [i["seq"] for i in loaded.history] == list(range(1, total + 1))
        contents = [i["content"] for i in loaded.history]
        assert len(set(contents)) == total, "an item was stored twice"
        for worker in range(writers):
            mine = [i["index"] for i in loaded.history if i["worker"] == worker]
            assert mine == list(range(count)), f"writer {worker}'s items lost or reordered"

    # --- expiry by the clock -------------------------------------------------------------------

    async def test_session_disappears_when_its_time_comes(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(
            Session(owner="ttl", expires_at=clock() + timedelta(seconds=60))
        )
        assert await store.exists(created.id)
        assert [h.id for h in (await store.list(owner="ttl")).sessions] == [created.id]
        clock.advance(61)
        assert not await store.exists(created.id)
        with pytest.raises(SessionNotFound):
            await store.load(created.id)
        assert (await store.list(owner="ttl")).sessions == []
        with pytest.raises(SessionNotFound):
            await store.claim(created.id, "late", 10)

    # --- claims (leases with fencing) ----------------------------------------------------------

    async def test_claim_gives_a_lease_and_changes_no_data(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session(history=_items(1)))
        before = clock()
        lease = await store.claim(created.id, "worker-1", 30)
        assert isinstance(lease, Lease)
        assert (lease.session_id, lease.owner, lease.fence) == (created.id, "worker-1", 1)
        assert before + timedelta(seconds=29) < lease.expires_at <= clock() + timedelta(seconds=30)
        header = await store.load(created.id, last=0)
        assert header.version == 1, "a claim is not a data write"
        assert header.updated_at == created.updated_at
        assert (header.lease_owner, header.lease_fence) == ("worker-1", 1)
        assert header.lease_expires_at == lease.expires_at
        listed = (await store.list()).sessions[0]
        assert lease.token not in listed.model_dump_json(), "a listing must not reveal the token"
        assert lease.token not in header.model_dump_json()

    async def test_another_owner_is_refused_while_the_lease_lives(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 30)
        clock.advance(29)
        with pytest.raises(AlreadyClaimed) as info:
            await store.claim(created.id, "worker-2", 30)
        assert info.value.holder == "worker-1"
        assert info.value.expires_at == lease.expires_at
        assert info.value.session_id == created.id

    async def test_the_holders_name_does_not_take_a_live_lease_over(
        self, store: AsyncStore
    ) -> None:
        # A holder's name is public (AlreadyClaimed.holder, listings): claiming under it must
        # not take the lease. Only the lease itself (its token) renews or releases it.
        created = await store.create(Session())
        first = await store.claim(created.id, "worker-1", 30)
        with pytest.raises(AlreadyClaimed) as info:
            await store.claim(created.id, "worker-1", 30)
        assert info.value.holder == "worker-1"
        header = await store.load(created.id, last=0)
        assert (header.lease_owner, header.lease_fence) == ("worker-1", first.fence)
        renewed = await store.renew(first, 30)
        assert (renewed.token, renewed.fence) == (first.token, first.fence)
        assert await store.commit(created.id, 1, append=_items(1), lease=first) == 2
        await store.release(first)
        second = await store.claim(created.id, "worker-1", 30)  # free again: a new lease
        assert second.fence == first.fence + 1
        assert second.token != first.token

    async def test_renew_keeps_ownership(self, store: AsyncStore, clock: FakeClock) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 30)
        clock.advance(20)
        renewed = await store.renew(lease, 30)
        assert (renewed.token, renewed.fence, renewed.owner) == (lease.token, 1, "worker-1")
        assert renewed.expires_at > lease.expires_at
        clock.advance(20)  # past the first expiry, within the renewed one
        with pytest.raises(AlreadyClaimed):
            await store.claim(created.id, "worker-2", 30)
        assert await store.commit(created.id, 1, append=_items(1), lease=renewed) == 2
        await store.renew(renewed, timedelta(minutes=5))

    async def test_release_lets_the_next_owner_claim_at_once(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        first = await store.claim(created.id, "worker-1", 300)
        await store.release(first)
        header = await store.load(created.id, last=0)
        assert header.lease_expires_at is None
        second = await store.claim(created.id, "worker-2", 300)
        assert second.fence == 2
        with pytest.raises(LeaseLost):
            await store.release(first)
        with pytest.raises(LeaseLost):
            await store.renew(first, 30)

    async def test_fence_grows_with_every_new_claim(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        fences = []
        for round_ in range(4):
            lease = await store.claim(created.id, f"worker-{round_}", 10)
            fences.append(lease.fence)
            if round_ % 2:
                await store.release(lease)
            else:
                clock.advance(11)  # let it expire instead
        assert fences == [1, 2, 3, 4]

    async def test_expired_holder_cannot_write_and_new_holder_survives(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        old = await store.claim(created.id, "slow-runner", 10)
        assert await store.commit(created.id, 1, append=_items(1, "old"), lease=old) == 2
        clock.advance(11)
        new = await store.claim(created.id, "new-runner", 10)
        assert new.fence == old.fence + 1
        before = await store.load(created.id)
        late_writes: list[Callable[[], Any]] = [
            lambda: store.commit(created.id, 2, append=_items(1, "late"), lease=old),
            lambda: store.replace_history(created.id, 2, [], lease=old),
            lambda: store.renew(old, 10),
            lambda: store.release(old),
        ]
        for write in late_writes:
            with pytest.raises(LeaseLost):
                await write()
        assert await store.load(created.id) == before
        assert await store.commit(created.id, 2, append=_items(1, "new"), lease=new) == 3
        contents = [i["content"] for i in (await store.load(created.id)).history]
        assert contents == ["old0", "new0"]

    async def test_lapsed_lease_is_lost_even_if_nobody_claimed(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 10)
        clock.advance(11)
        with pytest.raises(LeaseLost):
            await store.commit(created.id, 1, append=_items(1), lease=lease)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 10)
        assert await store.commit(created.id, 1, append=_items(1)) == 2  # unclaimed again

    async def test_writes_without_the_lease_are_refused_while_claimed(
        self, store: AsyncStore
    ) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "worker-1", 300)
        with pytest.raises(AlreadyClaimed):
            await store.commit(created.id, 1, append=_items(1, "intruder"))
        with pytest.raises(AlreadyClaimed):
            await store.replace_history(created.id, 1, [])
        assert (await store.load(created.id)) == await store.load(created.id)
        assert (await store.load(created.id)).history_len == 2
        # the lease is checked before the version: a lost runner learns it is lost
        other = await store.create(Session())
        with pytest.raises(LeaseLost):
            await store.commit(other.id, 99, lease=lease)
        await store.release(lease)
        assert await store.commit(created.id, 1, append=_items(1)) == 2

    async def test_claim_bad_input(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        with pytest.raises(SessionNotFound):
            await store.claim("missing", "worker-1", 10)
        with pytest.raises(InvalidSessionId):
            await store.claim("../x", "worker-1", 10)
        for ttl in (0, -1, float("nan"), "10", None):
            with pytest.raises(InvalidRequest):
                await store.claim(created.id, "worker-1", ttl)  # type: ignore[arg-type]
        for owner in ("", None, 5):
            with pytest.raises(InvalidRequest):
                await store.claim(created.id, owner, 10)  # type: ignore[arg-type]
        lease = await store.claim(created.id, "worker-1", 10)
        with pytest.raises(InvalidRequest):
            await store.renew(lease, 0)
        await store.delete(created.id, lease=lease)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 10)

    async def test_racing_claims_have_exactly_one_winner_per_round(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        racers, rounds = self.claim_racers, self.claim_rounds
        if store_opener is None:
            wins = await claim_race_tasks(store, created.id, rounds, racers)
        else:
            ctx = multiprocessing.get_context("spawn")
            barrier = ctx.Barrier(racers)
            counts = ctx.Array("i", rounds)
            run_processes(
                claim_race_process,
                [
                    (store_opener, self.is_async, created.id, w, rounds, barrier, counts)
                    for w in range(racers)
                ],
            )
            wins = [counts[index] for index in range(rounds)]
        assert wins == [1] * rounds, f"rounds without exactly one winner: {wins}"
        header = await store.load(created.id, last=0)
        assert header.lease_fence == rounds
