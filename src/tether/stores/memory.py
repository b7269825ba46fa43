"""The memory store: sessions in a dict of this process. For tests, demos and one-shot scripts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import _core
from .._core.leases import check_write
from .._time import Clock, now_micros, system_clock
from ..errors import ConflictError, InvalidRequest, LeaseLost, SessionNotFound
from ..models import Lease, Page, Session, SessionHeader, StoredItem
from ._adding_sync import _AddingStore
from ._writes import DocAdded, Write
from .base import CheckedKeys, SyncBackedAsyncStore

__all__ = ["AsyncMemoryStore", "MemoryStore"]


class _Entry:
    __slots__ = ("doc", "items", "keys", "seqs")

    def __init__(
        self,
        doc: _core.Doc,
        items: list[bytes],
        seqs: list[int],
        keys: list[tuple[str, int]] | None = None,
    ) -> None:
        self.doc = doc
        self.items = items  # encoded JSON: every load decodes a fresh copy
        self.seqs = seqs
        self.keys: dict[str, int] = dict(keys or ())  # item key -> seq: reads by key

    def row(self, seq: int) -> bytes:
        """The stored row of ``seq`` (seqs are contiguous: an index, not a search)."""
        return self.items[seq - self.seqs[0]]


class MemoryStore(_AddingStore):
    """Sessions kept in this process only; gone when it exits.

    Values are copied in and out (history items are kept as encoded JSON and decoded on each
    load), so mutating a loaded or committed object never changes the store. Thread-safe; its
    async twin :class:`AsyncMemoryStore` is asyncio-safe (no call ever waits while holding the
    lock).
    """

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        from .._urls import MEMORY_OPTIONS, parse_store_url

        parse_store_url(url, "memory", MEMORY_OPTIONS)
        return cls()

    def _now(self) -> int:
        return now_micros(self._clock)

    def _live(self, session_id: str, now: int) -> _Entry | None:
        entry = self._sessions.get(session_id)
        if entry is None or not _core.is_live(entry.doc, now):
            return None
        return entry

    def _free(
        self,
        session_id: str,
        now: int,
        *,
        replace: bool = False,
        expected_version: int | None = None,
    ) -> None:
        """Refuse to write a new session where ``_core.restore_over`` says it may not go."""
        existing = self._sessions.get(session_id)
        doc = None if existing is None else existing.doc
        _core.restore_over(session_id, doc, now, replace=replace, expected_version=expected_version)

    def _get(self, session_id: str, now: int) -> _Entry:
        entry = self._live(session_id, now)
        if entry is None:
            raise SessionNotFound(session_id)
        return entry

    @contextmanager
    def _writing(
        self, session_id: str, expected_version: int | None, lease: Lease | None
    ) -> Iterator[tuple[_Entry, int]]:
        """Under the lock: the live session's entry and now, once the write is allowed (the
        schema, the lease, ``expected_version``; None for an append, at any version)."""
        with self._lock:
            now = self._now()
            entry = self._get(session_id, now)
            check_write(session_id, entry.doc, expected_version, lease, now)
            if _core.needs_upgrade(entry.doc):
                # Written back upgraded by this write, history included.
                old = entry.doc["schema_version"]
                entry.doc = _core.upgrade_doc(entry.doc)
                items = _core.upgrade_items(_core.decode_items(session_id, entry.items), old)
                entry.items = [_core.encode_item(item) for item in items]
            yield entry, now

    def _create(self, session: Session) -> Session:
        now = self._now()
        doc = _core.new_session_doc(session, now)
        encoded = _core.prepare_items(session.history, 1, now)
        doc["last_seq"] = doc["history_len"] = len(encoded)
        with self._lock:
            self._free(doc["id"], now)
            self._sessions[doc["id"]] = _Entry(
                doc, [data for _, data in encoded], [seq for seq, _ in encoded], encoded.keys
            )
        return _core.make_session(_core.json_copy(doc, what="header"), _decode(doc["id"], encoded))

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        with self._lock:
            entry = self._get(session_id, self._now())
            doc = entry.doc
            raw = entry.items[_core.window(entry.seqs, last, after, limit)]
        # doc is replaced (never mutated) on writes, so decoding outside the lock is safe
        return _core.readable_session(
            _core.json_copy(doc, what="header"), _core.decode_items(session_id, raw)
        )

    def _add(self, write: Write) -> DocAdded:
        """The write (``expected_version`` None: a blind append); the header and rows written."""
        with self._writing(write.session_id, write.expected_version, write.lease) as (entry, now):
            encoded = _core.prepare_items(write.items, entry.doc["last_seq"] + 1, now)
            _core.refuse_taken_keys(entry.doc["id"], encoded.keys, entry.keys)
            entry.doc = _core.apply_commit(entry.doc, write.changes, len(encoded), now)
            # In place: O(new items). Readers slice under the lock, so they never see a
            # half-done append.
            entry.items.extend(data for _, data in encoded)
            entry.seqs.extend(seq for seq, _ in encoded)
            entry.keys.update(encoded.keys)
            return DocAdded(entry.doc, encoded)

    def _replace_after(self, write: Write, after: int) -> int:
        session_id, expected_version, items, changes, lease = write
        with self._writing(session_id, expected_version, lease) as (entry, now):
            kept = _core.items_kept(entry.doc, after, "replace_tail")
            encoded = _core.prepare_items(items, after + 1, now)
            removed = {k for k, seq in entry.keys.items() if seq > after}  # O(keys)
            taken = entry.keys.keys() - removed
            _core.refuse_taken_keys(session_id, encoded.keys, taken)
            entry.doc = _core.apply_tail(entry.doc, changes, after, len(encoded), now)
            del entry.items[kept:], entry.seqs[kept:]  # O(suffix)
            for key in removed:
                del entry.keys[key]
            entry.items.extend(data for _, data in encoded)
            entry.seqs.extend(seq for seq, _ in encoded)
            entry.keys.update(encoded.keys)
            return int(entry.doc["version"])

    def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        with self._lock:
            entry = self._get(session_id, self._now())
            _core.check_writable(session_id, entry.doc)
            rows = [entry.row(entry.keys[key]) for key in keys if key in entry.keys]
        return _core.keyed_items(session_id, rows)

    def _replace_all(self, write: Write) -> int:
        session_id, expected_version, items, changes, lease = write
        with self._writing(session_id, expected_version, lease) as (entry, now):
            encoded = _core.prepare_items(items, entry.doc["last_seq"] + 1, now)
            entry.doc = _core.apply_replace(entry.doc, len(encoded), now, changes)
            entry.items = [data for _, data in encoded]
            entry.seqs = [seq for seq, _ in encoded]
            entry.keys = dict(encoded.keys)
            return int(entry.doc["version"])

    def _list_page(self, query: _core.ListQuery) -> Page:
        with self._lock:
            docs = [entry.doc for entry in self._sessions.values()]
        page = query.page(docs, self._now())
        for header in page.sessions:  # detach the JSON fields from the stored documents
            for name in _core.JSON_FIELDS:
                setattr(header, name, _core.json_copy(getattr(header, name), what=name))
        return page

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        with self._lock:
            now = self._now()
            stored = self._sessions.get(session_id)
            if stored is not None:
                _core.check_writable(session_id, stored.doc)  # expired or not
            entry = self._live(session_id, now)
            if entry is None:
                self._sessions.pop(session_id, None)  # drop an expired one too
                if expected_version is not None:
                    raise SessionNotFound(session_id)
                return False
            _core.check_delete_lease(entry.doc, lease, force, now)
            if expected_version is not None and entry.doc["version"] != expected_version:
                raise ConflictError(session_id, expected_version, entry.doc["version"])
            del self._sessions[session_id]
            return True

    def _exists(self, session_id: str) -> bool:
        with self._lock:
            return self._live(session_id, self._now()) is not None

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        with self._lock:
            now = self._now()
            entry = self._get(session_id, now)
            _core.check_writable(session_id, entry.doc)
            entry.doc = {**entry.doc, **_core.claim_fields(entry.doc, owner, ttl, now)}
            return _core.lease_from_doc(entry.doc)

    def _leased(self, lease: Lease, now: int) -> _Entry:
        entry = self._live(lease.session_id, now)
        if entry is None:
            raise LeaseLost(lease.session_id, "the session no longer exists")
        _core.check_lease(entry.doc, lease, now)
        return entry

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        with self._lock:
            now = self._now()
            entry = self._leased(lease, now)
            entry.doc = {**entry.doc, "lease_expires_at": now + ttl}
            return _core.lease_from_doc(entry.doc)

    def _release(self, lease: Lease) -> None:
        with self._lock:
            entry = self._leased(lease, self._now())
            entry.doc = {**entry.doc, **_core.released_fields()}

    def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, sharing their encoded form.

        See :meth:`tether.stores.sqlite.SQLiteStore.fork_session`.
        """
        if child.parent_id is None:
            raise InvalidRequest("fork_session needs child.parent_id")
        now = self._now()
        doc = _core.new_session_doc(child, now)
        with self._lock:
            parent = self._get(child.parent_id, now)
            _core.check_writable(child.parent_id, parent.doc)
            if _core.needs_upgrade(parent.doc):
                raise NotImplementedError("the parent needs a schema upgrade: copy its items")
            count = _core.items_kept(parent.doc, at, "fork")
            offset = at - count
            kept = parent.items[: len(parent.items) - (parent.doc["last_seq"] - at)]
            if offset:  # a compacted parent: renumber from 1
                items = _core.decode_items(child.parent_id, kept)
                kept = [_core.encode_item({**item, "seq": item["seq"] - offset}) for item in items]
            keys = [(k, seq - offset) for k, seq in parent.keys.items() if seq <= at]
            doc.update(fork_seq=at, last_seq=count, history_len=count)
            self._free(doc["id"], now)
            self._sessions[doc["id"]] = _Entry(doc, list(kept), list(range(1, count + 1)), keys)
        return _core.doc_to_header(_core.json_copy(doc, what="header"))

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract."""
        doc, encoded = _core.checked_restore(session, replace, expected_version)
        with self._lock:
            self._free(doc["id"], self._now(), replace=replace, expected_version=expected_version)
            self._sessions[doc["id"]] = _Entry(
                doc, [data for _, data in encoded], [seq for seq, _ in encoded], encoded.keys
            )

    def purge_expired(self) -> int:
        """Remove the sessions whose ``expires_at`` has passed; returns how many.

        A session stored by a newer tether is kept, expired or not: only a tether that knows
        its schema may delete it.
        """
        with self._lock:
            now = self._now()
            expired = [
                k
                for k, e in self._sessions.items()
                if not _core.is_live(e.doc, now) and not _core.is_newer(e.doc)
            ]
            for session_id in expired:
                del self._sessions[session_id]
        return len(expired)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()


def _decode(session_id: str, encoded: list[_core.EncodedItem]) -> list[dict[str, Any]]:
    return _core.decode_items(session_id, [data for _, data in encoded])


class AsyncMemoryStore(SyncBackedAsyncStore):
    """The async twin of :class:`MemoryStore`. Calls run inline: none of them blocks."""

    offload = False
    sync: MemoryStore

    def __init__(self, *, clock: Clock = system_clock, store: MemoryStore | None = None) -> None:
        super().__init__(store if store is not None else MemoryStore(clock=clock))

    @classmethod
    def from_url(cls, url: str) -> AsyncMemoryStore:
        return cls(store=MemoryStore.from_url(url))
