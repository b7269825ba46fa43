# generated from tests/test_runtime_async.py by tools/unasync.py, do not edit
"""The session runtime on every built-in store.

This is the sync side.
"""

from __future__ import annotations

import functools
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import (
    Action,
    AppendMessages,
    ChangeOptions,
    DeleteState,
    Draft,
    Fork,
    HookContext,
    Resume,
    Session,
    Sessions,
    SessionStatus,
    SetState,
    Suspend,
    WriteMetadata,
    events,
)
from tether.stores.file import FileStore
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore
from tether.testing import FakeClock

from .conftest import (
    delete_nats_bucket,
    give_back_postgres_schema,
    require_server,
    take_postgres_schema,
    wipe_redis_namespace,
    with_options,
)
from .store_calls import count_calls

FIXTURES = Path(__file__).parent / "fixtures" / "schema_v1"


def _msgs(*texts: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text} for text in texts]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres", "nats"])
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Sessions]:
    kind = request.param
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if kind == "memory":
        store: tether.Store = MemoryStore(clock=clock)
    elif kind == "file":
        store = FileStore(tmp_path / "files", clock=clock)
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "db.sqlite", clock=clock)
    elif kind == "redis":
        from tether.stores.redis_sync import RedisStore

        url, namespace = require_server("redis"), f"rt{uuid.uuid4().hex}"
        store = RedisStore.from_url(with_options(url, namespace=namespace), clock=clock)
        cleanup = functools.partial(wipe_redis_namespace, url, namespace)
    elif kind == "nats":
        from tether.stores.nats_sync import NatsStore

        url, bucket = require_server("nats"), f"tether_t{uuid.uuid4().hex[:12]}"
        store = NatsStore(url, bucket, clock=clock, chunk_items=8)
        cleanup = functools.partial(delete_nats_bucket, url, bucket)
    else:
        from tether.stores.postgres_sync import PostgresStore

        url = require_server("postgres")
        schema = take_postgres_schema(url)  # empty and migrated, from conftest's pool
        store = PostgresStore.from_url(with_options(url, schema=schema), clock=clock)
        cleanup = functools.partial(give_back_postgres_schema, url, schema)
    try:
        with store, Sessions(store, clock=clock) as runtime:
            yield runtime
    finally:
        cleanup()


# --- create, get, list ---------------------------------------------------------------------------


def test_create_runs_hooks_in_order(sessions: Sessions) -> None:
    seen: list[tuple[str, str, int]] = []
    for stage in ("after_create", "before_save", "after_save", "before_create"):
        sessions.add_hook(
            stage,
            lambda ctx, stage=stage: seen.append((ctx.operation, stage, ctx.session.version)),  # type: ignore[misc]
        )
    created = sessions.create("support", session_id="s1", owner="ada")
    assert seen == [
        ("create", "before_create", 0),
        ("create", "before_save", 0),
        ("create", "after_save", 1),
        ("create", "after_create", 1),
    ]
    assert (created.id, created.agent, created.owner, created.version) == (
        "s1",
        "support",
        "ada",
        1,
    )


def test_before_hooks_can_change_and_stop_a_create(sessions: Sessions) -> None:
    def defaults(ctx: HookContext) -> None:
        ctx.session.metadata.setdefault("channel", "web")

    def guard(ctx: HookContext) -> None:
        if ctx.session.owner is None:
            raise PermissionError("sessions need an owner")

    sessions.add_hook("before_create", defaults)
    sessions.add_hook("before_save", guard, name="guard")
    created = sessions.create(owner="ada")
    assert created.metadata == {"channel": "web"}
    with pytest.raises(PermissionError):
        sessions.create(session_id="anon")
    assert not sessions.exists("anon")
    sessions.remove_hook("guard")
    sessions.create(session_id="anon")


