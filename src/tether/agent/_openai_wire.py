"""The OpenAI chat-completions wire format: pure functions, no I/O.

:func:`build_payload` writes a request body, :func:`parse_reply` reads a response body and
:func:`http_error` turns a failed response into a :class:`~tether.errors.ModelError` with a
hint. The sync and the async adapter (:mod:`tether.agent._openai_chat`) share them, so the
two cannot drift apart. Imported from :mod:`tether.agent.models`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _json
from .._urls import redact
from ..errors import ModelError
from .types import ModelReply, ModelRequest, ToolCall

if TYPE_CHECKING:
    import httpx

__all__ = ["OPTIONS", "RESERVED", "build_payload", "excerpt", "http_error", "parse_reply"]

# fmt: off
OPTIONS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "response_format", "reasoning_effort",
    "user", "tool_choice", "parallel_tool_calls",
)
# fmt: on
"""Session options passed through to the request body; any other option is not sent."""
_TOOL_OPTIONS = ("tool_choice", "parallel_tool_calls")  # refused by the API without tools
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
RESERVED = ("model", "messages", "tools", "stream")
"""Body fields the adapter writes itself, which ``extra=`` may not set."""


def build_payload(
    request: ModelRequest, default_model: str | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The chat-completions request body for ``request`` (pure: no I/O)."""
    model = request.options.get("model") or default_model
    if not model:
        raise ModelError(
            "no model name: set the session's 'model' option (ChangeOptions(model=...)) or "
            "pass model= to the adapter, e.g. OpenAIChatModel('gpt-4o-mini')"
        )
    messages = [_message(m) for m in request.messages]
    system = request.options.get("system_prompt")
    if system and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system})
    body: dict[str, Any] = {**(extra or {}), "model": model, "messages": messages}
    if request.tools:
        body["tools"] = [spec.to_openai() for spec in request.tools]
    for key in OPTIONS:
        if key in request.options and (request.tools or key not in _TOOL_OPTIONS):
            body[key] = request.options[key]
    return body


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: message[key] for key in _MESSAGE_KEYS if key in message}
    content = out.get("content")
    if content is not None and not isinstance(content, (str, list)):
        out["content"] = _json.dumps(content, what="message content").decode()
    if out.get("tool_calls"):
        out["tool_calls"] = [_wire_call(call) for call in out["tool_calls"]]
    elif "tool_calls" in out:
        del out["tool_calls"]  # the API refuses an empty list
    return out


def _wire_call(call: Any) -> Any:
    # the API wants arguments as a JSON string; a history may hold them decoded
    function = call.get("function") if isinstance(call, Mapping) else None
    if isinstance(function, Mapping) and not isinstance(function.get("arguments"), str):
        arguments = _json.dumps(function.get("arguments") or {}, what="tool arguments").decode()
        return {**call, "function": {**function, "arguments": arguments}}
    return call


def parse_reply(data: Any) -> ModelReply:
    """The :class:`ModelReply` of a chat-completions response body (pure: no I/O)."""
    try:
        message = data["choices"][0]["message"]
        if not isinstance(message, Mapping):
            raise TypeError(type(message).__name__)
    except (KeyError, IndexError, TypeError):
        raise ModelError(
            f"unexpected reply from the model server (no choices[0].message): "
            f"{excerpt(data)}. Check that base_url points at a chat-completions API."
        ) from None
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping)) or None
    calls = [_parse_call(raw) for raw in message.get("tool_calls") or ()]
    usage = data.get("usage") if isinstance(data, Mapping) else None
    counts = None
    if isinstance(usage, Mapping):
        keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        counts = {k: usage[k] for k in keys if isinstance(usage.get(k), int)} or None
    return ModelReply(
        text=content if isinstance(content, str) else None, tool_calls=calls, usage=counts
    )


def _parse_call(raw: Any) -> ToolCall:
    function = raw.get("function") if isinstance(raw, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(name, str):
        raise ModelError(f"the model sent a malformed tool call: {excerpt(raw)}")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = _json.loads(arguments) if arguments.strip() else {}
        except _json.JSONDecodeError:
            arguments = None
    if not isinstance(arguments, Mapping):
        raise ModelError(
            f"the model called tool {name!r} with arguments that are not a JSON object: "
            f"{excerpt(function.get('arguments'))}. Retry the turn; if it persists, use a model "
            "that supports tool calling."
        )
    # some compatible servers leave the id out; the turn needs one to match the result
    call_id = raw.get("id") or f"call_{uuid.uuid4().hex[:24]}"
    return ToolCall(id=str(call_id), name=name, arguments=dict(arguments))


def excerpt(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_HINTS = {
    400: "the server refused the request: check the model name and the options sent",
    401: "check the API key (api_key= or the OPENAI_API_KEY environment variable)",
    403: "the API key is not allowed to use this model or endpoint: check its permissions",
    404: "check base_url (most servers end in /v1) and the model name",
    429: "rate limited or out of quota: retry later, or check the account's limits",
}


def http_error(response: httpx.Response) -> ModelError:
    status = response.status_code
    detail = response.text
    try:  # the usual {"error": {"message": ...}} body: show just the message
        error = _json.loads(response.content).get("error")
        detail = error.get("message", detail) if isinstance(error, dict) else str(error or detail)
    except (_json.JSONDecodeError, AttributeError):
        pass
    if status in _HINTS:
        hint = _HINTS[status]
    elif status >= 500:
        hint = "the model server failed: retry later"
    elif status < 400:  # httpx does not follow redirects, and a redirected POST is suspect
        hint = f"the server redirects to {response.headers.get('location')}: fix base_url"
    else:
        hint = "check the request"
    return ModelError(
        f"the model server answered HTTP {status} for {redact(str(response.request.url))}: "
        f"{excerpt(detail)}. Hint: {hint}.",
        status=status,
        kind="failed",
    )
