"""A whole stored history row copied over another's (its envelope verifies at the seq it
carries) or rows put out of their order: an encrypted store refuses to read the session, as it
refuses a ciphertext moved into another place, instead of returning an item twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tether import Session
from tether.encryption import EncryptedStore, Keyring
from tether.errors import TamperedCiphertext
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
HISTORY = [{"role": "user", "content": c} for c in ("one", "two", "three")]


def _copy_row_over(db: Path, source_seq: int, target_seq: int) -> None:
    """As someone with the database file: one row's stored JSON written over another's."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        changed = conn.execute(
            "UPDATE tether_items SET data = (SELECT data FROM tether_items WHERE seq = ?) "
            "WHERE seq = ?",
            (source_seq, target_seq),
        ).rowcount
        assert changed == 1
    finally:
        conn.close()


@pytest.mark.parametrize("cached", [False, True])
def test_sqlite_a_row_copied_over_another_is_refused(tmp_path: Path, cached: bool) -> None:
    db = tmp_path / "rows.db"
    inner = SQLiteStore(db)
    store = EncryptedStore(inner, RING)
    try:
        store.create(Session(id="s", history=HISTORY))
        if cached:  # every row verified once: the copied one differs from what was verified
            assert [i["content"] for i in store.load("s").history] == ["one", "two", "three"]
        _copy_row_over(db, 1, 2)
        with pytest.raises(TamperedCiphertext) as info:
            store.load("s")
        assert (info.value.session_id, info.value.place) == ("s", "history item seq 2")
        assert "not at its own seq" in str(info.value)
        # the rows that are in place still read
        assert [i["content"] for i in store.load("s", after=2).history] == ["three"]
    finally:
        inner.close()


def test_rows_out_of_order_or_twice_are_refused() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, RING)
    store.create(Session(id="s", history=HISTORY))
    rows = inner._sessions["s"].items  # as someone with the process's memory
    original = list(rows)
    rows[1] = rows[0]  # the first row twice
    with pytest.raises(TamperedCiphertext) as info:
        store.load("s")
    assert info.value.place == "history item seq 1"
    rows[:] = [original[1], original[0], original[2]]  # two rows swapped, each whole
    with pytest.raises(TamperedCiphertext) as info:
        store.load("s")
    assert info.value.place == "history item seq 1"
    rows[:] = original
    assert [i["content"] for i in store.load("s").history] == ["one", "two", "three"]