def test_hook_priorities_names_and_removal(sessions: Sessions) -> None:
    order: list[str] = []
    sessions.add_hook("before_save", lambda ctx: order.append("low"), name="low", priority=-5)
    sessions.add_hook("before_save", lambda ctx: order.append("high"), name="high", priority=10)
    sessions.add_hook("before_save", lambda ctx: order.append("first-0"), name="a")
    sessions.add_hook("before_save", lambda ctx: order.append("second-0"), name="b")
    sessions.create()
    assert order == ["high", "first-0", "second-0", "low"]
    with pytest.raises(tether.InvalidRequest):
        sessions.add_hook("before_save", lambda ctx: None, name="a")
    with pytest.raises(tether.InvalidRequest):
        sessions.add_hook("during_save", lambda ctx: None)
    sessions.remove_hook("high")
    with pytest.raises(tether.InvalidRequest):
        sessions.remove_hook("high")


def test_after_save_hooks_cannot_change_the_saved_session(sessions: Sessions) -> None:
    def sneaky(ctx: HookContext) -> Session:
        ctx.session.state["changed"] = True
        return ctx.session

    sessions.add_hook("after_save", sneaky, name="sneaky")
    with pytest.raises(TypeError, match="already saved"):
        sessions.create(session_id="s1")
    sessions.remove_hook("sneaky")
    sessions.add_hook("after_save", lambda ctx: ctx.session.state.update(changed=True))
    sessions.execute("s1", SetState(a=1))
    assert (sessions.get("s1")).state == {"a": 1}, "a copy: the saved session is unchanged"


def test_conflicting_ids(sessions: Sessions) -> None:
    with pytest.raises(tether.ConflictingSessionIds):
        sessions.create(id="a", session_id="b")
    assert (sessions.create(id="same", session_id="same")).id == "same"
    assert (sessions.create(id="only-id")).id == "only-id"
    with pytest.raises(tether.SessionExists):
        sessions.create(session_id="same")


def test_get_info_exists_history(sessions: Sessions) -> None:
    sessions.create(session_id="s1", history=_msgs("a", "b", "c"))
    got = sessions.get("s1")
    assert [i["content"] for i in got.history] == ["a", "b", "c"]
    info = sessions.info("s1")
    assert type(info) is tether.SessionHeader
    assert info.history_len == 3
    assert sessions.exists("s1")
    assert not sessions.exists("nope")
    assert [i["seq"] for i in sessions.history("s1", last=2)] == [2, 3]
    assert [i["seq"] for i in sessions.history("s1", after=1)] == [2, 3]
    with pytest.raises(tether.SessionNotFound):
        sessions.get("nope")


def test_history_pages_with_limit_and_iter_history(sessions: Sessions) -> None:
    texts = [f"m{i}" for i in range(10)]
    sessions.create(session_id="long", history=_msgs(*texts))
    uncached = Sessions(sessions.store, cache_size=0)
    for runtime in (uncached, sessions):  # read from the store, then from the cache
        assert [i["seq"] for i in runtime.history("long", limit=3)] == [1, 2, 3]
        assert [i["seq"] for i in runtime.history("long", after=7, limit=5)] == [8, 9, 10]
        assert [i["seq"] for i in runtime.history("long", last=4, limit=2)] == [7, 8]
        assert runtime.history("long", after=10, limit=1) == []
        for bad in (0, -2, True, "3"):
            with pytest.raises(tether.InvalidRequest):
                runtime.history("long", limit=bad)  # type: ignore[arg-type]
        runtime.get("long")
    pages = sessions.iter_history("long", page_size=3)
    assert [i["content"] for i in pages] == texts
    pages = sessions.iter_history("long", after=8, page_size=3)
    assert [i["seq"] for i in pages] == [9, 10]
    with pytest.raises(tether.InvalidRequest):
        sessions.iter_history("long", page_size=0)
    seen: list[int] = []

    def read_while_compacted() -> None:
        for item in sessions.iter_history("long", page_size=4):
            seen.append(item["seq"])
            if item["seq"] == 4:  # between the first page and the second
                sessions.store.replace_history("long", 1, _msgs("summary"))

    with pytest.raises(tether.ConflictError, match="replaced during iteration"):
        read_while_compacted()
    assert seen == [1, 2, 3, 4]


