"""The OpenAI Agents SDK on tether, offline: a tool that needs approval, answered elsewhere.

Run it: ``python examples/openai_agents_approval.py [STORE_URL]`` (default: a SQLite file in a
temporary folder). ``ScriptedModel`` is a small fake ``Model`` (no network, no API key): it
asks for the ``refund`` tool once, then answers with what the tool returned.

1. A run on a ``TetherSession`` stops at the approval; ``save_run_state`` stores its
   ``RunState`` beside the history and marks the session ``waiting``.
2. Someone approves it with tether (here ``TetherAgent(store).approve``; on the command line
   ``tether reviews`` then ``tether approve``), from any process.
3. Any process loads the run state (the approval applied) and resumes the run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from typing import Any

from agents import Agent, Model, ModelResponse, Runner, Usage, function_tool
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

import tether
from tether.agent import Agent as TetherAgent
from tether.agent import Review
from tether.integrations.openai_agents import TetherSession

REFUNDS: list[str] = []


@function_tool(needs_approval=True)
def refund(order: str) -> str:
    """Refund an order (a person approves every refund)."""
    REFUNDS.append(order)
    return f"refunded {order}"


class ScriptedModel(Model):
    """A fake model: first a call of ``refund``, then a message with the tool's output."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        items = args[1] if len(args) > 1 else kwargs["input"]
        outputs = [
            i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if not outputs:
            call = ResponseFunctionToolCall(
                type="function_call",
                id="fc_1",
                call_id="call_refund_1",
                name="refund",
                arguments='{"order": "A1001"}',
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = ResponseOutputText(
            type="output_text", text=f"Done: {outputs[-1]['output']}", annotations=[]
        )
        message = ResponseOutputMessage(
            type="message", id="msg_1", role="assistant", status="completed", content=[text]
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ScriptedModel does not stream")


def support_agent() -> Agent[Any]:
    return Agent(name="support", model=ScriptedModel(), tools=[refund])


async def ask(url: str, session_id: str) -> list[Review]:
    """Step 1: run until the approval, then store the run state."""
    async with TetherSession(session_id, url, exclusive=True) as session:
        result = await Runner.run(support_agent(), "Refund order A1001", session=session)
        assert result.interruptions, "the refund needs an approval"
        return await session.save_run_state(result.to_state())


async def resume(url: str, session_id: str) -> str:
    """Step 3: load the run state (with the approval given in tether) and finish the run."""
    agent = support_agent()
    async with TetherSession(session_id, url, exclusive=True) as session:
        state = await session.load_run_state(agent)
        assert state is not None, "nothing to resume"
        result = await Runner.run(agent, state, session=session)
        await session.discard_run_state()
        return str(result.final_output)


def main(url: str) -> str:
    session_id = "ticket 42 / ada@example.com"
    reviews = asyncio.run(ask(url, session_id))
    with tether.open_store(url) as store:
        pending = TetherAgent(store).pending_reviews()
        assert [r.id for r in pending] == [r.id for r in reviews]
        TetherAgent(store).approve(pending[0].id, by="ada")
    return asyncio.run(resume(url, session_id))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        print(main(sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{folder}/agents.db"))
