"""``Sessions.get`` on the embedded SQLite store serves its cached copy without a read while
the store's change mark (``PRAGMA data_version`` and the store object's count of writes) says
nothing was written since, and reads whenever anything may have been: another connection,
another process, the same store object through another path, or an expiring session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tether
from tether import AppendMessages, Session
from tether.errors import ConflictError, SessionNotFound
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore
from tether.stores.wrapping_sync import WrappingStore

from .store_calls import count_calls

USER = {"role": "user", "content": "hi"}
REPLY = {"role": "assistant", "content": "hello"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "marks.db")
    yield opened
    opened.close()


def _contents(session: Session) -> list[str]:
    return [item["content"] for item in session.history]


def test_a_second_get_reads_nothing_and_a_turn_keeps_it_so(store: SQLiteStore) -> None:
    sessions = tether.Sessions(store)
    sid = sessions.create(history=[USER]).id
    first = sessions.get(sid)
    loads = count_calls(store, ["load"])
    again = sessions.get(sid)
    assert loads["load"] == 0
    assert again == first
    saved = sessions.execute(sid, AppendMessages(REPLY))
    after = sessions.get(sid)
    assert loads["load"] == 0  # the commit was the one write since: the cache is the store
    assert after == saved == store.load(sid)
    assert _contents(after) == ["hi", "hello"]


def test_writes_to_more_sessions_than_counted_one_by_one_start_the_counts_again(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tether.stores.sqlite, "_MARK_SESSIONS", 2)
    sessions = tether.Sessions(store)
    sid = sessions.create(session_id="a", history=[USER]).id
    held = sessions.get(sid)
    before = store._change_mark(sid)
    sessions.create(session_id="b")  # the second session counted: a's mark stays
    assert store._change_mark(sid) == before
    loads = count_calls(store, ["load"])
    assert sessions.get(sid) == held
    assert loads["load"] == 0
    sessions.create(session_id="c")  # a third: every count starts again, every mark moves
    assert store._change_mark(sid) != before
    assert len(store._writes) == 1
    again = sessions.get(sid)
    assert loads["load"] == 1  # read, as anything may have been written
    assert again == held == store.load(sid)


def test_a_write_by_another_connection_is_read(store: SQLiteStore, tmp_path: Path) -> None:
    sessions = tether.Sessions(store)
    sid = sessions.create(history=[USER]).id
    held = sessions.get(sid)
    other = SQLiteStore(tmp_path / "marks.db")
    try:
        other.commit(sid, held.version, append=[REPLY], changes={"state": {"k": 1}})
    finally:
        other.close()
    loads = count_calls(store, ["load"])
    fresh = sessions.get(sid)
    assert loads["load"] >= 1
    assert _contents(fresh) == ["hi", "hello"]
    assert fresh.state == {"k": 1}
    assert fresh.version == held.version + 1


def test_a_write_by_another_process_is_read(store: SQLiteStore, tmp_path: Path) -> None:
    sessions = tether.Sessions(store)
    sid = sessions.create(history=[USER]).id
    held = sessions.get(sid)
    script = (
        "import sys; from tether.stores.sqlite import SQLiteStore\n"
        "s = SQLiteStore(sys.argv[1])\n"
        "s.commit(sys.argv[2], int(sys.argv[3]), append=[{'role': 'user', 'content': 'x'}])\n"
        "s.close()\n"
    )
    db = str(tmp_path / "marks.db")
    subprocess.run([sys.executable, "-c", script, db, sid, str(held.version)], check=True)
    assert _contents(sessions.get(sid)) == ["hi", "x"]
    # and the refreshed copy is served unread again until the next write
    loads = count_calls(store, ["load"])
    assert _contents(sessions.get(sid)) == ["hi", "x"]
    assert loads["load"] == 0


def test_a_write_through_the_same_store_object_is_read(store: SQLiteStore) -> None:
    sessions = tether.Sessions(store)
    neighbour = tether.Sessions(store)  # its own cache, the same connection
    sid = sessions.create(history=[USER]).id
    held = sessions.get(sid)
    store.commit(sid, held.version, append=[REPLY])  # past the runtime
    assert _contents(sessions.get(sid)) == ["hi", "hello"]
    neighbour.execute(sid, AppendMessages(USER))
    assert _contents(sessions.get(sid)) == ["hi", "hello", "hi"]
    lease = store.claim(sid, "elsewhere", 60)  # a header-only write: a lease, no new version
    assert sessions.get(sid).lease_owner == "elsewhere"
    store.release(lease)
    released = sessions.get(sid)
    assert released.lease_expires_at is None
    assert released == store.load(sid)


def test_a_failed_write_moves_the_mark(store: SQLiteStore) -> None:
    sid = store.create(Session()).id
    before = store._change_mark(sid)
    with pytest.raises(ConflictError):
        store.commit(sid, 99, append=[USER])
    after = store._change_mark(sid)
    assert before is not None
    assert after is not None
    assert after[1] == before[1] + 1  # a write begun counts, whatever became of it
    assert after[0] == before[0]  # this connection's own writes are not "others"


def test_a_session_that_expires_is_always_read(store: SQLiteStore) -> None:
    sessions = tether.Sessions(store)
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    sid = sessions.create(history=[USER], expires_at=soon).id
    sessions.get(sid)
    loads = count_calls(store, ["load"])
    sessions.get(sid)
    sessions.execute(sid, AppendMessages(REPLY))
    sessions.get(sid)
    assert loads["load"] == 2  # each get, even right after the turn's own commit


def test_an_expired_session_is_not_served(tmp_path: Path) -> None:
    now = [datetime(2030, 1, 1, tzinfo=timezone.utc)]
    store = SQLiteStore(tmp_path / "clock.db", clock=lambda: now[0])
    try:
        sessions = tether.Sessions(store)
        sid = sessions.create(history=[USER], expires_at=now[0] + timedelta(minutes=5)).id
        sessions.get(sid)
        now[0] += timedelta(minutes=10)  # nothing written: only time passed
        with pytest.raises(SessionNotFound):
            sessions.get(sid)
    finally:
        store.close()


def test_a_store_that_changes_loads_offers_no_mark(tmp_path: Path) -> None:
    class Tagged(SQLiteStore):
        def _load(
            self, session_id: str, *, last: int | None, after: int | None, limit: int | None
        ) -> Session:
            loaded = super()._load(session_id, last=last, after=after, limit=limit)
            return loaded.model_copy(update={"metadata": {"tagged": True}})

    tagged = Tagged(tmp_path / "tagged.db")
    plain = SQLiteStore(tmp_path / "plain.db")
    wrapped = WrappingStore(plain)
    try:
        assert tagged._change_mark("s") is None
        assert wrapped._change_mark("s") is None  # a wrapper's loads may add to its target's
        assert plain._change_mark("s") is not None
        sessions = tether.Sessions(tagged)
        sid = sessions.create().id
        sessions.get(sid)
        loads = count_calls(tagged, ["load"])
        sessions.get(sid)
        assert loads["load"] == 1  # its load is called: whatever it adds is not skipped
    finally:
        tagged.close()
        plain.close()


def test_no_mark_while_another_thread_holds_the_connection(store: SQLiteStore) -> None:
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store._write():
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        assert store._change_mark("s") is None  # never waits for the lock: the caller reads
    finally:
        done.set()
        thread.join()
    assert store._change_mark("s") is not None


def test_a_write_to_another_session_leaves_the_mark_alone(
    store: SQLiteStore, tmp_path: Path
) -> None:
    sessions = tether.Sessions(store)
    sid = sessions.create(history=[USER]).id
    other = "other"  # counted apart from sid (each session's writes are its own)
    sessions.create(session_id=other)
    sessions.get(sid)
    before = store._change_mark(sid)
    loads = count_calls(store, ["load"])
    for _ in range(3):  # a worker's turns on its other sessions, through the same store
        sessions.execute(other, AppendMessages(USER))
        assert _contents(sessions.get(sid)) == ["hi"]
    assert loads["load"] == 0
    assert store._change_mark(sid) == before
    # creating or forking another session changes what no other session's load returns
    unrelated = "new"
    sessions.create(session_id=unrelated)
    assert store._change_mark(sid) == before
    # a write by anything but one session's write through this object moves every mark
    store.delete(unrelated)
    assert store._change_mark(sid) != before
    held = sessions.get(sid)
    outside = SQLiteStore(tmp_path / "marks.db")
    try:  # another connection's write to another session: read, as anyone's may be
        outside.commit(other, outside.load(other).version, append=[USER])
        outside.commit(sid, held.version, append=[REPLY])
    finally:
        outside.close()
    assert _contents(sessions.get(sid)) == ["hi", "hello"]


def test_a_fork_and_a_new_session_in_an_expired_ones_place_leave_other_copies_as_stored(
    tmp_path: Path,
) -> None:
    now = [datetime(2030, 1, 1, tzinfo=timezone.utc)]
    store = SQLiteStore(tmp_path / "forks.db", clock=lambda: now[0])
    try:
        sessions = tether.Sessions(store)
        parent = sessions.create(
            session_id="parent", history=[USER, REPLY], expires_at=now[0] + timedelta(minutes=1)
        )
        child = sessions.fork(parent.id, new_id="child")  # shares the parent's rows
        held = sessions.get(child.id)
        now[0] += timedelta(minutes=5)  # the parent expired: its id is free
        loads = count_calls(store, ["load"])
        sessions.create(session_id="parent", history=[REPLY])  # drops the expired one's rows
        again = sessions.get(child.id)
        read = loads["load"]
        assert again == held == store.load(child.id)  # the child kept what it shared
        assert _contents(again) == ["hi", "hello"]
        assert read == 0
        grandchild = sessions.fork(child.id, new_id="grandchild")
        assert sessions.get(child.id) == held
        assert _contents(sessions.get(grandchild.id)) == ["hi", "hello"]
    finally:
        store.close()


def test_the_async_runtime_uses_the_mark(tmp_path: Path) -> None:
    async def main() -> None:
        store = AsyncSQLiteStore(tmp_path / "async.db")
        try:
            sessions = tether.AsyncSessions(store)
            sid = (await sessions.create(history=[USER])).id
            await sessions.get(sid)
            loads = count_calls(store, ["load"])
            await sessions.execute(sid, AppendMessages(REPLY))
            assert _contents(await sessions.get(sid)) == ["hi", "hello"]
            assert loads["load"] == 0
            other = SQLiteStore(tmp_path / "async.db")
            try:
                other.commit(sid, 2, append=[USER])
            finally:
                other.close()
            assert _contents(await sessions.get(sid)) == ["hi", "hello", "hi"]
            assert loads["load"] >= 1
        finally:
            await store.close()

    asyncio.run(main())