def test_cached_session_sees_other_writers(sessions: Sessions) -> None:
    sessions.create(session_id="s1", history=_msgs("a"))
    sessions.get("s1")  # now cached
    sessions.store.commit("s1", 1, append=_msgs("from elsewhere"))
    assert [i["content"] for i in (sessions.get("s1")).history] == ["a", "from elsewhere"]
    assert [i["content"] for i in sessions.history("s1", last=1)] == ["from elsewhere"]
    # someone compacts the history: the cache notices and reloads it whole
    sessions.store.replace_history("s1", 2, _msgs("summary"))
    got = sessions.get("s1")
    assert [(i["seq"], i["content"]) for i in got.history] == [(3, "summary")]


def test_returned_sessions_do_not_change_the_cache(sessions: Sessions) -> None:
    sessions.create(session_id="s1", state={"k": {"n": 1}})
    got = sessions.get("s1")
    got.state["k"]["n"] = 99
    got.history.append({"role": "user"})
    again = sessions.get("s1")
    assert again.state == {"k": {"n": 1}}
    assert again.history == []


def test_list_leaves_archived_out_by_default(sessions: Sessions) -> None:
    sessions.create(session_id="live", owner="ada")
    sessions.create(session_id="old", owner="ada")
    sessions.archive("old")
    assert [h.id for h in (sessions.list()).sessions] == ["live"]
    assert {h.id for h in (sessions.list(include_archived=True)).sessions} == {"live", "old"}
    assert [h.id for h in (sessions.list(status="archived")).sessions] == ["old"]
    assert [h.id for h in (sessions.for_owner("ada")).sessions] == ["live"]
    assert (sessions.for_owner("bob")).sessions == []


# --- execute -------------------------------------------------------------------------------------


def test_execute_pipeline_order_and_result(sessions: Sessions) -> None:
    sessions.create(session_id="s1")
    seen: list[str] = []
    for stage in ("after_save", "before_save", "after_action", "after_load"):
        sessions.add_hook(stage, lambda ctx, stage=stage: seen.append(stage))  # type: ignore[misc]
    saved = sessions.execute("s1", AppendMessages(*_msgs("hi", "there")))
    assert seen == ["after_load", "after_action", "before_save", "after_save"]
    assert saved.version == 2
    assert [(i["seq"], i["content"]) for i in saved.history] == [(1, "hi"), (2, "there")]
    assert all("timestamp" in i for i in saved.history)


def test_built_in_actions(sessions: Sessions) -> None:
    sessions.create(session_id="s1", options={"model": "a"}, metadata={"x": 1})
    s = sessions.execute("s1", SetState({"a": 1}, b=2))
    assert s.state == {"a": 1, "b": 2}
    s = sessions.execute("s1", DeleteState("a", "missing"))
    assert s.state == {"b": 2}
    s = sessions.execute("s1", WriteMetadata({"y": 2}))
    assert s.metadata == {"x": 1, "y": 2}
    s = sessions.execute("s1", WriteMetadata({"z": 3}, replace=True))
    assert s.metadata == {"z": 3}
    s = sessions.execute("s1", ChangeOptions(model="b", system_prompt="be brief", cwd="/w"))
    assert s.options == {"model": "b", "system_prompt": "be brief", "cwd": "/w"}
    s = sessions.execute("s1", ChangeOptions(cwd=None, temperature=0.2))
    assert s.options == {"model": "b", "system_prompt": "be brief", "temperature": 0.2}
    s = sessions.execute("s1", AppendMessages(*_msgs("a", "b")))
    s = sessions.execute("s1", Suspend())
    assert s.status == SessionStatus.SUSPENDED
    s = sessions.execute("s1", Resume())
    assert s.status == SessionStatus.NEW  # the status it had before Suspend
    assert s.state == {"b": 2}  # the remembered status is gone with it
    s = sessions.clear("s1")
    assert (s.history, s.history_len) == ([], 0)
    assert (s.options["model"], s.metadata, s.state) == ("b", {"z": 3}, {"b": 2})
    with pytest.raises(tether.InvalidRequest):
        sessions.execute("s1", "not an action")  # type: ignore[arg-type]


