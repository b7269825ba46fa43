"""The support-agent story: what tether is for, each step in its own OS process.

A customer asks about order A1001 (a lookup tool runs); that process ends. A new process
continues the conversation; the customer asks for a refund, which needs a human's approval, so
the turn hibernates. An operator lists the pending review and approves it with the ``tether``
command. A new process resumes and the refund runs exactly once. A stale write is refused. The
session is forked to try another answer, the customer's sessions are listed, and the replay
timeline is printed.

Deterministic (a scripted model), offline, a few seconds. Run it with ``make demo`` or
``tether demo [--store URL]``. Nothing survives between the steps but the store.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import click

import tether
from tether._registry import DEFAULT_URL
from tether._urls import redact
from tether.agent import Agent, ModelReply, ModelRequest, ToolCall, tool

from .common import _Env, _examples, pass_env

ORDERS = {"A1001": {"status": "shipped", "carrier": "DHL", "eta": "Friday", "total": "49.90 EUR"}}


@tool(rerun="pure")
def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up by its id."""
    return {"order": order_id, **ORDERS.get(order_id, {"status": "unknown"})}


@tool(rerun="once", requires_approval=True, approval_ttl=24 * 3600)
def refund(order_id: str, amount: str) -> str:
    """Refund an order. Money moves, so a human approves it first and it runs at most once."""
    ledger = os.environ.get("TETHER_DEMO_LEDGER")
    if ledger:  # the proof that it ran exactly once
        with open(ledger, "a") as handle:
            handle.write(f"refund {order_id} {amount}\n")
    return f"refund of {amount} for {order_id} issued"


def support_model(request: ModelRequest) -> ModelReply:
    """A scripted support agent: what it says depends only on the conversation so far."""
    messages = request.messages
    last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    answered_tool = messages[-1]["role"] == "tool"
    if "refund" in last_user.lower():
        if answered_tool:
            return ModelReply(text="Your refund of 49.90 EUR is on its way (3-5 days).")
        arguments = {"order_id": "A1001", "amount": "49.90 EUR"}
        return ModelReply(
            tool_calls=[ToolCall(id=_call_id(messages), name="refund", arguments=arguments)]
        )
    if "store credit" in last_user.lower():
        return ModelReply(text="I can offer 55 EUR of store credit instead of a refund.")
    if answered_tool:
        found = json.loads(messages[-1]["content"])
        return ModelReply(
            text=f"Order A1001 has {found['status']} with {found['carrier']}; "
            f"it arrives {found['eta']}."
        )
    return ModelReply(
        tool_calls=[
            ToolCall(id=_call_id(messages), name="lookup_order", arguments={"order_id": "A1001"})
        ]
    )


def _call_id(messages: list[dict[str, object]]) -> str:
    return f"call_{sum(1 for m in messages if m['role'] == 'assistant') + 1}"


def _agent(store: tether.Store) -> Agent:
    return Agent(
        store, llm=support_model, tools=[lookup_order, refund], runner=f"pid-{os.getpid()}"
    )


def say(text: str) -> None:
    print(f"  [process {os.getpid()}] {text}", flush=True)


# --- the steps, each run in a fresh process -----------------------------------------------------


def step_ask(store: tether.Store, session_id: str) -> None:
    store.create(
        tether.Session(
            id=session_id,
            owner="customer-42",
            agent="support",
            options={"model": "scripted-support", "system_prompt": "You are a support agent."},
        )
    )
    say(f"created session {session_id}")
    say("customer: Where is my order A1001?")
    result = _agent(store).run(session_id, "Where is my order A1001?")
    assert isinstance(result, tether.agent.TurnResult)
    tools_ran = [e["tool"] for e in result.events if e.get("event") == "tool_ran"]
    say(f"agent ran {tools_ran} and answered: {result.text}")


def step_refund(store: tether.Store, session_id: str) -> None:
    history = store.load(session_id).history
    say(f"loaded the conversation from the store: {len(history)} items")
    say("customer: Can I get a refund instead?")
    stopped = _agent(store).run(session_id, "Can I get a refund instead?")
    assert isinstance(stopped, tether.agent.Hibernation)
    review = stopped.reviews[0]
    say(f"the refund needs approval: the turn hibernated (status {stopped.status})")
    say(f"pending review {review.id}: {review.tool}({dict(review.arguments)})")


def step_resume(store: tether.Store, session_id: str) -> None:
    result = _agent(store).resume(session_id)
    assert isinstance(result, tether.agent.TurnResult)
    say(f"resumed the approved turn; agent: {result.text}")


def step_stale(store: tether.Store, session_id: str) -> None:
    held = store.load(session_id, last=0)
    store.commit(session_id, held.version, changes={"metadata": {"csat": 5}})
    try:
        store.commit(session_id, held.version, changes={"metadata": {"csat": 1}})
        raise SystemExit("BUG: a stale write was accepted")
    except tether.ConflictError as conflict:
        say(
            f"a second writer still holding version {conflict.expected_version} was refused "
            f"(the store holds {conflict.actual_version}); nothing was lost"
        )


