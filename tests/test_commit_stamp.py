"""``commit_stamped``: a commit that reports what it stamped, and the session ``execute`` builds
from it instead of reading the commit back.

On every built-in store the session ``execute`` returns equals (every field, every item) what
a fresh load returns right after, and is built with no read at all: they all report the stamp
(memory, file, SQLite, the key-value kit, Redis, PostgreSQL). The base class falls back to
``commit`` (the version alone) for any store that does not report it, including stores that
change ``commit`` below the class that stamps.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import (
    Action,
    AppendMessages,
    ChangeOptions,
    Draft,
    KeyedItem,
    Resume,
    Session,
    Sessions,
    SetState,
    Suspend,
    WriteMetadata,
    _core,
)
from tether.stores.base import AsyncStore, CheckedItems, CommitStamp, Store
from tether.stores.file import AsyncFileStore, FileStore
from tether.stores.kv_memory import AsyncDictKVStore, DictKVStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore
from tether.stores.wrapping_sync import WrappingStore

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options

STAMPING = ("memory", "file", "sqlite", "kv", "redis", "postgres")
"""The built-in stores, all of which report the stamp (``_stamps_commits``); the fallback to
a read is tested with stores that do not (``AuditedCommits``, ``AuditedProtected`` below)."""


def _open(kind: str, tmp_path: Path) -> tuple[Store, Callable[[], None]]:
    if kind == "memory":
        return MemoryStore(), lambda: None
    if kind == "file":
        return FileStore(tmp_path / "files"), lambda: None
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "db.sqlite"), lambda: None
    if kind == "kv":
        return DictKVStore(chunk_items=4), lambda: None  # small chunks: commits seal them
    if kind == "redis":
        from tether.stores.redis_sync import RedisStore

        url, namespace = require_server("redis"), f"st{uuid.uuid4().hex}"
        store: Store = RedisStore.from_url(with_options(url, namespace=namespace))
        return store, functools.partial(wipe_redis_namespace, url, namespace)
    from tether.stores.postgres_sync import PostgresStore

    url, schema = require_server("postgres"), f"tether_tst_{uuid.uuid4().hex[:16]}"
    store = PostgresStore.from_url(with_options(url, schema=schema))
    return store, functools.partial(drop_postgres_schema, url, schema)


@pytest.fixture(params=STAMPING)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened, cleanup = _open(request.param, tmp_path)
    try:
        yield opened
    finally:
        opened.close()
        cleanup()


def _counted(store: Store, name: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    method = getattr(store, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return method(*args, **kwargs)

    setattr(store, name, counted)
    return counts


class AppendKeyed(Action):
    """Append a keyed item beside a plain one (the store accepts KeyedItem in a commit)."""

    name = "append_keyed"
    retry_safe = True

    def __init__(self, key: str) -> None:
        self.key = key

    def apply(self, draft: Draft) -> None:
        draft.appended.append(KeyedItem(self.key, {"role": "tool", "n": [1, 2.5, None]}))  # type: ignore[arg-type]
        draft.append({"role": "assistant", "content": "after the tool"})


class Expire(Action):
    name = "expire"
    retry_safe = True

    def __init__(self, at: datetime | None) -> None:
        self.at = at

    def apply(self, draft: Draft) -> None:
        draft.session.expires_at = self.at


class Rename(Action):
    name = "rename"
    retry_safe = True

    def apply(self, draft: Draft) -> None:
        draft.session.owner = "alice"
        draft.session.agent = "helper"


def _fresh(store: Store, session_id: str) -> Session:
    return Sessions(store, cache_size=0).get(session_id)


def test_execute_returns_the_session_a_load_returns(store: Store) -> None:
    sessions = Sessions(store)
    made = sessions.create(history=[{"role": "user", "content": "a"}], state={"k": 1})
    sid = made.id
    store.commit(sid, made.version, append=[KeyedItem("first", {"role": "tool"})])
    sessions.get(sid)  # the cache holds the session: each execute below commits at once
    loads = _counted(store, "load")
    later = datetime.now(timezone.utc) + timedelta(days=3)
    actions: list[Action] = [
        AppendMessages(
            {"role": "user", "content": "b", "extra": {"nested": [1, 2.25, "x"]}},
            {"role": "assistant", "content": "c", "timestamp": "its own time"},
        ),
        SetState(k=2, more={"a": [1]}),
        WriteMetadata({"team": "red"}),
        ChangeOptions(model="m1", depth=2),
        Suspend(),  # writes the runtime's state["_tether"] block
        SetState(after_suspend=True),  # an application's state keeps that block
        Resume(),
        AppendKeyed("second"),
        Expire(later),
        Rename(),
        Expire(None),
        AppendMessages({"role": "user", "content": "last"}),
    ]
    for action in actions:
        saved = sessions.execute(sid, action)
        fresh = _fresh(store, sid)
        assert saved == fresh, action.name
        assert saved.items == fresh.items
        assert saved.history == fresh.history
    reported = type(store)._stamps_commits
    assert loads["load"] == (0 if reported else len(actions)) + len(actions)  # + _fresh's
    final = sessions.get(sid)
    assert [item.key for item in final.items if item.key] == ["first", "second"]
    assert final.expires_at is None
    assert final.owner == "alice"
    assert final.state["after_suspend"] is True
    assert final.status != "suspended"
    assert final == _fresh(store, sid)


def test_the_lease_fields_are_the_stores_after_a_claim_behind_the_cache(store: Store) -> None:
    """A claim changes the lease fields without a new version: the cached header is behind,
    and the saved session must hold the ones the write left."""
    sessions = Sessions(store)
    sid = sessions.create(history=[{"role": "user", "content": "a"}]).id
    sessions.get(sid)
    lease = store.claim(sid, "runner-1", 60)
    saved = sessions.execute(sid, AppendMessages({"role": "user", "content": "b"}), lease=lease)
    assert saved.lease_owner == "runner-1"
    assert saved.lease_fence == lease.fence
    assert saved == _fresh(store, sid)
    store.release(lease)
    saved = sessions.execute(sid, SetState(k=1))
    assert saved.lease_owner == _fresh(store, sid).lease_owner
    assert saved == _fresh(store, sid)


def test_commit_stamped_reports_what_the_write_stamped(store: Store) -> None:
    sid = store.create(Session(history=[{"role": "user", "content": "a"}])).id
    stamp = store.commit_stamped(
        sid, 1, append=[{"role": "user", "content": "b"}], changes={"status": "running"}
    )
    loaded = store.load(sid)
    assert stamp.version == loaded.version == 2
    if not type(store)._stamps_commits:
        assert stamp == CommitStamp(2)
        assert not stamp.reported
        return
    assert stamp.reported
    assert stamp.updated_at is not None
    assert stamp.updated_at == loaded.updated_at
    assert loaded.items[-1].timestamp == stamp.updated_at.isoformat(timespec="microseconds")
    lease = store.claim(sid, "r", 30)
    stamp = store.commit_stamped(sid, 2, lease=lease)
    header = store.load(sid, last=0)
    assert (stamp.lease_owner, stamp.lease_fence, stamp.lease_expires_at) == (
        header.lease_owner,
        header.lease_fence,
        header.lease_expires_at,
    )
    with pytest.raises(tether.ConflictError):  # the same checks and errors as commit
        store.commit_stamped(sid, 2, lease=lease)
    with pytest.raises(tether.InvalidRequest):
        store.commit_stamped(sid, 3, changes={"version": 9})


@pytest.mark.parametrize("kind", ["memory", "sqlite", "kv", "file"])
async def test_async_sessions_build_the_saved_session_too(kind: str, tmp_path: Path) -> None:
    stores: dict[str, Callable[[], AsyncStore]] = {
        "memory": AsyncMemoryStore,
        "sqlite": lambda: AsyncSQLiteStore(tmp_path / "db.sqlite"),
        "kv": lambda: AsyncDictKVStore(chunk_items=4),
        "file": lambda: AsyncFileStore(tmp_path / "files"),
    }
    async with stores[kind]() as store, tether.AsyncSessions(store) as sessions:
        sid = (await sessions.create(history=[{"role": "user", "content": "a"}])).id
        await sessions.get(sid)
        for n in range(6):  # past a kv chunk: sealing happens inside the commits
            saved = await sessions.execute(sid, AppendMessages({"role": "user", "content": n}))
            assert saved == await tether.AsyncSessions(store, cache_size=0).get(sid)
        assert (await store.commit_stamped(sid, saved.version)).reported


# --- which stores report the stamp ---------------------------------------------------------------


class AuditedCommits(MemoryStore):
    """A subclass that changes the public commit: commit_stamped must go through it."""

    def __init__(self) -> None:
        super().__init__()
        self.audited: list[str] = []

    def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
        self.audited.append(session_id)
        return super().commit(session_id, expected_version, **kwargs)


class AuditedProtected(MemoryStore):
    """A subclass that changes the protected _commit: the same."""

    def __init__(self) -> None:
        super().__init__()
        self.audited: list[str] = []

    def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: tether.Lease | None,
    ) -> int:
        self.audited.append(session_id)
        return super()._commit(session_id, expected_version, items, changes=changes, lease=lease)


class AuditedBoth(AuditedProtected):
    """One that changes _commit and _commit_stamped alike: its stamp is reported."""

    def _commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: tether.Lease | None,
    ) -> CommitStamp:
        self.audited.append(session_id)
        return super()._commit_stamped(
            session_id, expected_version, items, changes=changes, lease=lease
        )


@pytest.mark.parametrize(
    ("cls", "reported"), [(AuditedCommits, False), (AuditedProtected, False), (AuditedBoth, True)]
)
def test_a_subclass_that_changes_commit_is_never_bypassed(
    cls: type[AuditedCommits | AuditedProtected], reported: bool
) -> None:
    store = cls()
    sessions = Sessions(store)
    sid = sessions.create().id
    sessions.get(sid)
    saved = sessions.execute(sid, AppendMessages({"role": "user", "content": "a"}))
    assert store.audited == [sid]
    assert store._stamps_commits is reported
    assert saved == _fresh(store, sid)
    assert store.commit_stamped(sid, saved.version).reported is reported


def test_a_commit_override_is_seen_whatever_subclasses_came_before() -> None:
    # issubclass() inside __init_subclass__ reads the parent's ABC cache (the new class's is not
    # made yet): with another subclass of MemoryStore defined first, it once took an audited
    # commit for the stamping one and commit_stamped skipped it.
    class Unrelated(MemoryStore):
        pass

    calls: list[str] = []

    class Audited(MemoryStore):
        def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
            calls.append(session_id)
            return super().commit(session_id, expected_version, **kwargs)

    assert Unrelated._stamps_commits is True
    assert Audited._stamps_commits is False
    store = Audited()
    sid = store.create(Session(id="audited")).id
    stamp = store.commit_stamped(sid, 1, append=[{"role": "user", "content": "a"}])
    assert (calls, stamp.version, stamp.reported) == ([sid], 2, False)


class AuditedWrapper(WrappingStore):
    """A wrapper that changes commit (as examples/audited_store.py does)."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.audited: list[str] = []

    def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
        self.audited.append(session_id)
        return super().commit(session_id, expected_version, **kwargs)


