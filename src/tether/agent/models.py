"""Models: a deterministic :class:`ScriptedModel` and an OpenAI chat-completions adapter.

A model is any callable ``model(request: ModelRequest) -> ModelReply`` (or an awaitable of one,
for the async runtime); these are two ready-made ones. The adapter's wire format lives in two
pure functions, :func:`build_payload` and :func:`parse_reply`, shared by the sync and the async
class, so the two cannot drift apart. httpx (``pip install 'tether[openai]'``) is imported only
when an adapter is created: ``ScriptedModel`` needs nothing.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import _json
from .._urls import redact
from ..errors import ConfigurationError, ModelError
from .types import ModelReply, ModelRequest, ToolCall

if TYPE_CHECKING:
    import httpx

__all__ = [
    "OPTIONS",
    "AsyncOpenAIChatModel",
    "AsyncScriptedModel",
    "OpenAIChatModel",
    "ScriptedModel",
    "build_payload",
    "parse_reply",
]

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


# --- the OpenAI chat-completions wire format -----------------------------------------------------

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
_RESERVED = ("model", "messages", "tools", "stream")


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
            f"{_excerpt(data)}. Check that base_url points at a chat-completions API."
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
        raise ModelError(f"the model sent a malformed tool call: {_excerpt(raw)}")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = _json.loads(arguments) if arguments.strip() else {}
        except _json.JSONDecodeError:
            arguments = None
    if not isinstance(arguments, Mapping):
        raise ModelError(
            f"the model called tool {name!r} with arguments that are not a JSON object: "
            f"{_excerpt(function.get('arguments'))}. Retry the turn; if it persists, use a model "
            "that supports tool calling."
        )
    # some compatible servers leave the id out; the turn needs one to match the result
    call_id = raw.get("id") or f"call_{uuid.uuid4().hex[:24]}"
    return ToolCall(id=str(call_id), name=name, arguments=dict(arguments))


def _excerpt(value: Any, limit: int = 300) -> str:
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


# --- retries --------------------------------------------------------------------------------------

_RETRY_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the backoff is used."""


