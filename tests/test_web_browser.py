"""The inspector in a real browser: headless Chromium (the distribution's ``chromium``
package) driven by Playwright, against ``tether serve`` running as its own process on a free
port, on SQLite and PostgreSQL.

Skips, with the reason, when Playwright or Chromium is missing (``.ci/ensure-services``
installs Chromium with apt-get); under CI=true a skip would hide a broken setup, so it fails.
Screenshots of each page go to a temporary directory (its path is printed; set
``TETHER_SCREENSHOTS=DIR`` to keep them somewhere).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.agent import Agent, ModelReply, ScriptedModel, ToolCall, tool

from .conftest import IN_CI, drop_postgres_schema, require_module, require_server, with_options

require_module("playwright", "dev")
require_module("starlette", "web")

# a real browser: make check leaves it out, make test runs it
pytestmark = pytest.mark.heavy

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright  # noqa: E402

CHROMIUM = os.environ.get("TETHER_TEST_CHROMIUM", "/usr/bin/chromium")
TOKEN = "browser-" + uuid.uuid4().hex
LONG = 260  # items in the long session: six pages of 50


def _chromium() -> str:
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        message = (
            f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/ensure-services does "
            "it as root) or set TETHER_TEST_CHROMIUM"
        )
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return found


@tool(requires_approval=True)
def refund(order_id: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


HOSTILE = (
    "<script>window.pwned = 1; alert('script')</script>"
    "<img src=x onerror=\"document.title='pwned'; alert('img')\">"
    "<a href=\"javascript:alert('link')\" id=evil>click</a>"
    '<meta http-equiv=refresh content="0;url=https://example.invalid/">'
)


def seed(url: str) -> list[str]:
    """The sessions every test here uses (each its own, as the tests change them). Returns
    the ids of the two reviews."""
    with tether.Sessions(url) as sessions:
        for n in range(1, 8):
            sessions.create(
                "support" if n % 2 else "billing",
                session_id=f"list-{n}",
                owner="ada" if n <= 5 else "bob",
                metadata={"channel": "web" if n % 2 else "mail"},
                history=[{"role": "user", "content": f"list question {n}"}],
            )
        sessions.create(
            "support",
            session_id="chat-1",
            owner="ada",
            state={"order": "A1001", "customer": {"name": "Ada", "tier": "gold"}},
            options={"model": "gpt-4o-mini"},
            history=[
                {"role": "system", "content": "You are a helpful support agent."},
                {"role": "user", "content": "Where is my order A1001?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": '{"id": "A1001"}'},
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "name": "lookup_order",
                    "content": '{"status": "shipped", "carrier": "DHL", "eta": "tomorrow"}',
                },
                {
                    "role": "assistant",
                    "content": "Your order shipped with DHL; it arrives tomorrow.",
                },
                {"role": "user", "content": "Great, thanks! " + "And a long note. " * 80},
            ],
        )
        sessions.create(
            "support",
            session_id="long-1",
            owner="cy",
            history=[
                {"role": "user" if i % 2 else "assistant", "content": f"message number {i}"}
                for i in range(1, LONG + 1)
            ],
        )
        sessions.create("support", session_id="fork-me", owner="ada", history=[
            {"role": "user", "content": f"step {i}"} for i in range(1, 6)
        ])  # fmt: skip
        sessions.create("support", session_id="live-1", owner="ada", history=[
            {"role": "user", "content": "hello?"}
        ])  # fmt: skip
        sessions.create("support", session_id="xsite-1", owner="ada")
        sessions.create(
            "evil",
            session_id="evil-1",
            owner=HOSTILE,
            metadata={"link": "javascript:alert('meta')"},
            state={"html": HOSTILE},
            history=[
                {"role": "user", "content": HOSTILE + " \u202egnp.exe"},
                {"role": "assistant", "content": "A" * 1_000_000},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "e1",
                            "type": "function",
                            "function": {"name": HOSTILE, "arguments": json.dumps({"x": HOSTILE})},
                        }
                    ],
                },
            ],
        )
        ids = []
        for n in (1, 2):
            sid = f"refund-{n}"
            sessions.create("support", session_id=sid, owner="ada")
            call = ToolCall(id=f"c{n}", name="refund", arguments={"order_id": f"A100{n}"})
            agent = Agent(sessions, llm=ScriptedModel([ModelReply(tool_calls=[call])]))
            agent.run(sid, f"Please refund order A100{n}", tools=[refund])
            [review] = agent.pending_reviews(sid)
            ids.append(review.id)
        return ids


class Server:
    """``tether serve`` in its own process; ``url`` is the address it printed."""

    def __init__(self, store: str, *extra: str) -> None:
        command = [sys.executable, "-m", "tether", "serve", "--store", store, "--port", "0"]
        self.process = subprocess.Popen(
            [*command, "--token", TOKEN, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"tether serve printed no address: {seen}") from None
            seen.append(line)
            if line.startswith("open: "):
                self.url = line.split(" ", 1)[1].strip()
                break
        self.origin = self.url.split("/?", 1)[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'sessions.db'}"
        yield url, seed(url)
        return
    require_module("psycopg", "postgres")
    base = require_server("postgres")
    name = f"tether_tbrowser_{uuid.uuid4().hex[:12]}"
    url = with_options(base, schema=name)
    try:
        yield url, seed(url)
    finally:
        drop_postgres_schema(base, name)


@pytest.fixture(scope="module")
def server(store: tuple[str, list[str]]) -> Iterator[Server]:
    running = Server(store[0])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("TETHER_SCREENSHOTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1360, "height": 900})
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext, server: Server) -> Iterator[Page]:
    """A page that has opened the token URL (so it holds the cookie). A dialog (alert,
    confirm, prompt) opened by anything on it fails the test."""
    opened = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def no_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def console(message: Any) -> None:
        # the policy blocks what a hostile session could inject; it must never block ours
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    opened.on("dialog", no_dialog)
    opened.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    opened.on("console", console)
    opened.goto(server.url)
    yield opened
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert errors == [], errors


def shot(page: Page, shots: Path, store: tuple[str, list[str]], name: str) -> None:
    kind = store[0].split(":", 1)[0]
    page.screenshot(path=str(shots / f"{kind}-{name}.png"), full_page=False)


def follow(page: Page, link: str) -> None:
    """Click ``link`` and wait until the page it opens is the one shown and loaded: reading
    right after a click can read the old page, or the new one before it is parsed."""
    before = page.url
    page.click(link)
    page.wait_for_url(lambda url: url != before)
    page.wait_for_load_state()


def seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("#timeline .entry").evaluate_all(
        "els => els.map(e => e.dataset.seq)"
    )]  # fmt: skip


# --- the token -----------------------------------------------------------------------------------


def test_the_token_url_opens_and_a_wrong_token_is_refused(
    context: BrowserContext, server: Server, shots: Path, store: tuple[str, list[str]]
) -> None:
    page = context.new_page()
    refused = page.goto(server.origin + "/")
    assert refused is not None
    assert refused.status == 401
    assert "needs its access token" in page.content()
    wrong = page.goto(server.origin + "/?token=not-the-token")
    assert wrong is not None
    assert wrong.status == 403
    page.goto(server.url)
    assert page.url == server.origin + "/"  # the token left the address bar
    assert page.locator("h1").inner_text() == "Sessions"
    cookies = context.cookies()
    assert [c["httpOnly"] for c in cookies] == [True]
    assert [c["sameSite"] for c in cookies] == ["Strict"]
    page.wait_for_selector("#counts .counts")  # the counts by status, fetched by the script
    shot(page, shots, store, "sessions")


# --- the list ------------------------------------------------------------------------------------


def test_filter_and_page_the_list(page: Page) -> None:
    page.fill("input[name=owner]", "ada")
    page.locator("select[name=limit]").select_option("20")
    page.check("input[name=status][value=new]")
    page.click("button:has-text('Filter')")
    # the form's GET navigates: read the list once the filtered page is the one shown
    page.wait_for_url(re.compile(r"[?&]owner=ada(&|$)"))
    page.wait_for_load_state()
    ids = page.locator("td.id > a").all_inner_texts()
    assert "list-1" in ids
    assert "list-6" not in ids  # bob's
    assert "refund-1" not in ids  # waiting, not new
    page.fill("input[name=meta] >> nth=0", "channel=mail")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"[?&]meta=channel"))
    page.wait_for_load_state()
    assert sorted(page.locator("td.id > a").all_inner_texts()) == ["list-2", "list-4"]
    # three to a page: the cursor walks them all, none twice
    page.goto(page.url.split("?")[0] + "?limit=3&owner=ada&status=new")
    seen = page.locator("td.id > a").all_inner_texts()
    while page.locator("a[rel=next]").count():
        follow(page, "a[rel=next]")
        more = page.locator("td.id > a").all_inner_texts()
        assert not set(more) & set(seen)
        seen += more
    assert {f"list-{n}" for n in range(1, 6)} <= set(seen)
    page.fill("header input[name=id]", "chat-1")
    page.press("header input[name=id]", "Enter")
    page.wait_for_url(re.compile(r"/s/chat-1$"))


# --- a session -----------------------------------------------------------------------------------


def test_a_session_reads_as_a_conversation(
    page: Page, server: Server, shots: Path, store: tuple[str, list[str]]
) -> None:
    page.goto(server.origin + "/s/chat-1")
    assert page.locator(".entry.k-user").count() == 2
    assert page.locator(".entry.k-tool_call .fn").inner_text() == "lookup_order"
    assert "shipped" in page.locator(".entry.k-tool_result").inner_text()
    folded = page.locator(".entry.k-user details.more").last
    assert not folded.evaluate("d => d.open")
    folded.locator("summary").click()
    assert folded.evaluate("d => d.open")
    shot(page, shots, store, "session")


def test_page_back_through_a_long_timeline(
    page: Page, server: Server, shots: Path, store: tuple[str, list[str]]
) -> None:
    page.goto(server.origin + "/s/long-1")
    assert seqs(page) == list(range(LONG - 49, LONG + 1))
    pages = 1
    while page.locator("a[rel=prev]").count():
        first = seqs(page)[0]
        follow(page, "a[rel=prev]")
        shown = seqs(page)
        assert shown[-1] == first - 1
        pages += 1
    assert seqs(page)[0] == 1
    assert pages == -(-LONG // 50)
    shot(page, shots, store, "timeline-oldest")
    follow(page, "a[rel=next]")
    assert seqs(page)[0] == 11


def test_live_updates_while_another_process_commits(
    page: Page, server: Server, store: tuple[str, list[str]]
) -> None:
    page.goto(server.origin + "/s/live-1")
    page.wait_for_selector("#live:not([hidden])")
    script = (
        "import sys, tether\n"
        "with tether.open_store(sys.argv[1]) as store:\n"
        "    header = store.load('live-1', last=0)\n"
        "    reply = {'role': 'assistant', 'content': 'written by another process'}\n"
        "    store.commit('live-1', header.version, append=[reply])\n"
    )
    subprocess.run([sys.executable, "-c", script, store[0]], check=True, timeout=60)
    page.wait_for_selector("#timeline .entry:has-text('written by another process')")
    assert seqs(page) == [1, 2]  # appended, without a reload


# --- writes --------------------------------------------------------------------------------------


def test_approve_and_deny_with_a_reason(
    page: Page, server: Server, shots: Path, store: tuple[str, list[str]]
) -> None:
    first, second = store[1]
    page.goto(server.origin + "/reviews")
    shot(page, shots, store, "reviews")
    approve = page.locator(f"article.review:has(input[value='{first}']) form.answer")
    approve.locator("input[name=by]").fill("ada")
    approve.locator("button[value=approve]").click()  # no reason needed to approve
    page.wait_for_url(re.compile(r"/reviews\?done="))
    deny = page.locator(f"article.review:has(input[value='{second}']) form.answer")
    deny.locator("button[value=deny]").click()  # a denial without a reason is not sent
    assert deny.locator("input[name=reason]:invalid").count() == 1
    deny.locator("input[name=reason]").fill("refunds need a receipt")
    deny.locator("button[value=deny]").click()
    page.wait_for_url(re.compile(r"/reviews\?done="))
    answered = page.locator("article.review.answered")
    assert answered.count() == 2
    assert "web:ada" in page.content()
    with tether.Sessions(store[0]) as sessions:
        agent = Agent(sessions)
        [one] = agent.reviews("refund-1")
        [two] = agent.reviews("refund-2")
    assert (one.decision, one.by) == ("approved", "web:ada")
    assert (two.decision, two.note, two.by) == ("denied", "refunds need a receipt", "web:inspector")
    shot(page, shots, store, "reviews-answered")


def test_fork_from_an_item(page: Page, server: Server, store: tuple[str, list[str]]) -> None:
    page.goto(server.origin + "/s/fork-me")
    page.locator("#i3 form.fork button").click()
    page.wait_for_url(lambda url: "/s/fork-me" not in url)
    child_id = page.url.rsplit("/", 1)[1]
    assert seqs(page) == [1, 2, 3]
    with tether.Sessions(store[0]) as sessions:
        child = sessions.info(child_id)
    assert (child.parent_id, child.fork_seq) == ("fork-me", 3)


def test_a_hostile_session_renders_inert(
    page: Page, server: Server, shots: Path, store: tuple[str, list[str]]
) -> None:
    for path in ["/s/evil-1", "/?owner=" + HOSTILE.replace("&", "%26").replace("#", "%23"), "/"]:
        page.goto(server.origin + path)
        page.wait_for_timeout(300)  # time for an onerror or a refresh to fire, if one could
        assert page.url.startswith(server.origin)  # no navigation
        assert page.title() != "pwned"
        assert page.evaluate("window.pwned") is None
        assert page.locator("#evil").count() == 0
        hrefs = page.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript:")]
    page.goto(server.origin + "/s/evil-1")
    assert "<script>window.pwned" in page.locator(".entry.k-user .text").inner_text()
    assert "\\u202egnp.exe" in page.locator(".entry.k-user .text").inner_text()
    assert len(page.content()) < 300_000  # the megabyte reply is folded
    shot(page, shots, store, "hostile")


def test_a_cross_site_post_without_the_csrf_token_is_refused(
    page: Page, server: Server, store: tuple[str, list[str]]
) -> None:
    """Another site on this machine (another port: the same site for cookies) posts a form to
    the inspector; the browser sends the cookie, and the inspector still refuses."""
    target = server.origin + "/s/xsite-1/archive"
    evil_page = (
        f'<form id=f method=post action="{target}"><input name=x value=1></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(evil_page)

        def log_message(self, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url == target) as posted:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert posted.value.status == 403
    finally:
        evil.shutdown()
        evil.server_close()
    with tether.Sessions(store[0]) as sessions:
        assert sessions.info("xsite-1").status.value != "archived"


def test_read_only_offers_no_write(
    browser: Browser, store: tuple[str, list[str]], shots: Path
) -> None:
    server = Server(store[0], "--read-only")
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        page = context.new_page()
        page.goto(server.url)
        for path in ["/", "/s/chat-1", "/s/refund-1", "/reviews", "/s/long-1"]:
            page.goto(server.origin + path)
            assert page.locator("form[method=post]").count() == 0, path
            assert page.locator("button:has-text('Approve')").count() == 0, path
            assert page.locator("text=read-only").count() >= 1
        page.goto(server.origin + "/s/chat-1")
        shot(page, shots, store, "read-only")
        assert page.goto(server.origin + "/s/chat-1/delete").status == 403  # type: ignore[union-attr]
    finally:
        context.close()
        server.stop()


def test_reading_works_with_javascript_off(browser: Browser, server: Server) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(server.url)
        assert page.locator("td.id > a").count() > 5
        page.click("#counts a")  # the <noscript> link: the counts as a page
        assert page.locator("h1").inner_text() == "Sessions by status"
        assert page.locator(".counts .s-waiting b").count() == 1
        page.goto(server.origin + "/s/long-1")
        assert seqs(page)[-1] == LONG
        follow(page, "a[rel=prev]")
        assert seqs(page)[-1] == LONG - 50
        assert page.locator("#live").is_hidden()  # nothing live without the script
        page.goto(server.origin + "/reviews")
        assert page.locator("h1").inner_text() == "Reviews"
    finally:
        context.close()
