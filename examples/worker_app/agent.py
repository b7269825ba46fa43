"""The application's agent: what every worker builds, with ``make_agent(store)``.

It runs offline: the model is a stand-in that sleeps like a real one (``WORKER_APP_DELAY``
seconds, default 0.2), asks for the ``open_ticket`` tool once, then answers. ``open_ticket`` is a
``once`` tool: it appends to a tickets file (``WORKER_APP_TICKETS``), stamped with the fence of
the lease it ran under, and must never run twice for one turn.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import tether
from tether.agent import Agent, ModelReply, ModelRequest, ScriptedModel, ToolCall, tool
from tether.worker import current_lease


def tickets_path() -> str:
    default = os.path.join(tempfile.gettempdir(), "worker_app_tickets.jsonl")
    return os.environ.get("WORKER_APP_TICKETS", default)


@tool(rerun="once")
def open_ticket(summary: str) -> str:
    """Open a support ticket (an effect outside tether: it must happen once)."""
    lease = current_lease()
    entry = {"summary": summary, "fence": lease.fence if lease else None}
    with open(tickets_path(), "a", encoding="utf-8") as tickets:
        tickets.write(json.dumps(entry) + "\n")
    return "ticket opened"


def support_model(request: ModelRequest) -> ModelReply | str:
    time.sleep(float(os.environ.get("WORKER_APP_DELAY", "0.2")))  # a real model's latency
    last = request.messages[-1]
    if last["role"] == "user":
        call = ToolCall(id=f"t{len(request.messages)}", name="open_ticket",
                        arguments={"summary": str(last["content"])[:200]})  # fmt: skip
        return ModelReply(tool_calls=[call])
    return "I have opened a ticket for you; we will get back to you shortly."


def make_agent(store: tether.Store) -> Agent:
    """Build the agent on the store the worker gives (it renews leases, stamps fences)."""
    return Agent(store, llm=ScriptedModel(support_model), tools=[open_ticket], lease_ttl=30)