def test_custom_action_and_draft_rules(sessions: Sessions) -> None:
    class CountTurn(Action):
        name = "count_turn"
        retry_safe = True

        def apply(self, draft: Draft) -> None:
            draft.session.state["turns"] = draft.session.state.get("turns", 0) + 1
            draft.append({"role": "system", "content": f"turn {draft.session.state['turns']}"})

    class InPlace(Action):
        name = "in_place"
        needs_history = True

        def apply(self, draft: Draft) -> None:
            draft.session.history.append({"role": "user", "content": "sneaky"})

    class ReplaceAndChange(Action):
        def apply(self, draft: Draft) -> None:
            draft.replace_history([])
            draft.session.state["x"] = 1

    sessions.create(session_id="s1")
    sessions.execute("s1", CountTurn())
    s = sessions.execute("s1", CountTurn())
    assert s.state == {"turns": 2}
    assert [i["content"] for i in s.history] == ["turn 1", "turn 2"]
    for action in (InPlace(), ReplaceAndChange()):
        with pytest.raises(tether.InvalidRequest):
            sessions.execute("s1", action)
    assert (sessions.get("s1")).version == 3, "nothing was written by the refused actions"


def test_conflict_is_raised_or_retried(sessions: Sessions) -> None:
    sessions.create(session_id="s1")
    conflicts: list[events.ConflictDetected] = []
    failures: list[events.SaveFailed] = []
    sessions.subscribe(conflicts.append, events.ConflictDetected)
    sessions.subscribe(failures.append, events.SaveFailed)

    class Racing(Action):
        """Lets another writer in between its load and its commit, the first `times` times."""

        name = "racing"
        retry_safe = True
        interloper: int | None = None

        def __init__(self, store: Any, times: int) -> None:
            self.store, self.times = store, times

        def apply(self, draft: Draft) -> None:
            if self.times:
                self.times -= 1
                self.interloper = draft.loaded.version
            draft.append({"role": "user", "content": "mine"})

    def interleave(action: Racing) -> None:
        def hook(ctx: HookContext) -> None:
            version = action.interloper
            if version is not None:
                action.interloper = None
                sessions.store.commit("s1", version, append=_msgs("theirs"))

        name = sessions.add_hook("before_save", hook)
        try:
            sessions.execute("s1", action, retries=1)
        finally:
            sessions.remove_hook(name)

    interleave(Racing(sessions.store, times=1))
    assert [i["content"] for i in (sessions.get("s1")).history] == ["theirs", "mine"]
    assert [(c.attempt, c.will_retry) for c in conflicts] == [(1, True)]
    assert failures == []

    with pytest.raises(tether.ConflictError):
        interleave(Racing(sessions.store, times=2))  # conflicts again on the retry
    assert [(c.attempt, c.will_retry) for c in conflicts[1:]] == [(1, True), (2, False)]
    assert len(failures) == 1

    class NotSafe(Action):
        def apply(self, draft: Draft) -> None:
            draft.append({"role": "user"})

    with pytest.raises(tether.InvalidRequest, match="retry_safe"):
        sessions.execute("s1", NotSafe(), retries=2)


def test_execute_with_a_lease(sessions: Sessions) -> None:
    sessions.create(session_id="s1")
    lease = sessions.store.claim("s1", "runner", 30)
    with pytest.raises(tether.AlreadyClaimed):
        sessions.execute("s1", SetState(a=1))
    saved = sessions.execute("s1", SetState(a=1), lease=lease)
    assert saved.state == {"a": 1}


# --- events --------------------------------------------------------------------------------------


