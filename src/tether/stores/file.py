"""The file store: a directory of plain files, no database, safe across processes on one host.

Per session ``<id>``:

* ``<id>.json``: the header, plus the committed length of the history log. Written to a temp
  file in the same directory, fsynced, ``os.replace``d over the old one, then the directory is
  fsynced: a reader sees the old header or the new one, never half of one.
* ``<id>.<gen>.log``: the history, one framed record per item (4-byte length, 4-byte CRC-32,
  the item's JSON). A commit appends after the committed length and fsyncs before the header
  that commits it is written, so a crash mid-commit leaves bytes past the committed length
  (a torn tail) that are ignored, never returned and never fatal, and cut off by the next
  commit. ``replace_history`` writes a new generation and switches to it in the header.
* Keyed items (:class:`~tether.KeyedItem`): the header holds a map of each key to its item's
  seq and byte offset in the log, so a read by key reads the header and that one record: its
  cost grows with the number of keys the session holds, never with its history. Each commit
  rewrites the header, so a session with very many keys pays for them on every write.
* ``<id>.lock``: taken with ``fcntl.flock`` (exclusive to write, shared to read) with a
  timeout. It is never unlinked, not even by ``delete``: unlinking a lock file that another
  process holds open would let a third process lock a new file and two writers run at once.

A log cut short inside its committed part (something outside tether did that: the log is
fsynced before the header that commits it) loads its complete records, with a warning. A record
whose checksum fails raises :class:`~tether.errors.CorruptSession` when read: never a history
with a silent hole in it.

``list`` reads only the headers; a header that cannot be decoded makes ``load`` of that session
raise :class:`~tether.errors.CorruptSession` and is skipped (with a logged warning) by ``list``,
which still returns the others. One written by a newer tether is listed as stored, as the other
stores list it (``load`` raises :class:`~tether.errors.UnsupportedSchemaVersion`). Listing reads
every header, so it costs O(sessions): use the SQLite store when you keep many thousands of
sessions.

Ids are used as file names as they are, so on a case-insensitive file system (macOS, Windows
defaults) ``Ada`` and ``ada`` would be the same session: use lowercase ids there.

The store is this module; its files are :mod:`._file_layout`'s (paths, the lock, the atomic
header, the log generations) and its log's framing is :mod:`._file_log`'s.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import _core
from .._core.leases import check_write
from .._ids import validate_session_id
from .._time import Clock, now_micros, system_clock
from .._urls import as_bool, as_float, parse_store_url, redact
from ..errors import (
    ConfigurationError,
    ConflictError,
    CorruptSession,
    LeaseLost,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ..models import HistoryItem, Lease, Page, Session, StoredItem
from ..schema import schema
from ._adding_sync import _AddingStore
from ._file_layout import FileLayout
from ._file_log import FRAME, Keys, decode_record, keys_at
from ._private import NotRegularFile, make_private_dirs, open_regular
from ._writes import DocAdded, Write
from .base import CheckedKeys, SyncBackedAsyncStore

__all__ = ["AsyncFileStore", "FileStore"]

log = logging.getLogger(__name__)


def _header_ids(entries: list[os.DirEntry[str]]) -> Iterator[str]:
    """The session ids of the header files among a directory's entries (``<id>.json``; a
    hidden name, such as an atomic write's temporary file, is never a session's)."""
    for entry in entries:
        name = entry.name
        if name.endswith(".json") and not name.startswith("."):
            yield name[: -len(".json")]


class FileStore(_AddingStore, FileLayout):
    """Sessions as files in one directory (created if missing).

    ``fsync=False`` skips the fsyncs: still atomic against a killed process, but a power loss
    can lose recent commits. ``lock_timeout`` (seconds) bounds the wait for another writer.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        lock_timeout: float = 10.0,
        fsync: bool = True,
        clock: Clock = system_clock,
        create: bool = True,
    ) -> None:
        # "~/sessions" is the home directory, as in a shell, not a directory named "~"
        self.directory = Path(directory).expanduser()
        self.lock_timeout = lock_timeout
        self.fsync = fsync
        self._clock = clock
        if not create and not self.directory.is_dir():
            # a reader with a mistyped path must not leave an empty store behind and then
            # report "no sessions"
            raise ConfigurationError(
                f"no file store at {str(self.directory.absolute())!r}; nothing was created. "
                "Check the path (file:relative/dir is relative to the working directory, "
                "file:///abs/dir absolute)."
            )
        try:
            make_private_dirs(self.directory)  # 0700: sessions and lease tokens are private
            self.directory.mkdir(parents=True, exist_ok=True)  # raises if it is not a directory
        except OSError as exc:
            raise StoreError(
                f"cannot create store directory {str(self.directory)!r}: {exc}"
            ) from exc

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = system_clock, create: bool = True) -> FileStore:
        """``file:///absolute/dir``, ``file:relative/dir`` or ``file:~/dir`` (in the home
        directory); options ``lock_timeout`` (seconds) and ``fsync`` (true|false).
        ``create=False`` refuses a directory that does not exist (ConfigurationError) instead
        of creating it."""
        netloc, path, options = parse_store_url(
            url, "file", {"lock_timeout": as_float, "fsync": as_bool}
        )
        if netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"{redact(url)!r} names host {redact(netloc)!r}; use file:///absolute/dir or "
                "file:relative/dir"
            )
        if not path:
            raise ConfigurationError(f"{redact(url)!r} names no directory")
        return cls(path, clock=clock, create=create, **options)

    # --- paths, locks, atomic files ------------------------------------------------------------

    # --- the contract --------------------------------------------------------------------------

    def _create(self, session: Session) -> Session:
        now = now_micros(self._clock)
        doc = _core.new_session_doc(session, now)
        encoded = _core.prepare_items(session.history, 1, now)
        doc["last_seq"] = doc["history_len"] = len(encoded)
        session_id = doc["id"]
        with self._locked(session_id):
            self._write_new(doc, encoded, now)
        return _core.make_session(doc, _core.decode_items(session_id, [d for _, d in encoded]))

    def _write_new(
        self,
        doc: _core.Doc,
        encoded: _core.PreparedItems,
        now: int,
        *,
        replace: bool = False,
        expected_version: int | None = None,
    ) -> None:
        """Write a whole session under its (held) lock where ``_core.restore_over`` lets it go;
        a corrupt or newer-schema one is always refused (reading its header raises)."""
        session_id = doc["id"]
        existing = self._read_header(session_id)
        _core.restore_over(
            session_id,
            None if existing is None else existing[0],
            now,
            replace=replace,
            expected_version=expected_version,
        )
        gen = 0
        if existing is not None:
            gen = existing[1] + 1  # a fresh log beside the old one, switched to by the header
        size = self._write_log(session_id, gen, encoded)
        self._write_header(doc, gen, size, keys_at(encoded, 0), new_log=True)
        if existing is not None:
            self._unlink_log(session_id, existing[1])

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        with self._locked(session_id, shared=True):
            doc, gen, log_size, _ = self._live_header(session_id, now_micros(self._clock))
            # Records are in seq order, contiguous from first_seq: the window is an index range.
            first = doc["last_seq"] - doc["history_len"] + 1
            start = _core.window_floor(doc, last, after) + 1 - first
            if start >= doc["history_len"]:
                items: list[HistoryItem] = []
            else:
                items = self._read_window(session_id, doc, gen, log_size, start=start, limit=limit)
        return _core.readable_session(doc, items)

    def _prepare_write(
        self, session_id: str, expected_version: int | None, lease: Lease | None, now: int
    ) -> tuple[_core.Doc, int, int, Keys]:
        """The header of a session to write (``expected_version`` None: a blind append)."""
        found = self._live_header(session_id, now)
        doc = found[0]
        check_write(session_id, doc, expected_version, lease, now)
        return found

    def _add(self, write: Write) -> DocAdded:
        """The write (``expected_version`` None: a blind append); the header document and the
        rows it wrote."""
        session_id = write.session_id
        with self._locked(session_id):
            now = now_micros(self._clock)
            doc, gen, log_size, keys = self._prepare_write(
                session_id, write.expected_version, write.lease, now
            )
            if _core.needs_upgrade(doc) or self._log_cut_short(session_id, gen, log_size):
                old_gen = gen
                doc, gen, log_size, keys = self._rewrite(session_id, doc, gen, log_size)
            else:
                old_gen = None
            try:
                encoded = _core.prepare_items(write.items, doc["last_seq"] + 1, now)
                _core.refuse_taken_keys(session_id, encoded.keys, keys)
                keys = {**keys, **keys_at(encoded, log_size)}
                if encoded:
                    log_size = self._append_rows(session_id, gen, log_size, encoded)
                new = _core.apply_commit(doc, write.changes, len(encoded), now)
            except BaseException:
                if old_gen is not None:  # a refused commit leaves no new log behind
                    self._unlink_log(session_id, gen)
                raise
            self._write_header(new, gen, log_size, keys, new_log=old_gen is not None)
            if old_gen is not None:
                self._unlink_log(session_id, old_gen)
        return DocAdded(new, encoded)

    def _rewrite(
        self, session_id: str, doc: _core.Doc, gen: int, log_size: int
    ) -> tuple[_core.Doc, int, int, Keys]:
        """Write the intact history, upgraded to the current schema, as a new generation.

        The rare path: a session stored by an older tether, or a log cut short inside its
        committed part (then the items lost are dropped from the header too, so seqs stay
        contiguous and the next items take the lost items' seqs). The caller writes the header
        that switches to the new generation.
        """
        items = self._read_window(session_id, doc, gen, log_size, start=0, limit=None)
        intact = len(items)  # a log cut short reads as its intact records
        old_version = int(doc["schema_version"])
        doc = dict(_core.upgrade_doc(doc))
        items = _core.upgrade_items(items, old_version)
        doc["last_seq"] = doc["last_seq"] - doc["history_len"] + intact
        doc["history_len"] = intact
        encoded = _core.PreparedItems(
            (item.get("seq", 0), _core.encode_item(item)) for item in items
        )
        encoded.keys = [(r["key"], r["seq"]) for r in items if isinstance(r.get("key"), str)]
        new_gen = gen + 1
        size = self._write_log(session_id, new_gen, encoded)
        doc["schema_version"] = schema.current
        return doc, new_gen, size, keys_at(encoded, 0)

    def _replace_all(self, write: Write) -> int:
        session_id, expected_version, items, changes, lease = write
        with self._locked(session_id):
            now = now_micros(self._clock)
            doc, gen, _, _ = self._prepare_write(session_id, expected_version, lease, now)
            doc = _core.upgrade_doc(doc)
            encoded = _core.prepare_items(items, doc["last_seq"] + 1, now)
            size = self._write_log(session_id, gen + 1, encoded)
            new = _core.apply_replace(doc, len(encoded), now, changes)
            self._write_header(new, gen + 1, size, keys_at(encoded, 0), new_log=True)
            self._unlink_log(session_id, gen)
        return int(new["version"])

    def _replace_after(self, write: Write, after: int) -> int:
        """See the contract. Truncating rewrites only the header (the bytes past the new
        committed length are a torn tail, cut by the next append). Replacing with new items
        writes a new log generation: the kept records' bytes copied as they are (never
        decoded), then the new ones, because bytes a committed header covers are never
        overwritten in place. Finding where the kept records end reads their 8-byte frame
        headers."""
        session_id, expected_version, items, changes, lease = write
        with self._locked(session_id):
            now = now_micros(self._clock)
            doc, gen, log_size, keys = self._prepare_write(session_id, expected_version, lease, now)
            kept = _core.items_kept(doc, after, "replace_tail")
            old_gen = None
            if _core.needs_upgrade(doc) or self._log_cut_short(session_id, gen, log_size):
                old_gen = gen
                doc, gen, log_size, keys = self._rewrite(session_id, doc, gen, log_size)
                kept = _core.items_kept(doc, min(after, doc["last_seq"]), "replace_tail")
            try:
                encoded = _core.prepare_items(items, after + 1, now)
                keys = {k: v for k, v in keys.items() if v[0] <= after}
                _core.refuse_taken_keys(session_id, encoded.keys, keys)
                cut, prefix = self._kept_bytes(session_id, gen, log_size, kept, bool(encoded))
                new = _core.apply_tail(doc, changes, after, len(encoded), now)
                if encoded:
                    new_gen = gen + 1
                    size = self._write_log(session_id, new_gen, encoded, prefix)
                else:
                    new_gen, size = gen, cut
                keys.update(keys_at(encoded, cut))
            except BaseException:
                if old_gen is not None:
                    self._unlink_log(session_id, gen)
                raise
            self._write_header(
                new, new_gen, size, keys, new_log=new_gen != gen or old_gen is not None
            )
            if new_gen != gen:
                self._unlink_log(session_id, gen)
            if old_gen is not None:
                self._unlink_log(session_id, old_gen)
        return int(new["version"])

    def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        """See the contract: the header's key map gives each record's offset, and only those
        records are read."""
        with self._locked(session_id, shared=True):
            doc, gen, log_size, key_map = self._live_header(session_id, now_micros(self._clock))
            _core.check_writable(session_id, doc)
            spots = sorted(key_map[key] for key in keys if key in key_map)
            if not spots:
                return {}
            records = []
            try:
                fd = open_regular(self._log_path(session_id, gen), os.O_RDONLY)
            except (FileNotFoundError, NotRegularFile):
                raise CorruptSession(session_id, "its history log is missing") from None
            with os.fdopen(fd, "rb") as handle:
                for seq, offset in spots:
                    handle.seek(offset)
                    head = handle.read(FRAME.size)
                    if len(head) < FRAME.size:
                        raise CorruptSession(session_id, f"its log ends before item {seq}")
                    length, crc = FRAME.unpack(head)
                    if offset + FRAME.size + length > log_size:
                        raise CorruptSession(session_id, f"its log ends before item {seq}")
                    index = seq - (doc["last_seq"] - doc["history_len"] + 1)
                    records.append(decode_record(session_id, handle.read(length), crc, index))
        return _core.keyed_records(session_id, records)

    def _list_page(self, query: _core.ListQuery) -> Page:
        return query.page(self._headers(), now_micros(self._clock))

    def _headers(self) -> Iterator[_core.Doc]:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            raise StoreError(f"cannot read store directory {str(self.directory)!r}: {exc}") from exc
        for session_id in _header_ids(entries):
            try:
                validate_session_id(session_id)
                found = self._read_header(session_id, newer=True)
            except TetherError as exc:  # one bad header must not hide the others
                log.warning("skipping session %r in listing: %s", session_id, exc)
                continue
            if found is not None:
                yield _core.upgrade_doc(found[0])

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        with self._locked(session_id):
            try:
                found = self._read_header(session_id)
            except CorruptSession:
                if expected_version is not None:
                    raise  # a version cannot be checked against an unreadable header
                self._remove_files(session_id)  # deleting is how a corrupt session is cleared
                return True
            if found is None:
                if expected_version is not None:
                    raise SessionNotFound(session_id)
                return False
            doc = found[0]
            _core.check_writable(session_id, doc)
            now = now_micros(self._clock)
            live = _core.is_live(doc, now)
            if live:
                _core.check_delete_lease(doc, lease, force, now)
            if expected_version is not None:
                if not live:
                    raise SessionNotFound(session_id)
                if doc["version"] != expected_version:
                    raise ConflictError(session_id, expected_version, doc["version"])
            self._remove_files(session_id)
            return live

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        with self._locked(session_id):
            now = now_micros(self._clock)
            doc, gen, log_size, keys = self._live_header(session_id, now)
            _core.check_writable(session_id, doc)
            doc = {**doc, **_core.claim_fields(doc, owner, ttl, now)}
            self._write_header(doc, gen, log_size, keys)
        return _core.lease_from_doc(doc)

    def _update_lease(self, lease: Lease, fields: _core.Doc | None, ttl_us: int = 0) -> Lease:
        """Check ``lease`` is current, then write ``fields`` (or extend it by ``ttl_us``)."""
        with self._locked(lease.session_id):
            now = now_micros(self._clock)
            found = self._read_header(lease.session_id)
            if found is None or not _core.is_live(found[0], now):
                raise LeaseLost(lease.session_id, "the session no longer exists")
            doc, gen, log_size, keys = found
            _core.check_lease(doc, lease, now)
            doc = {**doc, **(fields if fields is not None else {"lease_expires_at": now + ttl_us})}
            self._write_header(doc, gen, log_size, keys)
        return _core.lease_from_doc(doc) if fields is None else lease

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        return self._update_lease(lease, None, ttl)

    def _release(self, lease: Lease) -> None:
        self._update_lease(lease, _core.released_fields())

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract."""
        doc, encoded = _core.checked_restore(session, replace, expected_version)
        with self._locked(doc["id"]):
            now = now_micros(self._clock)
            self._write_new(doc, encoded, now, replace=replace, expected_version=expected_version)

    def purge_expired(self) -> int:
        """Delete the sessions whose ``expires_at`` has passed; returns how many.

        Reads every header (like ``list``); each removal happens under that session's lock
        after checking again that it is still expired.
        """
        count = 0
        for session_id in _header_ids(list(os.scandir(self.directory))):
            try:
                validate_session_id(session_id)
                with self._locked(session_id):
                    found = self._read_header(session_id)
                    now = now_micros(self._clock)
                    if found is None or _core.is_live(found[0], now):
                        continue
                    _core.check_writable(session_id, found[0])
                    self._remove_files(session_id)
                    count += 1
            except TetherError as exc:  # one unreadable session must not stop the sweep
                log.warning("purge_expired skipped session %r: %s", session_id, exc)
        return count

    def _exists(self, session_id: str) -> bool:
        try:
            found = self._read_header(session_id)
        except CorruptSession:
            return True  # it is there, just not readable
        return found is not None and _core.is_live(found[0], now_micros(self._clock))


# Every call of the contract, and every optional ability: an OSError that escapes one (a full
# disk, a permission denied, a file system gone read-only) becomes a StoreError with the OSError
# as its __cause__, as docs/errors.md promises. Wrapped here, once, rather than at each of the
# many file operations inside.
_CALLS = (
    "_create",
    "_load",
    "_commit",
    "_append",
    "_replace_history",
    "_replace_tail",
    "_items_by_key",
    "_list_page",
    "_delete",
    "_exists",
    "_claim",
    "_renew",
    "_release",
    "restore",
    "purge_expired",
)


def _wrap_os_errors(name: str) -> None:
    method: Callable[..., Any] = getattr(FileStore, name)
    what = name.lstrip("_").replace("_page", "")

    @functools.wraps(method)
    def call(self: FileStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise StoreError(
                f"the file store at {str(self.directory)!r} failed a {what}: {exc}. Check the "
                "free space and the permissions of that directory and retry. A failed write "
                "was applied only if its header file was replaced: reload the session to see."
            ) from exc

    setattr(FileStore, name, call)


for _name in _CALLS:
    _wrap_os_errors(_name)


class AsyncFileStore(SyncBackedAsyncStore):
    """The async twin of :class:`FileStore`: each call runs in a worker thread."""

    sync: FileStore

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = 10.0,
        fsync: bool = True,
        clock: Clock = system_clock,
        create: bool = True,
        store: FileStore | None = None,
    ) -> None:
        if store is None:
            if directory is None:
                raise ConfigurationError("AsyncFileStore needs a directory")
            store = FileStore(
                directory, lock_timeout=lock_timeout, fsync=fsync, clock=clock, create=create
            )
        super().__init__(store)

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock = system_clock, create: bool = True
    ) -> AsyncFileStore:
        return cls(store=FileStore.from_url(url, clock=clock, create=create))
