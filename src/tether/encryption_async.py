"""Encryption at rest over any store, async side; tools/unasync.py writes the sync side from it.

:class:`AsyncEncryptedStore` wraps any store (every built-in one, or your own): it encrypts
history items, ``state`` and ``options`` on the way in and decrypts them on the way out;
everything a listing needs stays in clear. The codec (keys, envelopes, associated data) is
:mod:`tether.encryption_codec`; see ``docs/encryption.md``. It is an
:class:`~tether.stores.AsyncWrappingStore`: what it does not override (claims, leases,
``exists``, ``delete``, ``close``) is the inner store's.

An item's ciphertext is bound to its ``seq``, which the store assigns at commit. A versioned
write (``commit``, ``replace_history``) takes the seqs from the version it names:

* if this store saw the session at that very version (a load it returned, a write it made),
  it knows ``last_seq`` there and reads nothing: the write lands only at that version, so the
  seqs it encrypted for are the ones the store gives;
* otherwise it reads the header and checks it is at that version (a ``ConflictError`` if not).

What it saw is ``(version, last_seq)`` by session id, a fact about one version of the
session, so a stale entry only misses (a header read, or the write's own
``ConflictError``). Only the version scheme's own blind spot can fool it: a session deleted
and created again under the same id (or restored over) and brought back to the very version
the caller names. The caller's ``expected_version`` comes from the same earlier read, so a
plain store would then add the caller's items to a session the caller never saw, silently;
here they are bound to seqs that session does not give them, so reading them raises
:class:`~tether.errors.TamperedCiphertext`: it fails closed, never returns a wrong item.
A delete, a restore or a failed write through this store forgets what it saw of the session.
A blind ``append`` names no version, so it always reads the header and commits at its
version (again on conflict); ``replace_tail`` numbers its items from ``after``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _core, _json
from ._cache import ChangeMark, after_own_write
from ._encryption_cache import DEFAULT_CACHE_BYTES
from .encryption_codec import (
    Codec,
    Keyring,
    KeySource,
    prepare_items,
    resolve_keys,
)
from .encryption_sessions import open_header, open_loaded, open_raw, rebuilt, seal_session
from .errors import ConflictError
from .models import Lease, Page, Session, StoredItem
from .stores._arguments import RawWindow
from .stores._writes import DocAdded, Write
from .stores.base import AsyncStore, CheckedItems, CheckedKeys, ListFilters
from .stores.wrapping_async import AsyncWrappingStore, Forwarded

if TYPE_CHECKING:
    from typing_extensions import Unpack  # pydantic's dependency; Python 3.11 has it in typing

__all__ = ["AsyncEncryptedStore"]


_Prepared = list[tuple[str | None, bytes, str | None]]
"""New items checked and encoded before any I/O: (key, JSON, own timestamp) each."""


class _ForgetsOnError:
    """:meth:`AsyncEncryptedStore._forgets`: a class, not ``contextlib.contextmanager``,
    whose generator costs a few microseconds on every commit."""

    __slots__ = ("session_id", "store")

    def __init__(self, store: AsyncEncryptedStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.store._forget(self.session_id)


_WRITE_ITEMS = AsyncWrappingStore._write_items
"""The items a write passes on, unchanged: a subclass that overrides it commits through
:meth:`AsyncEncryptedStore._add`, which calls it once."""


_Seen = tuple[int, int, bool]
"""What this store saw of a session: its version, its ``last_seq`` then, and whether the load
that saw it read its rows to ``last_seq`` (a reader of the whole window, which will read the
rows a commit adds too: :meth:`~AsyncEncryptedStore._commit` then notes them in the codec,
:meth:`~tether.encryption_codec.Codec.written`, so that load compares them instead of
decrypting what was just encrypted)."""


SEEN_SESSIONS = 10_000
"""How many sessions' ``(version, last_seq)`` a store remembers (the first seen go first)."""


_prepare = prepare_items
"""Check and encode new items as a store would, before any I/O (same errors)."""


KNOWN_FROM = 64
"""The fewest rows kept as known (:data:`_KnownRows`): below it, reading and comparing the
rows costs less than asking the store for its change mark (a few µs)."""


_KnownRows = tuple[ChangeMark, int, int, int]
"""Rows of a session the codec holds, verified as stored, that the store has not changed
since: the store's change mark taken before the read that verified them, the session's
version then, and the first and last seq of the rows (contiguous)."""