def test_events_are_typed_and_a_failing_handler_breaks_nothing(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[events.Event] = []

    def boom(event: events.Event) -> None:
        raise RuntimeError("handler bug")

    def async_handler(event: events.Event) -> None:
        got.append(event)

    sessions.subscribe(boom)
    sessions.subscribe(async_handler)
    with caplog.at_level(logging.ERROR, logger="tether.events"):
        sessions.create(session_id="s1")
        sessions.execute("s1", AppendMessages(*_msgs("a")))
        sessions.get("s1")
        sessions.fork("s1", "child")
        sessions.archive("s1")
        sessions.delete("child")
        with pytest.raises(tether.SessionNotFound):
            sessions.get("gone")
    kinds = [type(e).__name__ for e in got]
    assert kinds == [
        "SessionSaved",
        "SessionCreated",
        "ActionExecuted",
        "SessionSaved",
        "SessionLoaded",
        "SessionSaved",
        "SessionCreated",
        "SessionForked",
        "ActionExecuted",
        "SessionSaved",
        "SessionArchived",
        "SessionDeleted",
        "LoadFailed",
    ]
    executed = next(e for e in got if isinstance(e, events.ActionExecuted))
    assert (executed.before_version, executed.after_version) == (1, 2)
    archived = [e for e in got if isinstance(e, events.ActionExecuted)][-1]
    assert archived.after_status == SessionStatus.ARCHIVED
    assert "handler bug" in caplog.text
    assert (sessions.info("s1")).status == SessionStatus.ARCHIVED, "saves went through"
    sessions.unsubscribe(boom)
    with pytest.raises(LookupError):
        sessions.unsubscribe(boom)


# --- fork ----------------------------------------------------------------------------------------


def test_fork_isolation(sessions: Sessions) -> None:
    seen: list[str] = []
    sessions.add_hook("before_create", lambda ctx: seen.append(ctx.operation))
    sessions.create(
        "support", session_id="parent", owner="ada", state={"k": 1}, history=_msgs("a", "b", "c")
    )
    child = sessions.fork("parent", "child", at=2)
    assert seen == ["create", "fork"]
    assert (child.parent_id, child.fork_seq, child.owner, child.agent) == (
        "parent",
        2,
        "ada",
        "support",
    )
    assert [(i["seq"], i["content"]) for i in child.history] == [(1, "a"), (2, "b")]
    assert child.state == {"k": 1}
    sessions.execute("parent", AppendMessages(*_msgs("parent later")))
    sessions.execute("child", AppendMessages(*_msgs("child later")))
    parent = sessions.get("parent")
    child = sessions.get("child")
    assert [i["content"] for i in parent.history] == ["a", "b", "c", "parent later"]
    assert [i["content"] for i in child.history] == ["a", "b", "child later"]
    whole = sessions.execute("parent", Fork())
    assert whole.fork_seq == 4
    assert len(whole.history) == 4
    with pytest.raises(tether.InvalidRequest):
        sessions.fork("parent", at=99)
    empty = sessions.fork("parent", at=0)
    assert (empty.history, empty.status) == ([], SessionStatus.NEW)


def test_fork_of_a_compacted_history_numbers_from_one(sessions: Sessions) -> None:
    sessions.create(session_id="p", history=_msgs("a", "b", "c"))
    sessions.store.replace_history("p", 1, _msgs("summary", "d", "e"))  # seqs 4, 5, 6
    child = sessions.fork("p", "c", at=5)
    assert [(i["seq"], i["content"]) for i in child.history] == [(1, "summary"), (2, "d")]
    assert (child.fork_seq, child.last_seq, child.history_len) == (5, 2, 2)
    stored = sessions.store.load("c")
    assert [(i["seq"], i["content"]) for i in stored.history] == [(1, "summary"), (2, "d")]
    assert (sessions.store.load("c", after=1)).history[0]["content"] == "d"


def test_fork_hooks_can_change_the_child(sessions: Sessions) -> None:
    def mark(ctx: HookContext) -> None:
        if ctx.operation == "fork":
            ctx.session.metadata["forked"] = True
            ctx.session.history.append({"role": "system", "content": "forked here"})

    def redact(ctx: HookContext) -> None:
        if ctx.operation == "fork":
            ctx.session.history[0] = {"role": "user", "content": "[redacted]"}

    name = sessions.add_hook("before_create", mark)
    sessions.create(session_id="p", history=_msgs("a"))
    child = sessions.fork("p", "c")
    stored = sessions.store.load("c")
    assert stored.metadata == {"forked": True}
    assert [i["content"] for i in stored.history] == ["a", "forked here"]
    assert child.history_len == 2
    sessions.remove_hook(name)
    sessions.add_hook("before_create", redact)
    sessions.fork("p", "c2")
    assert [i["content"] for i in (sessions.store.load("c2")).history] == ["[redacted]"]


# --- retiring ------------------------------------------------------------------------------------


def test_archive_inactive(sessions: Sessions, clock: FakeClock) -> None:
    sessions.create(session_id="old-1")
    sessions.create(session_id="old-2")
    clock.advance(timedelta(days=40).total_seconds())
    sessions.create(session_id="fresh")
    sessions.create(session_id="old-but-held")
    clock.advance(-timedelta(days=40).total_seconds())
    held = sessions.store.claim("old-1", "runner", timedelta(days=365))
    clock.advance(timedelta(days=40).total_seconds())
    assert sessions.archive_inactive(days=30) == 1  # old-2; old-1 is held by a runner
    statuses = {h.id: h.status for h in (sessions.list(include_archived=True)).sessions}
    assert statuses["old-2"] == SessionStatus.ARCHIVED
    assert statuses["old-1"] == SessionStatus.NEW
    assert statuses["fresh"] == SessionStatus.NEW
    sessions.store.release(held)
    assert sessions.archive_inactive(days=30) == 1
    assert sessions.archive_inactive(days=30) == 0
    with pytest.raises(tether.InvalidRequest):
        sessions.archive_inactive(days=-1)


def test_clear_all_needs_confirmation(sessions: Sessions) -> None:
    for n in range(3):
        sessions.create(session_id=f"s{n}")
    sessions.archive("s0")
    with pytest.raises(tether.InvalidRequest, match="confirm=True"):
        sessions.clear_all()
    assert len((sessions.list(include_archived=True)).sessions) == 3
    assert sessions.clear_all(confirm=True) == 3
    assert (sessions.list(include_archived=True)).sessions == []


def test_expiry_and_purge(sessions: Sessions, clock: FakeClock) -> None:
    sessions.create(session_id="brief", expires_at=clock() + timedelta(hours=1))
    sessions.create(session_id="lasting")
    clock.advance(3601)
    assert not sessions.exists("brief")
    assert sessions.purge_expired() == 1
    assert sessions.purge_expired() == 0
    assert sessions.exists("lasting")


def test_delete(sessions: Sessions) -> None:
    sessions.create(session_id="s1")
    sessions.get("s1")
    assert sessions.delete("s1") is True
    assert sessions.delete("s1") is False
    with pytest.raises(tether.SessionNotFound):
        sessions.get("s1")


def test_delete_respects_a_live_lease(sessions: Sessions) -> None:
    sessions.create(session_id="held")
    lease = sessions.store.claim("held", "runner", 60)
    with pytest.raises(tether.AlreadyClaimed):
        sessions.delete("held")
    assert sessions.exists("held")
    assert sessions.delete("held", lease=lease) is True  # the holder deletes its own
    sessions.create(session_id="stuck")
    sessions.store.claim("stuck", "crashed-runner", 60)
    assert sessions.delete("stuck", force=True) is True  # an operator clears it
    assert not sessions.exists("stuck")
    assert sessions.delete("stuck", force=True) is False


def test_clear_all_goes_past_held_and_newer_sessions(
    sessions: Sessions, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        sessions.create(session_id=f"s{n}")
    sessions.store.claim("s1", "runner", 60)
    with monkeypatch.context() as patch:
        patch.setattr(tether.schema.schema, "current", tether.schema.schema.current + 1)
        sessions.store.create(Session(id="future"))
    with caplog.at_level(logging.WARNING, logger="tether.sessions"):
        assert sessions.clear_all(confirm=True) == 3
    left = {h.id for h in (sessions.list(include_archived=True)).sessions}
    assert left == {"s1", "future"}
    assert "skipped 1 session(s) a runner holds: s1" in caplog.text
    assert "force=True" in caplog.text
    assert "stored by a newer tether: future" in caplog.text
    assert sessions.clear_all(confirm=True, force=True) == 1  # s1; never the newer one
    assert [h.id for h in (sessions.list(include_archived=True)).sessions] == ["future"]
    with pytest.raises(tether.InvalidRequest, match="force"):
        sessions.clear_all(confirm=True, force="yes")  # type: ignore[arg-type]


# --- store calls per turn ----------------------------------------------------------------------

_STORE_CALLS = (
    "create",
    "load",
    "commit",
    "commit_stamped",
    "append",
    "replace_history",
    "replace_tail",
)


def _turn_calls(store: tether.Store, *, reads: int, commits: int = 1) -> dict[str, int]:
    """The store calls of an ``execute`` that read ``reads`` times before its ``commits``
    (the last one succeeding). A store that reports its commit stamp (every built-in one:
    memory, file, SQLite, the key-value kit, Redis, PostgreSQL) is read no more; any other
    runs its ``commit`` under ``commit_stamped`` and is read once more, for what that commit
    stamped."""
    stamps = bool(getattr(type(getattr(store, "sync", store)), "_stamps_commits", False))
    calls = {"load": reads, "commit_stamped": commits}
    if not stamps:
        calls.update(load=reads + 1, commit=commits)
    return {name: count for name, count in calls.items() if count}


def test_a_cached_turn_is_one_commit(sessions: Sessions) -> None:
    sessions.create(session_id="s1", history=_msgs("a", "b"))
    sessions.get("s1")
    calls = count_calls(sessions.store, _STORE_CALLS)
    saved = sessions.execute("s1", AppendMessages(*_msgs("c", "d")))
    # the commit at the cached version; its times from the stamp the store reported (else a
    # read of what it committed)
    assert calls == _turn_calls(sessions.store, reads=0)
    calls.clear()
    again = sessions.get("s1")
    # a store that marks its changes (SQLite) tells that nothing was written since: no read
    marks = sessions.store._change_mark("s1") is not None
    assert calls == ({} if marks else {"load": 1})
    calls.clear()
    sessions.execute("s1", AppendMessages(*_msgs("e")))
    assert calls == _turn_calls(sessions.store, reads=0)
    assert again == saved
    assert [i["content"] for i in (sessions.get("s1")).history] == list("abcde")


def test_the_session_a_cached_turn_returns_is_the_stored_one(
    sessions: Sessions,
) -> None:
    sessions.create(session_id="s1", history=_msgs("a"), state={"k": 1})
    sessions.get("s1")
    sessions.store.commit("s1", 1, append=[tether.KeyedItem("k1", {"role": "tool"})])
    uncached = Sessions(sessions.store, cache_size=0)
    saved = sessions.execute("s1", AppendMessages(*_msgs("b")))
    assert saved == uncached.get("s1")  # header, history and exact items (their keys too)
    sessions.store.commit("s1", saved.version, append=[tether.KeyedItem("k2", {"x": 1})])
    got = sessions.get("s1")
    assert got == uncached.get("s1")
    assert [item.key for item in got.items] == [None, "k1", None, "k2"]


def test_a_stale_cache_is_refreshed_by_the_conflict(sessions: Sessions) -> None:
    sessions.create(session_id="s1")
    sessions.get("s1")
    other = Sessions(sessions.store)
    other.execute("s1", AppendMessages(*_msgs("theirs")))
    conflicts: list[events.ConflictDetected] = []
    failures: list[events.SaveFailed] = []
    sessions.subscribe(conflicts.append, events.ConflictDetected)
    sessions.subscribe(failures.append, events.SaveFailed)
    calls = count_calls(sessions.store, _STORE_CALLS)
    saved = sessions.execute("s1", AppendMessages(*_msgs("mine")))  # retries=0
    # refused at the cached version; what came after the cached seq, which cannot be trusted
    # as all that changed (someone else wrote, and a replace_tail reuses seqs), so the whole
    # session; the commit (and, from a store that reports no stamp, what it committed)
    assert calls == _turn_calls(sessions.store, reads=2, commits=2)
    assert [i["content"] for i in saved.history] == ["theirs", "mine"]
    assert saved == Sessions(sessions.store, cache_size=0).get("s1")
    assert [(c.attempt, c.will_retry) for c in conflicts] == [(1, True)]
    assert failures == []


def test_an_action_that_is_not_retry_safe_reads_first_and_runs_once(
    sessions: Sessions,
) -> None:
    applied: list[int] = []

    class Once(Action):
        name = "once"

        def apply(self, draft: Draft) -> None:
            applied.append(draft.loaded.version)
            draft.append({"role": "user", "content": "once"})

    sessions.create(session_id="s1")
    sessions.get("s1")
    Sessions(sessions.store).execute("s1", AppendMessages(*_msgs("theirs")))
    calls = count_calls(sessions.store, _STORE_CALLS)
    saved = sessions.execute("s1", Once())
    assert applied == [2], "applied once, to the session as stored"
    # what is new (someone else wrote: read whole), the commit (what it committed, from a
    # store that reports no stamp)
    assert calls == _turn_calls(sessions.store, reads=2)
    assert [i["content"] for i in saved.history] == ["theirs", "once"]


def test_a_tail_replaced_behind_the_cache_is_read_again(sessions: Sessions) -> None:
    """replace_tail reuses seqs: a cache that took "what came after my last seq" as all that
    changed would keep the replaced items. Someone else's write means a whole read."""
    sessions.create(session_id="s1", history=_msgs("a", "b", "c"))
    sessions.get("s1")
    version = (sessions.store.load("s1", last=0)).version
    sessions.store.replace_tail("s1", version, 1, _msgs("B", "C"))
    assert [i["content"] for i in (sessions.get("s1")).history] == ["a", "B", "C"]
    saved = sessions.execute("s1", AppendMessages(*_msgs("d")))
    assert [i["content"] for i in saved.history] == ["a", "B", "C", "d"]
    assert saved == Sessions(sessions.store, cache_size=0).get("s1")


def test_a_session_deleted_behind_the_cache_is_not_found(sessions: Sessions) -> None:
    failed: list[events.LoadFailed] = []
    sessions.subscribe(failed.append, events.LoadFailed)
    sessions.create(session_id="s1")
    sessions.get("s1")
    Sessions(sessions.store).delete("s1")
    with pytest.raises(tether.SessionNotFound):
        sessions.execute("s1", AppendMessages(*_msgs("late")))
    assert [e.session_id for e in failed] == ["s1"]
    assert not sessions.exists("s1")


# --- schema versions through the runtime ---------------------------------------------------------


def test_old_sessions_are_migrated_and_written_back(tmp_path: Path) -> None:
    directory = Path(shutil.copytree(FIXTURES / "files", tmp_path / "files"))
    with Sessions(FileStore(directory)) as runtime:
        old = runtime.get("support-42")
        current = tether.schema.CURRENT_SCHEMA_VERSION
        assert old.schema_version == current
        assert [i["content"] for i in old.history] == [
            "Where is order A1001?",
            "It shipped yesterday.",
        ]
        saved = runtime.execute("support-42", AppendMessages(*_msgs("thanks")))
        assert saved.schema_version == current
    assert f'"schema_version":{current}' in (directory / "support-42.json").read_text()


def test_newer_sessions_are_refused_and_untouched(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tether.schema.schema, "current", 3)
    sessions.create(session_id="future", state={"k": 1})
    monkeypatch.setattr(tether.schema.schema, "current", 2)
    runtime = Sessions(sessions.store)  # a process that never saw it: nothing cached
    with pytest.raises(tether.UnsupportedSchemaVersion):
        runtime.get("future")
    with pytest.raises(tether.UnsupportedSchemaVersion):
        runtime.execute("future", SetState(k=2))
    monkeypatch.setattr(tether.schema.schema, "current", 3)
    assert (runtime.get("future")).state == {"k": 1}


def test_open_by_url(tmp_path: Path) -> None:
    with Sessions(f"sqlite:///{tmp_path / 'app.db'}") as runtime:
        runtime.create(session_id="by-url")
        assert isinstance(runtime.store, SQLiteStore)
        assert runtime.exists("by-url")
