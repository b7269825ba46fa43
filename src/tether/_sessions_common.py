"""The session runtime's rules with no I/O, shared by its async and sync sides: what ``create``
and ``fork`` build, and the checks ``execute`` makes on a draft."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from . import _core
from ._cache import SessionCache
from .actions import Action, Draft
from .errors import ConflictingSessionIds, InvalidRequest, ReservedStateKey
from .models import HistoryItem, Session, SessionStatus, StoredItem

log = logging.getLogger("tether.sessions")

SessionFactory = Callable[..., Session]
"""How ``Sessions.create`` builds a new session: called with the keyword arguments ``agent``,
``owner``, ``metadata``, ``state``, ``options``, ``history``, ``expires_at`` (and ``id`` when
one was chosen), it returns the :class:`~tether.Session` to store. The default is
:class:`~tether.Session` itself."""

ACTIVE = frozenset(s.value for s in SessionStatus) - {SessionStatus.ARCHIVED.value}
"""Every status but ``archived``: what a listing shows unless asked for archived sessions."""


def new_session(
    factory: SessionFactory,
    agent: str | None,
    *,
    session_id: str | None,
    id: str | None,
    owner: str | None,
    metadata: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    history: Iterable[Mapping[str, Any]],
    expires_at: datetime | None,
) -> Session:
    """The session ``create`` stores, built by ``factory`` from ``create``'s arguments."""
    if id is not None and session_id is not None and id != session_id:
        raise ConflictingSessionIds(id, session_id)
    chosen = session_id if session_id is not None else id
    fields: dict[str, Any] = {
        "agent": agent,
        "owner": owner,
        "metadata": dict(metadata or {}),
        "state": dict(state or {}),
        "options": dict(options or {}),
        "history": [dict(item) for item in history],
        "expires_at": expires_at,
    }
    if chosen is not None:
        fields["id"] = chosen
    made = factory(**fields)
    if not isinstance(made, Session):
        raise InvalidRequest(
            f"the session factory returned a {type(made).__name__}, not a tether.Session"
        )
    return made


def fork_child(
    parent: Session, at: int | None, new_id: str | None
) -> tuple[Session, list[StoredItem], int]:
    """The child ``fork`` creates, the parent's exact items it starts with, and the fork point.

    The child copies the parent's owner, agent, metadata, state and options, but not the agent
    runtime's ``state["_tether"]`` (its reviews could never be answered there)."""
    point = parent.last_seq if at is None else at
    _core.items_kept(_core.header_to_doc(parent), point, "fork")  # raises outside the history
    # The exact items (their keys, their own seq / timestamp fields), not history's views
    exact = [item for item in parent.items if item.seq <= point]
    kept = [dict(item.item) for item in exact]
    state = _core.json_copy(parent.state, what="state")
    state.pop(_core.RUNTIME_KEY, None)
    fields: dict[str, Any] = {
        "owner": parent.owner,
        "agent": parent.agent,
        "metadata": _core.json_copy(parent.metadata, what="metadata"),
        "state": state,
        "options": _core.json_copy(parent.options, what="options"),
        "parent_id": parent.id,
        "fork_seq": point,
        "status": SessionStatus.FINISHED if kept else SessionStatus.NEW,
        "history": kept,
    }
    if new_id is not None:
        fields["id"] = new_id
    return Session(**fields), exact, point


def hooks_left_history(session: Session, given: list[HistoryItem]) -> bool:
    """Whether a fork's child still holds exactly the history the fork made (the same item
    objects): only then may the store copy the parent's prefix itself."""
    return (
        session.parent_id is not None
        and session.fork_seq is not None
        and len(session.history) == len(given)
        and all(a is b for a, b in zip(session.history, given, strict=True))
    )


def renumbered(exact: list[StoredItem]) -> list[StoredItem]:
    """A fork's prefix as the child stores it: the parent's keys, commit timestamps and item
    objects, numbered from seq 1."""
    return [
        StoredItem(seq=seq, timestamp=item.timestamp, key=item.key, item=item.item)
        for seq, item in enumerate(exact, 1)
    ]


def check_runtime_block(draft: Draft, action: Action) -> None:
    """Refuse an action or hook that set, changed or deleted ``state["_tether"]``.

    Only tether's own actions (archive, suspend, resume: they remember the status to go back
    to) write it; the agent runtime writes it through its own commits.
    """
    if not draft.touched:  # the working copy was never made: nothing in it changed
        return
    key = _core.RUNTIME_KEY
    before, after = draft.loaded.state.get(key), draft.session.state.get(key)
    if before != after and not action._writes_runtime_block:
        raise ReservedStateKey(key, f"{action.name} (or a hook) cannot set, change or delete it")


def with_items(session: Session, items: list[StoredItem]) -> Session:
    """``session`` holding ``items`` in both views (``items`` exact, ``history`` merged)."""
    session.history = [
        {**item.item, "seq": item.seq, "timestamp": item.timestamp} for item in items
    ]
    session._items = items
    return session


def saved_from_stamp(
    cache: SessionCache,
    loaded: Session,
    changes: Mapping[str, Any],
    appended: Sequence[HistoryItem],
    stamp: _core.CommitStamp,
) -> Session | None:
    """The session ``execute``'s commit at ``loaded.version`` saved, built from the ``stamp``
    the store reported instead of read back, and put in ``cache``; None when it cannot be
    (the store reported the version alone, or ``loaded`` is not the whole session the cache
    holds): the caller reads it back.

    ``changes`` and ``appended`` are what was committed: normalised again here (copies the
    saved session owns), inside ``runtime_writes()`` as the commit ran, so the header is the
    one the store's write made by the same rules (``_core.stamped_fields``).
    """
    if not stamp.reported or cache.get(loaded.id) is not loaded:
        return None
    if not changes:  # nothing of state to keep or set: the rules read no runtime_writes()
        parts = _core.stamped_fields(loaded, {}, appended, stamp)
    else:
        with _core.runtime_writes():  # the commit checked the changes: copied, not walked again
            normalized = _core.normalize_changes(changes, committed=True)
            parts = _core.stamped_fields(loaded, normalized, appended, stamp)
    if parts is None:
        return None
    return cache.extend(loaded, *parts)  # and put in the cache


def check_retries(action: Action, retries: object) -> None:
    """``execute``'s ``retries``: an int >= 0, and 0 for an action that is not retry_safe."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidRequest(f"retries must be an int >= 0, not {retries!r}")
    if retries and not action.retry_safe:
        raise InvalidRequest(
            f"{type(action).__name__} is not retry_safe: re-applying it after a conflict "
            "could be wrong; handle ConflictError yourself, or mark the action retry_safe"
        )


def warn_skipped(held: list[str], newer: list[str]) -> None:
    """Name the sessions ``clear_all`` left, on the ``tether.sessions`` logger."""
    if held:
        log.warning(
            "clear_all() skipped %d session(s) a runner holds: %s; wait for the runners, or "
            "pass force=True to delete them anyway",
            len(held),
            ", ".join(held),
        )
    if newer:
        log.warning(
            "clear_all() skipped %d session(s) stored by a newer tether: %s",
            len(newer),
            ", ".join(newer),
        )
