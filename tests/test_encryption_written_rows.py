"""A commit of the encrypting store over SQLite leaves the rows it sealed verified in its codec
when the session's last load read its rows to the end (a whole-history reader, who reads them
next): that load compares bytes instead of decrypting what this store just encrypted. It
stays fail closed: a row changed after the commit, or moved to another place, is decrypted
and refused as before, and a worker that loads only what is new keeps nothing it never reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import KeyedItem, Session, _core
from tether._encryption_cache import WRITTEN_SESSIONS
from tether.encryption import (
    AsyncEncryptedStore,
    EncryptedStore,
    Keyring,
    TamperedCiphertext,
)
from tether.encryption_codec import Codec, prepare_items
from tether.stores.base import SyncBackedAsyncStore
from tether.stores.sqlite import SQLiteStore

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}


class Decryptions:
    """Counts the history items the codec decrypts and verifies (a cached row is not one)."""

    def __init__(self, codec: Codec) -> None:
        self.count = 0
        real = codec._verify

        def spy(envelope: object, session_id: str, field: str, *place: Any) -> Any:
            self.count += field == "item"
            return real(envelope, session_id, field, *place)

        codec._verify = spy  # type: ignore[method-assign, assignment]

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sealed.db"


@pytest.fixture
def store(path: Path) -> Iterator[EncryptedStore]:
    sealed = EncryptedStore(SQLiteStore(str(path)), RING)
    yield sealed
    sealed.close()


def _rows(store: EncryptedStore, session_id: str) -> set[int]:
    return set(store.codec._rows.get(session_id, {}))


def test_a_whole_history_reader_decrypts_none_of_its_own_commits(store: EncryptedStore) -> None:
    sid = store.create(Session(history=[USER, ASSISTANT] * 5)).id
    decrypted = Decryptions(store.codec)
    session = store.load(sid)
    assert decrypted.taken() == 10  # the first read verifies every row
    for turn in range(1, 6):
        store.commit(sid, session.version, append=[USER, {**ASSISTANT, "turn": turn}])
        session = store.load(sid)
        assert decrypted.taken() == 0
        assert len(session.history) == 10 + 2 * turn
        assert session.history[-1]["turn"] == turn
    # what the cache gives is what a fresh store, which holds nothing, decrypts
    fresh = EncryptedStore(SQLiteStore(str(store.inner.path)), RING)  # type: ignore[attr-defined]
    try:
        assert fresh.load(sid).model_dump() == session.model_dump()
    finally:
        fresh.close()


def test_a_worker_that_loads_what_is_new_keeps_no_rows(store: EncryptedStore) -> None:
    sid = store.create(Session(history=[USER, ASSISTANT] * 5)).id
    last_seq = store.load(sid, last=0).last_seq
    for _ in range(3):
        fresh = store.load(sid, after=last_seq)
        store.commit(sid, fresh.version, append=[USER, ASSISTANT])
        last_seq = fresh.last_seq + 2
    assert _rows(store, sid) == set()
    assert store.codec._written == {}
    whole = store.load(sid)  # a reader again: verifies every row once
    assert len(whole.history) == 16
    assert _rows(store, sid) == set(range(1, 17))


def test_a_keyed_item_and_an_own_timestamp_are_kept_as_stored(store: EncryptedStore) -> None:
    sid = store.create(Session(history=[USER])).id
    session = store.load(sid)
    stamped = {"role": "user", "content": "then", "timestamp": "2026-01-02T03:04:05+00:00"}
    store.commit(sid, session.version, append=[KeyedItem("k-1", ASSISTANT), stamped])
    decrypted = Decryptions(store.codec)
    again = store.load(sid)
    assert decrypted.taken() == 0
    assert [entry.key for entry in again.items] == [None, "k-1", None]
    assert again.items[2].timestamp == stamped["timestamp"]
    fresh = EncryptedStore(SQLiteStore(str(store.inner.path)), RING)  # type: ignore[attr-defined]
    try:
        assert fresh.load(sid).model_dump() == again.model_dump()
        assert decrypted.taken() == 0  # the other store's codec did the decrypting
    finally:
        fresh.close()


def test_a_row_changed_after_the_commit_is_decrypted_and_refused(
    store: EncryptedStore, path: Path
) -> None:
    sid = store.create(Session(history=[USER, ASSISTANT])).id
    session = store.load(sid)
    store.commit(sid, session.version, append=[USER, ASSISTANT])
    assert sid in store.codec._written
    other = sqlite3.connect(path)
    (row,) = other.execute(
        "SELECT data FROM tether_items WHERE seq = 4 AND data LIKE '%tether_enc%'"
    ).fetchone()
    tampered = row.replace("2:k1:", "2:k1:A", 1)  # one more character of ciphertext
    changed = other.execute(
        "UPDATE tether_items SET data = ? WHERE seq = 4 AND data = ?", (tampered, row)
    ).rowcount
    assert changed == 1
    other.commit()
    other.close()
    with pytest.raises(TamperedCiphertext):
        store.load(sid)


def _stored(codec: Codec, sealed_from: int, stored_from: int) -> tuple[Any, list[Any]]:
    """Two items sealed for seqs from ``sealed_from``, and their rows as a store numbering
    them from ``stored_from`` writes them."""
    prepared = prepare_items([USER, ASSISTANT])
    sealed = codec.seal_encoded("s-1", sealed_from, prepared)
    return prepared, list(_core.prepare_items(sealed, stored_from, 1_700_000_000_000_000))


def test_a_noted_write_gives_the_rows_a_fresh_codec_decrypts() -> None:
    codec = Codec(RING)
    prepared, stored = _stored(codec, 5, 5)
    codec.written("s-1", 5, stored, prepared)
    decrypted = Decryptions(codec)
    clear = codec.open_rows("s-1", stored)
    assert decrypted.taken() == 0
    assert clear == Codec(RING).open_rows("s-1", stored)
    assert set(codec._rows["s-1"]) == {5, 6}  # verified now, as a decrypted row would be


def test_rows_stored_at_other_seqs_than_sealed_are_decrypted_and_refused() -> None:
    codec = Codec(RING)
    prepared, stored = _stored(codec, 5, 6)  # numbered one past where they were sealed
    codec.written("s-1", 5, stored, prepared)
    with pytest.raises(TamperedCiphertext):
        codec.open_rows("s-1", stored)
    prepared, stored = _stored(codec, 5, 5)
    codec.written("s-1", 5, stored, prepared)
    moved = [(6, stored[0][1])]  # the first row copied over the second
    with pytest.raises(TamperedCiphertext):
        codec.open_rows("s-1", moved)


def test_a_codec_without_a_cache_notes_nothing() -> None:
    codec = Codec(RING, cache_bytes=0)
    prepared, stored = _stored(codec, 1, 1)
    codec.written("s-1", 1, stored, prepared)
    assert codec._written == {}


def test_only_the_latest_writes_of_the_last_sessions_are_noted() -> None:
    codec = Codec(RING)
    prepared, stored = _stored(codec, 1, 1)
    for number in range(WRITTEN_SESSIONS + 10):
        codec.written(f"s-{number}", 1, stored, prepared)
    assert len(codec._written) == WRITTEN_SESSIONS
    assert "s-0" not in codec._written
    assert f"s-{WRITTEN_SESSIONS + 9}" in codec._written


def test_the_async_store_keeps_them_too(path: Path) -> None:
    async def scenario() -> None:
        store = AsyncEncryptedStore(SyncBackedAsyncStore(SQLiteStore(str(path))), RING)
        try:
            sid = (await store.create(Session(history=[USER, ASSISTANT]))).id
            session = await store.load(sid)
            await store.commit(sid, session.version, append=[USER, ASSISTANT])
            again = await store.load(sid)
            assert len(again.history) == 4
            assert [item["content"] for item in again.history[-2:]] == [
                USER["content"],
                ASSISTANT["content"],
            ]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_notes_hold_at_most_a_quarter_of_the_cache() -> None:
    codec = Codec(RING, cache_bytes=40_000)  # a quarter: 10,000 bytes
    prepared, stored = _stored(codec, 1, 1)
    size = sum(len(row) for _, row in stored) + sum(len(item[1]) for item in prepared)
    assert 2 * size < 10_000 < 5 * size
    for number in range(8):
        codec.written(f"s-{number}", 1, stored, prepared)
        codec.written(f"s-{number}", 1, stored, prepared)  # a session's note replaces its last
        held = len(codec._written)
        assert held * size <= 10_000
        assert codec._written_bytes == held * size
    assert list(codec._written)[-1] == "s-7"
    big = prepare_items([{"role": "user", "content": "x" * 12_000}])
    rows = list(_core.prepare_items(codec.seal_encoded("s-9", 1, big), 1, 1))
    codec.written("s-9", 1, rows, big)  # larger than the budget alone: not noted
    assert "s-9" not in codec._written
