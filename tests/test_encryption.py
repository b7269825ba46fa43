"""Encryption at rest: fail closed on every store, no clear data in raw storage, keys.

Every fail-closed case runs on every built-in store (memory, file, SQLite, Redis, PostgreSQL,
NATS):
the stored data is changed through the store beneath the encryption (``restore`` writes a
session exactly as given), as someone with access to the storage could, and the encrypted
store must raise the typed error naming the session and the place.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import KeyedItem, Session, Sessions, StoredItem
from tether.encryption import (
    DecryptionError,
    EncryptedStore,
    Keyring,
    MissingKey,
    PlaintextFound,
    TamperedCiphertext,
    UnknownKeyId,
)
from tether.encryption_sessions import rebuilt
from tether.errors import ConfigurationError, ReservedStateKey

from . import encryption_envelopes as envelopes
from .conftest import (
    delete_nats_bucket,
    drop_postgres_schema,
    require_server,
    wipe_redis_namespace,
    with_options,
)

MARKER = "MARKER-7f3a9c-secret"
RING = Keyring({"k1": Keyring.new_key()}, current="k1")


@dataclass
class Backend:
    """One store, raw (``inner``) and encrypted, and a reader of everything it stored."""

    name: str
    inner: tether.Store
    raw_bytes: Callable[[], bytes]

    def encrypted(self, ring: Keyring = RING) -> EncryptedStore:
        return EncryptedStore(self.inner, ring)


def _files(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _memory_bytes(store: Any) -> bytes:
    from tether import _json

    out = []
    for entry in store._sessions.values():
        out.append(_json.dumps(entry.doc))
        out.extend(entry.items)
    return b"\n".join(out)


def _redis_bytes(url: str, namespace: str) -> bytes:
    """Every value under the test's namespace (its own keys only), read by type."""
    import redis

    from tether.stores.redis._keys import Keys

    client: Any = redis.Redis.from_url(url.split("?", 1)[0])
    out: list[bytes] = []
    try:
        pattern = Keys.for_namespace(namespace).pattern
        for key in client.scan_iter(match=pattern, count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                out.append(client.get(key) or b"")
            elif kind == "hash":
                for field, value in client.hgetall(key).items():
                    out += [field, value]
            elif kind == "list":
                out += client.lrange(key, 0, -1)
            elif kind == "zset":
                out += client.zrange(key, 0, -1)
            elif kind == "set":
                out += list(client.smembers(key))
            elif kind == "stream":
                for _, fields in client.xrange(key):
                    for field, value in fields.items():
                        out += [field, value]
            else:  # a type this reader does not know would hide data from the search
                raise AssertionError(f"unread Redis type {kind} at {key!r}")
    finally:
        client.close()
    return b"\n".join(out)


def _postgres_bytes(url: str, schema: str) -> bytes:
    """Every row of every table in the test's schema, as text."""
    import psycopg
    from psycopg import sql

    out: list[bytes] = []
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert tables, "the store made no tables"
        for (table,) in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            out += [row[0].encode() for row in conn.execute(query)]
    return b"\n".join(out)


def _nats_bytes(url: str, bucket: str) -> bytes:
    """Every message still in the bucket's stream (``KV_<bucket>``: every key's kept revisions,
    headers and payloads), read through the server."""
    import asyncio

    import nats
    import nats.js.errors

    async def read() -> bytes:
        client = await nats.connect(url)
        try:
            stream = client.jetstream()
            info = await stream.stream_info(f"KV_{bucket}")
            out: list[bytes] = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    message = await stream.get_msg(f"KV_{bucket}", seq)
                except nats.js.errors.NotFoundError:
                    continue  # deleted or replaced by a later revision: no longer stored
                out += [(message.subject or "").encode(), message.data or b""]
                out += [f"{k}:{v}".encode() for k, v in (message.headers or {}).items()]
            assert out, "the store wrote nothing to its bucket"
            return b"\n".join(out)
        finally:
            await client.close()

    return asyncio.run(read())


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres", "nats"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    if kind == "memory":
        from tether.stores.memory import MemoryStore

        memory = MemoryStore()
        yield Backend(kind, memory, lambda: _memory_bytes(memory))
    elif kind == "file":
        from tether.stores.file import FileStore

        root = tmp_path / "sessions"
        with FileStore(root) as store:
            yield Backend(kind, store, lambda: _files(root))
    elif kind == "sqlite":
        from tether.stores.sqlite import SQLiteStore

        path = tmp_path / "sessions.db"

        def sqlite_bytes() -> bytes:  # the database file, its WAL and shared memory
            return b"\n".join(
                p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("sessions.db")
            )

        with SQLiteStore(path) as database:
            yield Backend(kind, database, sqlite_bytes)
    elif kind == "redis":
        pytest.importorskip("redis")
        from tether.stores.redis_sync import RedisStore

        url = require_server("redis")
        namespace = f"t{uuid.uuid4().hex}"
        full = with_options(url, namespace=namespace)
        try:
            with RedisStore.from_url(full) as server:
                yield Backend(
                    kind,
                    server,
                    lambda: _redis_bytes(url, namespace),
                )
        finally:
            wipe_redis_namespace(url, namespace)
    elif kind == "nats":
        pytest.importorskip("nats")
        from tether.stores.nats_sync import NatsStore

        server_url = require_server("nats")
        bucket = f"tether_t{uuid.uuid4().hex[:12]}"
        try:
            with NatsStore(server_url, bucket, chunk_items=8) as kv:
                yield Backend(kind, kv, lambda: _nats_bytes(server_url, bucket))
        finally:
            delete_nats_bucket(server_url, bucket)
    else:
        pytest.importorskip("psycopg")
        from tether.stores.postgres_sync import PostgresStore

        url = require_server("postgres")
        schema = f"tether_t{uuid.uuid4().hex}"
        full = with_options(url, schema=schema)
        try:
            with PostgresStore.from_url(full) as pg:
                yield Backend(
                    kind,
                    pg,
                    lambda: _postgres_bytes(url, schema),
                )
        finally:
            drop_postgres_schema(url, schema)


def _restore_raw(
    backend: Backend,
    session_id: str,
    *,
    state: Any = None,
    options: Any = None,
    items: Callable[[list[StoredItem]], list[StoredItem]] | None = None,
) -> None:
    """Write the stored session back with these raw values (as someone with storage access)."""
    raw = backend.inner.load(session_id)
    stored = raw.items if items is None else items(list(raw.items))
    changed = rebuilt(
        raw,
        raw.state if state is None else state,
        raw.options if options is None else options,
        stored,
    )
    backend.inner.restore(changed, replace=True)  # type: ignore[attr-defined]


def _item(entry: StoredItem, item: dict[str, Any]) -> StoredItem:
    return StoredItem(entry.seq, entry.timestamp, entry.key, item)


def _fresh(store: EncryptedStore, session_id: str) -> Session:
    return store.create(
        Session(
            id=session_id,
            state={"s": MARKER},
            options={"o": 1},
            history=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
        )
    )


# --- fail closed, on every store ---------------------------------------------------------------


def test_plaintext_where_ciphertext_is_expected(backend: Backend) -> None:
    store = backend.encrypted()
    backend.inner.create(Session(id="clear", state={"a": 1}))
    with pytest.raises(PlaintextFound) as info:
        store.load("clear")
    assert (info.value.session_id, info.value.place) == ("clear", "state")
    with pytest.raises(PlaintextFound):
        store.list()  # a listing never shows (nor skips) it
    _fresh(store, "mixed")
    backend.inner.commit("mixed", 1, append=[KeyedItem("k", {"content": "in clear"})])
    with pytest.raises(PlaintextFound) as info:
        store.load("mixed")
    assert (info.value.session_id, info.value.place) == ("mixed", "history item seq 3")
    with pytest.raises(PlaintextFound):
        store.items_by_key("mixed", ["k"])
    assert store.load("mixed", last=2, limit=1).history[0]["content"] == "two"


def test_tampered_ciphertexts(backend: Backend) -> None:
    store = backend.encrypted()
    _fresh(store, "t")
    raw = backend.inner.load("t")
    envelope = raw.items[0].item
    cases: list[dict[str, Any]] = [
        {
            "items": lambda items: [
                _item(items[0], envelopes.flip_ciphertext(envelope)),
                *items[1:],
            ]
        },
        {
            "items": lambda items: [
                _item(items[0], envelopes.flip_nonce(envelope)),
                *items[1:],
            ]
        },
        {
            "items": lambda items: [
                _item(items[0], envelopes.truncate(envelope)),
                *items[1:],
            ]
        },
        {"items": lambda items: [_item(items[0], {**envelope, "extra": 1}), *items[1:]]},
        {"items": lambda items: [_item(items[0], envelopes.other_format(envelope)), *items[1:]]},
        {"items": lambda items: [_item(items[0], envelopes.not_base64(envelope)), *items[1:]]},
        {"state": envelopes.flip_ciphertext(raw.state)},
    ]
    for case in cases:
        _restore_raw(backend, "t", **case)
        with pytest.raises(TamperedCiphertext) as info:
            store.load("t")
        assert info.value.session_id == "t"
        _restore_raw(backend, "t", state=raw.state, items=lambda _: list(raw.items))
    assert store.load("t").state == {"s": MARKER}


def test_ciphertexts_moved_to_another_place_fail(backend: Backend) -> None:
    store = backend.encrypted()
    _fresh(store, "a")
    _fresh(store, "b")
    a = backend.inner.load("a")
    b = backend.inner.load("b")
    # two items swapped within the session
    _restore_raw(
        backend,
        "a",
        items=lambda items: [_item(items[0], items[1].item), _item(items[1], items[0].item)],
    )
    with pytest.raises(TamperedCiphertext) as info:
        store.load("a")
    assert info.value.place == "history item seq 1"
    # an item, the state and the options copied from session a into session b
    _restore_raw(backend, "b", items=lambda items: [_item(items[0], a.items[0].item), *items[1:]])
    with pytest.raises(TamperedCiphertext) as info:
        store.load("b")
    assert (info.value.session_id, info.value.place) == ("b", "history item seq 1")
    _restore_raw(backend, "b", state=a.state, items=lambda _: list(b.items))
    with pytest.raises(TamperedCiphertext) as info:
        store.load("b")
    assert info.value.place == "state"
    # the state's ciphertext as the options (same session, another field)
    _restore_raw(backend, "a", state=a.state, options=a.state, items=lambda _: list(a.items))
    with pytest.raises(TamperedCiphertext) as info:
        store.load("a")
    assert info.value.place == "options"
    # an item's key changed: the key is bound too
    _restore_raw(backend, "a", state=a.state, options=a.options, items=lambda _: list(a.items))
    store.append("a", [KeyedItem("k1", {"content": "keyed"})])
    _restore_raw(
        backend,
        "a",
        items=lambda items: [
            *items[:-1],
            StoredItem(items[-1].seq, items[-1].timestamp, "k2", items[-1].item),
        ],
    )
    with pytest.raises(TamperedCiphertext) as info:
        store.items_by_key("a", ["k2"])
    assert info.value.place == "history item seq 3"


def test_unknown_key_id_and_missing_key(backend: Backend) -> None:
    old = Keyring({"old": Keyring.new_key()}, current="old")
    backend.encrypted(old).create(Session(id="u", state={"x": 1}))
    new_only = Keyring({"new": Keyring.new_key()}, current="new")
    with pytest.raises(UnknownKeyId) as info:
        backend.encrypted(new_only).load("u")
    assert (info.value.session_id, info.value.key_id) == ("u", "old")
    assert "add that key" in str(info.value)

    def down(kid: str) -> bytes | None:
        raise RuntimeError("the KMS is down")

    failing = Keyring({"new": Keyring.new_key()}, current="new", fetch=down)
    with pytest.raises(MissingKey) as missing:
        backend.encrypted(failing).load("u")
    assert isinstance(missing.value.__cause__, RuntimeError)
    assert missing.value.key_id == "old"
    # a fetch that can answer (a KMS lookup) reads it, and a relabelled key id fails
    old_key = base64.b64decode(old.to_text().split(":", 1)[1])
    fetching = Keyring({"new": Keyring.new_key()}, current="new", fetch=lambda kid: old_key)
    assert backend.encrypted(fetching).load("u").state == {"x": 1}
    raw = backend.inner.load("u")
    _restore_raw(backend, "u", state=envelopes.relabel(raw.state, "new"))
    with pytest.raises(TamperedCiphertext):
        backend.encrypted(fetching).load("u")


def test_nothing_in_clear_in_raw_storage(backend: Backend, tmp_path: Path) -> None:
    """A marker written through every path is nowhere in the raw storage."""
    from tether.cli import transfer

    store = backend.encrypted()
    item = {"role": "user", "content": f"item {MARKER}", "timestamp": "2026-01-01T00:00:00Z"}
    store.create(
        Session(id="m1", state={"s": MARKER}, options={"o": MARKER}, history=[item], metadata={})
    )
    version = store.commit(
        "m1",
        1,
        append=[{"content": MARKER}, KeyedItem("key-1", {"content": MARKER})],
        changes={"state": {"s2": MARKER}, "options": {"o2": MARKER}},
    )
    version = store.append("m1", [{"content": f"blind {MARKER}"}])
    version = store.load("m1", last=0).version
    # a turn's commit (no header change, at a version this store saw): on SQLite, the
    # envelopes' JSON handed to the store beneath as it is
    turn = {"content": f"turn {MARKER}", "timestamp": "2026-01-02T00:00:00Z"}
    version = store.commit("m1", version, append=[turn, KeyedItem("key-2", {"c": MARKER})])
    version = store.replace_tail("m1", version, 3, [{"content": f"tail {MARKER}"}])
    sessions = Sessions(store)
    sessions.fork("m1", "m1-fork", at=2)
    store.create(Session(id="m2", history=[{"content": "x"}]))
    store.replace_history(
        "m2", 1, [{"content": f"compacted {MARKER}"}], changes={"state": {"m": MARKER}}
    )
    # import: an export in clear read into the encrypted store
    plain = tether.open_store("memory://")
    plain.create(Session(id="imported", state={"i": MARKER}, history=[{"content": MARKER}]))
    line = transfer.export_line(plain.load("imported"))
    transfer.import_lines(store, [line], lambda _: None, transfer.Outcome())
    # everything reads back in clear through the encrypted store
    assert store.load("m1").state == {"s2": MARKER}
    assert [i["content"] for i in store.load("m1-fork").history] == [f"item {MARKER}", MARKER]
    assert store.load("imported").history[0]["content"] == MARKER
    assert store.load("m2").history[0]["content"] == f"compacted {MARKER}"
    assert store.items_by_key("m1", ["key-1"])["key-1"].item == {"content": MARKER}
    assert {h.id for h in store.list().sessions} == {"m1", "m1-fork", "m2", "imported"}
    raw = backend.raw_bytes()
    assert b"m1-fork" in raw, "the reader sees the store's data"
    assert MARKER.encode() not in raw


# --- the codec and the keys --------------------------------------------------------------------


def test_keyring_text_form_round_trips_and_never_shows_keys() -> None:
    ring = Keyring({"b": Keyring.new_key(), "a": Keyring.new_key()}, current="b")
    text = ring.to_text()
    again = Keyring.parse(text)
    assert again.key_ids == ["b", "a"]
    assert again.to_text() == text
    assert text.split(",")[0].split(":", 1)[1] not in repr(ring)
    urlsafe = text.replace("+", "-").replace("/", "_")
    assert Keyring.parse(urlsafe).to_text() == text
    for bad in ("", "nocolon", "k:AAAA", "bad id!:" + text.split(":", 1)[1], f"{text},{text}"):
        with pytest.raises(ConfigurationError):
            Keyring.parse(bad)
    with pytest.raises(ConfigurationError):
        Keyring({"a": b"short"}, current="a")
    with pytest.raises(ConfigurationError):
        Keyring({"a": Keyring.new_key()}, current="b")
    rotated = ring.with_current("c", Keyring.new_key())
    assert rotated.key_ids == ["c", "a", "b"]
    assert rotated.without("b").key_ids == ["c", "a"]


def test_open_store_with_keys_or_an_env_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with tether.open_store(url, keys=RING) as store:
        assert isinstance(store, EncryptedStore)
        store.create(Session(id="s", state={"k": MARKER}))
    monkeypatch.setenv("APP_KEYS", RING.to_text())
    with tether.open_store(f"{url}?encryption_keys_env=APP_KEYS") as store:
        assert store.load("s").state == {"k": MARKER}
    with tether.open_store(url, keys=lambda: RING) as store:  # a KMS fetch, once
        assert store.load("s").state == {"k": MARKER}
    config = {"store": "sqlite", "sqlite": {"path": str(tmp_path / "app.db")}}
    with tether.store_from_config({**config, "encryption_keys_env": "APP_KEYS"}) as store:
        assert store.load("s").state == {"k": MARKER}
    with tether.open_store(url) as plain:  # without keys: the ciphertext, never the data
        assert plain.load("s").state["tether_enc"].startswith("2:k1:")
    with pytest.raises(ConfigurationError):
        tether.open_store(f"{url}?encryption_keys_env=UNSET_KEYS_VARIABLE")
    with pytest.raises(ConfigurationError):
        tether.open_store(f"{url}?encryption_keys_env=APP_KEYS", keys=RING)
    with pytest.raises(ConfigurationError):
        tether.open_store(f"{url}?encryption_keys_env=bad-name")


async def test_async_store_opens_and_fails_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with tether.open_async_store(url, keys=RING) as store:
        await store.create(Session(id="s", state={"k": 1}, history=[{"c": MARKER}]))
        assert (await store.load("s")).history[0]["c"] == MARKER
    async with tether.open_async_store(url, keys=Keyring({"x": Keyring.new_key()}, "x")) as other:
        with pytest.raises(UnknownKeyId):
            await other.load("s")


def test_the_runtime_block_is_kept_inside_the_ciphertext() -> None:
    from tether import _core

    store = EncryptedStore(tether.open_store("memory://"), RING)
    store.create(Session(id="r"))
    with _core.runtime_writes():
        version = store.commit("r", 1, changes={"state": {"_tether": {"turn": 1}, "a": 1}})
    version = store.commit("r", version, changes={"state": {"a": 2}})
    assert store.load("r").state == {"a": 2, "_tether": {"turn": 1}}
    with pytest.raises(ReservedStateKey):
        store.commit("r", version, changes={"state": {"_tether": {}}})
    assert "_tether" not in store.inner.load("r").state


def test_every_decryption_error_is_a_tether_error() -> None:
    for cls in (PlaintextFound, TamperedCiphertext, UnknownKeyId, MissingKey):
        assert issubclass(cls, DecryptionError)
        assert issubclass(cls, tether.TetherError)
        assert getattr(tether, cls.__name__) is cls


@pytest.mark.parametrize("scheme", ["memory", "file", "sqlite"])
async def test_the_async_store_fails_closed_the_same_way(scheme: str, tmp_path: Path) -> None:
    from tether.encryption import AsyncEncryptedStore

    url = {
        "memory": "memory://",
        "file": f"file:{tmp_path / 'sessions'}",
        "sqlite": f"sqlite:///{tmp_path / 'sessions.db'}",
    }[scheme]
    async with tether.open_async_store(url) as inner:
        store = AsyncEncryptedStore(inner, RING)
        await inner.create(Session(id="clear", state={"a": 1}))
        with pytest.raises(PlaintextFound):
            await store.load("clear")
        with pytest.raises(PlaintextFound):
            await store.list()
        await inner.delete("clear")
        await store.create(Session(id="s", history=[{"content": MARKER}]))
        await store.append("s", [KeyedItem("k", {"content": MARKER})])
        raw = await inner.load("s")
        envelope = raw.items[1].item
        flipped = envelopes.flip_ciphertext(envelope)
        items = [raw.items[0], _item(raw.items[1], flipped)]
        await inner.restore(  # type: ignore[attr-defined]
            rebuilt(raw, raw.state, raw.options, items), replace=True
        )
        with pytest.raises(TamperedCiphertext) as info:
            await store.items_by_key("s", ["k"])
        assert (info.value.session_id, info.value.place) == ("s", "history item seq 2")
        assert (await store.load("s", limit=1)).history[0]["content"] == MARKER
        with pytest.raises(TamperedCiphertext):
            await store.load("s")
        other = AsyncEncryptedStore(inner, Keyring({"k9": Keyring.new_key()}, current="k9"))
        with pytest.raises(UnknownKeyId):
            await other.load("s", last=0)


def test_create_returns_copies_of_the_items_it_was_given() -> None:
    store = EncryptedStore(tether.open_store("memory://"), RING)
    given = [{"content": {"text": "original"}}]
    created = store.create(Session(id="c", history=given))
    created.history[0]["content"]["text"] = "changed through the result"
    created.items[0].item["content"]["text"] = "changed through the items"
    assert given == [{"content": {"text": "original"}}]
    assert store.load("c").history[0]["content"] == {"text": "original"}
