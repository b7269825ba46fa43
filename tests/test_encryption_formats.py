"""Envelope formats: tether writes format 2 (one field) and still reads format 1 (four fields),
which earlier versions wrote: data already on disk stays readable, with every check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tether import KeyedItem, Session, StoredItem, _json
from tether.encryption import (
    EncryptedStore,
    Keyring,
    PlaintextFound,
    TamperedCiphertext,
    UnknownKeyId,
)
from tether.encryption_sessions import rebuilt, stored_key_ids
from tether.stores.memory import MemoryStore

from . import encryption_envelopes as envelopes

KEY = Keyring.new_key()
RING = Keyring({"k1": KEY}, current="k1")
BOTH = Keyring({"k1": KEY, "k2": Keyring.new_key()}, current="k1")  # relabelling needs k2
STAMP = "2026-01-01T00:00:00+00:00"
HISTORY: list[Any] = [
    {"role": "user", "content": "own time", "timestamp": STAMP},
    {"role": "assistant", "content": "two"},
    KeyedItem("call-1", {"role": "tool", "content": "three"}),
]


def _as_format_1(
    inner: MemoryStore, session_id: str, *, only_items: list[int] | None = None
) -> None:
    """Rewrite a session's stored envelopes as tether wrote them before format 2 (the same
    key, associated data and plaintext): what a store written by an earlier version holds."""
    raw = inner.load(session_id)
    items = []
    for index, entry in enumerate(raw.items):
        if only_items is not None and index not in only_items:
            items.append(entry)
            continue
        plain = HISTORY[index]
        item = plain.item if isinstance(plain, KeyedItem) else plain
        envelope = envelopes.format_1(
            KEY,
            "k1",
            envelopes.item_ad(session_id, entry.seq, entry.key, "k1"),
            _encoded(item),
            item.get("timestamp"),
        )
        items.append(StoredItem(entry.seq, entry.timestamp, entry.key, envelope))
    state, options = raw.state, raw.options
    if only_items is None:
        state = envelopes.format_1(
            KEY, "k1", envelopes.field_ad(session_id, "state", "k1"), b'{"s":1}'
        )
        options = envelopes.format_1(
            KEY, "k1", envelopes.field_ad(session_id, "options", "k1"), b'{"o":2}'
        )
    inner.restore(rebuilt(raw, state, options, items), replace=True)


def _encoded(item: Mapping[str, Any]) -> bytes:
    return _json.dumps(item)


def _created(inner: MemoryStore) -> EncryptedStore:
    store = EncryptedStore(inner, RING)
    store.create(Session(id="s", state={"s": 1}, options={"o": 2}, history=HISTORY[:2]))
    store.append("s", HISTORY[2:])
    return store


def _contents(session: Session) -> list[Any]:
    return [item["content"] for item in session.history]


def test_new_envelopes_are_format_2_with_one_field() -> None:
    inner = MemoryStore()
    _created(inner)
    raw = inner.load("s")
    assert all(envelopes.is_sealed(v) for v in (raw.state, raw.options))
    assert [len(entry.item) for entry in raw.items] == [2, 1, 1]  # + the clear timestamp
    assert raw.items[0].item["timestamp"] == STAMP
    assert stored_key_ids(raw) == {"k1"}


def test_format_1_is_read_with_every_check() -> None:
    inner = MemoryStore()
    _created(inner)
    _as_format_1(inner, "s")
    raw = inner.load("s")
    assert all(envelopes.is_format_1(v) for v in (raw.state, raw.options))
    assert all(envelopes.is_format_1(entry.item) for entry in raw.items)
    assert stored_key_ids(raw) == {"k1"}
    for store in (EncryptedStore(inner, RING), EncryptedStore(inner, RING, cache_bytes=0)):
        for _ in range(2):  # opened, then (with a cache) accepted from it
            loaded = store.load("s")
            assert _contents(loaded) == ["own time", "two", "three"]
            assert (loaded.state, loaded.options) == ({"s": 1}, {"o": 2})
            assert loaded.items[0].item == HISTORY[0]
            assert loaded.history[0]["timestamp"] == STAMP
        assert store.items_by_key("s", ["call-1"])["call-1"].item["content"] == "three"
        # a write beside the old envelopes is format 2; both read back
        version = store.commit("s", store.load("s").version, append=[{"content": "four"}])
        assert _contents(store.load("s")) == ["own time", "two", "three", "four"]
        assert envelopes.is_sealed(inner.load("s").items[-1].item)
        store.replace_tail("s", version, 3)


def test_a_window_of_both_formats_reads_in_order() -> None:
    inner = MemoryStore()
    store = _created(inner)
    _as_format_1(inner, "s", only_items=[1])
    for reader in (store, EncryptedStore(inner, RING)):
        assert _contents(reader.load("s")) == ["own time", "two", "three"]
        assert _contents(reader.load("s")) == ["own time", "two", "three"]


@pytest.mark.parametrize(
    "tamper",
    ["ciphertext", "nonce", "truncated", "not base64", "format", "extra field", "relabelled"],
)
def test_a_tampered_format_1_envelope_fails_closed(tamper: str) -> None:
    inner = MemoryStore()
    _created(inner)
    _as_format_1(inner, "s")
    store = EncryptedStore(inner, BOTH)
    assert _contents(store.load("s")) == ["own time", "two", "three"]  # verified, cached
    raw = inner.load("s")
    second = raw.items[1].item
    changed = {
        "ciphertext": envelopes.flip_ciphertext(second),
        "nonce": envelopes.flip_nonce(second),
        "truncated": envelopes.truncate(second),
        "not base64": envelopes.not_base64(second),
        "format": envelopes.other_format(second),
        "extra field": {**second, "extra": 1},
        "relabelled": envelopes.relabel(second, "k2"),
    }[tamper]
    items = list(raw.items)
    items[1] = StoredItem(items[1].seq, items[1].timestamp, items[1].key, changed)
    inner.restore(rebuilt(raw, raw.state, raw.options, items), replace=True)
    for reader in (store, EncryptedStore(inner, BOTH)):
        with pytest.raises(TamperedCiphertext) as info:
            reader.load("s")
        assert info.value.place == "history item seq 2"


def test_a_format_2_envelope_under_an_unknown_key_id_names_it() -> None:
    inner = MemoryStore()
    _created(inner)
    raw = inner.load("s")
    inner.restore(
        rebuilt(raw, envelopes.relabel(raw.state, "k9"), raw.options, list(raw.items)), replace=True
    )
    with pytest.raises(UnknownKeyId) as info:
        EncryptedStore(inner, RING).load("s")
    assert (info.value.place, info.value.key_id) == ("state", "k9")
    assert stored_key_ids(inner.load("s")) == {"k1", "k9"}


@pytest.mark.parametrize("clear", [{}, {"tether_enc": {}}, {"content": "in clear"}])
def test_a_value_in_clear_is_found_wherever_the_cache_has_nothing(clear: dict[str, Any]) -> None:
    """An empty item, or one shaped like nothing the cache holds, is opened (and refused),
    never taken for a cached envelope: by a store that has the place cached and one that has
    nothing cached."""
    inner = MemoryStore()
    store = _created(inner)
    assert _contents(store.load("s")) == ["own time", "two", "three"]
    raw = inner.load("s")
    items = list(raw.items)
    items[1] = StoredItem(2, items[1].timestamp, None, clear)
    inner.restore(rebuilt(raw, raw.state, raw.options, items), replace=True)
    for reader in (store, EncryptedStore(inner, RING)):
        with pytest.raises((PlaintextFound, TamperedCiphertext)) as info:
            reader.load("s")
        assert info.value.place == "history item seq 2"
