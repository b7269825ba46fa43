"""Moving sessions between stores, losslessly: export to JSON lines, import, copy; migrate.

Every session travels whole (header and history) with its version, timestamps, ``seq``
numbers and lease fence, and is written with the store's ``restore`` ability, so a copy is
exactly the original.

What the target already holds is never lost by accident. Each session is compared by
:func:`digest` (its header and every item): one the target holds identically is *unchanged*
and not written; one the target holds differently (it moved on, or diverged) is *differing*
and left alone, named in the outcome, unless ``replace`` is given, and even then a target at a
higher version than the source, or claimed by a runner right now, needs ``force`` as well. A
session stored by a newer tether, in the source or in the target, is *skipped* and named.
Re-running any of these is safe: nothing identical is written twice, nothing different is
overwritten without being told to.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import pydantic

from .. import _core, _json
from ..errors import (
    AlreadyClaimed,
    ConflictError,
    InvalidRequest,
    SessionExists,
    SessionNotFound,
    TetherError,
    UnsupportedSchemaVersion,
)
from ..models import Session, SessionHeader, StoredItem
from ..schema import schema
from ..stores.abilities import Restores, missing
from ..stores.base import Store

FORMAT = "tether-export/1"

Progress = Callable[[str], None]
"""Called with each session id as it is handled (drives a progress bar)."""

DIGEST_OMITS = frozenset({"schema_version", "lease_expires_at"})
"""Header fields a digest leaves out: neither is the session's content. ``schema_version`` is
the form it is stored in (a load upgrades it), and a live lease never travels (``restore``
writes the session unclaimed; its owner and fence do travel and are compared)."""


def _restore(store: Store) -> Callable[..., None]:
    """The target's ``restore``: import and copy write sessions exactly, or not at all."""
    if not isinstance(store, Restores):
        raise missing(store, Restores)
    return store.restore


# --- encrypted stores (tether.encryption): ciphertext travels as it is ------------------------


def raw_side(store: Store) -> Store:
    """The store that holds an encrypted store's ciphertexts (its ``inner``); any other store
    itself. Export, import and copy move ciphertext as it is, never in clear."""
    inner: Store | None = getattr(store, "inner", None)
    return inner if inner is not None and getattr(store, "codec", None) is not None else store


def _destination(target: Store, session: Session) -> Store:
    """Where ``session`` (as read from a file or a store) is written in ``target``.

    To an encrypted target, a session that is already ciphertext is written as it is to the
    store beneath, once the target's keyring has opened it (so the target can read what it is
    given: a :class:`~tether.errors.DecryptionError` otherwise, naming the session); a session
    in clear goes through the target, which encrypts it. Any other target takes it as it is.
    """
    raw = raw_side(target)
    if raw is target or "tether_enc" not in session.state:
        return target
    from ..encryption_sessions import open_session

    open_session(target.codec, session)  # type: ignore[attr-defined]
    return raw


def all_ids(store: Store) -> Iterator[str]:
    """Every live session's id, archived ones included, newest first."""
    for header in store.iter_sessions(limit=500):
        yield header.id


def digest(session: Session) -> str:
    """SHA-256 of the canonical JSON of the session's header (without :data:`DIGEST_OMITS`)
    and its whole history: the same for the same session read from any store."""
    header = {
        name: value
        for name, value in session.header.model_dump(mode="json").items()
        if name not in DIGEST_OMITS
    }
    # the history, and the exact items with their keys (history merges seq and timestamp in,
    # hiding an item's own keys of those names and the item keys)
    exact = [[e.seq, e.timestamp, e.key, e.item] for e in session.items]
    payload = {"header": header, "items": session.history, "exact": exact}
    return hashlib.sha256(_json.canonical(payload, what="session").encode()).hexdigest()


def _same_header(a: SessionHeader, b: SessionHeader) -> bool:
    """Whether two headers could belong to the same session content (a cheap first test)."""
    return (a.version, a.last_seq, a.history_len, a.updated_at) == (
        b.version,
        b.last_seq,
        b.history_len,
        b.updated_at,
    )


# --- outcomes ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to each session of an export, import or copy, by id."""

    copied: list[str] = field(default_factory=list)
    """Written to the target (new there, or replaced; replaced ones are also in ``replaced``)."""
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """The target held them identically (same digest): nothing was written."""
    differing: dict[str, str] = field(default_factory=dict)
    """Left as they are in the target, which holds them differently: id -> why, and how to
    overwrite."""
    newer: list[str] = field(default_factory=list)
    """Skipped: stored by a newer tether (in the source, the export line or the target)."""
    digests: dict[str, str] = field(default_factory=dict)
    """id -> digest of what the target must now hold (copied and unchanged ones)."""
    line: int = 0
    """import: the number of the line being read (the one that failed, if one did)."""

    @property
    def complete(self) -> bool:
        """Every session is in the target as in the source: none differing, none skipped."""
        return not self.differing and not self.newer

    def summary(self, copied: str = "copied") -> str:
        replaced = f" ({len(self.replaced)} replaced)" if self.replaced else ""
        return (
            f"{len(self.copied)} {copied}{replaced}, {len(self.unchanged)} unchanged, "
            f"{len(self.differing)} differing, {len(self.newer)} skipped (newer schema)"
        )