class AsyncEncryptedStore(AsyncWrappingStore):
    """A store that keeps the items, state and options of another, ``inner``, encrypted.

    ``keys`` is a :class:`~tether.encryption.Keyring` (or a callable returning one, called
    now). ``cache_bytes`` bounds the plaintext kept of recently opened values, so
    that a history read again is not decrypted again (see :class:`~tether.encryption_codec.Codec`;
    0: none). Reads fail closed: a value in clear, tampered, or under a key the ring cannot give
    raises a :class:`~tether.errors.DecryptionError` naming the session and the place.
    """

    def __init__(
        self, inner: AsyncStore, keys: KeySource, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        super().__init__(inner)
        self.inner: AsyncStore = inner
        """The wrapped store, which holds the ciphertexts (``tether export`` reads it)."""
        self.keyring: Keyring = resolve_keys(keys)
        self.codec = Codec(self.keyring, cache_bytes=cache_bytes)
        self._seen: dict[str, _Seen] = {}  # id -> (version, last_seq, rereads): module doc
        self._seen_lock = threading.Lock()
        self._known: dict[str, _KnownRows] = {}  # id -> rows still as verified: _load

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, {self.keyring!r})"

    # --- what this store saw: (version, last_seq, rereads) by session --------------------

    def _saw(self, session_id: str, version: int, last_seq: int, rereads: bool = False) -> None:
        seen = self._seen
        if session_id in seen or len(seen) < SEEN_SESSIONS:
            seen[session_id] = (version, last_seq, rereads)  # one assignment: atomic, no lock
            return
        with self._seen_lock:  # one evicting thread at a time
            while len(seen) >= SEEN_SESSIONS:
                try:
                    seen.pop(next(iter(seen)), None)  # the first seen go first
                except RuntimeError:  # an unlocked write resized it meanwhile: look again
                    continue
            seen[session_id] = (version, last_seq, rereads)

    def _forget(self, session_id: str) -> None:
        with self._seen_lock:
            self._seen.pop(session_id, None)
            self._known.pop(session_id, None)

    def _know(self, session_id: str, known: _KnownRows) -> None:
        """Keep ``known`` for ``session_id`` if it has :data:`KNOWN_FROM` rows and the codec
        holds them (the first seen go first past :data:`SEEN_SESSIONS`)."""
        first, last = known[2], known[3]
        if last - first + 1 < KNOWN_FROM or not self.codec.holds_rows(session_id, first, last):
            self._known.pop(session_id, None)
            return
        with self._seen_lock:
            entries = self._known
            if session_id not in entries and len(entries) >= SEEN_SESSIONS:
                entries.pop(next(iter(entries)), None)
            entries[session_id] = known

    def _known_after_commit(self, session_id: str, known: _KnownRows, version: int) -> None:
        """This store's commit from ``known``'s version landed at ``version``: one write to the
        session, which moves the store's change mark by one of its own writes and adds rows
        after the known ones. Unless another load or write replaced ``known`` meanwhile."""
        mark, _, first, last = known
        with self._seen_lock:
            if self._known.get(session_id) is known:
                self._known[session_id] = (after_own_write(mark), version, first, last)

    def _wrote(self, session_id: str, version: int, last_seq: int | None, expected: int) -> None:
        """A commit from ``expected`` landed at ``version``, leaving ``last_seq`` (None: as it
        was at ``expected``, if this store saw that, else unknown)."""
        if last_seq is None:
            seen = self._seen.get(session_id)
            last_seq = seen[1] if seen is not None and seen[0] == expected else None
        self._remember(session_id, version, last_seq)

    async def _header_at(self, session_id: str, expected_version: int) -> Session:
        """The stored header, which must be at ``expected_version``: the seqs and the runtime
        block a write derives from it are then the ones the store holds when the write lands
        (the write itself is checked against the same version)."""
        header: Session = await self._forward("_load", session_id, last=0, after=None, limit=None)
        self._saw(session_id, header.version, header.last_seq)
        if header.version != expected_version:
            raise ConflictError(session_id, expected_version, header.version)
        return header

    async def _before_write(
        self, session_id: str, expected_version: int, prepared: _Prepared, changes: _core.Doc
    ) -> tuple[int | None, _core.Doc]:
        """What a versioned write needs to know of the session at ``expected_version``: its
        ``last_seq`` if there are items to number (None if not), and ``changes`` with the
        stored runtime block kept. The seqs come from what this store saw at that version if
        it did (module doc); the runtime block always from a header read."""
        if _core.needs_runtime_block(changes):
            header = await self._header_at(session_id, expected_version)
            return header.last_seq, self._keep_block(header, changes)
        if not prepared:
            return None, changes
        seen = self._seen.get(session_id)
        if seen is not None and seen[0] == expected_version:
            return seen[1], changes
        return (await self._header_at(session_id, expected_version)).last_seq, changes

    def _keep_block(self, header: Session, changes: _core.Doc) -> _core.Doc:
        """An application's new ``state`` keeps the stored ``state["_tether"]``: the inner
        store cannot see it inside the ciphertext, so the merge happens here."""
        stored = self.codec.open_field(header.id, "state", header.state)
        return _core.keep_runtime_block(changes, stored)

    def _forgets(self, session_id: str) -> _ForgetsOnError:
        """Around a write to the inner store: if it fails, forget what was seen of the
        session (the write may have landed, or the session moved on)."""
        return _ForgetsOnError(self, session_id)

    def _remember(self, session_id: str, version: int, last_seq: int | None) -> None:
        if last_seq is None:  # the store's to say: read it next time
            self._forget(session_id)
        else:
            self._saw(session_id, version, last_seq)

    async def _sealed_write(self, write: Write, expected_version: int) -> tuple[Write, int | None]:
        """A versioned write's checked values sealed (its items numbered after the session's
        ``last_seq`` at ``expected_version``, ``state`` / ``options`` sealed), and the
        session's ``last_seq`` after it (None: not known)."""
        session_id, _, items, changes, _ = write
        prepared = _prepare(items)
        last_seq, kept = await self._before_write(session_id, expected_version, prepared, changes)
        sealed = [] if last_seq is None else self._seal_items(session_id, last_seq + 1, prepared)
        after = None if last_seq is None else last_seq + len(prepared)
        return write._replace(items=sealed, changes=self._seal_changes(session_id, kept)), after

    # --- sealing and opening --------------------------------------------------------------

    def _seal_items(self, session_id: str, first_seq: int, prepared: _Prepared) -> list[Any]:
        return self.codec.seal_items(session_id, first_seq, prepared, keyed=True)

    def _seal_changes(self, session_id: str, checked: _core.Doc) -> _core.Doc:
        """Checked changes (:func:`_core.normalize_changes`, the stored runtime block kept)
        with ``state`` / ``options`` replaced by their envelopes; the other fields go to the
        inner store as they are."""
        sealed = dict(checked)
        for field in ("state", "options"):
            if field in checked:
                sealed[field] = self.codec.seal_field(session_id, field, checked[field])
        return sealed

    def _loaded(self, session: Session) -> Session:
        """What ``load`` returns: the inner store's session, opened."""
        self._saw(session.id, session.version, session.last_seq)
        return open_loaded(self.codec, session)

    # --- the contract's protected methods: what changes when the values are encrypted ----

    async def _create(self, session: Session) -> Session:
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
        created: Session = await self._forward("_create", sealed)
        self._saw(created.id, created.version, created.last_seq)
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

    async def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        # The rows undecoded when the store beneath offers them (SQLite): a cached row is then
        # one comparison of bytes and its item in clear is decoded once, as a plain load's
        # would be, instead of the envelopes decoded, compared and the items decoded again.
        # the target's _load_raw called as _forward would (it has no public twin), without
        # its steps, through _run only where a subclass changes how the target's methods run
        target = self._target
        raw = target._load_raw
        mark: ChangeMark | None = None
        if not self._runs_plainly:
            window: RawWindow | None = await self._run(
                raw, session_id, last=last, after=after, limit=limit
            )
        else:
            # Rows verified before that the store's change mark says nothing has written since
            # are not read again. The mark is taken only where it can spare reading many rows:
            # not for a worker's load(after=) past the known rows, nor a short history.
            known = self._known.get(session_id)
            if known is not None:
                if after is None or after < known[3]:
                    mark = target._change_mark(session_id)
            elif after is None:
                seen = self._seen.get(session_id)
                if seen is not None and seen[1] >= KNOWN_FROM:
                    mark = target._change_mark(session_id)
            if known is not None and mark is not None and known[0] == mark:
                loaded = await self._load_known(session_id, known, last, after, limit)
                if loaded is not None:
                    return loaded
            window = await raw(session_id, last=last, after=after, limit=limit)
        if window is None or _core.needs_upgrade(window[0]):  # an older or newer schema
            return await super()._load(session_id, last=last, after=after, limit=limit)
        session = open_raw(self.codec, *window)
        fields = session.__dict__  # pydantic's attribute access costs more, on every load
        rows = window[1]
        last_seq = fields["last_seq"]
        self._saw(session_id, fields["version"], last_seq, bool(rows) and rows[-1][0] == last_seq)
        if mark is not None and rows:  # verified as stored at the mark taken before the read
            self._know(session_id, (mark, fields["version"], rows[0][0], rows[-1][0]))
        return session

    async def _load_known(
        self,
        session_id: str,
        known: _KnownRows,
        last: int | None,
        after: int | None,
        limit: int | None,
    ) -> Session | None:
        """``load`` of a session whose ``known`` rows are still the stored ones (its mark is
        the store's): the header and the rows after the known ones read, the known rows
        taken in clear from the codec. None where that cannot give the window (the version
        moved, rows before the known ones are asked for, the codec let some go): the caller
        then reads the window whole. The header is always read: it is what says the session
        is live, and at the version the rows were verified at."""
        mark, version, first, known_last = known
        window = await self._target._load_raw(session_id, last=None, after=known_last, limit=None)
        if window is None:
            return None
        doc, rows = window
        last_seq = doc["last_seq"]
        if doc["version"] != version or last_seq < known_last or _core.needs_upgrade(doc):
            return None  # written meanwhile (the mark was taken before this read)
        floor = _core.window_floor(doc, last, after)
        end = last_seq if limit is None else min(last_seq, floor + max(limit, 0))
        if floor >= end:
            held: list[bytes] | None = []
        elif floor + 1 < first:
            return None
        else:
            held = self.codec.known_rows(session_id, floor + 1, min(known_last, end))
        if held is None:
            self._forget_known(session_id, known)
            return None
        whole = floor <= known_last and end == last_seq  # every row read is in the window
        wanted = rows if whole else [row for row in rows if floor < row[0] <= end]
        session = open_raw(self.codec, doc, wanted, held)
        self._saw(session_id, version, last_seq, whole and end > floor)
        if whole and rows:
            self._know(session_id, (mark, version, first, rows[-1][0]))
        return session

    def _forget_known(self, session_id: str, known: _KnownRows) -> None:
        with self._seen_lock:
            if self._known.get(session_id) is known:
                del self._known[session_id]

    async def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """``commit`` (and ``commit_stamped``, which reports its version). A turn's commit (no
        header change, at a version this store saw, no subclass changing the items of every
        write) is sealed and passed on here, in one method (each call saved is a fraction of a
        microsecond of every turn); any other write goes through :meth:`_add`."""
        seen = self._seen.get(session_id)
        if (
            changes
            or seen is None
            or seen[0] != expected_version
            or type(self)._write_items is not _WRITE_ITEMS
        ):
            write = Write._make((session_id, expected_version, items, changes, lease))
            return (await self._add(write)).version
        # the items numbered after what this store saw at that version (module doc)
        last_seq = seen[1]
        prepared = _prepare(items)
        known = self._known.get(session_id)
        add = self._encoded_add()
        try:
            if add is not None:  # the envelopes' JSON: the store encodes nothing again
                sealed = self.codec.seal_encoded(session_id, last_seq + 1, prepared)
                write = Write._make((session_id, expected_version, sealed, {}, lease))
                added = await self._add_directly(add, write)
                version = added.version
            else:
                added = None
                envelopes = self.codec.seal_items(session_id, last_seq + 1, prepared, keyed=True)
                version = await self._commit_through(
                    session_id, expected_version, envelopes, {}, lease
                )
        except BaseException:  # the write may have landed, or the session moved on
            self._forget(session_id)
            raise
        rereads = seen[2]
        if rereads and type(added) is DocAdded:  # a whole-window reader reads these rows next
            self.codec.written(session_id, last_seq + 1, added.rows, prepared)
        self._saw(session_id, version, last_seq + len(prepared), rereads)
        if known is not None and known[1] == expected_version:
            self._known_after_commit(session_id, known, version)
        return version

    async def _add(self, write: Write) -> Forwarded:
        write = self._passed(write)  # the hook of every write, on the items in clear
        session_id, expected_version, items, _, lease = write
        if expected_version is None:
            return Forwarded(await self._append_sealed(session_id, items, lease))
        sealed, last_seq = await self._sealed_write(write, expected_version)
        try:
            version = await self._commit_through(
                session_id, expected_version, sealed.items, sealed.changes, lease
            )
        except BaseException:
            self._forget(session_id)
            raise
        self._wrote(session_id, version, last_seq, expected_version)
        return Forwarded(version)

    async def _append_sealed(
        self, session_id: str, items: CheckedItems, lease: Lease | None
    ) -> int:
        """A blind append: the seqs come from the header; the commit lands only at its
        version (read again on conflict)."""
        prepared = _prepare(items)
        while True:
            header: Session = await self._forward(
                "_load", session_id, last=0, after=None, limit=None
            )
            sealed = self._seal_items(session_id, header.last_seq + 1, prepared)
            try:
                with self._forgets(session_id):
                    version: int = await self._forward(
                        "_commit", session_id, header.version, sealed, changes={}, lease=lease
                    )
            except ConflictError:
                continue
            self._saw(session_id, version, header.last_seq + len(prepared))
            return version

    async def _replace_all(self, write: Write) -> int:
        # the new items are numbered after the old last_seq, as a commit's are
        write = self._passed(write)  # the hook of every write, on the items in clear
        session_id, expected_version = write.session_id, write.expected_version
        assert expected_version is not None  # replace_history names a version
        sealed, last_seq = await self._sealed_write(write, expected_version)
        with self._forgets(session_id):
            version: int = await self._write_through("_replace_history", sealed)
        # an emptied history's last_seq is the store's to say
        self._remember(session_id, version, last_seq if sealed.items else None)
        return version

    async def _replace_after(self, write: Write, after: int) -> int:
        session_id, expected_version, items, changes, lease = self._passed(write)
        assert expected_version is not None  # replace_tail names a version
        prepared = _prepare(items)
        if _core.needs_runtime_block(changes):
            header = await self._header_at(session_id, expected_version)
            changes = self._keep_block(header, changes)
        # the new items are numbered from after + 1 whatever the history holds
        items = self._seal_items(session_id, after + 1, prepared)
        sealed = Write(
            session_id, expected_version, items, self._seal_changes(session_id, changes), lease
        )
        with self._forgets(session_id):
            version: int = await self._write_through("_replace_tail", sealed, after)
        # a truncation's last_seq is the store's to say
        self._remember(session_id, version, after + len(prepared) if prepared else None)
        return version

    async def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        found: dict[str, StoredItem] = await self._forward("_items_by_key", session_id, keys)
        return {
            key: StoredItem(
                entry.seq,
                entry.timestamp,
                entry.key,
                self.codec.open_item(session_id, entry.seq, entry.key, entry.item),
            )
            for key, entry in found.items()
        }

    async def list(self, **filters: Unpack[ListFilters]) -> Page:
        """The inner store's page (the filters as :meth:`AsyncStore.list` takes them), each
        header's ``state`` and ``options`` opened."""
        page = await super().list(**filters)
        headers = [open_header(self.codec, header) for header in page.sessions]
        return Page(sessions=headers, next_cursor=page.next_cursor)

    async def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        self._forget(session_id)  # whatever happens, a session of this id may start again
        try:
            deleted: bool = await self._forward(
                "_delete", session_id, expected_version, lease=lease, force=force
            )
            return deleted
        finally:
            self._forget(session_id)

    # --- optional abilities: those of the inner store, but fork_session ---------------------

    passes_on = frozenset({"restore", "purge_expired"})
    """No ``fork_session``: the inner store's would share the parent's ciphertexts, bound to the
    parent's id and seqs. The runtime then writes the child with ``restore``, which encrypts
    each item for the child."""

    async def wrap_restore(self, restore: Callable[..., Any], session: Session, **how: Any) -> None:
        """``restore``: write ``session`` exactly as given, encrypted (see the inner store's);
        ``how`` is its ``replace`` and ``expected_version``, passed on."""
        _core.checked_restore(session, how["replace"], how["expected_version"])  # before any I/O
        sealed = seal_session(self.codec, session)
        self._forget(session.id)  # a restore writes a version as given, not the next one
        try:
            await super().wrap_restore(restore, sealed, **how)
        finally:
            self._forget(session.id)
