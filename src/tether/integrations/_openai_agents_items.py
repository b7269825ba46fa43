"""The items side of :mod:`tether.integrations.openai_agents`: what its session read last
(:class:`_Seen`), the SDK's items decoded from a stored session, and the review record an
interrupted run's approval becomes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..agent import stored
from ..models import KeyedItem, Session, StoredItem

if TYPE_CHECKING:
    from agents.items import ToolApprovalItem, TResponseInputItem

FRAMEWORK = "openai-agents"
"""The ``metadata["framework"]`` of sessions this adapter creates, and its key in the runtime
block of ``state`` (where the saved ``RunState`` lives)."""

_EVENT = stored.EVENT_ROLE


class _Seen:
    """The SDK's items of the whole history as this object last read them, and the header
    they were read at: what lets the next ``get_items`` read only what came after them.

    ``version`` is the session's version as far as this object knows it: the version it read
    at, or the version its own last append made; ``pending`` says that its own appends since
    the read are not read back yet (a turn of ``Runner.run`` appends twice before it reads)."""

    __slots__ = (
        "created_at",
        "first_seq",
        "history_len",
        "items",
        "last_seq",
        "pending",
        "version",
    )

    def __init__(self, session: Session, items: list[dict[str, Any]]) -> None:
        self.items = items
        self._at(session)
        self.version = session.version
        self.pending = False

    def _at(self, session: Session) -> None:
        self.created_at = session.created_at
        self.first_seq, self.last_seq = session.first_seq, session.last_seq
        self.history_len = session.history_len

    def wrote(self, version: int) -> bool:
        """This object appended, making ``version``: True if every write since the read was
        one of its own appends (versions follow each other with no gap, so nobody else wrote
        in between; the next read then takes what came after the read as only those)."""
        if version != self.version + 1:
            return False
        self.version = version
        self.pending = True  # the appended items are not read yet: see extend()
        return True

    def extend(self, fresh: Session) -> bool:
        """Join ``fresh`` (loaded with ``after=last_seq``); False if it cannot be trusted to
        be all that changed: anyone else wrote (a ``replace_tail`` reuses seqs), or the
        session was deleted and created again."""
        if fresh.created_at != self.created_at or fresh.version != self.version:
            return False
        added = len(fresh.history)
        if not self.pending:  # no write of ours since the read: nothing may have changed
            return added == 0
        if (
            fresh.first_seq != self.first_seq
            or fresh.last_seq - self.last_seq != added
            or fresh.history_len != self.history_len + added
        ):
            return False
        self.items.extend(_sdk_items(fresh))
        self._at(fresh)
        self.pending = False
        return True

    def tail(self, wanted: int | None) -> list[dict[str, Any]]:
        return self.items[-wanted:] if wanted is not None else list(self.items)


def _sdk_items(session: Session) -> list[dict[str, Any]]:
    """The SDK's items of a session a store just returned: each stored item exactly as given,
    tether's own events left out.

    The first read of a long history is mostly the store's decoding, so this is one pass over
    the rows the store decoded, with nothing built per item (no :class:`StoredItem`) and
    nothing the store already checked checked again: a row is only looked at to see whether
    it is an older tether's (schema < 3, the item merged with ``seq`` / ``timestamp``: then the
    items are read the slow, general way) and whether it is one of tether's events."""
    records = session._records
    if records is not None:
        items: list[dict[str, Any]] = []
        keep = items.append
        for record in records:
            if "role" in record:  # an older tether's row (see models._is_legacy)
                break
            item = record.get("item")
            if type(item) is not dict:
                break
            if item.get("role") != _EVENT:
                keep(item)
        else:
            return items
    return [e.item for e in session._items or session.items if e.item.get("role") != _EVENT]


def _is_event(entry: StoredItem) -> bool:
    """tether's own history events (``role: "tether"``, e.g. a review answered): kept in the
    history for the audit trail, never given to the SDK (nor its model)."""
    return entry.item.get("role") == stored.EVENT_ROLE


def _as_new(entry: StoredItem) -> Mapping[str, Any] | KeyedItem:
    return KeyedItem(entry.key, entry.item) if entry.key is not None else entry.item


async def _nothing_replaced(start: int, output: list[TResponseInputItem]) -> bool:
    return False


def _review(session_id: str, item: ToolApprovalItem, now: int) -> dict[str, Any]:
    """A tether review for one pending approval (``tether reviews`` shows the call)."""
    raw = item.arguments
    try:
        arguments = json.loads(raw) if raw else {}
    except ValueError:
        arguments = {"arguments": raw}
    if not isinstance(arguments, dict):
        arguments = {"arguments": arguments}
    return {
        "id": stored.review_id(session_id),
        "session_id": session_id,
        "framework": FRAMEWORK,
        "call_id": item.call_id,
        "tool": item.qualified_name or item.name or "?",
        "arguments": arguments,
        "reason": f"the tool needs approval (agent {item.agent.name!r})",
        "created_at": now,
        "expires_at": None,
        "decision": None,
        "note": None,
        "by": None,
        "answered_at": None,
    }