@dataclass
class Migration:
    """What ``migrate`` did: upgraded of seen sessions; newer ones were skipped, by id."""

    upgraded: int = 0
    seen: int = 0
    newer: list[str] = field(default_factory=list)


# --- export --------------------------------------------------------------------------------------


def export_line(session: Session) -> bytes:
    """One session as one JSON line: sorted keys, so the same session is the same bytes.

    ``items`` holds the history exactly as stored (each item with its seq, timestamp and key
    beside it, see ``Session.items``): ``session.history`` merges seq and timestamp into the
    items, which would lose an item's own keys of those names and the item keys. A tether that
    predates ``items`` reads ``session`` alone."""
    items = [
        {"seq": e.seq, "timestamp": e.timestamp, "key": e.key, "item": e.item}
        for e in session.items
    ]
    payload = {"format": FORMAT, "session": session.model_dump(mode="json"), "items": items}
    return _json.canonical(payload, what="session").encode() + b"\n"


def export(
    store: Store, ids: Iterable[str], out: IO[bytes], progress: Progress, *, listed: bool = False
) -> Outcome:
    """Write each session as a line; ``listed``: the ids came from a listing, so one deleted
    since is left out rather than an error. Newer-schema sessions are skipped and named."""
    outcome = Outcome()
    for session_id in ids:
        try:
            session = store.load(session_id)
        except UnsupportedSchemaVersion:
            outcome.newer.append(session_id)
            continue
        except SessionNotFound:
            if listed:
                continue  # deleted or expired while exporting: nothing to export
            raise
        out.write(export_line(session))
        outcome.copied.append(session_id)
        progress(session_id)
    return outcome


@contextmanager
def private_output(path: str) -> Iterator[IO[bytes]]:
    """A file created readable by its owner only (0600): exports hold whole conversations.

    A regular file (or a new one) is written to a private temporary file beside it and renamed
    over it at the end, so an interrupted export never leaves a short file that would import
    as if it were complete, and an existing file's looser permissions are never kept. Anything
    else (a pipe, a device) is written to directly.
    """
    target = Path(path)
    if target.exists() and not target.is_file():
        with open(target, "wb") as handle:
            yield handle
        return
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; said again, as the point of it
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise


# --- import --------------------------------------------------------------------------------------


def _pydantic_problem(exc: pydantic.ValidationError) -> str:
    """The first problem of a validation error, naming its field (``history.3.role``)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not where:
        return f"the session is not a JSON object: {first['msg']}{more}"
    return f"field {where!r}: {first['msg']}{more}"


def parse_line(line: bytes) -> Session:
    """A session from an export line, or InvalidRequest saying which field is wrong and how.

    The caller adds the line number. The session is checked as ``restore`` will check it
    (whole history, seqs in order, roles and timestamps), so a bad line fails here, before
    anything is written for it.
    """
    try:
        data = _json.loads(line)
    except _json.JSONDecodeError as exc:
        raise InvalidRequest(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise InvalidRequest(
            f"not a {FORMAT} line (field 'format' is {found!r}); export files are written by "
            "'tether export'"
        )
    if "session" not in data:
        raise InvalidRequest("field 'session' is missing")
    try:
        session = Session.model_validate(data["session"])
    except pydantic.ValidationError as exc:
        raise InvalidRequest(f"not a valid session: {_pydantic_problem(exc)}") from None
    if "items" in data:
        session._items = _exact_items(data["items"], session)
    if session.schema_version <= schema.current:  # a newer one is skipped, not refused
        try:
            _check_history(session)
            _core.restore_doc(session)  # everything else restore will check, before any I/O
        except TetherError as exc:
            raise InvalidRequest(f"not a valid session: {exc}") from None
    return session


def _exact_items(raw: object, session: Session) -> list[StoredItem]:
    """An export line's ``items`` (see :func:`export_line`), checked against its history."""
    if not isinstance(raw, list) or len(raw) != len(session.history):
        raise InvalidRequest(
            f"field 'items' must list the {len(session.history)} items of field 'history'"
        )
    exact = []
    for offset, entry in enumerate(raw):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("item"), dict)
            and entry.get("seq") == session.history[offset].get("seq")
            and isinstance(entry.get("timestamp"), str)
            and (entry.get("key") is None or isinstance(entry.get("key"), str))
        )
        if not ok:
            raise InvalidRequest(
                f"field 'items.{offset}' must be {{seq, timestamp, key, item}} with the seq of "
                f"'history.{offset}'"
            )
        exact.append(StoredItem(entry["seq"], entry["timestamp"], entry.get("key"), entry["item"]))
    return exact