def retryable_status(status: int) -> bool:
    """Transient HTTP failures, as the OpenAI SDK counts them: timeout, conflict, 429, 5xx."""
    return status in _RETRY_STATUSES or status >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` in seconds or
    as an HTTP date), or None if it said nothing usable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            seconds = float(lowered["retry-after-ms"]) / 1000
        elif "retry-after" in lowered:
            text = lowered["retry-after"].strip()
            try:
                seconds = float(text)
            except ValueError:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - time.time()
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) and seconds <= MAX_RETRY_AFTER else None


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with jitter: ``initial * 2**attempt`` capped, less up to 25%."""
    return float(min(cap, initial * 2**attempt) * (1 - 0.25 * random.random()))


def _http_error(response: httpx.Response) -> ModelError:
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
        f"{_excerpt(detail)}. Hint: {hint}.",
        status=status,
        kind="failed",
    )


# --- the adapters --------------------------------------------------------------------------------


def _httpx() -> ModuleType:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ConfigurationError(
            "the OpenAI adapter needs httpx: pip install 'tether[openai]'"
        ) from exc
    return httpx


class _OpenAIBase:
    def __init__(
        self,
        model: str | None,
        base_url: str,
        api_key: str | None,
        timeout: float,
        extra: Mapping[str, Any] | None,
        *,
        max_retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        clash = sorted(set(extra or ()) & set(_RESERVED))
        if clash:
            raise ConfigurationError(
                f"extra= cannot set {', '.join(clash)}: the adapter sends those itself (pass "
                "model= for the model; streaming is not supported)"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, not {max_retries!r}")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, not {value!r}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact(self.base_url)
        """``base_url`` with any password or key in it hidden: what error messages show."""
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.extra = dict(extra or {})
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:  # no key, no header: local servers usually need none
            self._headers["Authorization"] = f"Bearer {key}"
        self._httpx = _httpx()

    def _request(self, request: ModelRequest) -> tuple[str, bytes, dict[str, str]]:
        body = build_payload(request, self.model, self.extra)
        content = _json.dumps(body, what="the model request")
        return f"{self.base_url}/chat/completions", content, self._headers

    def _reply(self, response: httpx.Response) -> ModelReply:
        if not response.is_success:
            raise _http_error(response)
        try:
            data = _json.loads(response.content)
        except _json.JSONDecodeError:
            raise ModelError(
                f"the model server at {self.shown_url} answered HTTP {response.status_code} with "
                f"a body that is not JSON: {_excerpt(response.text)}. Check that base_url points "
                "at a chat-completions API.",
                status=response.status_code,
                kind="got an unreadable reply",
            ) from None
        try:
            return parse_reply(data)
        except ModelError as exc:
            exc.kind = exc.kind or "got an unreadable reply"
            raise

    def _failed(self, exc: Exception) -> ModelError:
        if isinstance(exc, self._httpx.TimeoutException):
            return ModelError(
                f"the model server at {self.shown_url} did not answer within {self.timeout}s "
                f"({type(exc).__name__}): retry, or raise timeout= for slow models",
                kind="timed out",
            )
        return ModelError(
            f"cannot reach the model server at {self.shown_url} ({type(exc).__name__}: "
            f"{redact(str(exc))}): check base_url and that the server is running",
            kind="could not reach the server",
        )

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._httpx.HTTPError, self._httpx.InvalidURL)

    def _retry_in(self, attempt: int, outcome: httpx.Response | Exception) -> float | None:
        """Seconds to wait before retry ``attempt + 1``, or None if this outcome is final."""
        if attempt >= self.max_retries:
            return None
        if isinstance(outcome, Exception):
            transient = (self._httpx.TimeoutException, self._httpx.NetworkError)
            if not isinstance(outcome, (*transient, self._httpx.RemoteProtocolError)):
                return None  # a bad URL or protocol: trying again cannot help
            return backoff_delay(attempt, self.backoff, self.max_backoff)
        if outcome.is_success or not retryable_status(outcome.status_code):
            return None
        asked = retry_after(outcome.headers)
        return (
            asked if asked is not None else backoff_delay(attempt, self.backoff, self.max_backoff)
        )


class OpenAIChatModel(_OpenAIBase):
    """A model speaking the OpenAI chat-completions API (or any server compatible with it).

    ``model`` is used when the session's options name none. ``api_key`` defaults to the
    ``OPENAI_API_KEY`` environment variable; with neither, no ``Authorization`` header is sent.
    ``timeout`` applies to the client the adapter creates; an injected ``client`` keeps its own
    settings and is not closed by :meth:`close`. ``extra`` fields go into every request body
    (the session's options in :data:`OPTIONS` win over them). Errors are :class:`ModelError`.

    Transient failures (a timeout, a connection error, HTTP 408, 409, 429 and 5xx) are retried
    up to ``max_retries`` times (2, as the OpenAI SDK does; 0 turns retries off), waiting
    ``backoff`` seconds doubled at each retry, at most ``max_backoff``, less a random jitter of
    up to 25%; a ``Retry-After`` (or ``retry-after-ms``) of up to 60 seconds from the server is
    waited for instead.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60,
        client: httpx.Client | None = None,
        extra: Mapping[str, Any] | None = None,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        super().__init__(
            model,
            base_url,
            api_key,
            timeout,
            extra,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._owns_client = client is None
        self.client: httpx.Client = client or self._httpx.Client(timeout=timeout)

    def __call__(self, request: ModelRequest) -> ModelReply:
        url, content, headers = self._request(request)
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self.client.post(url, content=content, headers=headers)
            except self._errors() as exc:
                outcome = exc
            wait = self._retry_in(attempt, outcome)
            if wait is None:
                break
            time.sleep(wait)
            attempt += 1
        if isinstance(outcome, Exception):
            raise self._failed(outcome) from outcome
        return self._reply(outcome)

    def close(self) -> None:
        """Close the HTTP client if the adapter created it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> OpenAIChatModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncOpenAIChatModel(_OpenAIBase):
    """:class:`OpenAIChatModel` on ``httpx.AsyncClient``: ``await model(request)``."""

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60,
        client: httpx.AsyncClient | None = None,
        extra: Mapping[str, Any] | None = None,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        super().__init__(
            model,
            base_url,
            api_key,
            timeout,
            extra,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._owns_client = client is None
        self.client: httpx.AsyncClient = client or self._httpx.AsyncClient(timeout=timeout)

    async def __call__(self, request: ModelRequest) -> ModelReply:
        url, content, headers = self._request(request)
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self.client.post(url, content=content, headers=headers)
            except self._errors() as exc:
                outcome = exc
            wait = self._retry_in(attempt, outcome)
            if wait is None:
                break
            await asyncio.sleep(wait)
            attempt += 1
        if isinstance(outcome, Exception):
            raise self._failed(outcome) from outcome
        return self._reply(outcome)

    async def aclose(self) -> None:
        """Close the HTTP client if the adapter created it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncOpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
