"""Moving sessions between stores, losslessly: export to JSON lines, import, copy; migrate.

Every session travels whole (header and history) with its version, timestamps, ``seq``
numbers and lease fence, and is written with the store's ``restore`` ability, so a copy is
exactly the original. Re-running any of them is safe: a session the target already holds at
the same version is skipped, never written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from . import _json
from .errors import InvalidRequest, SessionNotFound, TetherError
from .models import Session
from .stores.base import Store

FORMAT = "tether-export/1"

Progress = Callable[[str], None]
"""Called with each session id as it is handled (drives a progress bar)."""


def _restore(store: Store) -> Callable[..., None]:
    restore: Callable[..., None] | None = getattr(store, "restore", None)
    if restore is None:
        raise InvalidRequest(
            f"{type(store).__name__} cannot restore sessions exactly (no restore()); "
            "it cannot be the target of an import or a copy"
        )
    return restore


def all_ids(store: Store) -> Iterator[str]:
    """Every live session's id, archived ones included, newest first."""
    for header in store.iter_sessions(limit=500):
        yield header.id


def export_line(session: Session) -> bytes:
    """One session as one JSON line: sorted keys, so the same session is the same bytes."""
    payload = {"format": FORMAT, "session": session.model_dump(mode="json")}
    return _json.canonical(payload, what="session").encode() + b"\n"


def export(store: Store, ids: Iterable[str], out: IO[bytes], progress: Progress) -> int:
    count = 0
    for session_id in ids:
        out.write(export_line(store.load(session_id)))
        progress(session_id)
        count += 1
    return count


def parse_line(number: int, line: bytes) -> Session:
    """A session from an export line, or InvalidRequest naming the line and what is wrong."""
    try:
        data = _json.loads(line)
    except _json.JSONDecodeError as exc:
        raise InvalidRequest(f"line {number}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidRequest(f"line {number}: not a {FORMAT} line")
    try:
        return Session.model_validate(data["session"])
    except (ValueError, TypeError, KeyError, TetherError) as exc:
        detail = str(exc).splitlines()[0]
        raise InvalidRequest(f"line {number}: not a valid session ({detail})") from None


@dataclass
class Outcome:
    written: int = 0
    skipped: int = 0
    ids: list[str] = field(default_factory=list)


def _put(target: Store, session: Session, outcome: Outcome, replace: bool) -> None:
    """Write ``session`` unless the target holds it at the same version already."""
    try:
        held = target.load(session.id, last=0).version
    except SessionNotFound:
        held = None
    outcome.ids.append(session.id)
    if held == session.version:
        outcome.skipped += 1
        return
    if held is not None and not replace:
        raise InvalidRequest(
            f"session {session.id!r} is in the target at version {held}, the source has "
            f"{session.version}; pass --replace to overwrite it with the source's"
        )
    _restore(target)(session, replace=held is not None)
    outcome.written += 1


def import_lines(
    target: Store, lines: Iterable[bytes], progress: Progress, *, replace: bool = False
) -> Outcome:
    """Import export lines in order; stops at the first bad line (earlier ones are kept)."""
    outcome = Outcome()
    _restore(target)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        session = parse_line(number, line)
        _put(target, session, outcome, replace)
        progress(session.id)
    return outcome


def copy(source: Store, target: Store, progress: Progress) -> Outcome:
    """Make the target hold every session of the source, as it is in the source."""
    outcome = Outcome()
    _restore(target)
    for session_id in list(all_ids(source)):
        try:
            session = source.load(session_id)
        except SessionNotFound:
            continue  # deleted or expired while copying: nothing to copy
        _put(target, session, outcome, replace=True)
        progress(session_id)
    return outcome


def verify(source: Store, target: Store, ids: Iterable[str]) -> list[str]:
    """Problems found comparing the copies with the source: counts and versions."""
    problems = []
    for session_id in ids:
        try:
            want = source.load(session_id, last=0)
        except SessionNotFound:
            continue
        try:
            got = target.load(session_id, last=0)
        except SessionNotFound:
            problems.append(f"{session_id}: missing from the target")
            continue
        if (got.version, got.history_len) != (want.version, want.history_len):
            problems.append(
                f"{session_id}: version {got.version} / {got.history_len} items in the target, "
                f"{want.version} / {want.history_len} in the source"
            )
    return problems


def migrate(store: Store, progress: Progress) -> tuple[int, int]:
    """Write back every session stored at an older schema version; (upgraded, looked at).

    Opening the store has already applied its own migrations (tables, indexes, columns).
    Each session is read (which upgrades it in memory) and, if it was stored at an older
    version, written back exactly as read: same version, upgraded form.
    """
    restore = _restore(store)
    upgraded = seen = 0
    for session_id in list(all_ids(store)):
        try:
            session = store.load(session_id)
        except SessionNotFound:
            continue
        seen += 1
        if session.stored_schema_version < session.schema_version:
            restore(session, replace=True)
            upgraded += 1
        progress(session_id)
    return upgraded, seen
