"""The scripted models: :class:`ScriptedModel` and :class:`AsyncScriptedModel`.

Deterministic replies for tests and demos (a list, or a function of the request); they need no
extra package. Imported from :mod:`tether.agent.models` (or :mod:`tether.agent`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeAlias

from ..errors import ModelError
from .types import ModelReply, ModelRequest, ToolCall

__all__ = ["AsyncScriptedModel", "Reply", "ScriptedModel"]

Reply: TypeAlias = "str | ModelReply | ToolCall | Sequence[ToolCall] | BaseException"
"""What a script may hold: text, a reply, tool call(s), or an exception to raise there."""

_CALL_ID = re.compile(r"^call_(\d+)$")


class _Script:
    """The shared core of the scripted models: the replies, the recorded requests, the ids."""

    def __init__(self, replies: Iterable[Reply] | Callable[[ModelRequest], Any]) -> None:
        self.requests: list[ModelRequest] = []
        """Every request received, in order (for assertions)."""
        self._lock = threading.Lock()
        self._issued = 0  # the highest call_N id this instance gave out
        self._fn: Callable[[ModelRequest], Any] | None = None
        self._replies: list[Reply] = []
        self._next = 0
        if isinstance(replies, (str, ModelReply, ToolCall, BaseException)):
            self._replies = [replies]  # a lone reply, not a sequence of characters
        elif callable(replies):
            self._fn = replies
        else:
            self._replies = list(replies)
            for reply in self._replies:
                _check_reply(reply)

    @staticmethod
    def reply(text: str | None = None, *calls: ToolCall) -> ModelReply:
        """A reply with ``text`` and, optionally, tool calls."""
        return ModelReply(text=text, tool_calls=list(calls))

    @staticmethod
    def call(name: str, id: str | None = None, **arguments: Any) -> ToolCall:
        """A tool call; without an ``id`` the model gives it the next ``call_N`` when it replies.

        (For a tool that itself takes an argument named ``id`` or ``name``, build the
        ``ToolCall(id, name, arguments)`` directly.)
        """
        return ToolCall(id=id or "", name=name, arguments=arguments)

    @property
    def remaining(self) -> int | None:
        """Replies not yet given (``None`` when the script is a function)."""
        return None if self._fn is not None else len(self._replies) - self._next

    def _take(self, request: ModelRequest) -> Any:
        with self._lock:
            self.requests.append(request)
            if self._fn is None:
                return self._pop()
        # a function runs outside the lock: it may take its time, or call the model itself
        return self._fn(request)

    def _pop(self) -> Reply:
        if self._next >= len(self._replies):
            raise ModelError(
                f"{type(self).__name__} has no reply left: it was given {len(self._replies)} "
                f"replies and this is call {len(self.requests)}. Add more replies (or pass a "
                "function of the request) for the turns this runs."
            )
        self._next += 1
        return self._replies[self._next - 1]

    def _finish(self, request: ModelRequest, raw: Any) -> ModelReply:
        _check_reply(raw)
        if isinstance(raw, BaseException):
            raise raw
        if isinstance(raw, str):
            return ModelReply(text=raw)
        reply = raw if isinstance(raw, ModelReply) else ModelReply(tool_calls=_calls(raw))
        if all(call.id for call in reply.tool_calls):
            return reply
        with self._lock:
            # Ids continue after the highest call_N in the history too, so a new instance (a
            # resumed turn in another process) never reuses an id the session already holds.
            self._issued = max(self._issued, _highest_call_id(request.messages))
            calls = []
            for call in reply.tool_calls:
                if not call.id:
                    self._issued += 1
                    call = replace(call, id=f"call_{self._issued}")  # noqa: PLW2901
                calls.append(call)
        return replace(reply, tool_calls=calls)


class ScriptedModel(_Script):
    """A deterministic model for tests and demos: replies in order, or a function of the request.

    ``ScriptedModel(["hi", ScriptedModel.call("lookup", order="A1"), "done"])`` answers the
    first call with the text ``"hi"``, the second with a call of the ``lookup`` tool, the third
    with ``"done"``, and raises :class:`~tether.errors.ModelError` after that. A script item may
    be a ``str``, a :class:`ModelReply`, a :class:`ToolCall` or a list of them (a reply calling
    tools), or an exception instance (raised at that point, to test error paths).
    ``ScriptedModel(fn)`` calls ``fn(request)`` for each reply instead (same forms).

    Tool calls without an id get ``call_1``, ``call_2``, ... in order, continuing after the
    highest ``call_N`` already in the request's messages. It is a plain sync callable, which
    both runtimes accept (the async one awaits a model's result only when it is awaitable); use
    :class:`AsyncScriptedModel` to exercise an awaitable model or an ``async`` function.
    """

    def __call__(self, request: ModelRequest) -> ModelReply:
        return self._finish(request, self._take(request))


class AsyncScriptedModel(_Script):
    """:class:`ScriptedModel` as a coroutine: ``await model(request)``. ``fn`` may be async."""

    async def __call__(self, request: ModelRequest) -> ModelReply:
        raw = self._take(request)
        if isinstance(raw, Awaitable):
            raw = await raw
        return self._finish(request, raw)


def _check_reply(reply: object) -> None:
    if isinstance(reply, (str, ModelReply, ToolCall, BaseException)):
        return
    if isinstance(reply, Sequence) and reply and all(isinstance(c, ToolCall) for c in reply):
        return
    raise TypeError(
        f"a scripted reply must be a str, a ModelReply, a ToolCall, a non-empty list of "
        f"ToolCalls or an exception, not {reply!r}"
    )


def _calls(raw: ToolCall | Sequence[ToolCall]) -> list[ToolCall]:
    return [raw] if isinstance(raw, ToolCall) else list(raw)


def _highest_call_id(messages: Iterable[Mapping[str, Any]]) -> int:
    ids = [m.get("tool_call_id") for m in messages]
    ids += [c.get("id") for m in messages for c in m.get("tool_calls") or () if isinstance(c, dict)]
    found = [
        int(match.group(1)) for i in ids if isinstance(i, str) and (match := _CALL_ID.match(i))
    ]
    return max(found, default=0)
