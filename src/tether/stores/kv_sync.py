# generated from src/tether/stores/kv_async.py by tools/unasync.py, do not edit
"""The key-value kit, sync side.

Bring your own storage: subclass :class:`KVBackend` with four methods over any key-value
service that can compare-and-set one key (DynamoDB, Firestore, S3 conditional writes, etcd,
NATS JetStream, ...), wrap it in :class:`KVStore`, and you have a complete
:class:`~tether.Store`: versioned commits, append-only chunked history, windows and pages,
claims with fencing, listing with filters and cursors, expiry and schema versions. The layout
and the crash argument are in ``docs/kv.md`` and ``_kv_common.py``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from .. import _core, _json
from .._core.leases import check_write
from .._time import Clock, system_clock
from ..errors import ConflictError, CorruptSession, LeaseLost, SessionNotFound
from ..models import Lease, Page, Session, StoredItem
from . import _kv_common as kv
from ._adding_sync import _AddingStore
from ._kv_backend_sync import KVBackend, _Guarded, _KVBlobs
from ._kv_common import Head, Revision
from ._writes import DocAdded, Write
from .base import CheckedKeys

__all__ = ["KVBackend", "KVStore"]

log = logging.getLogger("tether.stores.kv")


class KVStore(_KVBlobs, _AddingStore):
    """A complete store over an :class:`KVBackend`.

    ``chunk_items`` items make one sealed history chunk (kept per session: changing it applies
    to sessions created afterwards). ``list`` reads every header (O(sessions)). Keys a crashed
    writer left unreferenced are removed by :meth:`collect_garbage`.
    """

    def __init__(
        self,
        backend: KVBackend,
        *,
        clock: Clock = system_clock,
        chunk_items: int = kv.DEFAULT_CHUNK_ITEMS,
    ) -> None:
        self.backend = backend
        self._kv = _Guarded(self)  # the kit calls the backend only through this
        self._clock = clock
        self._chunk = kv.check_chunk_items(chunk_items)
        self._blobs = {}

    # --- headers --------------------------------------------------------------------------------

    def _head(self, session_id: str) -> Head | None:
        got = self._kv.get(kv.header_key(session_id))
        return None if got is None else kv.decode_head(session_id, got[0], got[1])

    def _live_head(self, session_id: str, now: int) -> Head:
        head = self._head(session_id)
        if head is None or not _core.is_live(head.doc, now):
            raise SessionNotFound(session_id)
        return head

    def _publish(self, new: Head, rev: Revision | None) -> Revision | None:
        """Compare-and-set the header: the step that makes a write visible, or not at all."""
        value = kv.encode_head(new, self._max)
        return self._kv.put(kv.header_key(new.doc["id"]), value, rev)

    def _all_items(self, head: Head) -> list[bytes] | None:
        return self._read_positions(head, 0, int(head.doc["history_len"]))

    def _gone_tail(self, head: Head, new_tail: str | None) -> None:
        old = head.tail_key()
        if old is not None and head.tail != new_tail:
            self._drop_blob(old)

    # --- the contract ---------------------------------------------------------------------------

    def _create(self, session: Session) -> Session:
        now = self._now()
        doc = _core.new_session_doc(session, now)
        encoded = _core.prepare_items(session.history, 1, now)
        doc["last_seq"] = doc["history_len"] = len(encoded)
        session_id = doc["id"]
        existing = self._head(session_id)
        self._free(session_id, existing, now)
        gen = kv.new_token(now)
        sealed, tail = self._write_generation(session_id, gen, [d for _, d in encoded])
        mine = Head(doc, gen, self._chunk, sealed, tail, None, dict(encoded.keys))
        for _ in range(kv.WRITE_RETRIES):
            rev = None if existing is None else existing.rev
            if self._publish(mine, rev) is not None:
                if existing is not None:  # an expired session's keys
                    self._drop_history(existing)
                items = _core.decode_items(session_id, [d for _, d in encoded])
                return _core.make_session(_core.json_copy(doc, what="header"), items)
            existing = self._head(session_id)
            try:
                self._free(session_id, existing, now)
            except Exception:
                self._drop_history(mine)
                raise
        raise ConflictError(session_id, 0, None, f"create of {session_id!r} kept racing")

    @staticmethod
    def _free(
        session_id: str,
        existing: Head | None,
        now: int,
        *,
        replace: bool = False,
        expected_version: int | None = None,
    ) -> None:
        """Refuse to write a new session where ``_core.restore_over`` says it may not go (the
        publish that follows is a compare-and-set on the head read: nothing moves between)."""
        doc = None if existing is None else existing.doc
        _core.restore_over(session_id, doc, now, replace=replace, expected_version=expected_version)

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        for _ in range(kv.READ_RETRIES):
            head = self._live_head(session_id, self._now())
            _core.check_writable(session_id, head.doc)
            lo, hi = kv.window_positions(head, last, after, limit)
            raw = self._read_positions(head, lo, hi)
            if raw is not None:
                return _core.readable_session(head.doc, _core.decode_items(session_id, raw))
        raise CorruptSession(session_id, "a history chunk its header names is missing")

    def _add(self, write: Write) -> DocAdded:
        """The write (``expected_version`` None: a blind append); the header document it
        published and the rows of the new items."""
        session_id, expected_version = write.session_id, write.expected_version
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._live_head(session_id, now)
            check_write(session_id, head.doc, expected_version, write.lease, now)
            prepared = _core.prepare_items(write.items, head.doc["last_seq"] + 1, now)
            _core.refuse_taken_keys(session_id, prepared.keys, head.keys)
            keys = {**head.keys, **dict(prepared.keys)}
            encoded = [d for _, d in prepared]
            if _core.needs_upgrade(head.doc):
                rewritten = self._rewrite(head, now, encoded, write.changes, keys)
                if rewritten is not None:
                    return DocAdded(rewritten, prepared)
                continue
            new_doc = _core.apply_commit(head.doc, write.changes, len(encoded), now)
            sealed, tail = head.sealed, head.tail
            if encoded or head.tail_len >= head.chunk:
                old_tail = head.tail_key()
                got = None if old_tail is None else self._get_blob(old_tail)
                if got is None and head.tail_len:
                    continue  # another writer moved the tail on: read the header again
                rest = [] if got is None else got[0]
                while len(rest) >= head.chunk:  # seal committed items into a chunk
                    key = kv.chunk_key(session_id, head.gen, sealed)
                    self._put_blob(key, rest[: head.chunk])
                    rest, sealed = rest[head.chunk :], sealed + 1
                rest = rest + encoded
                tail = kv.new_token(now) if rest else None
                if tail is not None:
                    self._put_blob(kv.tail_key(session_id, head.gen, tail), rest)
            new = Head(new_doc, head.gen, head.chunk, sealed, tail, None, keys)
            rev = self._publish(new, head.rev)
            if rev is not None:
                self._gone_tail(head, tail)
                return DocAdded(new_doc, prepared)
            if tail is not None and tail != head.tail:
                self._drop_blob(kv.tail_key(session_id, head.gen, tail))
        raise ConflictError(session_id, expected_version, None, "the header kept changing")

    def _rewrite(
        self,
        head: Head,
        now: int,
        appended: list[bytes],
        changes: _core.Doc,
        keys: dict[str, int],
    ) -> _core.Doc | None:
        """Write an older-schema session back upgraded, history included, as a new
        generation; the new header document, or None if the header changed meanwhile."""
        session_id = head.doc["id"]
        old = self._all_items(head)
        if old is None:
            return None
        stored = int(head.doc["schema_version"])
        upgraded = _core.upgrade_items(_core.decode_items(session_id, old), stored)
        items = [_core.encode_item(item) for item in upgraded] + appended
        new_doc = _core.apply_commit(_core.upgrade_doc(head.doc), changes, len(appended), now)
        if self._replace_generation(head, new_doc, items, keys) is None:
            return None
        return new_doc

    def _replace_generation(
        self, head: Head, new_doc: _core.Doc, items: list[bytes], keys: dict[str, int]
    ) -> int | None:
        session_id = head.doc["id"]
        gen = kv.new_token(self._now())
        sealed, tail = self._write_generation(session_id, gen, items)
        new = Head(new_doc, gen, self._chunk, sealed, tail, None, keys)
        if self._publish(new, head.rev) is None:
            self._drop_history(new)
            return None
        self._drop_history(head)
        return int(new_doc["version"])

    def _replace_all(self, write: Write) -> int:
        session_id, expected_version, items, changes, lease = write
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._live_head(session_id, now)
            check_write(session_id, head.doc, expected_version, lease, now)
            encoded = _core.prepare_items(items, head.doc["last_seq"] + 1, now)
            doc = _core.upgrade_doc(head.doc)
            new_doc = _core.apply_replace(doc, len(encoded), now, changes)
            version = self._replace_generation(
                head, new_doc, [d for _, d in encoded], dict(encoded.keys)
            )
            if version is not None:
                return version
        raise ConflictError(session_id, expected_version, None, "the header kept changing")

    def _replace_after(self, write: Write, after: int) -> int:
        """See the contract. A cut inside the unsealed tail (the newest items, fewer than
        ``chunk_items`` past the last sealed chunk) writes one new tail: O(chunk + suffix).
        A cut inside a sealed chunk writes a new generation (sealed chunks are never
        rewritten with other bytes), which copies the kept items."""
        session_id, expected_version, items, changes, lease = write
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._live_head(session_id, now)
            check_write(session_id, head.doc, expected_version, lease, now)
            kept = _core.items_kept(head.doc, after, "replace_tail")
            prepared = _core.prepare_items(items, after + 1, now)
            keys = {k: seq for k, seq in head.keys.items() if seq <= after}
            _core.refuse_taken_keys(session_id, prepared.keys, keys)
            keys.update(prepared.keys)
            encoded = [d for _, d in prepared]
            sealed_end = head.sealed * head.chunk
            if _core.needs_upgrade(head.doc) or kept < sealed_end:
                old = self._read_positions(head, 0, kept)
                if old is None:
                    continue
                stored = int(head.doc["schema_version"])
                upgraded = _core.upgrade_items(_core.decode_items(session_id, old), stored)
                doc = _core.upgrade_doc(head.doc)
                new_doc = _core.apply_tail(doc, changes, after, len(encoded), now)
                rows = [_core.encode_item(item) for item in upgraded] + encoded
                version = self._replace_generation(head, new_doc, rows, keys)
                if version is not None:
                    return version
                continue
            rest = self._read_positions(head, sealed_end, kept)
            if rest is None:
                continue  # another writer moved the tail on: read the header again
            rest = rest + encoded
            tail = kv.new_token(now) if rest else None
            if tail is not None:
                self._put_blob(kv.tail_key(session_id, head.gen, tail), rest)
            new_doc = _core.apply_tail(head.doc, changes, after, len(encoded), now)
            new = Head(new_doc, head.gen, head.chunk, head.sealed, tail, None, keys)
            if self._publish(new, head.rev) is not None:
                self._gone_tail(head, tail)
                return int(new_doc["version"])
            if tail is not None:
                self._drop_blob(kv.tail_key(session_id, head.gen, tail))
        raise ConflictError(session_id, expected_version, None, "the header kept changing")

    def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        """See the contract: the header maps each key to its seq, and only the chunk (or
        tail) holding that item is read."""
        for _ in range(kv.READ_RETRIES):
            head = self._live_head(session_id, self._now())
            _core.check_writable(session_id, head.doc)
            raw: list[bytes] = []
            for seq in sorted(head.keys[key] for key in keys if key in head.keys):
                at = seq - head.first_seq
                got = self._read_positions(head, at, at + 1)
                if got is None:
                    break
                raw.extend(got)
            else:
                return _core.keyed_items(session_id, raw)
        raise CorruptSession(session_id, "a history chunk its header names is missing")

    def _heads(self) -> list[Head]:
        heads = []
        for key, value, rev in self._kv.scan(kv.HEADER_PREFIX):
            try:
                raw = _json.loads(value)
                heads.append(kv.decode_head(raw["doc"]["id"], value, rev))
            except Exception as exc:  # one bad header must not hide the others
                log.warning("skipping %r in listing: %s", key, exc)
        return heads

    def _list_page(self, query: _core.ListQuery) -> Page:
        # O(sessions): every header is read. A backend with an index could do better.
        return query.page([head.doc for head in self._heads()], self._now())

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._head(session_id)
            if head is not None:
                _core.check_writable(session_id, head.doc)  # expired or not
            if head is None or not _core.is_live(head.doc, now):
                if head is not None:
                    self._delete_head(head)  # an expired one goes too
                if expected_version is not None:
                    raise SessionNotFound(session_id)
                return False
            _core.check_delete_lease(head.doc, lease, force, now)
            if expected_version is not None and head.doc["version"] != expected_version:
                raise ConflictError(session_id, expected_version, head.doc["version"])
            if self._delete_head(head):
                return True
        raise ConflictError(session_id, expected_version, None, "the header kept changing")

    def _delete_head(self, head: Head) -> bool:
        if not self._kv.delete(kv.header_key(head.doc["id"]), head.rev):
            return False
        self._drop_history(head)
        return True

    def _exists(self, session_id: str) -> bool:
        head = self._head(session_id)
        return head is not None and _core.is_live(head.doc, self._now())

    def _set_lease(self, head: Head, fields: _core.Doc) -> bool:
        doc = {**head.doc, **fields}
        new = Head(doc, head.gen, head.chunk, head.sealed, head.tail, None, head.keys)
        rev = self._publish(new, head.rev)
        return rev is not None

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._live_head(session_id, now)
            _core.check_writable(session_id, head.doc)
            fields = _core.claim_fields(head.doc, owner, ttl, now)
            if self._set_lease(head, fields):
                return _core.lease_from_doc({**head.doc, **fields})
        raise ConflictError(session_id, 0, None, "the header kept changing during the claim")

    def _leased(self, lease: Lease, now: int) -> Head:
        head = self._head(lease.session_id)
        if head is None or not _core.is_live(head.doc, now):
            raise LeaseLost(lease.session_id, "the session no longer exists")
        _core.check_lease(head.doc, lease, now)
        return head

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        for _ in range(kv.WRITE_RETRIES):
            now = self._now()
            head = self._leased(lease, now)
            fields = {"lease_expires_at": now + ttl}
            if self._set_lease(head, fields):
                return _core.lease_from_doc({**head.doc, **fields})
        raise LeaseLost(lease.session_id, "the header kept changing during the renewal")

    def _release(self, lease: Lease) -> None:
        for _ in range(kv.WRITE_RETRIES):
            head = self._leased(lease, self._now())
            if self._set_lease(head, _core.released_fields()):
                return
        raise LeaseLost(lease.session_id, "the header kept changing during the release")

    # --- optional abilities ---------------------------------------------------------------------

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract."""
        doc, encoded = _core.checked_restore(session, replace, expected_version)
        session_id = doc["id"]
        gen = kv.new_token(self._now())
        sealed, tail = self._write_generation(session_id, gen, [d for _, d in encoded])
        mine = Head(doc, gen, self._chunk, sealed, tail, None, dict(encoded.keys))
        for _ in range(kv.WRITE_RETRIES):
            existing = self._head(session_id)
            try:
                self._free(
                    session_id,
                    existing,
                    self._now(),
                    replace=replace,
                    expected_version=expected_version,
                )
            except Exception:
                self._drop_history(mine)
                raise
            rev = None if existing is None else existing.rev
            if self._publish(mine, rev) is not None:
                if existing is not None:
                    self._drop_history(existing)
                return
        raise ConflictError(session_id, 0, None, f"restore of {session_id!r} kept racing")

    def purge_expired(self) -> int:
        """Remove the sessions whose ``expires_at`` has passed; returns how many (a session
        stored by a newer tether is kept)."""
        now, count = self._now(), 0
        for head in self._heads():
            if _core.is_live(head.doc, now) or _core.is_newer(head.doc):
                continue  # only a tether that knows its schema may delete a newer one
            if self._delete_head(head):
                count += 1
        return count

    def collect_garbage(self, older_than: float | timedelta = 3600) -> int:
        """Delete chunk and tail keys no header references, made more than ``older_than``
        (seconds) ago: what a writer that crashed mid-write left. Returns how many keys.

        ``older_than`` must exceed the longest write (a commit in flight has written its new
        keys but not yet published them); the default is an hour.
        """
        grace = _core.ttl_micros(older_than)
        heads = {kv.encode_id(head.doc["id"]): head for head in self._heads()}
        cutoff = self._now() - grace
        count = 0
        for key in self._kv.keys(kv.CHUNK_PREFIX) + self._kv.keys(kv.TAIL_PREFIX):
            parsed = kv.parse_data_key(key)
            if parsed is None:
                continue
            kind, enc, gen, name = parsed
            head = heads.get(enc)
            if head is not None and head.gen == gen and (kind == "c" or head.tail == name):
                continue  # referenced (or a chunk sealed ahead: right bytes, used next)
            made = kv.token_time(name if kind == "t" else gen)
            if made is None or made > cutoff:
                continue
            got = self._kv.get(key)
            if got is not None and self._kv.delete(key, got[1]):
                self._blobs.pop(key, None)
                count += 1
        return count

    def close(self) -> None:
        self._blobs.clear()
        self._kv.close()
