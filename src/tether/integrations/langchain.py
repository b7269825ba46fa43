"""LangChain chat histories in tether: :class:`TetherChatMessageHistory`.

``pip install 'tether[langchain]'``. A ``BaseChatMessageHistory`` (what
``RunnableWithMessageHistory`` and older LangChain apps take; LangChain now deprecates it in
favour of LangGraph's persistence, but many apps still run on it)::

    history = TetherChatMessageHistory(tether.open_store("sqlite:///app.db"), "thread-42")

One tether session per history: its id is ``tether.ids.encode_external_id(session_id)``, its
``agent`` :data:`AGENT`, each message an item stored as ``message_to_dict`` gives it. Every
``add_messages`` is one tether write (a blind append: concurrent writers never lose each
other's messages, and never retry); ``clear`` empties the history in one versioned write. The
async methods are LangChain's defaults: the sync ones, in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConflictError, SessionExists, SessionNotFound
from ..ids import encode_external_id, external_id_metadata
from ..models import Session
from ..stores.base import Store
from ._extras import requires_extra

with requires_extra("langchain", "langchain-core", "langchain"):
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

__all__ = ["AGENT", "TetherChatMessageHistory"]

AGENT = "langchain"
"""The ``agent`` of the sessions this history creates."""


class TetherChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat message history kept in a tether session.

    ``store`` is a sync tether store (``tether.open_store(url)``), not closed by this object;
    ``session_id`` is LangChain's id for the conversation (any string); ``owner`` is set on
    the session when this history creates it, for ``tether ls --owner``.
    """

    def __init__(self, store: Store, session_id: str, *, owner: str | None = None) -> None:
        self.store = store
        self.session_id = session_id
        self.owner = owner
        self.tether_id = encode_external_id(session_id)
        """The tether session's id (what ``tether show`` takes)."""

    # The base declares a plain attribute; a property that reads the store is what LangChain's
    # own guide for persistent histories shows.
    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message, oldest first (none if the session does not exist yet)."""
        try:
            session = self.store.load(self.tether_id)
        except SessionNotFound:
            return []
        return messages_from_dict([stored.item for stored in session.items])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in one tether write (creating the session on the first)."""
        items: list[dict[str, Any]] = [message_to_dict(message) for message in messages]
        if not items:
            return
        try:
            self.store.append(self.tether_id, items)
            return
        except SessionNotFound:
            pass
        try:
            self.store.create(
                Session(
                    id=self.tether_id,
                    agent=AGENT,
                    owner=self.owner,
                    metadata=external_id_metadata(self.session_id),
                    history=items,
                )
            )
        except SessionExists:  # another writer created it first: append after its messages
            self.store.append(self.tether_id, items)

    def clear(self) -> None:
        """Remove every message in one versioned write (the session stays, empty)."""
        while True:
            try:
                version = self.store.load(self.tether_id, last=0).version
                self.store.replace_history(self.tether_id, version, [])
                return
            except SessionNotFound:
                return
            except ConflictError:
                continue  # a message was added meanwhile: clear that too
