"""What makes an encrypted turn cheap stays safe (issue 16).

* A commit under a version this store saw (a load it returned, a write it made) takes its
  items' seqs from that, with no header read; anything else reads the header. A session
  deleted and created again under the same id, brought back to the version a writer names,
  gets that writer's items bound to seqs it does not give them: reading them fails closed.
* A window is opened in one pass: an envelope met again is accepted from the cache only if it
  is the verified one (ciphertext, nonce, key id, place, clear timestamp, shape); any change
  is decrypted and checked, so tampering after a read still raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
import tether.encryption_sync
from tether import KeyedItem, Session, StoredItem
from tether.encryption import EncryptedStore, Keyring, PlaintextFound, TamperedCiphertext
from tether.encryption_sessions import open_session, rebuilt
from tether.stores import WrappingStore
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from . import encryption_envelopes as envelopes

RING = Keyring({"k1": Keyring.new_key()}, current="k1")


class HeaderReads(WrappingStore):
    """Counts the header reads (``load(last=0)``) that reach the store beneath."""

    def __init__(self, inner: tether.Store) -> None:
        super().__init__(inner)
        self.header_reads = 0

    def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        if last == 0:
            self.header_reads += 1
        return super().load(session_id, last=last, after=after, limit=limit)


def _texts(session: Session) -> list[Any]:
    return [item["content"] for item in session.history]


def test_a_commit_after_a_load_reads_no_header() -> None:
    counted = HeaderReads(MemoryStore())
    store = EncryptedStore(counted, RING)
    store.create(Session(id="s", history=[{"content": "a"}]))
    version = store.commit("s", 1, append=[{"content": "b"}])  # create saw version 1
    fresh = store.load("s", after=2)
    version = store.commit("s", fresh.version, append=[{"content": "c"}])
    version = store.commit("s", version, append=[KeyedItem("k", {"content": "d"})])  # own write
    version = store.replace_history("s", version, [{"content": "e"}])
    version = store.commit("s", version, append=[{"content": "f"}])
    assert counted.header_reads == 0
    assert _texts(store.load("s")) == ["e", "f"]
    # a version this store did not see: the header is read (and checked)
    other = EncryptedStore(counted, RING)
    other.commit("s", version, append=[{"content": "g"}])
    assert counted.header_reads == 1
    with pytest.raises(tether.ConflictError):
        store.commit("s", version, append=[{"content": "stale"}])
    assert _texts(store.load("s")) == ["e", "f", "g"]


def test_a_write_that_fails_or_cannot_tell_forgets_what_it_saw() -> None:
    counted = HeaderReads(MemoryStore())
    store = EncryptedStore(counted, RING)
    store.create(Session(id="s", history=[{"content": "a"}, {"content": "b"}]))
    version = store.replace_tail("s", 1, 0)  # a truncation: the last_seq left is not known
    store.commit("s", version, append=[{"content": "c"}])
    assert counted.header_reads == 1
    assert _texts(store.load("s")) == ["c"]
    with pytest.raises(tether.ConflictError):
        store.commit("s", 1, append=[{"content": "stale"}])
    store.commit("s", 3, append=[{"content": "d"}])  # saw 3 in the load, forgot it on conflict
    assert counted.header_reads == 2
    assert _texts(store.load("s")) == ["c", "d"]


def test_a_session_created_again_at_the_same_version_fails_closed() -> None:
    """The version scheme's blind spot: the writer's expected version came from a read of
    the old session. A plain store would add its items to the new session; here they are
    bound to the old seqs, so reading them raises instead of returning anything wrong."""
    inner = MemoryStore()
    writer = EncryptedStore(inner, RING)
    elsewhere = EncryptedStore(inner, RING)  # another process, say
    writer.create(Session(id="s", history=[{"content": "old"}]))
    seen = writer.load("s")  # version 1, last_seq 1
    elsewhere.delete("s")
    elsewhere.create(Session(id="s", history=[{"content": "x"}, {"content": "y"}]))  # v1, 2
    writer.commit("s", seen.version, append=[{"content": "late"}])  # bound to seq 2: wrong
    for reader in (writer, elsewhere, EncryptedStore(inner, RING)):
        with pytest.raises(TamperedCiphertext) as info:
            reader.load("s")
        assert (info.value.session_id, info.value.place) == ("s", "history item seq 3")
    # the new session's own items are intact
    assert _texts(elsewhere.load("s", limit=2)) == ["x", "y"]


def test_a_delete_through_the_store_forgets_the_session() -> None:
    counted = HeaderReads(MemoryStore())
    store = EncryptedStore(counted, RING)
    store.create(Session(id="s", history=[{"content": "old"}]))
    store.delete("s")
    store.create(Session(id="s", history=[{"content": "x"}, {"content": "y"}]))
    store.commit("s", 1, append=[{"content": "z"}])
    assert _texts(store.load("s")) == ["x", "y", "z"]
    assert counted.header_reads == 0
    # restored over: a version as given, not the next one, so the header is read again
    store.restore(store.load("s").model_copy(update={"version": 7}), replace=True)
    store.commit("s", 7, append=[{"content": "after restore"}])
    assert counted.header_reads == 1
    assert _texts(store.load("s")) == ["x", "y", "z", "after restore"]


Inner = MemoryStore | SQLiteStore
"""A store beneath that can be written raw (``restore``)."""


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inner]:
    """The store beneath: SQLite hands its rows over undecoded (``_load_raw``), so a load
    takes the other way through the cache (rows compared byte for byte)."""
    store: Inner = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


def _restore_raw(
    inner: Inner, session_id: str, change: Callable[[list[StoredItem]], list[StoredItem]]
) -> None:
    raw = inner.load(session_id)
    inner.restore(rebuilt(raw, raw.state, raw.options, change(list(raw.items))), replace=True)


def _at(items: list[StoredItem], index: int, envelope: dict[str, Any]) -> list[StoredItem]:
    entry = items[index]
    out = list(items)
    out[index] = StoredItem(entry.seq, entry.timestamp, entry.key, envelope)
    return out


@pytest.mark.parametrize(
    "tamper",
    [
        "ciphertext",
        "nonce",
        "swapped",
        "extra field",
        "format",
        "clear timestamp",
        "timestamp removed",
        "key changed",
    ],
)
def test_tampering_after_a_read_is_caught_despite_the_cache(tamper: str, inner: Inner) -> None:
    store = EncryptedStore(inner, RING)
    history = [
        {"content": "a", "timestamp": "2026-01-01T00:00:00+00:00"},
        {"content": "b"},
        {"content": "c"},
    ]
    store.create(Session(id="s", history=history))
    store.append("s", [KeyedItem("k", {"content": "d"})])
    assert _texts(store.load("s")) == ["a", "b", "c", "d"]  # every envelope verified, cached
    assert _texts(store.load("s")) == ["a", "b", "c", "d"]  # and accepted again
    items = inner.load("s").items
    first, second = items[0].item, items[1].item
    changes: dict[str, Callable[[list[StoredItem]], list[StoredItem]]] = {
        "ciphertext": lambda i: _at(i, 1, envelopes.flip_ciphertext(second)),
        "nonce": lambda i: _at(i, 1, envelopes.flip_nonce(second)),
        "swapped": lambda i: _at(_at(i, 1, items[2].item), 2, second),
        "extra field": lambda i: _at(i, 1, {**second, "extra": 1}),
        "format": lambda i: _at(i, 1, envelopes.other_format(second)),
        "clear timestamp": lambda i: _at(i, 0, {**first, "timestamp": "2027-01-01T00:00:00+00:00"}),
        "timestamp removed": lambda i: _at(
            i, 0, {k: v for k, v in first.items() if k != "timestamp"}
        ),
        "key changed": lambda i: [
            *i[:3],
            StoredItem(i[3].seq, i[3].timestamp, "other", i[3].item),
        ],
    }
    _restore_raw(inner, "s", changes[tamper])
    with pytest.raises(TamperedCiphertext):
        store.load("s")
    # put back as it was: the verified envelopes read again
    _restore_raw(inner, "s", lambda _: list(items))
    assert _texts(store.load("s")) == ["a", "b", "c", "d"]


def test_a_window_opened_in_one_pass_gives_fresh_objects_every_time(inner: Inner) -> None:
    store = EncryptedStore(inner, RING)
    store.create(Session(id="s", history=[{"content": {"n": 1}}, {"content": {"n": 2}}]))
    first = store.load("s")
    first.history[0]["content"]["n"] = 99
    first.items[1].item["content"]["n"] = 98
    again = store.load("s")
    assert [item["content"]["n"] for item in again.history] == [1, 2]
    assert [entry.item for entry in again.items] == [{"content": {"n": 1}}, {"content": {"n": 2}}]
    assert [entry.seq for entry in again.items] == [1, 2]
    assert store.load("s", last=1).items[0].item == {"content": {"n": 2}}


def test_opening_in_place_touches_only_the_loaded_copy() -> None:
    """A load opens the session the store returned in place (it is the caller's copy); the
    store beneath keeps its envelopes, and open_session (the import check) changes nothing."""
    inner = MemoryStore()
    store = EncryptedStore(inner, RING)
    store.create(Session(id="s", state={"x": 1}, history=[{"content": "a"}]))
    assert _texts(store.load("s")) == ["a"]
    raw = inner.load("s")
    assert envelopes.is_sealed(raw.state)
    assert envelopes.is_sealed(raw.items[0].item)
    opened = open_session(store.codec, raw)
    assert (opened.state, _texts(opened)) == ({"x": 1}, ["a"])
    assert envelopes.is_sealed(raw.state)  # the session given is left as it was
    assert envelopes.is_sealed(raw.history[0])
    assert envelopes.is_sealed(raw.items[0].item)


@pytest.mark.parametrize("tamper", ["ciphertext", "extra field", "format", "swapped"])
def test_a_header_field_tampered_after_a_read_is_caught_despite_the_cache(
    tamper: str, inner: Inner
) -> None:
    store = EncryptedStore(inner, RING)
    store.create(Session(id="s", state={"a": 1}, options={"b": 2}))
    assert store.load("s").state == {"a": 1}  # state and options verified, cached
    raw = inner.load("s")
    state, options = raw.state, raw.options
    changed = {
        "ciphertext": (envelopes.flip_ciphertext(state), options),
        "extra field": ({**state, "extra": 1}, options),
        "format": (envelopes.other_format(state), options),
        "swapped": (options, state),
    }[tamper]
    inner.restore(rebuilt(raw, *changed, list(raw.items)), replace=True)
    with pytest.raises(TamperedCiphertext):
        store.load("s")
    inner.restore(rebuilt(raw, state, options, list(raw.items)), replace=True)
    assert (store.load("s").state, store.load("s").options) == ({"a": 1}, {"b": 2})


def test_the_sessions_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tether.encryption_sync, "SEEN_SESSIONS", 2)
    counted = HeaderReads(MemoryStore())
    store = EncryptedStore(counted, RING)
    for sid in ("a", "b", "c"):  # c's create pushes out a, the first seen
        store.create(Session(id=sid))
    assert len(store._seen) == 2
    store.commit("b", 1, append=[{"content": "b"}])
    store.commit("c", 1, append=[{"content": "c"}])
    assert counted.header_reads == 0
    store.commit("a", 1, append=[{"content": "a"}])
    assert counted.header_reads == 1
    assert [_texts(store.load(sid)) for sid in ("a", "b", "c")] == [["a"], ["b"], ["c"]]


class RawLoads(WrappingStore):
    """Counts the undecoded loads that reach the store beneath, and what they gave."""

    def __init__(self, inner: tether.Store) -> None:
        super().__init__(inner)
        self.raw: list[bool] = []

    def _load_raw(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Any:
        window = super()._load_raw(session_id, last=last, after=after, limit=limit)
        self.raw.append(window is not None)
        return window


def test_sqlite_hands_its_rows_over_undecoded_and_a_changed_load_does_not(
    tmp_path: Path,
) -> None:
    sqlite = SQLiteStore(tmp_path / "s.db")
    counted = RawLoads(sqlite)
    store = EncryptedStore(counted, RING)
    store.create(Session(id="s", state={"a": 1}, history=[{"content": "a"}, {"content": "b"}]))
    for _ in range(2):  # decrypted, then from the cache
        loaded = store.load("s")
        assert (_texts(loaded), loaded.state) == (["a", "b"], {"a": 1})
        assert [entry.item for entry in loaded.items] == [{"content": "a"}, {"content": "b"}]
    assert _texts(store.load("s", after=1)) == ["b"]
    assert _texts(store.load("s", last=1, limit=1)) == ["b"]
    assert counted.raw == [True, True, True, True]
    # a store whose loads are changed (here: counted) offers none: the load is its own
    headers = HeaderReads(sqlite)
    assert headers._load_raw("s") is None
    assert _texts(EncryptedStore(headers, RING).load("s")) == ["a", "b"]
    sqlite.close()


def test_a_row_in_clear_read_undecoded_fails_closed(tmp_path: Path) -> None:
    sqlite = SQLiteStore(tmp_path / "s.db")
    store = EncryptedStore(sqlite, RING)
    store.create(Session(id="s", history=[{"content": "a"}]))
    assert _texts(store.load("s")) == ["a"]
    _restore_raw(sqlite, "s", lambda items: _at(items, 0, {"content": "in clear"}))
    with pytest.raises(PlaintextFound):
        store.load("s")
    sqlite.close()


async def test_the_async_store_reads_sqlite_rows_undecoded_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.encryption import AsyncEncryptedStore
    from tether.stores.sqlite import AsyncSQLiteStore

    given: list[bool] = []
    raw_load = SQLiteStore._load_raw

    def counted(self: SQLiteStore, session_id: str, **window: Any) -> Any:
        found = raw_load(self, session_id, **window)
        given.append(found is not None)
        return found

    monkeypatch.setattr(SQLiteStore, "_load_raw", counted)
    async with AsyncEncryptedStore(AsyncSQLiteStore(tmp_path / "s.db"), RING) as store:
        await store.create(Session(id="s", history=[{"content": "a"}, {"content": "b"}]))
        assert _texts(await store.load("s")) == ["a", "b"]
        assert _texts(await store.load("s", after=1)) == ["b"]
    assert given == [True, True]
