"""The inspector's pages, its forms and its JSON API.

Pages are rendered on the server (Jinja2, autoescape on) and read with JavaScript off; the one
script (static/inspector.js) only adds the counts by status and the live timeline. The JSON API
under ``/api/`` answers with the shapes of the CLI's ``--json`` (the same functions make them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import click
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._ids import validate_session_id
from .._time import system_clock
from .._urls import scrub
from ..agent import stored
from ..cli import render
from ..errors import (
    AlreadyClaimed,
    ApprovalExpired,
    ConflictError,
    InvalidRequest,
    InvalidSessionId,
    ReviewMismatch,
    SessionNotFound,
    TetherError,
)
from ..models import Session, SessionStatus
from . import views
from .app import Inspector

STATUSES = [status.value for status in SessionStatus]
PAGE_SIZES = (20, 50, 100, 200)
ITEMS_PER_PAGE = 50
MAX_ITEMS_PER_PAGE = 500
COUNT_CAP = 1_000
"""Counts by status stop there ("1000+"): the stores keep no counts, so each is a listing."""
MAX_STATE_KEYS = 200
"""Keys of a session's state shown on its page; the JSON API has the rest."""
COUNT_TTL = 5.0
"""Seconds the counts are kept before the listing runs again."""

_env = Environment(
    loader=PackageLoader("tether.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _qs(params: Mapping[str, Any] | list[tuple[str, Any]]) -> str:
    pairs = params.items() if isinstance(params, Mapping) else params
    kept = [(k, v) for k, v in pairs if v not in (None, "", False)]
    return "?" + urlencode(kept, doseq=True) if kept else ""


_env.globals["qs"] = _qs
_env.filters["path"] = lambda value: quote(str(value), safe="")
_env.filters["clean"] = views.text


def render_page(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


def _inspector(request: Request) -> Inspector:
    inspector: Inspector = request.app.state.inspector
    return inspector


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    inspector = _inspector(request)
    html = render_page(
        name,
        base=request.scope.get("root_path", ""),
        csrf=inspector.csrf,
        read_only=inspector.read_only,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)


def _json(data: Any, status_code: int = 200) -> Response:
    # the CLI's JSON text: the characters that could reorder or hide text are escapes
    return Response(
        render.terminal_json(data), status_code=status_code, media_type="application/json"
    )


def _session_id(request: Request) -> str:
    raw = request.path_params["session_id"]
    validate_session_id(raw)
    return str(raw)


def _int(value: str | None, name: str, *, low: int, high: int | None = None) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be {bound}, not {number}")
    return number


# --- the sessions list ---------------------------------------------------------------------------


def _filters(request: Request) -> dict[str, Any]:
    """The list's filters from the query string, parsed by the CLI's own rules (``--meta``
    JSON-if-it-parses, ``--updated-since`` ISO 8601 with UTC as the default zone)."""
    from ..cli.common import _IsoTime, _KeyValue

    q = request.query_params
    statuses = [s for s in q.getlist("status") if s]
    for status in statuses:
        if status not in STATUSES:
            raise InvalidRequest(f"status {status!r} is not one of {', '.join(STATUSES)}")
    meta: dict[str, Any] = {}
    try:
        for raw in q.getlist("meta"):
            if raw.strip():
                key, value = _KeyValue().convert(raw, None, None)
                meta[key] = value
        since = q.get("since") or None
        before = q.get("before") or None
        updated_after = _IsoTime().convert(since, None, None) if since else None
        updated_before = _IsoTime().convert(before, None, None) if before else None
    except click.BadParameter as exc:
        raise InvalidRequest(exc.format_message()) from None
    limit = _int(q.get("limit"), "limit", low=1, high=1000) or 50
    return {
        "owner": q.get("owner") or None,
        "agent": q.get("agent") or None,
        "status": statuses or None,
        "metadata": meta or None,
        "updated_after": updated_after,
        "updated_before": updated_before,
        "include_archived": q.get("all") in ("1", "on", "true"),
        "limit": limit,
        "cursor": q.get("cursor") or None,
    }


def _short(value: str | None, size: int = 60) -> str:
    """An owner or agent for a table cell: cleaned, one line, at most ``size`` characters."""
    if value is None:
        return "\u2013"
    shown = views.text(" ".join(value.split()))
    return shown if len(shown) <= size else shown[: size - 1] + "\u2026"


async def sessions_page(request: Request) -> Response:
    jump = (request.query_params.get("id") or "").strip()
    if jump:
        validate_session_id(jump)
        return _redirect(request, f"/s/{quote(jump, safe='')}")
    filters = _filters(request)
    page = await _inspector(request).sessions.list(**filters)
    now = system_clock()
    rows = [
        {
            "id": h.id,
            "status": h.status.value,
            "owner": _short(h.owner),
            "agent": _short(h.agent),
            "owner_query": _qs({"owner": h.owner}),
            "agent_query": _qs({"agent": h.agent}),
            "version": h.version,
            "length": h.history_len,
            "updated": render.iso(h.updated_at),
            "parent": h.parent_id,
            "waiting": h.status is SessionStatus.WAITING,
            "lease": h.lease_owner is not None
            and h.lease_expires_at is not None
            and h.lease_expires_at > now,
        }
        for h in page.sessions
    ]
    q = request.query_params
    kept = [(k, v) for k, v in q.multi_items() if k not in ("cursor", "token", "deleted") and v]
    return _page(
        request,
        "sessions.html",
        title="Sessions",
        rows=rows,
        statuses=STATUSES,
        q={
            "owner": q.get("owner") or "",
            "agent": q.get("agent") or "",
            "status": q.getlist("status"),
            "meta": [m for m in q.getlist("meta") if m] + ["", ""],
            "since": q.get("since") or "",
            "all": filters["include_archived"],
            "limit": filters["limit"],
        },
        page_sizes=PAGE_SIZES,
        next_query=_qs([*kept, ("cursor", page.next_cursor)]) if page.next_cursor else None,
        first_query=_qs(kept) if filters["cursor"] else None,
        filtered=bool(kept),
        deleted=q.get("deleted"),
        nav="sessions",
    )


async def _counts(inspector: Inspector) -> tuple[dict[str, int], list[str]]:
    """Sessions per status, and the statuses that have more than counted: each is counted by
    listing headers up to :data:`COUNT_CAP` (the stores keep no counts); kept
    :data:`COUNT_TTL` seconds, since the sessions page asks on every load."""
    cached = inspector.count_cache.get("counts")
    if cached is not None and time.monotonic() - cached[0] < COUNT_TTL:
        found: tuple[dict[str, int], list[str]] = cached[1]
        return found
    counts: dict[str, int] = {}
    capped: list[str] = []
    for status in STATUSES:
        seen, cursor = 0, None
        while True:
            page = await inspector.sessions.list(
                status=status, limit=min(1000, COUNT_CAP - seen), cursor=cursor
            )
            seen += len(page.sessions)
            cursor = page.next_cursor
            if cursor is None or seen >= COUNT_CAP:
                break
        counts[status] = seen
        if cursor is not None:
            capped.append(status)
    inspector.count_cache["counts"] = (time.monotonic(), (counts, capped))
    return counts, capped


async def counts_fragment(request: Request) -> Response:
    """The counts by status: the fragment the sessions page's script inserts, or a whole page
    when a browser navigates here (the link shown with JavaScript off)."""
    counts, capped = await _counts(_inspector(request))
    navigated = request.headers.get("sec-fetch-dest") == "document"
    name = "counts.html" if navigated else "_counts.html"
    return _page(
        request, name, counts=counts, capped=capped, cap=COUNT_CAP, title="Counts", nav="sessions"
    )


# --- one session ---------------------------------------------------------------------------------


async def _window(inspector: Inspector, session_id: str, before: int | None, size: int) -> Session:
    """The newest ``size`` items, or the ``size`` items before seq ``before``: one read of just
    that window, whatever the history's length (seqs are contiguous, so the window is
    arithmetic)."""
    store = inspector.sessions.store
    if before is None:
        return await store.load(session_id, last=size)
    after = max(0, before - 1 - size)
    session = await store.load(session_id, after=after, limit=max(0, before - 1 - after))
    session.history = [item for item in session.history if int(item.get("seq", 0)) < before]
    return session


def _header_rows(session: Session) -> list[tuple[str, str]]:
    runtime = stored.runtime(session)
    rows = render.header_rows(session, system_clock(), runtime)
    shown = []
    for key, value in rows:
        plain = value.plain if hasattr(value, "plain") else value
        shown.append((key, views.text("-" if plain is None else plain)))
    return shown


async def session_page(request: Request) -> Response:
    session_id = _session_id(request)
    inspector = _inspector(request)
    q = request.query_params
    size = _int(q.get("n"), "n", low=1, high=MAX_ITEMS_PER_PAGE) or ITEMS_PER_PAGE
    before = _int(q.get("before"), "before", low=1)
    session = await _window(inspector, session_id, before, size)
    shown = session.history
    first_shown = shown[0]["seq"] if shown else None
    last_shown = shown[-1]["seq"] if shown else None
    older = first_shown is not None and first_shown > session.first_seq
    newest = before is None or (last_shown is not None and last_shown >= session.last_seq)
    state = {k: v for k, v in session.state.items() if k != stored.RESERVED}
    runtime = stored.runtime(session)
    now = system_clock()
    return _page(
        request,
        "session.html",
        title=f"Session {views.text(session_id)}",
        s=session,
        status=session.status.value,
        header=_header_rows(session),
        state=[
            (views.text(k), views.json_fold(v, short=400))
            for k, v in list(state.items())[:MAX_STATE_KEYS]
        ],
        state_size=len(state),
        runtime=views.json_fold(runtime, short=views.LONG) if runtime else None,
        options=views.json_fold(session.options, short=400) if session.options else None,
        metadata=views.json_fold(session.metadata, short=400) if session.metadata else None,
        reviews=views.runtime_reviews(session, now),
        entries=views.entries(shown),
        older_query=_qs({"before": first_shown, "n": size if size != ITEMS_PER_PAGE else None})
        if older
        else None,
        newer_query=None
        if newest
        else _qs(
            {
                "before": (last_shown or 0) + size + 1,
                "n": size if size != ITEMS_PER_PAGE else None,
            }
        ),
        live=newest,
        last_seq=session.last_seq,
        size=size,
        total=session.history_len,
        first_shown=first_shown,
        last_shown=last_shown,
        archived=session.status is SessionStatus.ARCHIVED,
        nav="sessions",
    )


async def poll_fragment(request: Request) -> Response:
    """New items after ``after``, as timeline rows: what the open page polls for (about
    twice a second) with ``load(after=)``. ``X-Tether-Reload: 1`` asks the page to reload:
    the history was cleared or replaced, or the status or version moved without new items
    (an answer, an archive)."""
    session_id = _session_id(request)
    q = request.query_params
    after = _int(q.get("after"), "after", low=0) or 0
    version = _int(q.get("version"), "version", low=0)
    session = await _inspector(request).sessions.store.load(session_id, after=after, limit=200)
    headers = {
        "x-tether-last-seq": str(session.history[-1]["seq"] if session.history else after),
        "x-tether-version": str(session.version),
        "x-tether-status": session.status.value,
    }
    rewound = session.last_seq < after or (session.history_len and session.first_seq > after + 1)
    changed = version is not None and session.version != version and not session.history
    status_moved = q.get("status") not in (None, session.status.value)
    if rewound or changed or status_moved:
        headers["x-tether-reload"] = "1"
        return Response("", headers=headers, media_type="text/html")
    html = render_page(
        "_entries.html",
        entries=views.entries(session.history),
        s=session,
        base=request.scope.get("root_path", ""),
        csrf=_inspector(request).csrf,
        read_only=_inspector(request).read_only,
    )
    return HTMLResponse(html, headers=headers)


# --- reviews -------------------------------------------------------------------------------------


async def reviews_page(request: Request) -> Response:
    inspector = _inspector(request)
    now = system_clock()
    shown = [views.review_view(r, now) for r in await inspector.agent.reviews()]
    return _page(
        request,
        "reviews.html",
        title="Reviews",
        pending=[r for r in shown if r.decision is None],
        answered=[r for r in shown if r.decision is not None],
        done=request.query_params.get("done"),
        nav="reviews",
    )


async def _checked_form(request: Request) -> FormData:
    """A write's form, after the checks every write passes: not read-only, posted from this
    inspector's own pages (``Origin`` / ``Sec-Fetch-Site`` when sent), with the CSRF token."""
    inspector = _inspector(request)
    if inspector.read_only:
        raise HTTPException(403, "this inspector is read-only (tether serve --read-only)")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        raise HTTPException(403, "cross-origin request refused (its Origin is not this server)")
    form = await request.form()
    given = form.get("csrf")
    if not inspector.csrf_ok(given if isinstance(given, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _answerer(form: FormData) -> str:
    """``web:<name>``: the name typed in the form (default ``inspector``), as one short line."""
    name = " ".join(_field(form, "by").split())[:64] or "inspector"
    return f"web:{name}"


async def answer_review(request: Request) -> Response:
    form = await _checked_form(request)
    review_id = _field(form, "review_id")
    decision = _field(form, "decision")
    agent = _inspector(request).agent
    if decision == "approve":
        await agent.approve(review_id, by=_answerer(form))
    elif decision == "deny":
        reason = _field(form, "reason")
        if not reason:
            raise InvalidRequest("a denial needs a reason: the model is told it on resume")
        await agent.deny(review_id, reason, by=_answerer(form))
    else:
        raise InvalidRequest(f"decision must be approve or deny, not {decision!r}")
    session_id, _ = stored.split_review_id(review_id)
    if _field(form, "back") == "session":
        return _redirect(request, f"/s/{quote(session_id, safe='')}#reviews")
    return _redirect(request, "/reviews" + _qs({"done": review_id}))


# --- actions -------------------------------------------------------------------------------------


async def fork_session(request: Request) -> Response:
    session_id = _session_id(request)
    form = await _checked_form(request)
    at = _int(_field(form, "at"), "at", low=0)
    new_id = _field(form, "new_id") or None
    if new_id is not None:
        validate_session_id(new_id)
    child = await _inspector(request).sessions.fork(session_id, new_id, at=at)
    return _redirect(request, f"/s/{quote(child.id, safe='')}")


async def archive_session(request: Request) -> Response:
    session_id = _session_id(request)
    await _checked_form(request)
    await _inspector(request).sessions.archive(session_id)
    return _redirect(request, f"/s/{quote(session_id, safe='')}")


async def delete_page(request: Request) -> Response:
    session_id = _session_id(request)
    if _inspector(request).read_only:
        raise HTTPException(403, "this inspector is read-only (tether serve --read-only)")
    header = await _inspector(request).sessions.info(session_id)
    return _page(
        request,
        "delete.html",
        title=f"Delete {views.text(session_id)}?",
        s=header,
        items=render.count(header.history_len, "item"),
        nav="sessions",
    )


async def delete_session(request: Request) -> Response:
    session_id = _session_id(request)
    form = await _checked_form(request)
    if _field(form, "confirm") != session_id:
        raise InvalidRequest("type the session's id to confirm: nothing was deleted")
    force = _field(form, "force") == "on"
    try:
        deleted = await _inspector(request).sessions.delete(session_id, force=force)
    except AlreadyClaimed as exc:
        raise InvalidRequest(
            f"session {session_id} is held by runner {exc.holder!r}: nothing was deleted. Wait "
            "for the runner to finish, or tick 'even if a runner holds it' if it is stuck."
        ) from None
    if not deleted:
        raise SessionNotFound(session_id)
    _inspector(request).count_cache.clear()
    return _redirect(request, "/" + _qs({"deleted": session_id}))


# --- the JSON API: the CLI's --json shapes -------------------------------------------------------


async def api_sessions(request: Request) -> Response:
    page = await _inspector(request).sessions.list(**_filters(request))
    return _json(render.page_json(page))


async def api_session(request: Request) -> Response:
    """``tether show ID --json``: the header and a window (``last``, default 10, or ``after``
    with ``limit``)."""
    session_id = _session_id(request)
    q = request.query_params
    after = _int(q.get("after"), "after", low=0)
    limit = _int(q.get("limit"), "limit", low=0, high=10_000)
    last = _int(q.get("last"), "last", low=0, high=10_000)
    store = _inspector(request).sessions.store
    if after is not None:
        session = await store.load(session_id, after=after, limit=limit or 1000)
    else:
        session = await store.load(session_id, last=10 if last is None else last)
    return _json(render.session_json(session))


async def api_replay(request: Request) -> Response:
    """``tether replay ID --json`` (the whole history: the replay needs every call)."""
    replay = await _inspector(request).agent.replay(_session_id(request))
    return _json(render.replay_json(replay))


async def api_reviews(request: Request) -> Response:
    """``tether reviews [--session ID] --json``."""
    session_id = request.query_params.get("session") or None
    if session_id is not None:
        validate_session_id(session_id)
    reviews = await _inspector(request).agent.reviews(session_id)
    return _json([render.review_json(r) for r in reviews])


async def api_counts(request: Request) -> Response:
    counts, capped = await _counts(_inspector(request))
    return _json({"counts": counts, "more_than_counted": capped, "capped_at": COUNT_CAP})


# --- errors --------------------------------------------------------------------------------------


def _status_of(exc: TetherError) -> int:
    if isinstance(exc, SessionNotFound):
        return 404
    if isinstance(exc, (ConflictError, AlreadyClaimed, ReviewMismatch, ApprovalExpired)):
        return 409
    if isinstance(exc, (InvalidRequest, InvalidSessionId)):
        return 400
    return 500


def _error(request: Request, status: int, message: str) -> Response:
    # a driver's message may quote the store's URL, password and all
    message = scrub(message, _inspector(request).url)
    if request.url.path.startswith(request.scope.get("root_path", "") + "/api/"):
        return _json({"error": message}, status_code=status)
    return _page(request, "error.html", status_code=status, title="Error", message=message)


async def tether_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TetherError)
    return _error(request, _status_of(exc), str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, str(exc.detail))


EXCEPTION_HANDLERS: dict[Any, Any] = {TetherError: tether_error, HTTPException: http_error}


def _static() -> StaticFiles:
    return StaticFiles(packages=[("tether.web", "static")])


ROUTES: list[BaseRoute] = [
    Route("/", sessions_page, name="sessions"),
    Route("/counts", counts_fragment, name="counts"),
    Route("/reviews", reviews_page, name="reviews"),
    Route("/reviews/answer", answer_review, methods=["POST"], name="answer"),
    Route("/s/{session_id}", session_page, name="session"),
    Route("/s/{session_id}/poll", poll_fragment, name="poll"),
    Route("/s/{session_id}/fork", fork_session, methods=["POST"], name="fork"),
    Route("/s/{session_id}/archive", archive_session, methods=["POST"], name="archive"),
    Route("/s/{session_id}/delete", delete_page, methods=["GET"], name="delete_page"),
    Route("/s/{session_id}/delete", delete_session, methods=["POST"], name="delete"),
    Route("/api/sessions", api_sessions, name="api_sessions"),
    Route("/api/sessions/{session_id}", api_session, name="api_session"),
    Route("/api/sessions/{session_id}/replay", api_replay, name="api_replay"),
    Route("/api/reviews", api_reviews, name="api_reviews"),
    Route("/api/counts", api_counts, name="api_counts"),
    Mount("/static", app=_static(), name="static"),
]
