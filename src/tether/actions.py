"""Actions: the changes ``Sessions.execute`` applies to a session, and the draft they edit.

An action changes a :class:`Draft`: header fields directly on ``draft.session`` (``state``,
``metadata``, ``options``, ``status``, ``owner``, ``agent``, ``expires_at``), and history
through ``draft.append(...)`` or ``draft.replace_history(...)``. The runtime turns the draft
into one atomic store write. Write your own by subclassing :class:`Action`::

    class CountTurn(Action):
        name = "count_turn"
        retry_safe = True          # re-applying it to a fresher session is correct

        def apply(self, draft: Draft) -> None:
            draft.session.state["turns"] = draft.session.state.get("turns", 0) + 1

``retry_safe`` says the action may be re-applied after a conflict (``execute(retries=N)``):
true for changes computed from the session as it is then (set a key, append a message), false
for ones that assume the session they first saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from . import _core
from .errors import InvalidRequest
from .models import HistoryItem, Session, SessionStatus

__all__ = [
    "Action",
    "AppendMessages",
    "ChangeOptions",
    "ClearHistory",
    "DeleteState",
    "Draft",
    "Fork",
    "Resume",
    "SetState",
    "Suspend",
    "WriteMetadata",
]


_CHANGEABLE = tuple(sorted(_core.CHANGEABLE_FIELDS))
"""The header fields :meth:`Draft.changes` compares, in the order it reports them."""


class Draft:
    """A session being changed: edit ``session``'s header fields, add history with append()."""

    def __init__(
        self,
        loaded: Session,
        session: Session | None = None,
        *,
        copy: Callable[[Session], Session] | None = None,
    ) -> None:
        self.loaded = loaded
        """The session as the store returned it. Do not change it."""
        if session is None and copy is None:
            raise TypeError("Draft needs the working session, or copy= to make it")
        self._session = session
        # the runtime passes copy=: the working copy is made the first time it is asked for,
        # so an action (and hooks) that never read draft.session cost no copy of the header
        self._copy = copy
        self.appended: list[HistoryItem] = []
        self.replacement: list[HistoryItem] | None = None
        self._history_len = 0 if session is None else len(session.history)

    @property
    def session(self) -> Session:
        """The working copy: change its header fields (its history is read-only here)."""
        session = self._session
        if session is None:
            assert self._copy is not None
            session = self._session = self._copy(self.loaded)
            self._history_len = len(session.history)
        return session

    @session.setter
    def session(self, value: Session) -> None:
        if self._session is None:
            _ = self.session  # the history length is the working copy's, as it was made
        self._session = value

    @property
    def touched(self) -> bool:
        """Whether the working copy was made (asked for): if not, no header field changed."""
        return self._session is not None

    def append(self, *items: Mapping[str, Any]) -> None:
        """Add items at the end of the history (each a dict with a ``role``)."""
        self.appended.extend(dict(item) for item in items)

    def replace_history(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Replace the whole history (compaction, clearing). Items appended so far are dropped."""
        self.replacement = [dict(item) for item in items]
        self.appended = []

    def changes(self) -> dict[str, Any]:
        """The header fields that differ from the loaded session, as ``commit(changes=)``."""
        session = self._session
        if session is None:  # never asked for: nothing in it can differ from the loaded one
            return {}
        if len(session.history) != self._history_len:
            raise InvalidRequest(
                "the history was changed in place; use draft.append(...) or "
                "draft.replace_history(...) so the change can be stored"
            )
        changes: dict[str, Any] = {}
        loaded = self.loaded
        for name in _CHANGEABLE:
            new, old = getattr(session, name), getattr(loaded, name)
            if new != old:
                changes[name] = new
        return changes


class Action(ABC):
    """One change to a session, applied by :meth:`tether.Sessions.execute`."""

    name: ClassVar[str] = "action"
    retry_safe: ClassVar[bool] = False
    """May be re-applied to a fresher session after a conflict (``execute(retries=N)``)."""
    needs_history: ClassVar[bool] = False
    """Needs ``draft.session.history`` loaded (otherwise only the header is read)."""
    _writes_runtime_block: ClassVar[bool] = False
    # tether's own status actions only: any other action changing state["_tether"] is refused

    @abstractmethod
    def apply(self, draft: Draft) -> None:
        """Change ``draft``. Raise to abort: nothing is written."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AppendMessages(Action):
    """Append history items (messages, tool calls, tool results)."""

    name = "append_messages"
    retry_safe = True

    def __init__(self, *items: Mapping[str, Any]) -> None:
        if not items:
            raise InvalidRequest("AppendMessages needs at least one item")
        self.items = [dict(item) for item in items]

    def apply(self, draft: Draft) -> None:
        draft.append(*self.items)


class SetState(Action):
    """Set state keys (others are kept)."""

    name = "set_state"
    retry_safe = True

    def __init__(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self.values = {**(values or {}), **more}

    def apply(self, draft: Draft) -> None:
        draft.session.state.update(_core.json_copy(self.values, what="state"))


class DeleteState(Action):
    """Delete state keys (missing ones are ignored)."""

    name = "delete_state"
    retry_safe = True

    def __init__(self, *keys: str) -> None:
        self.keys = keys

    def apply(self, draft: Draft) -> None:
        for key in self.keys:
            draft.session.state.pop(key, None)


class WriteMetadata(Action):
    """Set metadata keys; with ``replace=True`` the metadata becomes exactly ``values``."""

    name = "write_metadata"
    retry_safe = True

    def __init__(self, values: Mapping[str, Any], *, replace: bool = False) -> None:
        self.values = dict(values)
        self.replace = replace

    def apply(self, draft: Draft) -> None:
        values = _core.json_copy(self.values, what="metadata")
        if self.replace:
            draft.session.metadata = values
        else:
            draft.session.metadata.update(values)


_UNSET: Any = object()


class ChangeOptions(Action):
    """Change run options: the model, the system prompt, the working dir, or any other."""

    name = "change_options"
    retry_safe = True

    def __init__(
        self,
        *,
        model: str | None = _UNSET,
        system_prompt: str | None = _UNSET,
        cwd: str | None = _UNSET,
        **other: Any,
    ) -> None:
        given = {"model": model, "system_prompt": system_prompt, "cwd": cwd}
        self.values = {k: v for k, v in given.items() if v is not _UNSET} | other
        if not self.values:
            raise InvalidRequest("ChangeOptions needs at least one option")

    def apply(self, draft: Draft) -> None:
        for key, value in _core.json_copy(self.values, what="options").items():
            if value is None:
                draft.session.options.pop(key, None)  # None removes an option
            else:
                draft.session.options[key] = value


_PARKED = (SessionStatus.SUSPENDED, SessionStatus.ARCHIVED)


class OpenReviews(InvalidRequest):
    """Archiving a session whose tool calls wait for a human (internal; an InvalidRequest)."""


def _park(draft: Draft, status: SessionStatus) -> None:
    """Set ``status``, remembering the one to go back to (in the runtime's state block)."""
    session = draft.session
    if session.status not in _PARKED:
        block = dict(session.state.get(_core.RUNTIME_KEY) or {})
        block["parked_from"] = session.status.value
        session.state[_core.RUNTIME_KEY] = block
    session.status = status


class Suspend(Action):
    """Set the status to ``suspended``: the session keeps everything but takes no turns."""

    name = "suspend"
    retry_safe = True
    _writes_runtime_block = True

    def apply(self, draft: Draft) -> None:
        if draft.session.status == SessionStatus.ARCHIVED:
            raise InvalidRequest(f"session {draft.session.id!r} is archived; resume it first")
        _park(draft, SessionStatus.SUSPENDED)


class Resume(Action):
    """Bring a suspended or archived session back to the status it had before.

    A session parked by an older tether (which did not remember it) becomes ``new`` if it
    never ran, else ``finished``.
    """

    name = "resume"
    retry_safe = True
    _writes_runtime_block = True

    def apply(self, draft: Draft) -> None:
        session = draft.session
        if session.status not in _PARKED:
            return  # already active: nothing to do
        block = dict(session.state.get(_core.RUNTIME_KEY) or {})
        before = block.pop("parked_from", None)
        if block:
            session.state[_core.RUNTIME_KEY] = block
        else:
            session.state.pop(_core.RUNTIME_KEY, None)
        if before is not None and before not in (s.value for s in _PARKED):
            session.status = SessionStatus(before)
        else:
            empty = session.history_len == 0
            session.status = SessionStatus.NEW if empty else SessionStatus.FINISHED


class Archive(Action):
    """Set the status to ``archived``: kept, but left out of default listings.

    Refused while the session has open reviews (a tool call waiting for a human): archived, they
    would drop out of ``pending_reviews()``. Answer them first.
    """

    name = "archive"
    retry_safe = True
    _writes_runtime_block = True

    def apply(self, draft: Draft) -> None:
        block = draft.session.state.get(_core.RUNTIME_KEY) or {}
        open_ = [r.get("id") for r in block.get("reviews", ()) if r.get("decision") is None]
        if open_:
            raise OpenReviews(
                f"session {draft.session.id!r} waits for a human on {', '.join(map(str, open_))}; "
                "answer them (tether approve / deny) and resume it before archiving it"
            )
        _park(draft, SessionStatus.ARCHIVED)


class ClearHistory(Action):
    """Empty the history of the same session; state, options and metadata are kept."""

    name = "clear_history"
    retry_safe = True

    def apply(self, draft: Draft) -> None:
        draft.replace_history([])


class SetExpiry(Action):
    """Set (or with ``None`` remove) the moment the session expires."""

    name = "set_expiry"
    retry_safe = True

    def __init__(self, expires_at: datetime | None) -> None:
        self.expires_at = expires_at

    def apply(self, draft: Draft) -> None:
        draft.session.expires_at = self.expires_at


class Fork(Action):
    """Fork the session; ``execute`` then returns the new child session (see ``fork()``)."""

    name = "fork"
    retry_safe = True

    def __init__(self, new_id: str | None = None, *, at: int | None = None) -> None:
        self.new_id = new_id
        self.at = at

    def apply(self, draft: Draft) -> None:
        raise InvalidRequest("Fork is carried out by Sessions.execute / Sessions.fork")
