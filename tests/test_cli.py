"""The ``tether`` command, driven through click's CliRunner against real stores.

CliRunner runs in this process, and every invocation opens its store afresh, so the stores are
files (SQLite, the file store) or servers, never ``memory://``. Sessions are seeded with the
library itself; the CLI is only ever asked to read or steer them.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tether
from tether.agent import Agent, ModelReply, ScriptedModel, ToolCall, tool
from tether.cli import cli
from tether.cli import common as cli_common

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options

ROOT = Path(__file__).resolve().parent.parent


@tool(rerun="once", requires_approval=True, approval_ttl=3600)
def refund(order_id: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


def invoke(url: str | None, *args: str, input: str | None = None, **kw: Any) -> Result:
    store = ["--store", url] if url is not None else []
    return CliRunner().invoke(cli, [*store, *args], input=input, **kw)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def fails(result: Result, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and exactly one clear line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def seed(url: str) -> str:
    """chat-1 (ada, web, 3 items), chat-2 (bob, archived), refund-1 (waiting on a review).

    Returns the review id.
    """
    with tether.Sessions(url) as sessions:
        sessions.create(
            "support",
            session_id="chat-1",
            owner="ada",
            metadata={"channel": "web", "priority": 2},
            state={"order": "A1001"},
            options={"model": "gpt-test", "system_prompt": "Be brief."},
            history=[
                {"role": "user", "content": "Where is [bold]order[/bold] A1001?"},
                {"role": "assistant", "content": "It shipped yesterday."},
                {"role": "user", "content": "Thanks!"},
            ],
        )
        sessions.create("billing", session_id="chat-2", owner="bob", metadata={"channel": "mail"})
        sessions.archive("chat-2")
        sessions.create("support", session_id="refund-1", owner="ada")
        model = ScriptedModel(
            [
                ModelReply(
                    tool_calls=[ToolCall(id="c1", name="refund", arguments={"order_id": "A1001"})]
                ),
                "Refunded.",
            ]
        )
        agent = Agent(sessions, llm=model, tools=[refund])
        stopped = agent.run("refund-1", "Please refund A1001")
        assert stopped.status == "waiting"
        [review] = agent.pending_reviews()
        return review.id


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"  # an absolute path: sqlite:////...
    return f"file:{tmp_path / 'sessions'}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


# --- help and the group --------------------------------------------------------------------------

SUMMARIES = {
    "ls": "List sessions, newest first",
    "show": "Show a session: header, state, options, newest items.",
    "replay": "Show the timeline of a session's turns",
    "inspect": "Print a session's turns as plain text",
    "reviews": "List the tool calls waiting for a human.",
    "approve": "Approve a pending tool call",
    "deny": "Deny a pending tool call, saying why.",
    "resume": "Continue a hibernated or approved turn, with your tools.",
    "fork": "Copy a session into a new one",
    "rm": "Delete a session and its history",
    "archive": "Archive one session, or all inactive ones.",
    "clear": "Empty a session's history",
    "export": "Write sessions, whole and exact, to a JSON-lines file.",
    "import": "Read sessions from an export file into the store",
    "copy": "Copy every session between two stores",
    "migrate": "Bring a store and its sessions to this tether's schema",
    "demo": "Run the support-agent story, each step in its own process.",
    "serve": "Open a web inspector and review desk on this store, in a browser.",
    "worker": "Run the agent turns queued in a store, until SIGTERM.",
    "rekey": "Re-encrypt every session to the current key, then verify.",
}


@pytest.mark.parametrize("command", sorted(SUMMARIES))
def test_every_command_has_help_with_a_summary_and_examples(command: str) -> None:
    out = ok(invoke(None, command, "--help"))
    assert out.startswith(f"Usage: tether {command} ")
    assert SUMMARIES[command] in out
    assert f"Examples:\n    tether {command}" in out or "tether resume job-7" in out


def test_group_help_lists_every_command_and_the_store_option() -> None:
    out = ok(invoke(None, "--help"))
    assert "See and steer the durable sessions of a tether store." in out
    assert "--store URL" in out
    assert "TETHER_URL" in out
    assert tether.DEFAULT_URL in out
    listed = out.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in listed] == list(SUMMARIES)
    assert not [line for line in listed if line.endswith("...")], "a summary cut short"


def test_version() -> None:
    assert ok(invoke(None, "--version")).strip() == f"tether {tether.__version__}"


def test_store_comes_from_tether_url_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "env.db"
    with tether.Sessions(f"sqlite:///{db}") as sessions:
        sessions.create(session_id="from-env")
    out = ok(CliRunner().invoke(cli, ["ls"], env={"TETHER_URL": f"sqlite:///{db}"}))
    assert "from-env" in out
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_URL", raising=False)
    default = tmp_path / ".tether" / "sessions.db"
    line = fails(CliRunner().invoke(cli, ["ls"], env={"TETHER_URL": None}), 1, str(default))
    assert "nothing was created" in line
    assert not default.parent.exists()  # reading never creates
    tether.open_store().close()  # a writer creates the embedded default
    out = ok(CliRunner().invoke(cli, ["ls"], env={"TETHER_URL": None}))
    assert out.strip() == f"no sessions in {tether.DEFAULT_URL}"


# --- reading -------------------------------------------------------------------------------------


def test_ls_lists_active_sessions_newest_first(url: str) -> None:
    seed(url)
    out = ok(invoke(url, "ls"))
    lines = out.splitlines()
    assert lines[0].split() == ["id", "status", "owner", "agent", "version", "items", "updated"]
    assert [line.split()[0] for line in lines[1:]] == ["refund-1", "chat-1"]  # not archived
    assert lines[2].split()[:6] == ["chat-1", "new", "ada", "support", "1", "3"]
    assert all(not line.endswith(" ") for line in lines)  # plain text when not a terminal
    with_archived = ok(invoke(url, "ls", "--all"))
    assert "chat-2" in with_archived
    assert "archived" in with_archived


def test_ls_filters(url: str) -> None:
    seed(url)

    def ids(*args: str) -> list[str]:
        data = json.loads(ok(invoke(url, "ls", "--json", *args)))
        return [s["id"] for s in data["sessions"]]

    assert ids("--owner", "bob") == []  # archived: left out unless asked for
    assert ids("--owner", "bob", "--all") == ["chat-2"]
    assert ids("--agent", "support") == ["refund-1", "chat-1"]
    assert ids("--status", "waiting") == ["refund-1"]
    assert ids("--status", "waiting", "--status", "archived") == ["refund-1", "chat-2"]
    assert ids("--meta", "channel=web") == ["chat-1"]
    assert ids("--meta", "priority=2") == ["chat-1"]  # parsed as JSON: the number 2
    assert ids("--meta", 'priority="2"') == []  # the string "2" is another value
    assert ids("--meta", "channel=web", "--meta", "priority=3") == []
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert ids("--updated-since", future) == []
    assert ids("--updated-before", future) == ["refund-1", "chat-1"]
    assert ids("--updated-since", "2000-01-01") == ["refund-1", "chat-1"]
    assert ids("--updated-before", "2000-01-01T00:00:00Z") == []


def test_ls_pages_with_a_cursor(url: str) -> None:
    seed(url)
    first = ok(invoke(url, "ls", "--all", "--limit", "2"))
    assert len(first.splitlines()) == 4  # header, 2 rows, the next-page line
    hint = shlex.split(first.splitlines()[-1].removeprefix("more: "))
    assert hint[:5] == ["tether", "--store", url, "ls", "--all"]  # the same store and filters
    assert hint[5:7] == ["--limit=2", "--cursor"]
    cursor = hint[-1]
    second = ok(CliRunner().invoke(cli, hint[1:]))  # the hint, run as printed
    assert "more:" not in second
    seen = [line.split()[0] for line in first.splitlines()[1:3] + second.splitlines()[1:]]
    assert sorted(seen) == ["chat-1", "chat-2", "refund-1"]
    page = json.loads(ok(invoke(url, "ls", "--all", "--limit", "2", "--json")))
    assert page["next_cursor"] == cursor
    assert len(page["sessions"]) == 2
    rest = json.loads(ok(invoke(url, "ls", "--all", "--json", "--cursor", cursor)))
    assert rest["next_cursor"] is None
    assert len(rest["sessions"]) == 1


def test_show(url: str) -> None:
    seed(url)
    out = ok(invoke(url, "show", "chat-1", "--last", "2"))
    header = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines())
    assert header["status"] == "new"
    assert header["owner"] == "ada"
    assert header["version"] == "1"
    assert header["items"] == "3 (seq 1..3)"
    assert header["lease"] == "none"
    assert datetime.fromisoformat(header["created"].replace("Z", "+00:00")).tzinfo is not None
    assert '"order": "A1001"' in out
    assert '"model": "gpt-test"' in out
    assert '"channel": "web"' in out
    assert "last 2 of 3 items" in out
    assert "It shipped yesterday." in out
    assert "Thanks!" in out
    assert "Where is" not in out  # only the last 2
    full = ok(invoke(url, "show", "chat-1"))
    assert "Where is [bold]order[/bold] A1001?" in full  # data, never rich markup


def test_show_a_waiting_session_names_its_turn_and_reviews(url: str) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "show", "refund-1"))
    assert "waiting" in out
    assert "stopped at step tools, tool calls pending: refund" in out
    assert "1 pending (tether reviews --session refund-1)" in out
    assert '"snapshot"' not in out  # the runtime's state is summarized; --json has it all
    data = json.loads(ok(invoke(url, "show", "refund-1", "--json")))
    assert data["state"]["_tether"]["reviews"][0]["id"] == review_id


def test_show_json(url: str) -> None:
    seed(url)
    data = json.loads(ok(invoke(url, "show", "chat-1", "--json", "--last", "1")))
    assert data["id"] == "chat-1"
    assert data["version"] == 1
    assert data["history_len"] == 3
    assert data["options"] == {"model": "gpt-test", "system_prompt": "Be brief."}
    assert data["metadata"] == {"channel": "web", "priority": 2}
    assert [item["seq"] for item in data["history"]] == [3]
    assert datetime.fromisoformat(data["created_at"].replace("Z", "+00:00"))


def test_replay_and_inspect(url: str) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "replay", "refund-1"))
    assert out.startswith("session refund-1  status waiting")
    kinds = [line.split()[2] for line in out.splitlines()[2:6]]
    assert kinds == ["user", "turn_started", "tool_call", "review_requested"]
    assert 'refund({"order_id": "A1001"})' in out
    assert f"pending review {review_id}" in out
    data = json.loads(ok(invoke(url, "replay", "refund-1", "--json")))
    assert data["session_id"] == "refund-1"
    assert data["status"] == "waiting"
    assert [e["kind"] for e in data["timeline"]] == kinds
    assert data["pending_reviews"][0]["id"] == review_id
    assert data["pending_reviews"][0]["arguments"] == {"order_id": "A1001"}
    text = ok(invoke(url, "inspect", "refund-1"))
    assert text.splitlines()[0] == "session refund-1  status waiting"
    assert "#3    tool_call        refund(" in text


# --- human review and resume ---------------------------------------------------------------------


def test_reviews_approve_and_the_turn_continues(url: str) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "reviews"))
    assert out.splitlines()[0] == review_id
    assert 'refund({"order_id": "A1001"})' in out
    assert "human's approval" in out
    listed = json.loads(ok(invoke(url, "reviews", "--json")))
    assert [r["id"] for r in listed] == [review_id]
    assert listed[0]["session_id"] == "refund-1"
    assert listed[0]["tool"] == "refund"
    assert json.loads(ok(invoke(url, "reviews", "--session", "chat-1", "--json"))) == []

    assert f"approved {review_id}" in ok(invoke(url, "approve", review_id))
    assert "approved by" in ok(invoke(url, "reviews"))  # answered, until the turn is resumed
    fails(invoke(url, "approve", review_id), 1, "already answered (approved)")
    # the application, which has the tool, resumes: it runs once
    with tether.Sessions(url) as sessions:
        agent = Agent(sessions, llm=ScriptedModel(["Refunded."]), tools=[refund])
        assert agent.resume("refund-1").text == "Refunded."  # type: ignore[union-attr]
    assert "review_approved" in ok(invoke(url, "replay", "refund-1"))
    assert "no pending reviews" in ok(invoke(url, "reviews"))


def test_deny_records_the_reason(url: str) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "deny", review_id, "--reason", "needs a receipt"))
    assert f"denied {review_id}" in out
    data = json.loads(ok(invoke(url, "replay", "refund-1", "--json")))
    assert data["timeline"][-1] == {
        **data["timeline"][-1],
        "kind": "review_denied",
        "note": "needs a receipt",
    }
    assert data["pending_reviews"] == []


class _ChatServer:
    """A chat-completions server on 127.0.0.1 that answers every request with one text."""

    def __init__(self, text: str) -> None:
        self.requests: list[dict[str, Any]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": text}}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def chat_server() -> Iterator[_ChatServer]:
    server = _ChatServer("Here is the summary.")
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(5)


def test_resume_a_turn_without_tools(
    url: str, chat_server: _ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with tether.Sessions(url) as sessions:
        sessions.create(session_id="job-7")
        stopped = Agent(sessions).run("job-7", "Summarize the report", checkpoint="after_prompt")
        assert stopped.status == "hibernated"
    args = ("resume", "job-7", "--model-url", chat_server.url)
    fails(invoke(url, *args), 2, "names no model", "--model")  # no model anywhere
    assert json.loads(ok(invoke(url, "show", "job-7", "--json")))["status"] == "hibernated"
    out = ok(invoke(url, *args, "--model", "small-model"))
    assert out.strip() == "Here is the summary."
    [request] = chat_server.requests
    assert request["model"] == "small-model"
    assert request["messages"] == [{"role": "user", "content": "Summarize the report"}]
    assert "tools" not in request
    assert json.loads(ok(invoke(url, "show", "job-7", "--json")))["status"] == "finished"
    fails(invoke(url, *args, "--model", "m"), 1, "has nothing to resume (status 'finished')")


def test_resume_refuses_a_turn_that_needs_tools_and_a_missing_model(url: str) -> None:
    seed(url)
    fails(invoke(url, "resume", "refund-1"), 2, "--model-url", "--model", "OPENAI_API_KEY")
    line = fails(
        invoke(url, "resume", "refund-1", "--model-url", "http://127.0.0.1:1/v1"),
        1,
        "uses the tools refund, which this resume was not given",
        "--tools module:attr",
    )
    assert "127.0.0.1:1" not in line  # refused before any model call
    fails(invoke(url, "resume", "chat-1", "--model-url", "http://x/v1"), 1, "nothing to resume")


# --- changing sessions ---------------------------------------------------------------------------


def test_fork(url: str) -> None:
    seed(url)
    out = ok(invoke(url, "fork", "chat-1", "--at", "2", "--id", "chat-1b"))
    assert out.strip() == "forked chat-1 at seq 2 -> chat-1b"
    child = json.loads(ok(invoke(url, "show", "chat-1b", "--json")))
    assert child["parent_id"] == "chat-1"
    assert child["fork_seq"] == 2
    assert [i["content"] for i in child["history"]] == [
        "Where is [bold]order[/bold] A1001?",
        "It shipped yesterday.",
    ]
    generated = ok(invoke(url, "fork", "chat-1")).split(" -> ")[1].strip()
    assert json.loads(ok(invoke(url, "show", generated, "--json")))["history_len"] == 3
    fails(invoke(url, "fork", "chat-1", "--at", "9"), 1, "cannot fork")
    fails(invoke(url, "fork", "chat-1", "--id", "chat-1b"), 1, "already exists")


def test_rm(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(url)
    fails(invoke(url, "rm", "chat-1"), 2, "refusing without --yes", "not a terminal")
    assert ok(invoke(url, "show", "chat-1", "--json"))  # still there
    monkeypatch.setattr(cli_common, "_interactive", lambda: True)
    declined = invoke(url, "rm", "chat-1", input="n\n")
    assert declined.exit_code == 1
    assert declined.stderr.splitlines() == [
        "Delete session chat-1 (3 items)? [y/N]: n",
        "error: nothing was changed",
    ]
    assert ok(invoke(url, "rm", "chat-1", input="y\n")).strip() == "deleted chat-1"
    assert ok(invoke(url, "rm", "refund-1", "--yes")).strip() == "deleted refund-1"
    fails(invoke(url, "show", "chat-1"), 1, "'chat-1' not found")
    fails(invoke(url, "rm", "chat-1", "--yes"), 1, "'chat-1' not found")
    assert "chat-2" in ok(invoke(url, "ls", "--all"))


def test_archive_one_or_the_inactive(url: str) -> None:
    seed(url)
    assert ok(invoke(url, "archive", "chat-1")).strip() == "archived chat-1"
    assert json.loads(ok(invoke(url, "show", "chat-1", "--json")))["status"] == "archived"
    out = ok(invoke(url, "archive", "--inactive-days", "1"))
    assert out.strip() == "archived 0 sessions not updated for 1 day"
    out = ok(invoke(url, "archive", "--inactive-days", "0"))
    # refund-1 waits for a human: archived, its review would drop out of `tether reviews`
    assert out.strip() == "archived 0 sessions not updated for 0 days"
    assert [h["id"] for h in json.loads(ok(invoke(url, "ls", "--json")))["sessions"]] == [
        "refund-1"
    ]
    fails(invoke(url, "archive"), 2, "exactly one")
    fails(invoke(url, "archive", "chat-1", "--inactive-days", "3"), 2, "exactly one")
    fails(invoke(url, "archive", "--inactive-days", "-1"), 2, "--inactive-days")


def test_clear(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(url)
    fails(invoke(url, "clear", "chat-1"), 2, "refusing without --yes")
    out = ok(invoke(url, "clear", "chat-1", "--yes"))
    assert out.strip() == "cleared chat-1: 3 items removed"
    data = json.loads(ok(invoke(url, "show", "chat-1", "--json")))
    assert data["history"] == []
    assert data["state"] == {"order": "A1001"}
    assert data["options"]["model"] == "gpt-test"


# --- bad input: one line, the right exit status, no traceback ------------------------------------


def test_unknown_session_ids(sqlite_url: str) -> None:
    seed(sqlite_url)
    for command in (
        ["show", "nope"],
        ["replay", "nope"],
        ["inspect", "nope"],
        ["reviews", "--session", "nope"],
        ["fork", "nope"],
        ["archive", "nope"],
        ["clear", "nope", "--yes"],
        ["rm", "nope", "--yes"],
        ["resume", "nope", "--model-url", "http://x/v1"],
    ):
        fails(invoke(sqlite_url, *command), 1, "session 'nope' not found")
    fails(invoke(sqlite_url, "show", "../etc"), 1, "invalid session id")


@pytest.mark.parametrize(
    ("store", "fragment"),
    [
        ("ftp://host/x", "unknown store scheme 'ftp'"),
        ("not-a-url", "is not a store URL"),
        ("sqlite:///x.db?bogus=1", "bogus"),
        ("redis://127.0.0.1:1/0", "cannot be reached"),
    ],
)
def test_bad_store_urls(
    store: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fails(invoke(store, "ls"), 1, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ls", "--meta", "channel"], "'channel' is not KEY=VALUE"),
        (["ls", "--meta", "=web"], "is not KEY=VALUE"),
        (["ls", "--updated-since", "yesterday"], "'yesterday' is not an ISO 8601 time"),
        (["ls", "--updated-before", "2024-13-01"], "is not an ISO 8601 time"),
        (["ls", "--status", "sleeping"], "'sleeping' is not one of"),
        (["ls", "--limit", "0"], "--limit"),
        (["show", "chat-1", "--last", "-1"], "--last"),
        (["deny", "refund-1/rv_000000000000"], "Missing option '--reason'"),
        (["show"], "Missing argument 'ID'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["--frobnicate", "ls"], "No such option"),
    ],
)
def test_usage_errors(sqlite_url: str, args: list[str], fragment: str) -> None:
    seed(sqlite_url)
    line = fails(invoke(sqlite_url, *args), 2, fragment)
    assert "--help" in line  # says where to look


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["approve", "refund-1/rv_000000000000"], "has no such open review"),
        (["approve", "no-such-session/rv_000000000000"], "'no-such-session' not found"),
        (["approve", "not-a-review-id"], "is not a review id"),
        (["deny", "chat-1/rv_000000000000", "--reason", "no"], "has no such open review"),
        (["ls", "--cursor", "garbage"], "is not a cursor this store returned"),
    ],
)
def test_operational_errors(sqlite_url: str, args: list[str], fragment: str) -> None:
    seed(sqlite_url)
    fails(invoke(sqlite_url, *args), 1, fragment)


def test_an_expired_review_cannot_be_approved(sqlite_url: str) -> None:
    review_id = seed(sqlite_url)
    with tether.Sessions(sqlite_url) as sessions:
        agent = Agent(sessions, clock=lambda: datetime.now(timezone.utc) + timedelta(days=2))
        with pytest.raises(tether.ApprovalExpired):
            agent.approve(review_id)
    fails(invoke(sqlite_url, "approve", review_id), 1, "already answered (expired)")


def test_a_running_turn_is_reported_not_interleaved(sqlite_url: str) -> None:
    seed(sqlite_url)
    with tether.open_store(sqlite_url) as store:
        lease = store.claim("chat-1", "worker-9", 60)
        fails(invoke(sqlite_url, "clear", "chat-1", "--yes"), 1, "claimed by 'worker-9'")
        header = ok(invoke(sqlite_url, "show", "chat-1"))
        assert "held: worker-9 until" in header
        store.release(lease)


# --- server stores -------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "postgres"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    base = require_server(request.param)
    if request.param == "redis":
        namespace = f"t{uuid.uuid4().hex}"
        yield with_options(base, namespace=namespace)
        wipe_redis_namespace(base, namespace)
    else:
        schema = f"tether_t_{uuid.uuid4().hex[:12]}"
        yield with_options(base, schema=schema)
        drop_postgres_schema(base, schema)


def test_ls_show_rm_on_server_stores(server_url: str) -> None:
    review_id = seed(server_url)
    listed = json.loads(ok(invoke(server_url, "ls", "--json")))
    assert [s["id"] for s in listed["sessions"]] == ["refund-1", "chat-1"]
    assert "chat-1" in ok(invoke(server_url, "ls", "--meta", "channel=web"))
    assert "It shipped yesterday." in ok(invoke(server_url, "show", "chat-1"))
    assert review_id in ok(invoke(server_url, "reviews"))
    assert ok(invoke(server_url, "rm", "chat-1", "--yes")).strip() == "deleted chat-1"
    fails(invoke(server_url, "show", "chat-1"), 1, "not found")


# --- the generated reference ---------------------------------------------------------------------


def _reference_tool() -> Any:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools/cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    tool_module = _reference_tool()
    assert tool_module.main(["--check"]) == 0, capsys.readouterr().err
    text = (ROOT / "docs" / "cli_reference.md").read_text()
    for command in SUMMARIES:
        assert f"## `tether {command}`" in text
        assert f"Usage: tether {command} " in text


def test_the_reference_check_fails_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tool_module = _reference_tool()
    stale = tmp_path / "cli_reference.md"
    stale.write_text("# old\n")
    monkeypatch.setattr(tool_module, "TARGET", stale)
    monkeypatch.setattr(tool_module, "ROOT", tmp_path)
    assert tool_module.main(["--check"]) == 1
    assert "is stale" in capsys.readouterr().err
