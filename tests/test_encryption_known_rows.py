"""An encrypted load does not read again the rows it verified while the store says nothing was
written since (issue 16: the whole-history turn).

On SQLite the encrypting store keeps, per session, the range of rows its codec holds verified
and the store's change mark taken before the read that verified them. While the store's mark
is that one (or the one after this store's own commit), a load reads the header and the rows
after that range, and takes the others in clear from the codec. Anything else (another
connection's commit, tampering with the file, a write past the wrapper, a version that moved,
a codec that let rows go) reads and compares every row as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Session
from tether.encryption import AsyncEncryptedStore, EncryptedStore, Keyring, TamperedCiphertext
from tether.encryption_async import KNOWN_FROM
from tether.stores.base import SyncBackedAsyncStore
from tether.stores.sqlite import SQLiteStore

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
N = KNOWN_FROM + 36  # long enough to be kept as known


def _items(count: int, tag: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{tag}{i}"} for i in range(count)]


def _texts(session: Session) -> list[str]:
    return [item["content"] for item in session.history]


class RawReads:
    """Records the windows the encrypting store asks its SQLite store for, undecoded."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.calls: list[dict[str, Any]] = []
        real = inner._load_raw

        def spy(session_id: str, **window: Any) -> Any:
            result = real(session_id, **window)
            self.calls.append({**window, "rows": len(result[1]) if result else None})
            return result

        inner._load_raw = spy  # type: ignore[method-assign]

    def rows_read(self) -> list[int | None]:
        rows = [call["rows"] for call in self.calls]
        self.calls.clear()
        return rows


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sealed.db"


@pytest.fixture
def store(path: Path) -> Iterator[EncryptedStore]:
    sealed = EncryptedStore(SQLiteStore(str(path)), RING)
    yield sealed
    sealed.close()


def _warm(store: EncryptedStore, reads: RawReads) -> str:
    """A session of N items loaded whole twice: the second load is the one that keeps it."""
    sid = store.create(Session(history=_items(N))).id
    store.load(sid)  # create saw it: this load's mark is kept
    reads.rows_read()
    return sid


def test_a_whole_load_with_nothing_written_reads_no_row_again(store: EncryptedStore) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    again = store.load(sid)
    assert reads.rows_read() == [0]  # the header, and the rows after the known ones: none
    assert _texts(again) == [f"m{i}" for i in range(N)]
    assert [item.seq for item in again.items] == list(range(1, N + 1))


def test_own_commits_read_only_the_rows_they_added(store: EncryptedStore) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    session = store.load(sid)
    assert reads.rows_read() == [0]
    for turn in range(3):
        store.commit(sid, session.version, append=_items(2, f"t{turn}-"))
        session = store.load(sid)
        assert reads.rows_read() == [2]  # the header, and the two rows the commit added
        assert _texts(session)[-2:] == [f"t{turn}-0", f"t{turn}-1"]
        assert len(session.history) == N + 2 * (turn + 1)
    fresh = EncryptedStore(SQLiteStore(store.inner.path), RING)  # type: ignore[attr-defined]
    try:
        # what is stored decrypts to what the load gave, item for item
        assert _texts(fresh.load(sid)) == _texts(session)
    finally:
        fresh.close()


def test_another_connections_write_is_read(store: EncryptedStore, path: Path) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    other = EncryptedStore(SQLiteStore(str(path)), RING)
    header = other.load(sid, last=0)
    # the same number of items after the cut: only the rows' content tells
    version = other.replace_tail(sid, header.version, 10, _items(N - 10, "new"))
    other.close()
    loaded = store.load(sid)
    assert _texts(loaded) == [f"m{i}" for i in range(10)] + [f"new{i}" for i in range(N - 10)]
    assert loaded.version == version
    assert reads.rows_read()[-1] == N  # every row read again


def test_tampering_through_another_connection_is_caught(store: EncryptedStore, path: Path) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    with sqlite3.connect(path) as raw:  # row 5 gets row 6's stored item: a moved ciphertext
        (sixth,) = raw.execute(
            "SELECT json_extract(data, '$.item') FROM tether_items WHERE session_id = ? "
            "AND seq = 6",
            (sid,),
        ).fetchone()
        changed = raw.execute(
            "UPDATE tether_items SET data = json_set(data, '$.item', json(?)) "
            "WHERE session_id = ? AND seq = 5",
            (sixth, sid),
        ).rowcount
    assert changed == 1
    with pytest.raises(TamperedCiphertext):
        store.load(sid)


def test_a_write_past_the_encrypting_store_is_read(store: EncryptedStore) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    version = store.load(sid, last=0).version
    # the same SQLite store object, written without the wrapper: a row removed, none added
    store.inner.replace_tail(sid, version, N - 1)
    loaded = store.load(sid)
    assert len(loaded.history) == N - 1
    assert reads.rows_read()[-1] == N - 1


