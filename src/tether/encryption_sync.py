# generated from src/tether/encryption_async.py by tools/unasync.py, do not edit
"""Encryption at rest over any store, sync side.

:class:`EncryptedStore` wraps any store (every built-in one, or your own): it encrypts
history items, ``state`` and ``options`` on the way in and decrypts them on the way out;
everything a listing needs stays in clear. The codec (keys, envelopes, associated data) is
:mod:`tether.encryption_codec`; see ``docs/encryption.md``.

An item's ciphertext is bound to its ``seq``, which the store assigns at commit. A versioned
write learns it from a header read checked against the version the write names: the write
succeeds only at that version, so the seqs it encrypted for are the ones the store gives. A
blind append reads the header and commits at its version, again on conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from . import _core, _json
from ._ids import validate_session_id
from .encryption_codec import (
    DEFAULT_CACHE_BYTES,
    Codec,
    Keyring,
    KeySource,
    encode_item,
    open_header,
    open_session,
    rebuilt,
    resolve_keys,
    seal_session,
)
from .errors import ConflictError, InvalidRequest
from .models import KeyedItem, Lease, Page, Session, StoredItem
from .stores.base import NewItems, StatusFilter, Store

__all__ = ["EncryptedStore"]

_Prepared = list[tuple[str | None, bytes, str | None]]
"""New items checked and encoded before any I/O: (key, JSON, own timestamp) each."""


def _prepare(items: NewItems) -> _Prepared:
    """Check and encode new items as a store would, before any I/O (same errors)."""
    return [
        (key, *encode_item(item, what=f"history item {offset}"))
        for offset, item, key in _core.checked_items(items)
    ]


class EncryptedStore(Store):
    """A store that keeps the items, state and options of another, ``inner``, encrypted.

    ``keys`` is a :class:`~tether.encryption.Keyring` (or a callable returning one, called
    now). ``cache_bytes`` bounds the plaintext kept of recently opened values, so
    that a history read again is not decrypted again (see :class:`~tether.encryption_codec.Codec`;
    0: none). Reads fail closed: a value in clear, tampered, or under a key the ring cannot give
    raises a :class:`~tether.errors.DecryptionError` naming the session and the place.
    """

    def __init__(
        self, inner: Store, keys: KeySource, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        if not isinstance(inner, Store):
            raise InvalidRequest(
                f"{type(self).__name__} wraps a {Store.__name__}, not {type(inner).__name__}"
            )
        self.inner = inner
        """The wrapped store, which holds the ciphertexts (``tether export`` reads it)."""
        self.keyring: Keyring = resolve_keys(keys)
        self.codec = Codec(self.keyring, cache_bytes=cache_bytes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, {self.keyring!r})"

    # --- sealing and opening --------------------------------------------------------------

    def _seal_items(self, session_id: str, first_seq: int, prepared: _Prepared) -> list[Any]:
        out: list[Any] = []
        for offset, (key, data, stamp) in enumerate(prepared):
            envelope = self.codec.seal_item_data(session_id, first_seq + offset, key, data, stamp)
            out.append(envelope if key is None else KeyedItem(key, envelope))
        return out

    def _seal_changes(
        self, session_id: str, changes: Mapping[str, Any] | None, checked: _core.Doc
    ) -> dict[str, Any] | None:
        """The caller's changes with ``state`` / ``options`` replaced by the envelopes of their
        checked values (``checked``: :func:`_core.normalize_changes` of them, with the stored
        runtime block kept); the other fields go to the inner store as given."""
        if changes is None:
            return None
        sealed = dict(changes)
        for field in ("state", "options"):
            if field in checked:
                sealed[field] = self.codec.seal_field(session_id, field, checked[field])
        return sealed

    def _open(self, session: Session) -> Session:
        return open_session(self.codec, session)

    def _header_at(self, session_id: str, expected_version: int) -> Session:
        """The stored header, which must be at ``expected_version``: the seqs and the runtime
        block a write derives from it are then the ones the store holds when the write lands
        (the write itself is checked against the same version)."""
        header = self.inner.load(session_id, last=0)
        if header.version != expected_version:
            raise ConflictError(session_id, expected_version, header.version)
        return header

    def _keep_block(self, header: Session, changes: _core.Doc) -> _core.Doc:
        """An application's new ``state`` keeps the stored ``state["_tether"]``: the inner
        store cannot see it inside the ciphertext, so the merge happens here."""
        if not _core.needs_runtime_block(changes):
            return changes
        stored = self.codec.open_field(header.id, "state", header.state)
        return _core.keep_runtime_block(changes, stored)

    # --- the contract -----------------------------------------------------------------------

    def create(self, session: Session) -> Session:
        if not isinstance(session, Session):
            raise InvalidRequest(f"create takes a tether.Session, not {type(session).__name__}")
        _core.new_session_doc(session, 0)  # every check the store makes, before any I/O
        prepared = _prepare(session.history)
        sid = session.id
        sealed = session.model_copy(
            update={
                "state": self.codec.seal_field(sid, "state", session.state),
                "options": self.codec.seal_field(sid, "options", session.options),
                "history": self._seal_items(sid, 1, prepared),
            }
        )
        created = self.inner.create(sealed)
        # the items as stored, decoded from what was encrypted: copies, never the caller's
        items = [
            StoredItem(entry.seq, entry.timestamp, entry.key, _json.loads(data))
            for entry, (_, data, _) in zip(created.items, prepared, strict=True)
        ]
        return rebuilt(
            created,
            _core.json_copy(session.state, what="state"),
            _core.json_copy(session.options, what="options"),
            items,
        )

    def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        return self._open(self.inner.load(session_id, last=last, after=after, limit=limit))

    def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        validate_session_id(session_id)
        _core.check_version(expected_version)
        normalized = _core.normalize_changes(changes)
        prepared = _prepare(append)
        _core.check_lease_arg(lease, optional=True)
        items: list[Any] = []
        if prepared or _core.needs_runtime_block(normalized):
            header = self._header_at(session_id, expected_version)
            normalized = self._keep_block(header, normalized)
            items = self._seal_items(session_id, header.last_seq + 1, prepared)
        return self.inner.commit(
            session_id,
            expected_version,
            append=items,
            changes=self._seal_changes(session_id, changes, normalized),
            lease=lease,
        )

    def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        validate_session_id(session_id)
        _core.check_version(expected_version)
        normalized = _core.normalize_changes(changes)
        prepared = _prepare(items)
        _core.check_lease_arg(lease, optional=True)
        sealed: list[Any] = []
        if prepared or _core.needs_runtime_block(normalized):
            header = self._header_at(session_id, expected_version)
            normalized = self._keep_block(header, normalized)
            sealed = self._seal_items(session_id, header.last_seq + 1, prepared)
        return self.inner.replace_history(
            session_id,
            expected_version,
            sealed,
            changes=self._seal_changes(session_id, changes, normalized),
            lease=lease,
        )

    def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        validate_session_id(session_id)
        prepared = _prepare(items)
        _core.check_lease_arg(lease, optional=True)
        while True:  # the seqs come from the header; the commit lands only at its version
            header = self.inner.load(session_id, last=0)
            sealed = self._seal_items(session_id, header.last_seq + 1, prepared)
            try:
                return self.inner.commit(session_id, header.version, append=sealed, lease=lease)
            except ConflictError:
                continue

    def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        validate_session_id(session_id)
        _core.check_version(expected_version)
        after = _core.check_after(after)
        normalized = _core.normalize_changes(changes)
        prepared = _prepare(items)
        _core.check_lease_arg(lease, optional=True)
        if _core.needs_runtime_block(normalized):
            header = self._header_at(session_id, expected_version)
            normalized = self._keep_block(header, normalized)
        # the new items are numbered from after + 1 whatever the history holds
        return self.inner.replace_tail(
            session_id,
            expected_version,
            after,
            self._seal_items(session_id, after + 1, prepared),
            changes=self._seal_changes(session_id, changes, normalized),
            lease=lease,
        )

    def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        found = self.inner.items_by_key(session_id, keys)
        return {
            key: StoredItem(
                entry.seq,
                entry.timestamp,
                entry.key,
                self.codec.open_item(session_id, entry.seq, entry.key, entry.item),
            )
            for key, entry in found.items()
        }

    def list(
        self,
        *,
        owner: str | None = None,
        agent: str | None = None,
        status: StatusFilter = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        page = self.inner.list(
            owner=owner,
            agent=agent,
            status=status,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
        )
        headers = [open_header(self.codec, header) for header in page.sessions]
        return Page(sessions=headers, next_cursor=page.next_cursor)

    def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        return self.inner.delete(session_id, expected_version, lease=lease, force=force)

    def exists(self, session_id: str) -> bool:
        return self.inner.exists(session_id)

    def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        return self.inner.claim(session_id, owner, ttl)

    def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return self.inner.renew(lease, ttl)

    def release(self, lease: Lease) -> None:
        self.inner.release(lease)

    # --- optional abilities: those of the inner store -------------------------------------
    # No fork_session: the inner store's would share the parent's ciphertexts, bound to the
    # parent's id and seqs; without it the runtime writes the child with restore(), which
    # encrypts each item for the child.

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given, encrypted (see the inner store's ``restore``)."""
        restore: Callable[..., Any] | None = getattr(self.inner, "restore", None)
        if restore is None:
            raise NotImplementedError(f"{type(self.inner).__name__} has no restore()")
        _core.check_restore_args(replace, expected_version)
        _core.restore_doc(session)  # every check, before any I/O
        sealed = seal_session(self.codec, session)
        if expected_version is None:
            restore(sealed, replace=replace)
        else:
            restore(sealed, replace=replace, expected_version=expected_version)

    def purge_expired(self) -> int:
        """See the inner store's ``purge_expired``."""
        purge: Callable[[], Any] | None = getattr(self.inner, "purge_expired", None)
        if purge is None:
            raise InvalidRequest(f"{type(self.inner).__name__} has no purge_expired()")
        count: int = purge()
        return count

    def close(self) -> None:
        self.inner.close()