def _check_history(session: Session) -> None:
    """What ``restore`` needs of the history, each problem naming its field."""
    history = session.history
    if len(history) != session.history_len:
        raise InvalidRequest(
            f"field 'history_len' is {session.history_len}, but field 'history' has "
            f"{len(history)} items"
        )
    first = session.last_seq - session.history_len + 1
    for offset, item in enumerate(history):
        for name in ("timestamp",):  # any JSON object is an item: no role needed
            if not isinstance(item.get(name), str):
                raise InvalidRequest(
                    f"field 'history.{offset}.{name}' must be a string, not {item.get(name)!r}"
                )
        if item.get("seq") != first + offset:
            raise InvalidRequest(
                f"field 'history.{offset}.seq' is {item.get('seq')!r}, expected {first + offset}: "
                f"'last_seq' {session.last_seq} and 'history_len' {session.history_len} make "
                f"the history seqs {first}..{session.last_seq}"
            )


def import_lines(
    target: Store,
    lines: Iterable[bytes],
    progress: Progress,
    outcome: Outcome,
    *,
    replace: bool = False,
    force: bool = False,
) -> Outcome:
    """Import export lines in order into ``outcome``; stops at the first bad line (the ones
    before it stay imported, and ``outcome`` says how many and which line failed)."""
    _restore(target)
    for number, line in enumerate(lines, 1):
        outcome.line = number
        if not line.strip():
            continue
        session = parse_line(line)
        if session.schema_version > schema.current:
            outcome.newer.append(session.id)
        else:
            dest = _destination(target, session)
            _put(dest, _restore(dest), session, outcome, replace=replace, force=force)
        progress(session.id)
    return outcome


# --- copy ----------------------------------------------------------------------------------------


def _held(target: Store, session: Session) -> Session | None:
    """The target's copy of ``session``, whole when it may be identical; None if absent."""
    header = target.load(session.id, last=0)
    if not _same_header(header, session):
        return header  # differs already in the header: its items need not be read
    return target.load(session.id)


def _put(
    target: Store,
    restore: Callable[..., None],
    session: Session,
    outcome: Outcome,
    *,
    replace: bool,
    force: bool,
) -> None:
    """Make the target hold ``session``, unless it holds it differently (see the module)."""
    want = digest(session)
    for _ in range(2):  # a second look only if the session appeared while we wrote it
        try:
            held = _held(target, session)
        except SessionNotFound:
            held = None
        except UnsupportedSchemaVersion:
            outcome.newer.append(session.id)
            return
        if held is not None and digest(held) == want:
            outcome.unchanged.append(session.id)
            outcome.digests[session.id] = want
            return
        if held is not None:
            why = _refusal(held, session, replace=replace, force=force)
            if why is not None:
                outcome.differing[session.id] = why
                return
            # Compare-and-delete, then a restore that never overwrites: a target that moved on
            # since it was read is kept. (A restore with an expected version would close the
            # moment in which the session is absent; no store has one yet.)
            try:
                _delete(target, session.id, held.version, force=force)
            except (ConflictError, SessionNotFound, AlreadyClaimed):
                outcome.differing[session.id] = (
                    "changed or claimed in the target while it was being replaced; "
                    "run again to compare"
                )
                return
        try:
            restore(session, replace=False)  # never over a session that appeared meanwhile
        except SessionExists:
            continue
        outcome.copied.append(session.id)
        if held is not None:
            outcome.replaced.append(session.id)
        outcome.digests[session.id] = want
        return
    outcome.differing[session.id] = "created in the target while it was being copied"


def _delete(target: Store, session_id: str, version: int, *, force: bool) -> None:
    """Delete ``version`` of the session; with ``force``, also while a runner holds its lease
    (a claimed target is only reached with --force: see :func:`_refusal`)."""
    try:
        target.delete(session_id, expected_version=version)
    except AlreadyClaimed:
        if not force:
            raise
        target.delete(session_id, expected_version=version, force=True)


def _refusal(held: SessionHeader, session: Session, *, replace: bool, force: bool) -> str | None:
    """Why the target's differing copy ``held`` may not be replaced, or None if it may."""
    versions = f"version {held.version} in the target, {session.version} in the source"
    if not replace:
        return f"{versions}, with different content; pass --replace to overwrite it"
    if force:
        return None
    if held.version > session.version:
        return (
            f"{versions}: the target is ahead (it moved on since it was copied); "
            "pass --replace --force to overwrite it anyway"
        )
    if _claimed(held) and held.lease_expires_at is not None:
        return (
            f"{versions}: claimed in the target by {held.lease_owner!r} until "
            f"{held.lease_expires_at.isoformat()}; pass --replace --force to overwrite it anyway"
        )
    return None


