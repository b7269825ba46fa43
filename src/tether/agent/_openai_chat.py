"""The OpenAI chat-completions adapters: :class:`OpenAIChatModel` and
:class:`AsyncOpenAIChatModel`, over httpx (``pip install 'tether[openai]'``, imported only when
an adapter is created). The wire format is :mod:`tether.agent._openai_wire`, the retry policy
:mod:`tether.agent._retries`. Imported from :mod:`tether.agent.models`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import _json
from .._closing import Closing
from .._urls import redact
from ..errors import ConfigurationError, ModelError
from ._openai_wire import RESERVED, build_payload, excerpt, http_error, parse_reply
from ._retries import backoff_delay, retry_after, retryable_status
from .types import ModelReply, ModelRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncOpenAIChatModel", "OpenAIChatModel"]

_C = TypeVar("_C", "httpx.Client", "httpx.AsyncClient")


def _httpx() -> ModuleType:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ConfigurationError(
            "the OpenAI adapter needs httpx: pip install 'tether[openai]'"
        ) from exc
    return httpx


class _OpenAIBase(Generic[_C]):
    """What both adapters share: the arguments (one signature), the request, the reply, the
    errors and the retry policy; a subclass adds its client's kind and the call itself."""

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60,
        client: _C | None = None,
        extra: Mapping[str, Any] | None = None,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        clash = sorted(set(extra or ()) & set(RESERVED))
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
        self._owns_client = client is None
        self.client: _C = client if client is not None else self._new_client(timeout)

    def _new_client(self, timeout: float) -> _C:
        """The client the adapter creates (and closes) when none is given."""
        raise NotImplementedError

    def _request(self, request: ModelRequest) -> tuple[str, bytes, dict[str, str]]:
        body = build_payload(request, self.model, self.extra)
        content = _json.dumps(body, what="the model request")
        return f"{self.base_url}/chat/completions", content, self._headers

    def _reply(self, response: httpx.Response) -> ModelReply:
        if not response.is_success:
            raise http_error(response)
        try:
            data = _json.loads(response.content)
        except _json.JSONDecodeError:
            raise ModelError(
                f"the model server at {self.shown_url} answered HTTP {response.status_code} with "
                f"a body that is not JSON: {excerpt(response.text)}. Check that base_url points "
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
            transient: tuple[type[Exception], ...] = (
                self._httpx.TimeoutException,
                self._httpx.NetworkError,
            )
            if not isinstance(outcome, (*transient, self._httpx.RemoteProtocolError)):
                return None  # a bad URL or protocol: trying again cannot help
            return backoff_delay(attempt, self.backoff, self.max_backoff)
        if outcome.is_success or not retryable_status(outcome.status_code):
            return None
        asked = retry_after(outcome.headers)
        return (
            asked if asked is not None else backoff_delay(attempt, self.backoff, self.max_backoff)
        )


class OpenAIChatModel(_OpenAIBase["httpx.Client"], Closing):
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

    def _new_client(self, timeout: float) -> httpx.Client:
        client: httpx.Client = self._httpx.Client(timeout=timeout)
        return client

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


class AsyncOpenAIChatModel(_OpenAIBase["httpx.AsyncClient"]):
    """:class:`OpenAIChatModel` on ``httpx.AsyncClient``: ``await model(request)``."""

    def _new_client(self, timeout: float) -> httpx.AsyncClient:
        client: httpx.AsyncClient = self._httpx.AsyncClient(timeout=timeout)
        return client

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
