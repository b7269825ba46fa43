"""The command line's part of human review: who answered, and resuming turns that use tools.

The README's ``tether approve … && tether resume …`` runs here as written, against a real
chat-completions server on 127.0.0.1 and the application's tools imported by ``--tools``.
"""

from __future__ import annotations

import getpass
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether

from .test_cli import _ChatServer, fails, invoke, ok, seed

TOOLS_MODULE = '''
from pathlib import Path

from tether.agent import ScriptedModel, Agent, tool

RAN = Path(__file__).with_name("refunds.txt")


@tool(rerun="once", requires_approval=True, approval_ttl=3600)
def refund(order_id: str) -> str:
    """Refund an order."""
    with RAN.open("a") as out:
        out.write(order_id + "\\n")
    return f"refunded {order_id}"


TOOLS = [refund]


def make_agent(sessions):
    return Agent(sessions, llm=ScriptedModel(["Refunded, from the factory."]), tools=TOOLS)
'''


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An application module in the working directory; its name, unique per test."""
    name = f"support_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TOOLS_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = list(sys.path)
    yield name
    sys.path[:] = path
    sys.modules.pop(name, None)


@pytest.fixture
def model_server() -> Iterator[_ChatServer]:
    server = _ChatServer("Your refund is on its way.")
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(5)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


def _ran(tmp_path: Path) -> list[str]:
    path = tmp_path / "refunds.txt"
    return path.read_text().split() if path.exists() else []


def test_the_readme_flow_approve_then_resume_with_tools(
    url: str, app: str, model_server: _ChatServer, tmp_path: Path
) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "approve", review_id, "--by", "ada"))
    assert f"approved {review_id} by ada" in out
    # who answered and when: reviews (text and JSON) and inspect (text and JSON)
    listed = ok(invoke(url, "reviews"))
    assert "approved by ada" in listed
    assert "answered at" in listed
    [data] = json.loads(ok(invoke(url, "reviews", "--json")))
    assert (data["decision"], data["by"]) == ("approved", "ada")
    assert data["answered_at"].startswith("20")
    assert "approved by ada" in ok(invoke(url, "inspect", "refund-1"))
    replay = json.loads(ok(invoke(url, "inspect", "refund-1", "--json")))
    assert replay["answered_reviews"][0]["by"] == "ada"
    [event] = [e for e in replay["timeline"] if e["kind"] == "review_approved"]
    assert event["by"] == "ada"
    assert event["answered_at"].startswith("20")

    args = ["resume", "refund-1", "--tools", f"{app}:TOOLS", "--model-url", model_server.url]
    args += ["--model", "small-model"]  # refund-1 names none in its options
    assert ok(invoke(url, *args)).strip() == "Your refund is on its way."
    assert _ran(tmp_path) == ["A1001"]  # the approved tool ran, once
    [request] = model_server.requests
    assert [t["function"]["name"] for t in request["tools"]] == ["refund"]
    assert json.loads(ok(invoke(url, "show", "refund-1", "--json")))["status"] == "finished"
    fails(invoke(url, *args), 1, "nothing to resume")
    assert _ran(tmp_path) == ["A1001"]


def test_resume_without_the_tools_refuses_before_any_write(
    url: str, app: str, model_server: _ChatServer, tmp_path: Path
) -> None:
    review_id = seed(url)
    ok(invoke(url, "approve", review_id))
    with tether.Sessions(url) as sessions:
        before = sessions.get("refund-1")
    fails(
        invoke(url, "resume", "refund-1", "--model-url", model_server.url, "--model", "m"),
        1,
        "uses the tools refund, which this resume was not given",
    )
    fails(
        invoke(url, "resume", "refund-1", "--tools", f"{app}:RAN", "--model-url", "x"),
        1,
        "not a tool",
    )
    with tether.Sessions(url) as sessions:
        after = sessions.get("refund-1")
    assert (after.version, after.history, after.state) == (
        before.version,
        before.history,
        before.state,
    )
    assert model_server.requests == []
    assert _ran(tmp_path) == []
    # the approval was kept: the right command runs it
    args = ["resume", "refund-1", "--tools", f"{app}:refund", "--model-url", model_server.url]
    args += ["--model", "m"]
    ok(invoke(url, *args))
    assert _ran(tmp_path) == ["A1001"]


def test_resume_with_the_applications_agent(url: str, app: str, tmp_path: Path) -> None:
    review_id = seed(url)
    ok(invoke(url, "approve", review_id))
    out = ok(invoke(url, "resume", "refund-1", "--agent", f"{app}:make_agent"))
    assert out.strip() == "Refunded, from the factory."
    assert _ran(tmp_path) == ["A1001"]


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--tools", "nomodule"], 2, "module:attribute"),
        (["--tools", "no_such_module_here:TOOLS", "--model-url", "x"], 1, "cannot import"),
        (["--agent", "tether:nothing_here"], 1, "has no 'nothing_here'"),
        (["--agent", "tether:Session"], 1, "factory(sessions) raised TypeError"),
        (["--agent", "tether:DEFAULT_URL"], 1, "expected an Agent"),
        (["--agent", "a:b", "--tools", "c:d"], 2, "not both"),
    ],
)
def test_resume_option_errors(url: str, args: list[str], code: int, fragment: str) -> None:
    seed(url)
    fails(invoke(url, "resume", "refund-1", *args), code, fragment)


def test_deny_records_who_by_default_the_os_user(url: str) -> None:
    review_id = seed(url)
    out = ok(invoke(url, "deny", review_id, "--reason", "needs a receipt"))
    assert f"denied {review_id} by {getpass.getuser()}" in out
    [data] = json.loads(ok(invoke(url, "reviews", "--json")))
    assert (data["decision"], data["by"], data["note"]) == (
        "denied",
        getpass.getuser(),
        "needs a receipt",
    )
    assert f"denied (needs a receipt) by {getpass.getuser()}" in ok(invoke(url, "reviews"))


def test_archive_inactive_keeps_waiting_sessions(url: str) -> None:
    review_id = seed(url)
    ok(invoke(url, "archive", "--inactive-days", "0"))
    assert [r["id"] for r in json.loads(ok(invoke(url, "reviews", "--json")))] == [review_id]
    fails(invoke(url, "archive", "refund-1"), 1, "waits for a human")