def test_windows_from_the_known_rows_are_the_stored_ones(store: EncryptedStore) -> None:
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    session = store.load(sid)
    store.commit(sid, session.version, append=_items(3, "x"))
    texts = [f"m{i}" for i in range(N)] + ["x0", "x1", "x2"]
    cases: list[dict[str, int]] = [
        {"last": 5},
        {"after": 10},
        {"after": 10, "limit": 7},
        {"limit": 4},
        {"last": 0},
        {"after": N + 1},
        {"after": N + 3},
        {"last": 2, "limit": 1},
    ]
    for window in cases:
        last, after, limit = window.get("last"), window.get("after"), window.get("limit")
        loaded = store.load(sid, last=last, after=after, limit=limit)
        first = 1 + (len(texts) - last if last is not None else 0)
        first = max(first, (after or 0) + 1)
        end = len(texts) if limit is None else min(len(texts), first - 1 + limit)
        assert _texts(loaded) == texts[first - 1 : end], window
        assert [item.seq for item in loaded.items] == list(range(first, end + 1)), window


def test_rows_the_codec_let_go_are_read_again(path: Path) -> None:
    sealed = EncryptedStore(SQLiteStore(str(path)), RING)
    reads = RawReads(sealed.inner)  # type: ignore[arg-type]
    try:
        sid = _warm(sealed, reads)
        sealed.load(sid)
        assert reads.rows_read() == [0]
        # another session's rows fill the cache, and this one's go
        sealed.codec._cache_limit = sealed.codec._cached_bytes
        big = sealed.create(Session(history=_items(N, "other"))).id
        sealed.load(big)
        reads.rows_read()
        assert _texts(sealed.load(sid)) == [f"m{i}" for i in range(N)]
        assert reads.rows_read()[-1] == N
    finally:
        sealed.close()


def test_a_short_history_asks_for_no_mark(store: EncryptedStore) -> None:
    marks: list[str] = []
    inner = store.inner
    real = inner._change_mark

    def counted(session_id: str) -> Any:
        marks.append(session_id)
        return real(session_id)

    inner._change_mark = counted  # type: ignore[method-assign]
    short = store.create(Session(history=_items(KNOWN_FROM - 1))).id
    for _ in range(3):
        session = store.load(short)
        store.commit(short, session.version, append=[])
    assert marks == []
    long = store.create(Session(history=_items(N))).id
    store.load(long)
    store.load(long, after=N)  # past the known rows: no mark either
    assert marks == [long]


def test_threads_loading_and_writing_see_every_write(store: EncryptedStore, path: Path) -> None:
    sid = store.create(Session(history=_items(N))).id
    other = EncryptedStore(SQLiteStore(str(path)), RING)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(target: EncryptedStore, tag: str) -> None:
        try:
            for turn in range(40):
                while True:
                    session = target.load(sid, last=0)
                    try:
                        target.commit(sid, session.version, append=[{"content": f"{tag}{turn}"}])
                        break
                    except tether.ConflictError:
                        continue
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                loaded = store.load(sid)
                seqs = [item.seq for item in loaded.items]
                assert seqs == list(range(1, loaded.last_seq + 1))
                assert len(loaded.history) == loaded.last_seq
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=writer, args=(store, "a")),
        threading.Thread(target=writer, args=(other, "b")),
        threading.Thread(target=reader),
    ]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    stop.set()
    threads[2].join()
    other.close()
    assert not failures, failures
    final = store.load(sid)
    fresh = EncryptedStore(SQLiteStore(str(path)), RING)
    try:
        assert _texts(final) == _texts(fresh.load(sid))
        assert len(final.history) == N + 80
    finally:
        fresh.close()


def test_async_over_sqlite_keeps_known_rows(path: Path) -> None:
    async def run() -> None:
        inner = SQLiteStore(str(path))
        sealed = AsyncEncryptedStore(SyncBackedAsyncStore(inner), RING)
        sid = (await sealed.create(Session(history=_items(N)))).id
        await sealed.load(sid)
        reads = RawReads(inner)
        session = await sealed.load(sid)
        assert reads.rows_read() == [0]
        await sealed.commit(sid, session.version, append=_items(2, "z"))
        assert _texts(await sealed.load(sid))[-2:] == ["z0", "z1"]
        assert reads.rows_read() == [2]
        await sealed.close()

    asyncio.run(run())


def test_a_write_between_the_mark_and_the_read_is_read(store: EncryptedStore, path: Path) -> None:
    """The mark is taken before the read; a write that lands after it (here: a store whose mark
    never moves) is told by the header's version, and the rows are read again."""
    reads = RawReads(store.inner)  # type: ignore[arg-type]
    sid = _warm(store, reads)
    frozen = store.inner._change_mark(sid)
    store.inner._change_mark = lambda session_id: frozen  # type: ignore[method-assign]
    store.load(sid)
    assert reads.rows_read() == [0]
    other = EncryptedStore(SQLiteStore(str(path)), RING)
    header = other.load(sid, last=0)
    other.replace_tail(sid, header.version, 10, _items(N - 10, "new"))
    other.close()
    assert _texts(store.load(sid))[10:] == [f"new{i}" for i in range(N - 10)]
    assert reads.rows_read() == [0, N]  # the header at another version, then every row
