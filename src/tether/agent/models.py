"""Models: a deterministic :class:`ScriptedModel` and an OpenAI chat-completions adapter.

A model is any callable ``model(request: ModelRequest) -> ModelReply`` (or an awaitable of one,
for the async runtime); these are two ready-made ones. This module is where they are imported
from; the code is split by concern:

* :mod:`tether.agent._scripted`: :class:`ScriptedModel` and :class:`AsyncScriptedModel`;
* :mod:`tether.agent._openai_wire`: the chat-completions wire format in pure functions,
  :func:`build_payload` and :func:`parse_reply`, shared by the sync and the async adapter so
  the two cannot drift apart;
* :mod:`tether.agent._retries`: which failures are retried and how long to wait;
* :mod:`tether.agent._openai_chat`: :class:`OpenAIChatModel` and
  :class:`AsyncOpenAIChatModel`. httpx (``pip install 'tether[openai]'``) is imported only
  when an adapter is created: ``ScriptedModel`` needs nothing.
"""

from __future__ import annotations

from ._openai_chat import AsyncOpenAIChatModel, OpenAIChatModel
from ._openai_wire import OPTIONS, build_payload, parse_reply
from ._retries import MAX_RETRY_AFTER, backoff_delay, retry_after, retryable_status
from ._scripted import AsyncScriptedModel, Reply, ScriptedModel

__all__ = [
    "MAX_RETRY_AFTER",
    "OPTIONS",
    "AsyncOpenAIChatModel",
    "AsyncScriptedModel",
    "OpenAIChatModel",
    "Reply",
    "ScriptedModel",
    "backoff_delay",
    "build_payload",
    "parse_reply",
    "retry_after",
    "retryable_status",
]
