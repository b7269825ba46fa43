"""The web inspector (tether.web) through its ASGI app: every route, the token, CSRF,
read-only mode, escaping of hostile sessions, and the JSON API's CLI shapes.

Runs on memory, SQLite, PostgreSQL and Redis (the server stores skip, with the reason, when
their server is down; under CI=true they fail). The same app in a real browser:
tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import require_module

require_module("starlette", "web")
require_module("httpx", "web")

import httpx  # noqa: E402

import tether  # noqa: E402
from tether.agent import (  # noqa: E402
    AsyncAgent,
    AsyncScriptedModel,
    ModelReply,
    ToolCall,
    tool,
)
from tether.cli import render  # noqa: E402
from tether.web import create_app  # noqa: E402
from tether.web.app import CSP  # noqa: E402

from .conftest import (  # noqa: E402
    delete_nats_bucket,
    give_back_postgres_schema,
    require_server,
    take_postgres_schema,
    wipe_redis_namespace,
    with_options,
)

TOKEN = "test-token-" + uuid.uuid4().hex
ORIGIN = "http://127.0.0.1"


@tool(requires_approval=True)
def refund(order_id: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


@pytest.fixture(params=["memory", "sqlite", "file", "postgres", "redis", "nats"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'web.db'}"
    elif kind == "file":
        yield f"file:{tmp_path / 'sessions'}"
    elif kind == "nats":
        require_module("nats", "nats")
        base = require_server("nats")
        bucket = f"tether_tweb{uuid.uuid4().hex[:10]}"
        yield f"{base}/{bucket}"
        delete_nats_bucket(base, bucket)
    elif kind == "postgres":
        require_module("psycopg", "postgres")
        base = require_server("postgres")
        name = take_postgres_schema(base)  # empty and migrated, from conftest's pool
        yield with_options(base, schema=name)
        give_back_postgres_schema(base, name)
    else:
        require_module("redis", "redis")
        base = require_server("redis")
        name = f"web{uuid.uuid4().hex}"
        yield with_options(base, namespace=name)
        wipe_redis_namespace(base, name)


async def seed(sessions: tether.AsyncSessions) -> list[str]:
    """chat-1 (ada, web, 3 items), chat-2 (bob, archived), long-1 (120 items), refund-1 and
    refund-2 (each waiting on one review). Returns the two review ids."""
    await sessions.create(
        "support",
        session_id="chat-1",
        owner="ada",
        metadata={"channel": "web", "priority": 2},
        state={"order": "A1001", "nested": {"deep": [1, 2, 3]}},
        options={"model": "gpt-test"},
        history=[
            {"role": "user", "content": "Where is order A1001?"},
            {"role": "assistant", "content": "It shipped yesterday."},
            {"role": "user", "content": "Thanks!"},
        ],
    )
    await sessions.create("billing", session_id="chat-2", owner="bob")
    await sessions.archive("chat-2")
    await sessions.create(
        "support",
        session_id="long-1",
        owner="cy",
        history=[{"role": "user", "content": f"message number {i}"} for i in range(1, 121)],
    )
    ids = []
    for n in (1, 2):
        sid = f"refund-{n}"
        await sessions.create("support", session_id=sid, owner="ada")
        call = ToolCall(id=f"c{n}", name="refund", arguments={"order_id": f"A{n}"})
        model = AsyncScriptedModel([ModelReply(tool_calls=[call]), "Refunded."])
        agent = AsyncAgent(sessions, llm=model, tools=[refund])
        stopped = await agent.run(sid, f"Please refund A{n}")
        assert stopped.status == "waiting"
        [review] = await agent.pending_reviews(sid)
        ids.append(review.id)
    return ids


@pytest.fixture
async def sessions(store_url: str) -> AsyncIterator[tether.AsyncSessions]:
    async with tether.AsyncSessions(tether.open_async_store(store_url), cache_size=0) as opened:
        yield opened
        await opened.store.close()


@pytest.fixture
async def reviews(sessions: tether.AsyncSessions) -> list[str]:
    return await seed(sessions)


def client_for(app: Any, *, token: str | None = TOKEN) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN, follow_redirects=False
    )
    if token is not None:
        client.headers["authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
async def client(
    sessions: tether.AsyncSessions, reviews: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(sessions, token=TOKEN)) as opened:
        yield opened


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def post(client: httpx.AsyncClient, path: str, data: dict[str, str], csrf: str) -> Any:
    return await client.post(path, data={**data, "csrf": csrf}, headers={"origin": ORIGIN})


async def csrf(client: httpx.AsyncClient) -> str:
    return csrf_of((await client.get("/s/chat-1")).text)


PAGES = [
    "/",
    "/counts",
    "/reviews",
    "/s/chat-1",
    "/s/chat-1/poll?after=0",
    "/s/chat-1/delete",
    "/api/sessions",
    "/api/sessions/chat-1",
    "/api/sessions/chat-1/replay",
    "/api/reviews",
    "/api/counts",
    "/static/inspector.css",
    "/static/inspector.js",
]


# --- the token -----------------------------------------------------------------------------------


async def test_every_route_needs_the_token(sessions: tether.AsyncSessions) -> None:
    await seed(sessions)
    app = create_app(sessions, token=TOKEN)
    async with client_for(app, token=None) as anonymous:
        for path in PAGES:
            refused = await anonymous.get(path)
            assert refused.status_code == 401, path
            assert "chat-1" not in refused.text.replace("/s/chat-1", "")
            assert refused.headers["content-security-policy"] == CSP
        for path in ["/reviews/answer", "/s/chat-1/fork", "/s/chat-1/archive", "/s/chat-1/delete"]:
            assert (await anonymous.post(path, data={})).status_code == 401, path
        anonymous.cookies.set(app.state.inspector.cookie, "nope-nope")
        assert (await anonymous.get("/")).status_code == 401
        anonymous.cookies.clear()
        bad = await anonymous.get("/", headers={"authorization": "Bearer nope-nope"})
        assert bad.status_code == 401
        assert (await anonymous.get("/?token=not-the-token")).status_code == 403
    assert await sessions.exists("chat-1")  # nothing was archived, forked or deleted


async def test_the_token_url_sets_a_strict_httponly_cookie_and_leaves_the_url(
    sessions: tether.AsyncSessions,
) -> None:
    await seed(sessions)
    app = create_app(sessions, token=TOKEN)
    async with client_for(app, token=None) as browser:
        opened = await browser.get(f"/s/chat-1?token={TOKEN}&n=20")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/s/chat-1?n=20"  # the token is out of the URL
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{app.state.inspector.cookie}={TOKEN};")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        page = await browser.get("/s/chat-1?n=20")  # the cookie jar sends it now
        assert page.status_code == 200
        assert "It shipped yesterday." in page.text


def test_a_sync_store_or_a_url_is_served_too(tmp_path: Path) -> None:
    """create_app takes a sync store (run in threads) or a URL (opened on the first request, in
    the server's loop, and closed with the app) as well as AsyncSessions."""
    from starlette.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'sync.db'}"
    with tether.Sessions(url) as sessions:
        sessions.create("support", session_id="sync-1", history=[{"role": "user", "content": "hi"}])
    with tether.open_store(url) as store:
        for source in (store, url):
            with TestClient(create_app(source, token=TOKEN), base_url=ORIGIN) as client:
                page = client.get("/s/sync-1", headers={"authorization": f"Bearer {TOKEN}"})
                assert page.status_code == 200
                assert 'class="entry k-user"' in page.text
    missing = create_app(f"sqlite:///{tmp_path / 'nothing.db'}", token=TOKEN)
    with TestClient(missing, base_url=ORIGIN) as client:
        refused = client.get("/", headers={"authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 500
        assert "no SQLite database" in refused.text
    assert not (tmp_path / "nothing.db").exists()  # a reader never creates a store


async def test_no_open_redirect_no_websocket_and_json_refusals_under_api(
    sessions: tether.AsyncSessions,
) -> None:
    app = create_app(sessions, token=TOKEN)
    async with client_for(app, token=None) as anonymous:
        bounced = await anonymous.get(f"{ORIGIN}//evil.example/?token={TOKEN}")
        assert bounced.status_code == 303
        assert bounced.headers["location"] == "/evil.example/"  # this server, not another
        anonymous.cookies.clear()
        refused = await anonymous.get("/api/sessions")
        assert refused.status_code == 401
        assert "access token" in refused.json()["error"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_a_random_token_when_none_is_given(sessions: tether.AsyncSessions) -> None:
    app = create_app(sessions)
    token = app.state.token
    assert isinstance(token, str)
    assert len(token) >= 24
    assert create_app(sessions).state.token != token
    async with client_for(app, token=token) as client:
        assert (await client.get("/")).status_code == 200
    with pytest.raises(tether.InvalidRequest):
        create_app(sessions, token="short")


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for path in [*PAGES, "/s/missing-one"]:
        answer = await client.get(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert "script-src 'self'" in CSP
        assert "unsafe-inline" not in CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"


# --- pages ---------------------------------------------------------------------------------------


async def test_every_page_answers(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        answer = await client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
    missing = await client.get("/s/missing-one")
    assert missing.status_code == 404
    assert "missing-one" in missing.text
    assert (await client.get("/s/.bad")).status_code == 400
    assert (await client.get("/s/chat-1?n=0")).status_code == 400
    assert (await client.get("/?status=bogus")).status_code == 400
    assert (await client.get("/?since=yesterday")).status_code == 400
    assert (await client.get("/api/sessions/missing-one")).json()["error"]


async def test_the_list_filters_pages_and_jumps(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/")).text
    for sid in ["chat-1", "long-1", "refund-1", "refund-2"]:
        assert f'href="/s/{sid}"' in listed
    assert 'href="/s/chat-2"' not in listed  # archived: only with "include archived"
    assert 'href="/s/chat-2"' in (await client.get("/?all=1")).text
    assert 'href="/?owner=ada"' in listed  # an owner links to their sessions
    by_owner = (await client.get("/?owner=ada")).text
    assert 'href="/s/chat-1"' in by_owner
    assert 'href="/s/long-1"' not in by_owner
    waiting = (await client.get("/?status=waiting")).text
    assert 'href="/s/refund-1"' in waiting
    assert 'href="/s/chat-1"' not in waiting
    meta = (await client.get("/", params={"meta": "priority=2"})).text
    assert 'href="/s/chat-1"' in meta
    assert 'href="/s/refund-1"' not in meta
    assert 'href="/s/chat-1"' not in (await client.get("/", params={"meta": 'priority="2"'})).text
    later = (await client.get("/", params={"since": "2999-01-01"})).text
    assert "No sessions match these filters" in later
    # cursor paging: 4 active sessions, 3 a page
    first = (await client.get("/?limit=2&owner=ada")).text
    shown_first = set(re.findall(r'<td class="id"><a href="/s/([^"]+)"', first))
    assert len(shown_first) == 2
    more = re.search(r'rel="next" href="/([^"]+)"', first)
    assert more, "no next page link"
    second = (await client.get("/" + more.group(1).replace("&amp;", "&"))).text
    shown_second = set(re.findall(r'<td class="id"><a href="/s/([^"]+)"', second))
    assert shown_first | shown_second == {"chat-1", "refund-1", "refund-2"}
    assert not shown_first & shown_second
    assert "first page" in second
    jump = await client.get("/?id=long-1")
    assert jump.status_code == 303
    assert jump.headers["location"] == "/s/long-1"


async def test_a_big_state_shows_its_first_keys(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    await sessions.create(session_id="big-1", state={f"k{n:04d}": n for n in range(1000)})
    page = (await client.get("/s/big-1")).text
    assert "(1000 keys)" in page
    assert "<code>k0199</code>" in page
    assert "<code>k0200</code>" not in page
    assert "800 more keys" in page


async def test_counts_by_status(client: httpx.AsyncClient) -> None:
    counts = (await client.get("/api/counts")).json()
    assert counts["counts"]["waiting"] == 2
    assert counts["counts"]["archived"] == 1
    assert counts["counts"]["new"] + counts["counts"]["finished"] == 2
    assert counts["more_than_counted"] == []
    fragment = (await client.get("/counts")).text
    assert re.search(r"waiting <b>2</b>", fragment)
    assert "<html" not in fragment  # what the script inserts
    navigated = await client.get("/counts", headers={"sec-fetch-dest": "document"})
    assert "<html" in navigated.text  # the link, with JavaScript off
    assert re.search(r"waiting <b>2</b>", navigated.text)


async def test_counts_stop_at_the_cap(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.web import routes

    monkeypatch.setattr(routes, "COUNT_CAP", 2)
    monkeypatch.setattr(routes, "COUNT_TTL", 0.0)  # counted again on every call
    counts = (await client.get("/api/counts")).json()
    assert counts["counts"]["waiting"] == 2  # exactly the cap: not "more"
    assert counts["counts"]["new"] + counts["counts"]["finished"] == 2
    assert "waiting" not in counts["more_than_counted"]
    await sessions.create(session_id="one-more")
    await sessions.create(session_id="and-another")
    again = (await client.get("/api/counts")).json()
    assert "new" in again["more_than_counted"] or "finished" in again["more_than_counted"]
    assert re.search(r"(new|finished) <b>2\+</b>", (await client.get("/counts")).text)


async def test_a_long_timeline_opens_at_its_newest_page_and_pages_back(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/s/long-1")).text
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', page)]
    assert seqs == list(range(71, 121))
    assert "items #71\u2013#120 of 120" in page
    assert 'data-poll="/s/long-1/poll"' in page  # the newest page is live
    older = re.search(r'rel="prev" href="/s/long-1([^"]*)"', page)
    assert older
    assert older.group(1) == "?before=71"
    back = (await client.get("/s/long-1?before=71")).text
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', back)] == list(range(21, 71))
    assert "data-poll" not in back  # an older page does not move
    assert 'rel="next"' in back
    last = (await client.get("/s/long-1?before=21")).text
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', last)] == list(range(1, 21))
    assert 'rel="prev"' not in last
    small = (await client.get("/s/long-1?n=7")).text
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', small)] == list(range(114, 121))


async def test_a_session_page_shows_header_state_conversation_and_reviews(
    client: httpx.AsyncClient, reviews: list[str]
) -> None:
    page = (await client.get("/s/chat-1")).text
    assert "<dt>owner</dt><dd>ada</dd>" in page
    assert "<dt>version</dt>" in page
    assert "A1001" in page
    assert "&#34;deep&#34;" in page  # the state, as JSON
    assert 'class="entry k-user"' in page
    assert 'class="entry k-assistant"' in page
    assert "tether resume chat-1" in page  # how to resume
    waiting = (await client.get("/s/refund-1")).text
    assert reviews[0] in waiting
    assert 'class="entry k-tool_call"' in waiting
    assert '<span class="fn">refund</span>' in waiting
    assert "Approve" in waiting


async def test_framework_items_read_as_the_cli_reads_them(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    await sessions.create(
        "agents-sdk",
        session_id="fw-1",
        history=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "k1", "name": "lookup", "arguments": '{"q": 1}'},
            {"type": "function_call_output", "call_id": "k1", "output": "found it"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {
                "type": "adk.event",
                "event": {"author": "model", "content": {"parts": [{"text": "from adk"}]}},
            },
            {"type": "app.note", "thread": "t1"},
            {"role": "tether", "event": "turn_error", "error": "model call failed"},
            {"role": "tool", "tool_call_id": "k9", "content": '{"status": "shipped"}'},
        ],
    )
    page = (await client.get("/s/fw-1")).text
    assert 'class="entry k-user"' in page
    assert '<span class="fn">lookup</span>' in page
    assert "found it" in page
    assert 'class="entry k-tool_result"' in page
    assert 'class="entry k-reasoning"' in page
    assert "from adk" in page
    assert "app.note" in page
    assert 'class="entry k-event error"' in page
    assert "{\n  &#34;status&#34;: &#34;shipped&#34;\n}" in page  # a JSON output, indented


async def test_poll_returns_new_items_and_asks_for_a_reload_after_a_rewrite(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    header = await sessions.info("chat-1")
    nothing = await client.get(f"/s/chat-1/poll?after=3&version={header.version}&status=new")
    assert nothing.status_code == 200
    assert nothing.text.strip() == ""
    assert nothing.headers["x-tether-last-seq"] == "3"
    await sessions.store.commit(
        "chat-1", header.version, append=[{"role": "assistant", "content": "a new reply"}]
    )
    fresh = await client.get(f"/s/chat-1/poll?after=3&version={header.version}")
    assert "a new reply" in fresh.text
    assert 'data-seq="4"' in fresh.text
    assert fresh.headers["x-tether-last-seq"] == "4"
    assert "x-tether-reload" not in fresh.headers
    version = int(fresh.headers["x-tether-version"])
    await sessions.clear("chat-1")  # a new version and no new item: the page reloads
    cleared = await client.get(f"/s/chat-1/poll?after=4&version={version}")
    assert cleared.headers["x-tether-reload"] == "1"
    archived = await sessions.archive("long-1")  # the status moved
    moved = await client.get(f"/s/long-1/poll?after=120&version={archived.version}&status=new")
    assert moved.headers["x-tether-reload"] == "1"


# --- escaping ------------------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


async def test_a_hostile_session_renders_inert(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    huge = "A" * 1_000_000 + "<script>alert(3)</script>"
    await sessions.create(
        "evil<b>",
        session_id="evil-1",
        owner='"><script>alert(4)</script>',
        metadata={"link": "javascript:alert(5)", "bidi": "abc\u202edcba"},
        state={"<script>": HOSTILE},
        history=[
            {"role": "user", "content": HOSTILE + " \u202egnp.exe \u2066x\u2069"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "x1",
                        "type": "function",
                        "function": {"name": "<b>tool</b>", "arguments": "not json <script>"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "x1", "content": huge},
            {"role": "<svg onload=alert(6)>", "content": "javascript:alert(7)"},
        ],
    )
    for path in ["/s/evil-1", "/", "/?all=1", "/s/evil-1/poll?after=0", "/s/evil-1/delete"]:
        page = (await client.get(path)).text
        assert "<script>alert" not in page, path
        assert "<img src=x" not in page, path
        assert "<svg" not in page, path
        assert "<b>tool" not in page, path
        assert "\u202e" not in page, path
        assert "\u2066" not in page, path
        assert not re.search(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", page, re.I), path
        assert len(page) < 200_000, (path, len(page))  # the megabyte string is folded
    page = (await client.get("/s/evil-1")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\\u202egnp.exe" in page  # the override is shown, not obeyed
    assert "not json &lt;script&gt;" in page
    assert "more characters are not shown here" in page
    # every <script> on the page is the inspector's own, from its own origin
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/inspector.js" defer>']
    whole = (await client.get("/api/sessions/evil-1?last=10")).json()
    assert whole["history"][2]["content"] == huge  # the API has it whole


# --- writes: CSRF, reviews, fork, archive, delete ------------------------------------------------


async def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    token = await csrf(client)
    path = "/s/chat-1/archive"
    assert (await client.post(path, data={})).status_code == 403
    assert (await client.post(path, data={"csrf": "0" * 64})).status_code == 403
    evil = {"origin": "http://127.0.0.1:9999"}
    assert (await client.post(path, data={"csrf": token}, headers=evil)).status_code == 403
    cross = {"sec-fetch-site": "cross-site"}
    assert (await client.post(path, data={"csrf": token}, headers=cross)).status_code == 403
    assert (await sessions.info("chat-1")).status.value != "archived"
    done = await post(client, path, {}, token)
    assert done.status_code == 303
    assert (await sessions.info("chat-1")).status.value == "archived"


async def test_approve_and_deny_record_who_answered(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient, reviews: list[str]
) -> None:
    token = await csrf(client)
    approve = {"review_id": reviews[0], "decision": "approve", "by": "ada"}
    answered = await post(client, "/reviews/answer", approve, token)
    assert answered.status_code == 303
    assert answered.headers["location"].startswith("/reviews?done=")
    no_reason = {"review_id": reviews[1], "decision": "deny", "reason": " "}
    assert (await post(client, "/reviews/answer", no_reason, token)).status_code == 400
    deny = {"review_id": reviews[1], "decision": "deny", "reason": "no receipt", "back": "session"}
    denied = await post(client, "/reviews/answer", deny, token)
    assert denied.headers["location"] == "/s/refund-2#reviews"
    agent = AsyncAgent(sessions)
    [first] = await agent.reviews("refund-1")
    assert (first.decision, first.by) == ("approved", "web:ada")
    [second] = await agent.reviews("refund-2")
    assert (second.decision, second.note, second.by) == ("denied", "no receipt", "web:inspector")
    again = await post(client, "/reviews/answer", approve, token)
    assert again.status_code == 409
    assert "already answered" in again.text
    page = (await client.get("/reviews")).text
    assert "Nothing waits for a human." in page
    assert "by <b>web:ada</b>" in page
    assert "“no receipt”" in page


async def test_an_expired_review_is_marked(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    from datetime import datetime, timezone

    @tool(requires_approval=True, approval_ttl=60)
    def wire(amount: int) -> str:
        """Wire money."""
        return "sent"

    await sessions.create("support", session_id="wire-1")
    call = ToolCall(id="w1", name="wire", arguments={"amount": 5})
    model = AsyncScriptedModel([ModelReply(tool_calls=[call])])
    then = datetime(2020, 1, 1, tzinfo=timezone.utc)  # asked in 2020, for a minute
    asked = AsyncAgent(sessions, llm=model, clock=lambda: then)
    await asked.run("wire-1", "send it", tools=[wire])
    agent = AsyncAgent(sessions)
    page = (await client.get("/reviews")).text
    marked = re.search(r'id="wire-1%2Frv_\w+">.*?</article>', page, re.S)
    assert marked, page
    assert '<span class="badge d-expired">expired</span>' in marked.group(0)
    assert "answering it records it as expired" in marked.group(0)
    [review] = await agent.pending_reviews("wire-1")
    token = await csrf(client)
    late = {"review_id": review.id, "decision": "approve"}
    answered = await post(client, "/reviews/answer", late, token)
    assert answered.status_code == 409
    [stored] = await agent.reviews("wire-1")
    assert stored.decision == "expired"


async def test_fork_at_an_item(sessions: tether.AsyncSessions, client: httpx.AsyncClient) -> None:
    token = await csrf(client)
    forked = await post(client, "/s/long-1/fork", {"at": "5", "new_id": "long-1-try"}, token)
    assert forked.status_code == 303
    assert forked.headers["location"] == "/s/long-1-try"
    child = await sessions.store.load("long-1-try")
    assert (child.parent_id, child.fork_seq, child.history_len) == ("long-1", 5, 5)
    page = (await client.get("/s/long-1-try")).text
    assert 'href="/s/long-1"' in page  # forked from, linked
    whole = await post(client, "/s/chat-1/fork", {}, token)
    assert whole.status_code == 303
    assert (await post(client, "/s/chat-1/fork", {"at": "99"}, token)).status_code == 400


async def test_delete_asks_for_the_id(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    confirm = await client.get("/s/chat-1/delete")
    assert "Type the session's id to confirm" in confirm.text
    token = csrf_of(confirm.text)
    wrong = await post(client, "/s/chat-1/delete", {"confirm": "chat-2"}, token)
    assert wrong.status_code == 400
    assert await sessions.exists("chat-1")
    done = await post(client, "/s/chat-1/delete", {"confirm": "chat-1"}, token)
    assert done.status_code == 303
    assert done.headers["location"] == "/?deleted=chat-1"
    assert not await sessions.exists("chat-1")
    assert "Deleted session <code>chat-1</code>" in (await client.get("/?deleted=chat-1")).text


async def test_read_only_offers_and_accepts_no_write(
    sessions: tether.AsyncSessions, reviews: list[str]
) -> None:
    writable = create_app(sessions, token=TOKEN)
    async with client_for(writable) as client:
        token = await csrf(client)
    app = create_app(sessions, token=TOKEN, read_only=True)
    async with client_for(app) as client:
        for path in ["/", "/s/chat-1", "/s/refund-1", "/reviews", "/s/long-1"]:
            page = await client.get(path)
            assert page.status_code == 200
            assert 'method="post"' not in page.text, path
            assert "read-only" in page.text
        assert (await client.get("/s/chat-1/delete")).status_code == 403
        writes = [
            ("/s/chat-1/archive", {}),
            ("/s/chat-1/fork", {"at": "1"}),
            ("/s/chat-1/delete", {"confirm": "chat-1"}),
            ("/reviews/answer", {"review_id": reviews[0], "decision": "approve"}),
        ]
        for path, data in writes:
            assert (await post(client, path, data, token)).status_code == 403, path
    assert (await sessions.info("chat-1")).status.value != "archived"
    assert [r.decision for r in await AsyncAgent(sessions).reviews("refund-1")] == [None]


# --- the JSON API: the CLI's --json shapes -------------------------------------------------------


async def test_the_api_answers_with_the_cli_shapes(
    sessions: tether.AsyncSessions, client: httpx.AsyncClient
) -> None:
    page = await sessions.list(owner="ada", limit=50)
    listed = (await client.get("/api/sessions?owner=ada")).json()
    assert listed == json.loads(render.terminal_json(render.page_json(page)))
    shown = (await client.get("/api/sessions/chat-1?last=2")).json()
    expected = render.session_json(await sessions.store.load("chat-1", last=2))
    assert shown == json.loads(render.terminal_json(expected))
    window = (await client.get("/api/sessions/long-1?after=10&limit=5")).json()
    assert [item["seq"] for item in window["history"]] == [11, 12, 13, 14, 15]
    agent = AsyncAgent(sessions)
    replay = (await client.get("/api/sessions/refund-1/replay")).json()
    assert replay == json.loads(
        render.terminal_json(render.replay_json(await agent.replay("refund-1")))
    )
    reviews = (await client.get("/api/reviews")).json()
    assert reviews == json.loads(
        render.terminal_json([render.review_json(r) for r in await agent.reviews()])
    )
    one = (await client.get("/api/reviews?session=refund-2")).json()
    assert [r["session_id"] for r in one] == ["refund-2"]


def test_the_api_matches_the_cli_output_byte_for_byte(tmp_path: Path) -> None:
    """On a SQLite file both can open: /api/... and `tether ... --json` print the same text."""
    import asyncio

    from click.testing import CliRunner

    from tether.cli import cli

    url = f"sqlite:///{tmp_path / 'both.db'}"

    async def through_the_api() -> dict[str, str]:
        async with tether.AsyncSessions(url) as sessions:
            await seed(sessions)
            async with client_for(create_app(sessions, token=TOKEN)) as client:
                paths = {
                    "ls": "/api/sessions?status=waiting",
                    "show": "/api/sessions/long-1?last=10",
                    "reviews": "/api/reviews",
                    "replay": "/api/sessions/refund-1/replay",
                }
                return {name: (await client.get(path)).text for name, path in paths.items()}

    api = asyncio.run(through_the_api())
    runner = CliRunner()
    commands = {
        "ls": ["ls", "--status", "waiting", "--limit", "50", "--json"],
        "show": ["show", "long-1", "--json"],
        "reviews": ["reviews", "--json"],
        "replay": ["replay", "refund-1", "--json"],
    }
    for name, args in commands.items():
        result = runner.invoke(cli, ["--store", url, *args])
        assert result.exit_code == 0, result.output
        assert result.output == api[name] + "\n", name  # the same text, byte for byte


# --- mounting, and tether serve ------------------------------------------------------------------


async def test_mounted_under_a_prefix_in_another_app(sessions: tether.AsyncSessions) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    await seed(sessions)
    outer = Starlette(routes=[Mount("/inspector", app=create_app(sessions, token=TOKEN))])
    async with client_for(outer, token=None) as client:
        opened = await client.get(f"/inspector/?token={TOKEN}")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/inspector/"
        assert "Path=/inspector" in opened.headers["set-cookie"]
        page = await client.get("/inspector/s/chat-1")
        assert page.status_code == 200
        assert 'href="/inspector/static/inspector.css"' in page.text
        assert 'action="/inspector/s/chat-1/fork"' in page.text


def test_serve_refuses_another_host_without_a_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tether.cli import cli
    from tether.cli.serve import is_loopback, url_for

    url = f"sqlite:///{tmp_path / 'x.db'}"
    refused = CliRunner().invoke(cli, ["serve", "--store", url, "--host", "0.0.0.0"])
    assert refused.exit_code == 2
    assert "refusing to start without an explicit --token" in refused.output
    short = CliRunner().invoke(cli, ["serve", "--store", url, "--token", "abc"])
    assert short.exit_code == 2
    missing = CliRunner().invoke(cli, ["serve", "--store", url])
    assert missing.exit_code == 1
    assert "no SQLite database" in missing.output
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.4")
    assert url_for("::1", 8765, "t") == "http://[::1]:8765/?token=t"


def test_the_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/inspector.py (a step of make bench) at a tiny size: it works; no time is
    asserted here."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "inspector.json"
    sizes = ["--sessions", "30,60", "--histories", "120", "--repeats", "2"]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "inspector.py"), *sizes, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert [row["sessions"] for row in figures["sessions_page"]] == [30, 60]
    assert [row["items"] for row in figures["session_page"]] == [120]
    assert figures["session_page"][0]["newest"]["bytes"] > 0
    assert "| 60 |" in result.stdout