def step_fork(store: tether.Store, session_id: str) -> None:
    sessions = tether.Sessions(store)
    before_refund = next(
        i["seq"]
        for i in store.load(session_id).history
        if i.get("content") == "Can I get a refund instead?"
    )
    child = sessions.fork(session_id, f"{session_id}-credit", at=before_refund - 1)
    say(f"forked {child.id} at seq {child.fork_seq} to try another answer")
    text = _agent(store).chat(child.id, "Could I get store credit instead?")
    say(f"on the fork, agent: {text}")


STEPS = {
    "ask": step_ask,
    "refund": step_refund,
    "resume": step_resume,
    "stale": step_stale,
    "fork": step_fork,
}


# --- the orchestrator ----------------------------------------------------------------------------


# The steps get the store's URL in $TETHER_URL, not on their command lines, where any user of
# the machine could read a password in it (ps).

# How a step runs in a new process. Not ``python -m tether.cli.demo``: importing the tether.cli
# package imports this module before runpy runs it again as __main__, and runpy warns about that
# on stderr.
_STEP = "from tether.cli.demo import main; main()"


def _python_step(step: str, session_id: str, env: dict[str, str]) -> None:
    _run(env, ["-c", _STEP, step, session_id], f"step {step}")


def _cli(env: dict[str, str], *args: str, quiet: bool = False) -> str:
    return _run(env, ["-m", "tether", *args], f"tether {' '.join(args)}", "    ", quiet)


def _run(
    env: dict[str, str], args: list[str], what: str, prefix: str = "", quiet: bool = False
) -> str:
    """Run ``python *args``; print its output (unless ``quiet``), stop the demo if it failed."""
    completed = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, check=False
    )
    if not quiet:
        out = "".join(f"{prefix}{line}\n" for line in completed.stdout.splitlines())
        print(out, end="", flush=True)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"demo: {what} failed (exit code {completed.returncode})")
    return completed.stdout


def run(url: str | None = None) -> None:
    """The whole story on ``url`` (default: $TETHER_URL, else the embedded SQLite default)."""
    url = url or os.environ.get("TETHER_URL") or tether.DEFAULT_URL
    if url.startswith("memory:"):
        raise SystemExit(
            "demo: each step runs in a new process and a memory:// store does not outlive its "
            "process; use a sqlite:// or file: URL"
        )
    session_id = f"support-{uuid.uuid4().hex[:8]}"
    # the "payment system" the refund tool writes to: outside the store, to count real runs
    ledger = Path(tempfile.mkdtemp(prefix="tether-demo-")) / "payments.log"
    env = {**os.environ, "TETHER_DEMO_LEDGER": str(ledger), "TETHER_URL": url}

    def part(title: str, step: str) -> None:
        """Tell the story's next part, then run its step in a new process."""
        print(title)
        _python_step(step, session_id, env)

    print(f"tether demo: a support agent on {redact(url)}\n")
    part("1. a customer asks about an order (a lookup tool runs); the process ends", "ask")
    part(
        "\n2. a new process continues; the customer asks for a refund, which needs approval",
        "refund",
    )
    print("\n3. an operator lists what waits for a human, and approves it")
    print("  $ tether reviews")
    reviews = json.loads(_cli(env, "reviews", "--session", session_id, "--json", quiet=True))
    _cli(env, "reviews", "--session", session_id)
    print(f"  $ tether approve {reviews[0]['id']}")
    _cli(env, "approve", reviews[0]["id"])
    part("\n4. a new process resumes: the refund runs exactly once", "resume")
    runs = ledger.read_text().splitlines() if ledger.exists() else []
    print(f"  the payment ledger shows {len(runs)} refund: {runs}")
    part("\n5. two writers, one version: the stale write is refused", "stale")
    part("\n6. the session is forked to try another answer", "fork")
    print("\n7. the customer's sessions, newest first\n  $ tether ls --owner customer-42")
    _cli(env, "ls", "--owner", "customer-42", "--limit", "5")
    print("\n8. the replay timeline (data only: no model or tool is called)")
    print(f"  $ tether inspect {session_id}")
    _cli(env, "inspect", session_id)
    print("\nEvery step ran in its own process; only the store carried the session.")
    # the last line: the one command that opens this store in the web inspector
    shown = redact(url)
    if shown.startswith("sqlite:///") and not shown.startswith("sqlite:////"):
        shown = f"sqlite:///{Path(shown[len('sqlite:///') :]).resolve()}"  # from any directory
    print(f"\nSee it in a browser: tether serve --store {shlex.quote(shown)}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in STEPS:
        raise SystemExit(
            f"usage: TETHER_URL=URL python -c {shlex.quote(_STEP)} STEP SESSION_ID (steps run "
            "by `tether demo`)"
        )
    step, session_id = args
    url = os.environ.get("TETHER_URL") or tether.DEFAULT_URL
    try:
        with tether.open_store(url) as store:
            STEPS[step](store, session_id)
    except tether.TetherError as error:
        raise SystemExit(f"demo: {redact(str(error))}") from None


# --- the command ---------------------------------------------------------------------------------


@click.command(
    "demo",
    epilog=_examples(
        "tether demo",
        "tether demo --store file:demo-sessions",
        "tether demo --store 'redis://localhost:6379/0?namespace=demo'",
    ),
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    help="The store to run it on (default: the one tether --store names, else $TETHER_URL, "
    f"else {DEFAULT_URL}).",
)
@pass_env
def demo_command(env: _Env, url: str | None) -> None:
    """Run the support-agent story, each step in its own process."""
    run(url or env.url)
