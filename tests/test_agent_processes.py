"""Agent turns across real OS processes: a crash mid-turn, and a human approval in between."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tether
from tether.agent import Agent

PRELUDE = """
import json, os, signal, sys
import tether
from tether.agent import Agent, ModelReply, ToolCall, tool

URL, MARKER = sys.argv[1], sys.argv[2]

@tool(rerun="once")
def charge(amount: int) -> str:
    \"\"\"Charge the card (must never run twice).\"\"\"
    with open(MARKER, "a") as f:
        f.write("charged\\n")
    if os.environ.get("CRASH_IN_TOOL"):
        os.kill(os.getpid(), signal.SIGKILL)
    return "charged"

@tool(rerun="once", requires_approval=True)
def refund(order_id: str) -> str:
    \"\"\"Refund an order.\"\"\"
    with open(MARKER, "a") as f:
        f.write("refunded\\n")
    return "refunded " + order_id

def script(request):
    # a deterministic model: ask for the tool once, then answer
    if any(m["role"] == "tool" for m in request.messages):
        return "done: " + [m for m in request.messages if m["role"] == "tool"][-1]["content"]
    name = "refund" if "refund" in request.messages[0]["content"] else "charge"
    args = {"order_id": "A1001"} if name == "refund" else {"amount": 5}
    return ModelReply(tool_calls=[ToolCall(id="c1", name=name, arguments=args)])

agent = Agent(URL, llm=script, tools=[charge, refund], runner="worker-1", lease_ttl=LEASE_TTL)
"""
LEASE_TTL = 2.0
PRELUDE = PRELUDE.replace("lease_ttl=LEASE_TTL", f"lease_ttl={LEASE_TTL}")


def run_child(
    code: str, url: str, marker: Path, *, crash: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {"CRASH_IN_TOOL": "1"} if crash else {}
    import os

    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), url, str(marker)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    with tether.open_store(url) as store:
        store.create(tether.Session(id="s1"))
    return url


@pytest.mark.heavy
def test_a_process_killed_mid_tool_never_runs_the_once_tool_twice(url: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    crashed = run_child('agent.run("s1", "charge me")', url, marker, crash=True)
    assert crashed.returncode == -signal.SIGKILL
    assert marker.read_text() == "charged\n"

    # a new process (the same worker, restarted) resumes: the tool is not run again silently.
    # It first waits out the crashed process's lease: a runner's name alone never takes a live
    # lease over (only the lease's token does, and it died with the process)
    time.sleep(LEASE_TTL + 0.2)
    resumed = run_child(
        """
        out = agent.resume("s1")
        print(json.dumps({"status": out.status, "reviews": [r.id for r in out.reviews],
                          "reason": out.reviews[0].reason}))
        """,
        url,
        marker,
    )
    assert resumed.returncode == 0, resumed.stderr
    waiting = json.loads(resumed.stdout)
    assert waiting["status"] == "waiting"
    assert "did it run" in waiting["reason"]
    assert marker.read_text() == "charged\n"

    # a human says it already happened: deny running it again, and the turn finishes
    finished = run_child(
        f"""
        agent.deny({waiting["reviews"][0]!r}, "it already ran before the crash")
        print(agent.resume("s1").text)
        """,
        url,
        marker,
    )
    assert finished.returncode == 0, finished.stderr
    assert "not run: a human denied it" in finished.stdout
    assert marker.read_text() == "charged\n", "the once tool ran exactly once"
    with tether.open_store(url) as store:
        assert store.load("s1", last=0).status == tether.SessionStatus.FINISHED


@pytest.mark.heavy
def test_an_approval_across_three_processes(url: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    first = run_child(
        """
        out = agent.run("s1", "please refund A1001")
        print(json.dumps({"status": out.status, "review": out.reviews[0].id}))
        """,
        url,
        marker,
    )
    assert first.returncode == 0, first.stderr
    waiting = json.loads(first.stdout)
    assert waiting["status"] == "waiting"
    assert not marker.exists()

    second = run_child(
        """
        reviews = agent.pending_reviews()
        print(json.dumps([r.id for r in reviews]))
        agent.approve(reviews[0].id)
        """,
        url,
        marker,
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == [waiting["review"]]
    assert not marker.exists(), "approving runs nothing; resume does"

    third = run_child('print(agent.resume("s1").text)', url, marker)
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == "done: refunded A1001"
    assert marker.read_text() == "refunded\n"
    with tether.open_store(url) as store:
        assert Agent(store).pending_reviews() == []
