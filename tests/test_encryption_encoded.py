"""A turn's commit through the encrypted store hands a store that takes them (SQLite's
``_adds_encoded``) the JSON of the envelopes, not the envelopes to encode again: the rows it
writes must be those it would have written of the envelopes, byte for byte, and a store that
says nothing (or a subclass, or an object, that changes ``_add``) is given envelopes."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tether import KeyedItem, Session, _core
from tether.encryption import EncryptedStore, Keyring, TamperedCiphertext
from tether.encryption_codec import Codec, prepare_items
from tether.errors import CorruptSession
from tether.stores._writes import DocAdded, Write
from tether.stores.sqlite import SQLiteStore

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
STAMP = "2026-01-01T00:00:00+00:00"
ITEMS: list[Any] = [
    {"role": "user", "content": "plain"},
    {"role": "assistant", "content": 'own time \u00e9\u2603 "quoted"', "timestamp": STAMP},
    KeyedItem("call-1", {"role": "tool", "content": "keyed"}),
    KeyedItem("call-2", {"role": "tool", "content": "keyed, own time", "timestamp": STAMP}),
]


def _counted_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The codec's nonces drawn from a counter: two sealings of the same items are equal."""
    counter = itertools.count()

    def urandom(size: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(size))

    monkeypatch.setattr("tether.encryption_codec.os.urandom", urandom)


def test_encoded_envelopes_make_the_rows_of_the_envelopes(monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = prepare_items(ITEMS)
    _counted_nonces(monkeypatch)
    encoded = Codec(RING).seal_encoded("s", 7, prepared)
    _counted_nonces(monkeypatch)
    envelopes = Codec(RING).seal_items("s", 7, prepared, keyed=True)
    assert type(encoded) is _core.EncodedNewItems
    now = 1_767_225_600_000_000
    rows = _core.prepare_encoded_items(encoded, 7, now)
    expected = _core.prepare_items(envelopes, 7, now)
    assert rows == expected  # the same seqs and bytes
    assert rows.keys == expected.keys == [("call-1", 9), ("call-2", 10)]
    assert [key for key, _, _ in encoded] == [None, None, "call-1", "call-2"]
    assert [stamp for _, _, stamp in encoded] == [None, STAMP, None, STAMP]


class _SpiedAdd(SQLiteStore):
    """A SQLite store whose subclass changes ``_add``: it is given the envelopes."""

    given: list[Any]

    def _add(self, write: Write) -> DocAdded:
        self.given.append(write.items)
        return super()._add(write)


def _turns(store: EncryptedStore) -> Session:
    """A session created, loaded (the store sees its version) and given a turn's commit."""
    store.create(Session(id="s", history=ITEMS[:1]))
    version = store.load("s").version
    store.commit("s", version, append=ITEMS[1:])
    return store.load("s")


def _contents(session: Session) -> list[str]:
    return [item["content"] for item in session.history]


def test_a_turns_commit_hands_sqlite_the_envelopes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    prepare = _core.prepare_encoded_items

    def spy(items: _core.EncodedNewItems, first_seq: int, now: int) -> _core.PreparedItems:
        calls.append(len(items))
        return prepare(items, first_seq, now)

    monkeypatch.setattr("tether._core.items.prepare_encoded_items", spy)
    with SQLiteStore(tmp_path / "s.db") as inner:
        store = EncryptedStore(inner, RING)
        loaded = _turns(store)
        assert calls == [3]
        assert _contents(loaded) == [_core_item(i)["content"] for i in ITEMS]
        assert [(e.key, e.timestamp == STAMP) for e in loaded.items][1:] == [
            (None, True),
            ("call-1", False),
            ("call-2", True),
        ]
        assert store.items_by_key("s", ["call-2"])["call-2"].item == ITEMS[3].item
        raw = inner.load("s")
        assert all("tether_enc" in entry.item for entry in raw.items)
        assert [entry.key for entry in raw.items] == [None, None, "call-1", "call-2"]
        # bound to their place as any envelope: one moved to another seq does not open
        with sqlite3.connect(tmp_path / "s.db") as conn:
            rows = dict(conn.execute("SELECT seq, data FROM tether_items"))
            moved = {**json.loads(rows[3]), "item": json.loads(rows[2])["item"]}
            conn.execute("UPDATE tether_items SET data = ? WHERE seq = 3", (json.dumps(moved),))
        with pytest.raises(TamperedCiphertext):
            EncryptedStore(inner, RING).load("s")


def _core_item(entry: Any) -> dict[str, Any]:
    item = entry.item if isinstance(entry, KeyedItem) else entry
    assert isinstance(item, dict)
    return item


def test_a_store_that_changes_add_is_given_envelopes(tmp_path: Path) -> None:
    with _SpiedAdd(tmp_path / "s.db") as inner:
        inner.given = []
        store = EncryptedStore(inner, RING)
        assert store._encoded_add() is None
        loaded = _turns(store)
        assert _contents(loaded) == [_core_item(i)["content"] for i in ITEMS]
        (turn,) = inner.given
        assert type(turn) is list
        assert [type(entry) for entry in turn] == [dict, KeyedItem, KeyedItem]


def test_an_add_set_on_the_store_object_is_given_envelopes(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as inner:
        store = EncryptedStore(inner, RING)
        assert store._encoded_add() is not None
        given: list[Any] = []
        add = inner._add

        def spy(write: Write) -> DocAdded:
            given.append(write.items)
            return add(write)

        inner._add = spy  # type: ignore[method-assign]
        assert store._encoded_add() is None
        loaded = _turns(store)
        assert _contents(loaded) == [_core_item(i)["content"] for i in ITEMS]
        assert [type(items) for items in given] == [list]


def test_a_store_that_does_not_say_so_is_given_envelopes() -> None:
    from tether.stores.memory import MemoryStore

    inner = MemoryStore()
    store = EncryptedStore(inner, RING)
    assert store._encoded_add() is None
    assert _contents(_turns(store)) == [_core_item(i)["content"] for i in ITEMS]


@pytest.mark.parametrize("count", [1, 2, 3, 250, 251, 501])
def test_rows_are_decoded_in_chunks_of_one_json_array(count: int) -> None:
    from tether import _core

    rows = [b'{"seq":%d}' % seq for seq in range(1, count + 1)]
    assert _core.decode_rows("s", rows) == [{"seq": seq} for seq in range(1, count + 1)]
    rows[-1] = b'{"seq":1},{"seq":2}'  # one row holding two values: corrupt, not two items
    with pytest.raises(CorruptSession):
        _core.decode_rows("s", rows)