def test_a_wrapper_that_changes_commit_reports_the_version_alone() -> None:
    wrapped = AuditedWrapper()
    sid = wrapped.create(Session()).id
    assert wrapped.commit_stamped(sid, 1) == CommitStamp(2)
    sessions = Sessions(wrapped)
    sessions.get(sid)
    saved = sessions.execute(sid, SetState(k=1))
    assert wrapped.audited == [sid, sid]
    assert saved == _fresh(wrapped, sid)
    assert AsyncMemoryStore._stamps_commits
    assert AsyncSQLiteStore._stamps_commits


async def test_the_async_adapter_falls_back_with_its_sync_store() -> None:
    store = tether.stores.base.SyncBackedAsyncStore(AuditedCommits())
    sid = (await store.create(Session())).id
    assert await store.commit_stamped(sid, 1) == CommitStamp(2)
    assert store.sync.audited == [sid]  # type: ignore[attr-defined]


# --- the agent's commits keep the runtime's cache current ----------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite", "kv"])
def test_an_agent_turn_reads_only_what_is_new(kind: str, tmp_path: Path) -> None:
    """The agent commits through the store; the runtime's cache follows those commits from
    their stamps, so the next turn reads nothing (its first commit, at the cached version,
    checks that the cache is current), never the whole history again (which made an agent
    turn grow with the history)."""
    from tether.agent import Agent, ScriptedModel

    store, cleanup = _open(kind, tmp_path)
    try:
        agent = Agent(Sessions(store), llm=ScriptedModel(lambda request: "answer"))
        history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 50
        sid = agent.sessions.create(history=history).id
        agent.run(sid, "first")
        reads: list[dict[str, Any]] = []
        load = store.load

        def counted(*args: Any, **kwargs: Any) -> Session:
            reads.append(kwargs)
            return load(*args, **kwargs)

        store.load = counted  # type: ignore[method-assign]
        agent.run(sid, "second")
        assert reads == []
        del store.load
        held = agent.sessions.get(sid)
        assert held == _fresh(store, sid)
        said = [i["content"] for i in held.history if i.get("role") in ("user", "assistant")]
        assert said[-2:] == ["second", "answer"]
    finally:
        store.close()
        cleanup()
