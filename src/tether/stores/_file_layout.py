"""The file store's directory: where each session's files are, the lock that serializes
writers, the header written atomically (temp file, fsync, ``os.replace``, directory fsync),
and the log generations written, appended to, cut and removed.

:class:`FileLayout` holds this file work; :class:`~tether.stores.file.FileStore` adds the
contract on top of it (the layout and its guarantees are described in :mod:`.file`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import _core, _json
from .._ids import validate_session_id
from ..errors import CorruptSession, LockTimeout, SessionNotFound, StoreError
from ..models import HistoryItem, SessionHeader
from ..schema import schema
from ._file_log import FRAME, Keys, decode_record, frame, skip_frames
from ._private import NotRegularFile, open_regular

__all__ = ["FileLayout", "listable_newer"]

log = logging.getLogger("tether.stores.file")


def listable_newer(session_id: str, doc: Any) -> bool:
    """Whether ``doc`` is a header a newer tether wrote that a listing can still show.

    The other stores list such sessions (their ``load`` raises UnsupportedSchemaVersion), so
    ``tether migrate``, ``export`` and ``copy`` can name them as skipped; the file store lists
    them too, as stored, when they still have the fields a listing reads and filters on.
    """
    if not (
        isinstance(doc, dict)
        and isinstance(doc.get("schema_version"), int)
        and doc["schema_version"] > schema.current
        and doc.get("id") == session_id
    ):
        return False
    if not SessionHeader.model_fields.keys() <= doc.keys():
        return False
    try:
        _core.doc_to_header(doc)
    except (KeyError, ValueError, TypeError):
        return False
    return all(isinstance(doc[name], int) for name in ("updated_at", "created_at"))


class FileLayout:
    """The files of a file store in ``directory`` (see :mod:`.file` for the layout)."""

    directory: Path
    lock_timeout: float
    """Seconds a writer waits for another one's lock before LockTimeout."""
    fsync: bool
    """False skips the fsyncs: still atomic against a killed process, not against power loss."""

    def _header_path(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.json"

    def _log_path(self, session_id: str, gen: int) -> Path:
        return self.directory / f"{session_id}.{gen}.log"

    @contextlib.contextmanager
    def _locked(self, session_id: str, *, shared: bool = False) -> Iterator[None]:
        validate_session_id(session_id)  # before the id becomes part of a path
        path = self.directory / f"{session_id}.lock"
        try:
            fd = open_regular(path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {str(path)!r}: {exc}") from exc
        try:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"session {session_id!r} stayed locked by another writer for "
                            f"{self.lock_timeout}s ({str(path)!r}); if no tether process is "
                            "running, a stuck process may hold it: end it, or raise "
                            "lock_timeout"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock; the file stays

    def _sync_dir(self) -> None:
        if self.fsync:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_header(
        self,
        doc: _core.Doc,
        gen: int,
        log_size: int,
        keys: Keys,
        *,
        new_log: bool = False,
    ) -> None:
        """Commit ``doc`` (and the log ``gen`` up to ``log_size``) by replacing the header.

        ``new_log``: ``gen`` was just written for this header, so if the header cannot be
        written, that log is removed too (a refused or failed write leaves no file behind).
        """
        session_id = doc["id"]
        wrapper: dict[str, Any] = {"session": doc, "log_gen": gen, "log_size": log_size}
        if keys:
            wrapper["keys"] = keys
        payload = _json.dumps(wrapper)
        tmp = self.directory / f".{session_id}.json.{os.getpid()}.{time.monotonic_ns()}.tmp"
        try:
            with os.fdopen(open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
                handle.write(payload)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.replace(tmp, self._header_path(session_id))
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if new_log:  # the header that would have committed it is not there: nothing is
                self._unlink_log(session_id, gen)
            raise
        self._sync_dir()

    def _read_header(
        self, session_id: str, *, newer: bool = False
    ) -> tuple[_core.Doc, int, int, Keys] | None:
        """(document as stored, log generation, committed log size, key map), or None if
        absent.

        ``newer``: a header a newer tether wrote is returned as stored (for the listing)
        instead of raising :class:`~tether.errors.UnsupportedSchemaVersion`.
        """
        try:
            fd = open_regular(self._header_path(session_id), os.O_RDONLY)
        except FileNotFoundError:
            return None
        except NotRegularFile as exc:  # a planted link or FIFO: never followed or waited on
            raise CorruptSession(session_id, f"its header is {exc.kind}") from None
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read()
        try:
            wrapper = _json.loads(raw)
        except _json.JSONDecodeError as exc:
            raise CorruptSession(session_id, f"header file is not valid JSON ({exc})") from exc
        if not (
            isinstance(wrapper, dict)
            and isinstance(wrapper.get("log_gen"), int)
            and isinstance(wrapper.get("log_size"), int)
        ):
            raise CorruptSession(session_id, "header file is not a tether file-store header")
        stored: Any = wrapper.get("session")
        if newer and listable_newer(session_id, stored):
            doc: _core.Doc = stored
        else:
            doc = _core.validate_header_doc(session_id, stored)
        keys = wrapper.get("keys", {})
        if not isinstance(keys, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) for n in v)
            for v in keys.values()
        ):
            raise CorruptSession(session_id, "its header's key map is damaged")
        return doc, wrapper["log_gen"], wrapper["log_size"], keys

    def _live_header(self, session_id: str, now: int) -> tuple[_core.Doc, int, int, Keys]:
        found = self._read_header(session_id)
        if found is None or not _core.is_live(found[0], now):
            raise SessionNotFound(session_id)
        return found

    def _read_window(
        self,
        session_id: str,
        doc: _core.Doc,
        gen: int,
        log_size: int,
        *,
        start: int,
        limit: int | None,
    ) -> list[HistoryItem]:
        """At most ``limit`` items from index ``start`` on, read frame by frame.

        The frames before ``start`` are skipped by their 8-byte headers (see
        :func:`skip_frames`: their items are never decoded) and reading stops once the page is
        full, so a page costs memory for its own items only. A log cut short inside its
        committed part (by something outside tether: a crash cannot do it, the log is fsynced
        before the header that commits it) loads the complete records before the cut, with a
        warning; the next commit rewrites it that way.
        """
        try:
            handle = os.fdopen(open_regular(self._log_path(session_id, gen), os.O_RDONLY), "rb")
        except FileNotFoundError:
            if log_size == 0:
                return []
            raise CorruptSession(session_id, "its history log is missing") from None
        except NotRegularFile as exc:
            raise CorruptSession(session_id, f"its history log is {exc.kind}") from None
        items: list[HistoryItem] = []
        header_size = FRAME.size
        with handle:
            intact_size = min(log_size, os.fstat(handle.fileno()).st_size)
            pos, index = skip_frames(handle, intact_size, start)
            cut = index < start  # the log ended before the window: cut short
            while not cut and pos < log_size and (limit is None or len(items) < limit):
                head = handle.read(header_size) if pos + header_size <= log_size else b""
                if len(head) < header_size:
                    cut = True
                    break
                length, crc = FRAME.unpack(head)
                end = pos + header_size + length
                payload = handle.read(length) if end <= log_size else b""
                if len(payload) < length:
                    cut = True
                    break
                items.append(decode_record(session_id, payload, crc, index))
                pos, index = end, index + 1
        if cut:
            log.warning(
                "session %r: history log is cut short: %d of %d items are intact; loading those",
                session_id,
                index,
                doc["history_len"],
            )
        return items

    def _write_log(
        self, session_id: str, gen: int, encoded: list[_core.EncodedItem], prefix: bytes = b""
    ) -> int:
        """Write a new log generation (``prefix``: frames copied as they are, then the new
        ones). Anything already at its path is no header's log (a crashed write's, or
        planted): it is unlinked, never written through."""
        data = prefix + b"".join(frame(payload) for _, payload in encoded)
        path = self._log_path(session_id, gen)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        return len(data)

    def _unlink_log(self, session_id: str, gen: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._log_path(session_id, gen).unlink()

    def _log_cut_short(self, session_id: str, gen: int, log_size: int) -> bool:
        try:
            return os.lstat(self._log_path(session_id, gen)).st_size < log_size
        except FileNotFoundError:
            return log_size > 0

    def _append_rows(
        self, session_id: str, gen: int, log_size: int, encoded: list[_core.EncodedItem]
    ) -> int:
        data = b"".join(frame(payload) for _, payload in encoded)
        fd = open_regular(self._log_path(session_id, gen), os.O_WRONLY | os.O_CREAT)
        try:
            # Cut any torn tail a crashed commit left past the committed length, then append.
            os.ftruncate(fd, log_size)
            os.lseek(fd, log_size, os.SEEK_SET)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return log_size + len(data)

    def _kept_bytes(
        self, session_id: str, gen: int, log_size: int, kept: int, copy: bool
    ) -> tuple[int, bytes]:
        """Where the first ``kept`` records of the log end, and (``copy``) their bytes."""
        if kept == 0:
            return 0, b""
        try:
            handle = os.fdopen(open_regular(self._log_path(session_id, gen), os.O_RDONLY), "rb")
        except (FileNotFoundError, NotRegularFile):
            raise CorruptSession(session_id, "its history log is missing") from None
        with handle:
            cut, skipped = skip_frames(handle, log_size, kept)
            if skipped < kept:
                raise CorruptSession(session_id, "its history log is cut short")
            if not copy:
                return cut, b""
            handle.seek(0)
            return cut, handle.read(cut)

    def _remove_files(self, session_id: str) -> None:
        """Remove the header (first: then the session is gone) and every log generation."""
        with contextlib.suppress(FileNotFoundError):
            self._header_path(session_id).unlink()
        prefix = f"{session_id}."
        for entry in os.scandir(self.directory):
            rest = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
            if rest.endswith(".log") and rest[: -len(".log")].isdigit():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        self._sync_dir()