def _claimed(held: SessionHeader) -> bool:
    """Whether a runner holds a live lease on the target's copy right now."""
    until = held.lease_expires_at
    return until is not None and until > datetime.now(timezone.utc)


def copy(
    source: Store,
    target: Store,
    progress: Progress,
    *,
    replace: bool = False,
    force: bool = False,
) -> Outcome:
    """Make the target hold every session of the source, as it is in the source, except the
    ones it holds differently (unless ``replace``) and newer-schema ones (see the module)."""
    outcome = Outcome()
    _restore(target)
    source = raw_side(source)  # an encrypted source's sessions travel as ciphertext
    for session_id in list(all_ids(source)):
        try:
            session = source.load(session_id)
        except SessionNotFound:
            continue  # deleted or expired while copying: nothing to copy
        except UnsupportedSchemaVersion:
            outcome.newer.append(session_id)
        else:
            dest = _destination(target, session)
            _put(dest, _restore(dest), session, outcome, replace=replace, force=force)
        progress(session_id)
    return outcome


def verify(target: Store, outcome: Outcome) -> dict[str, str]:
    """Read back every session written to the target and compare digests: id -> problem.

    Compared with what was read from the source when it was copied, so traffic on the source
    since then is not a mismatch; traffic on the target since then is, and is reported.
    """
    problems = {}
    written = set(outcome.copied)  # unchanged ones were just compared whole, digest to digest
    for session_id, want in outcome.digests.items():
        if session_id not in written:
            continue
        try:
            got = digest(raw_side(target).load(session_id))
            if got != want and raw_side(target) is not target:  # it was encrypted on the way
                got = digest(target.load(session_id))
        except SessionNotFound:
            problems[session_id] = "missing from the target"
            continue
        if got != want:
            problems[session_id] = (
                f"digest {got[:12]} in the target, {want[:12]} copied (it changed in the target "
                "since, or the copy is not exact)"
            )
    return problems


# --- migrate -------------------------------------------------------------------------------------


MIGRATE_TRIES = 5
"""Reads and write-backs of one session before ``migrate`` gives up on it: a write-back loses
to a commit only, and every commit upgrades the session itself, so a second read finds it done."""


def migrate(store: Store, progress: Progress) -> Migration:
    """Write back every session stored at an older schema version; newer ones are skipped.

    Opening the store has already applied its own migrations (tables, indexes, columns).
    Each session is read (which upgrades it in memory) and, if it was stored at an older
    version, written back exactly as read: same version, same seqs, upgraded form. The write
    back is conditional on the version read (``restore(expected_version=)``): a commit that
    lands in between wins, and the session is read again (a commit upgrades it too), so
    nothing a writer committed meanwhile is lost. A session stored by a newer tether is left
    untouched and named in the result; the walk goes on past it.
    """
    restore = _restore(store)
    _check_expected_version(store, restore)
    result = Migration()
    for session_id in list(all_ids(store)):
        try:
            upgraded = _migrate_one(store, restore, session_id)
        except SessionNotFound:
            continue
        except UnsupportedSchemaVersion:
            result.newer.append(session_id)
            progress(session_id)
            continue
        result.seen += 1
        result.upgraded += upgraded
        progress(session_id)
    return result


def _migrate_one(store: Store, restore: Callable[..., None], session_id: str) -> bool:
    """Upgrade one stored session; whether this call wrote it back."""
    for _ in range(MIGRATE_TRIES):
        session = store.load(session_id)
        if session.stored_schema_version >= session.schema_version:
            return False
        try:
            restore(session, replace=True, expected_version=session.version)
        except ConflictError:
            continue  # a commit landed after the read: read it again
        return True
    raise ConflictError(
        session_id,
        None,
        None,
        f"session {session_id!r} kept changing while migrate wrote it back "
        f"({MIGRATE_TRIES} tries); its next commit upgrades it anyway, or run migrate again",
    )


def _check_expected_version(store: Store, restore: Callable[..., None]) -> None:
    """A store's own ``restore`` needs ``expected_version=`` for migrate to write safely."""
    try:
        parameters = inspect.signature(restore).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return
    if "expected_version" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    ):
        return
    raise InvalidRequest(
        f"{type(store).__name__}.restore() takes no expected_version=, so migrate could "
        "overwrite a commit that lands while it writes a session back; give it one (see "
        "docs/stores.md, 'Optional abilities') or let each session upgrade on its next write"
    )
