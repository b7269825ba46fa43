"""How an agent keeps its turns in a session: the public view for code that reads sessions.

The CLI, the web inspector and the framework adapters show and change sessions an agent wrote;
they read its layout through this module, never through the agent's private modules, so the
layout can change in one place (:mod:`tether.agent._turn`, the no-I/O rules of a turn, where
each of these is defined).

* ``state[RESERVED]`` is the agent's runtime part of a session's state: the snapshot of a turn
  in progress and the open reviews. :func:`runtime` reads it (a copy), :func:`state_with` puts
  a changed one back.
* History items with ``role == EVENT_ROLE`` are the agent's events (turn started, review asked,
  ...), never sent to a model.
* :func:`user_item` is a user's message as the agent stores it (what a queued turn appends).
* A review id carries its session id: :func:`review_id` makes one, :func:`split_review_id`
  finds the session again.
* :func:`framework_entry` and :func:`item_text` turn a stored item into a timeline entry (a
  function call as a call, a message as its text), for anything that shows history;
  :func:`render` is the plain-text view of a :class:`~tether.agent.Replay`.
"""

from __future__ import annotations

from ._turn import (
    EVENT_ROLE,
    RESERVED,
    framework_entry,
    item_text,
    render,
    review_id,
    runtime,
    split_review_id,
    state_with,
    user_item,
)

__all__ = [
    "EVENT_ROLE",
    "RESERVED",
    "framework_entry",
    "item_text",
    "render",
    "review_id",
    "runtime",
    "split_review_id",
    "state_with",
    "user_item",
]
