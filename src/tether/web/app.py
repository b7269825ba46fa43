"""The inspector's ASGI application: the store it reads, its access token, the guard around
every route, and :func:`create_app`.

Security model (docs/inspector.md says it for users):

- every request needs the access token: ``?token=`` once (it is then swapped for an HttpOnly,
  SameSite=Strict cookie and the address is cleaned of it), the cookie, or an
  ``Authorization: Bearer`` header (for scripts reading ``/api/``); all compared with
  :func:`hmac.compare_digest`;
- every POST needs the form's CSRF token (derived from the access token, so never in a URL),
  and a same-origin ``Origin`` / ``Sec-Fetch-Site`` when the browser sends them;
- every response carries a strict Content-Security-Policy (scripts from this server only, no
  inline script or style, no frames, forms post here only) and ``X-Frame-Options: DENY``;
- ``read_only`` hides every write and refuses it (403) if posted anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .._registry import open_async_store
from ..agent import AsyncAgent
from ..errors import InvalidRequest
from ..sessions_async import AsyncSessions
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore

__all__ = ["Inspector", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # the first address holds the token: never send a Referer to another site ("same-origin",
    # not "no-referrer": with that, a browser sends "Origin: null" on its own forms' POSTs)
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Source = AsyncSessions | AsyncStore | Store | str | None


class Inspector:
    """What every route shares: the sessions it shows, the token, the mode.

    A URL (or ``None``: ``$TETHER_URL``, else the default) is opened on the first request, in
    the server's own event loop, and closed when the app shuts down; sessions or a store passed
    in stay the caller's to close.
    """

    def __init__(self, source: Source, *, token: str | None, read_only: bool) -> None:
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise InvalidRequest(
                "token= must be a str of at least 8 characters (or None: a random one is made)"
            )
        self.token = token if token is not None else secrets.token_urlsafe(24)
        self.read_only = bool(read_only)
        key = self.token.encode()
        # the forms' token: derived, so that it never appears in a URL the way the token does
        self.csrf = hmac.new(key, b"tether-inspector-csrf", hashlib.sha256).hexdigest()
        # cookies are not per port: two inspectors on one host keep apart by name
        self.cookie = "tether_inspector_" + hashlib.sha256(key).hexdigest()[:12]
        self._source = source
        self.url = source if isinstance(source, str) else None  # to scrub from error messages
        self._sessions: AsyncSessions | None = None
        self._agent: AsyncAgent | None = None
        self._owns = isinstance(source, str) or source is None
        self.count_cache: dict[str, tuple[float, Any]] = {}

    @property
    def sessions(self) -> AsyncSessions:
        if self._sessions is None:
            source = self._source
            if isinstance(source, AsyncSessions):
                self._sessions = source
            elif isinstance(source, AsyncStore):
                self._sessions = AsyncSessions(source, cache_size=0)
            elif isinstance(source, Store):
                self._sessions = AsyncSessions(SyncBackedAsyncStore(source), cache_size=0)
            else:
                # a reader never brings a store into being: a mistyped SQLite path is refused
                self._sessions = AsyncSessions(open_async_store(source, create=False), cache_size=0)
        return self._sessions

    @property
    def agent(self) -> AsyncAgent:
        """For reviews: the same calls as ``tether reviews / approve / deny``."""
        if self._agent is None:
            self._agent = AsyncAgent(self.sessions, runner="tether-inspector")
        return self._agent

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    async def close(self) -> None:
        if self._owns and self._sessions is not None:
            await self._sessions.close()
            # AsyncSessions closes only a store it opened; the inspector opened this one
            await self._sessions.store.close()
        self._sessions = None
        self._agent = None


class Guard:
    """The ASGI middleware in front of every route: the access token, and the security headers
    on every response (the refusals included)."""

    def __init__(self, app: ASGIApp, inspector: Inspector) -> None:
        self.app = app
        self.inspector = inspector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket is served: closed before any route sees it
            await send({"type": "websocket.close", "code": 1008})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None:
            if not self.inspector.token_ok(given):
                refused = _refusal(request, 403, "This token is not this inspector's.")
                await refused(scope, receive, send_with_headers)
                return
            await self._swap_for_cookie(request)(scope, receive, send_with_headers)
            return
        if self.inspector.token_ok(request.cookies.get(self.inspector.cookie)) or self._bearer_ok(
            request
        ):
            await self.app(scope, receive, send_with_headers)
            return
        refused = _refusal(
            request,
            401,
            "This inspector needs its access token: open the address `tether serve` printed "
            "(it ends with ?token=...), or send it as Authorization: Bearer TOKEN.",
        )
        await refused(scope, receive, send_with_headers)

    def _bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.inspector.token_ok(value.strip())

    def _swap_for_cookie(self, request: Request) -> Response:
        """The token URL: set the cookie, then the same page without the token in its URL
        (out of the history, the screen and any Referer)."""
        query = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
        root = request.scope.get("root_path", "")
        # one leading slash: "//host/..." would send the browser to another site
        target = "/" + request.url.path.lstrip("/") + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            self.inspector.cookie,
            self.inspector.token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=root or "/",
        )
        return response


def _refusal(request: Request, status: int, message: str) -> Response:
    """The refusal, saying what to do and nothing about the store (as JSON under /api/)."""
    from .routes import render_page

    if request.url.path.startswith(request.scope.get("root_path", "") + "/api/"):
        return JSONResponse({"error": message}, status_code=status)
    html = render_page("refused.html", message=message, status=status, base="")
    return HTMLResponse(html, status_code=status)


def create_app(
    store_or_sessions: Source = None, *, token: str | None = None, read_only: bool = False
) -> Starlette:
    """The inspector as an ASGI app, to serve (``uvicorn``) or mount in your own Starlette or
    FastAPI app.

    ``store_or_sessions`` is an :class:`~tether.AsyncSessions`, an async or sync store, or a
    store URL (``None``: ``$TETHER_URL``, else the default). ``token`` is the access token
    every request must show (``None``: a random one, read back from ``app.state.token``);
    ``read_only=True`` hides and refuses every write.
    """
    from . import routes

    inspector = Inspector(store_or_sessions, token=token, read_only=read_only)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await inspector.close()

    app = Starlette(
        routes=routes.ROUTES,
        exception_handlers=routes.EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.inspector = inspector
    app.state.token = inspector.token
    app.add_middleware(Guard, inspector=inspector)
    return app
