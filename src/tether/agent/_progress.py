"""The agent's plain parts, written once for both sides: the turn in progress as the agent
holds it between commits, and the checks of its arguments (the checkpoint policy, what the
model is told when a tool raises, who answered a review).

:mod:`tether.agent.agent_async` (and the sync side generated from it) drives the turn; the
rules of what a turn stores are in :mod:`tether.agent._turn`.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequest
from ..models import HistoryItem, Lease, Session
from . import _turn
from .types import ToolCall

__all__ = ["Turn", "ToolErrorMessage", "checked_checkpoint", "os_user", "tool_error_message"]

ToolErrorMessage = Callable[[ToolCall, Exception], object]
"""``tool_errors=`` as a function: what the model is told when a tool raised."""


def generic_tool_error(call: ToolCall, exc: Exception) -> str:
    """The default: the model learns that the tool failed, not the exception's text."""
    return f"error: the tool {call.name} failed; it did not return a result"


def detailed_tool_error(call: ToolCall, exc: Exception) -> str:
    """``tool_errors="detailed"``: the exception's type and message go to the model."""
    return f"error: {call.name} raised {type(exc).__name__}: {exc}"


_TOOL_ERRORS: dict[str, ToolErrorMessage] = {
    "generic": generic_tool_error,
    "detailed": detailed_tool_error,
}


def tool_error_message(tool_errors: str | ToolErrorMessage) -> ToolErrorMessage:
    """The function ``tool_errors=`` names (a name from the table, or a function itself)."""
    if isinstance(tool_errors, str):
        if tool_errors not in _TOOL_ERRORS:
            raise InvalidRequest(
                f"tool_errors={tool_errors!r}: use 'generic', 'detailed' or a function "
                "(call, exc) -> what the model is told"
            )
        return _TOOL_ERRORS[tool_errors]
    if not callable(tool_errors):
        raise InvalidRequest("tool_errors must be 'generic', 'detailed' or a function")
    return tool_errors


def checked_checkpoint(policy: str) -> str:
    if policy not in _turn.CHECKPOINTS:
        raise InvalidRequest(f"checkpoint {policy!r} is not one of {sorted(_turn.CHECKPOINTS)}")
    return policy


def os_user() -> str:
    """Who answered a review when ``by=`` is not given."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without one): still say something true
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class Turn:
    """One turn in progress: the lease, the version it writes from, what it has added.

    ``cached``: the session came from the runtime's cache, unread since the claim; the turn's
    first commit, at its version, is what checks that it is current (see ``AsyncAgent.run``).
    """

    def __init__(
        self, session: Session, lease: Lease, snapshot: dict[str, Any], *, cached: bool = False
    ) -> None:
        self.session_id = session.id
        self.lease = lease
        self.cached = cached
        self.version = session.version
        # the history as loaded (a view the runtime shares, never copied) and, apart, what
        # this turn committed: the model sees the two in a row
        self.loaded = session.history
        self.last_seq = session.last_seq
        self.state = dict(session.state)
        # the turn holds the lease, so nobody else changes the options while it runs
        self.options = dict(session.options)
        # a session the runtime held (``cached``) is a copy of the cache's, made for this turn
        # and checked as JSON when it was stored: its runtime part is copied without the check
        self.rt = _turn.runtime(session, trusted=cached)
        self.status = session.status.value
        self.snapshot = snapshot
        self.added: list[HistoryItem] = []
        self.usage: dict[str, int] = {}

    def open_reviews(self) -> list[dict[str, Any]]:
        return [r for r in self.rt.get("reviews", []) if r.get("decision") is None]

    def review_for(self, call_id: str) -> dict[str, Any] | None:
        """The answered review of the tool call ``call_id``, if there is one."""
        answered: list[dict[str, Any]] = [
            r
            for r in self.rt.get("reviews", [])
            if r["call"]["id"] == call_id and r.get("decision") is not None
        ]
        return answered[0] if answered else None
