"""What the model sees of an agent's session: its messages, built from the stored history (no
I/O). Events and framework items are never sent; a call whose answer is not stored yet is left
out. :class:`MessageMemo` keeps a session's list between turns so a held session's turn builds
only the new messages."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from ..models import HistoryItem, SharedHistory

MODEL_ROLES = frozenset({"system", "user", "assistant", "tool"})
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def model_messages(history: Iterable[HistoryItem]) -> list[dict[str, Any]]:
    """The chat messages of a history: events left out, tether's own keys stripped.

    A tool call with no result anywhere in the history (a fork taken while its parent's turn
    waited for a review, say) is left out: chat APIs refuse a call that is never answered, and
    the turn that asked for it is not this one. A turn in progress never calls the model while
    one of its own calls is unanswered.
    """
    # One pass over the history (it is read on every model call, so at 10,000 items this is
    # most of a turn's own cost); the messages with tool calls are settled after it, once
    # every answer is known.
    seen = _Seen(None)
    seen.add(history)
    return seen.settled(seen.messages, seen.answered)


def _message(item: HistoryItem) -> dict[str, Any] | None:
    """The chat message of one history item (None for an event), before any call is dropped."""
    if item.get("role") not in MODEL_ROLES:
        return None
    return {key: item[key] for key in MESSAGE_KEYS if key in item}


class _Seen:
    """The messages of the first ``count`` items of one history list."""

    __slots__ = ("answered", "base", "calling", "count", "last", "messages")

    def __init__(self, base: object) -> None:
        self.base = base
        self.count = 0
        self.last: object = None  # the item at count - 1: still there, or read it all again
        self.messages: list[dict[str, Any]] = []
        self.answered: set[Any] = set()
        self.calling = False

    def add(self, items: Iterable[HistoryItem]) -> None:
        for item in items:
            message = _message(item)
            if message is None:
                continue
            if message["role"] == "tool":
                self.answered.add(message.get("tool_call_id"))
            self.calling = self.calling or bool(message.get("tool_calls"))
            self.messages.append(message)

    def settled(self, messages: list[dict[str, Any]], answered: set[Any]) -> list[dict[str, Any]]:
        """``messages`` (these or copies of them) with the calls ``answered`` holds no answer
        to left out: looked at only if there was a call."""
        return _answered_calls(messages, answered) if self.calling else messages


class MessageMemo:
    """The model's messages of the histories an agent's turns ran on, kept between turns, so
    that a turn on a session the runtime holds builds messages only for what is new.

    A history the runtime hands out shares the cache's list, which only ever grows at its
    end (:class:`~tether.models.SharedHistory`): while a turn's history shares the list a
    memo was built from, that memo's messages are still the first ones. Any other history
    (read whole again, replaced, or one of the caller's own) is read whole, and remembered
    from then on. Each call returns copies of the message dicts, so a model that changes
    what it was sent changes nothing here. At most ``size`` histories are kept.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def messages(
        self, session_id: str, loaded: Sequence[HistoryItem], added: Iterable[HistoryItem]
    ) -> list[dict[str, Any]]:
        """``model_messages(loaded + added)``, from what was kept of ``loaded``'s list."""
        if not isinstance(loaded, SharedHistory) or self.size == 0:
            return model_messages(itertools.chain(loaded, added))
        base, length = loaded.shared()
        with self._lock:
            seen = self._seen.pop(session_id, None)
        if (
            seen is None
            or seen.base is not base
            or seen.count > length
            or (seen.count and base[seen.count - 1] is not seen.last)
        ):
            seen = _Seen(base)
        seen.add(itertools.islice(base, seen.count, length))
        seen.count = length
        seen.last = base[length - 1] if length else None
        with self._lock:
            self._seen[session_id] = seen
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
        tail = _Seen(None)  # what this turn added: not in the cache's list yet
        tail.add(added)
        tail.calling = tail.calling or seen.calling
        messages = [message.copy() for message in seen.messages]
        return tail.settled([*messages, *tail.messages], seen.answered | tail.answered)


def _answered_calls(messages: list[dict[str, Any]], answered: set[Any]) -> list[dict[str, Any]]:
    """``messages`` with each call that has no answer left out (see :func:`model_messages`)."""
    kept = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [c for c in message["tool_calls"] if c.get("id") in answered]
            if not calls:
                del message["tool_calls"]
                if not message.get("content"):
                    continue  # nothing left of it to show
            elif len(calls) != len(message["tool_calls"]):
                message["tool_calls"] = calls
        kept.append(message)
    return kept
