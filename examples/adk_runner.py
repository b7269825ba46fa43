"""A Google ADK agent whose sessions live in tether, offline (a scripted model, no API key).

Each run is one turn of one session: the model calls a tool that counts the user's visits in
``user:`` state (shared by all of that user's sessions), then answers with the count. Run it
twice, as two processes, with two session ids: the second sees the first one's count::

    python examples/adk_runner.py sqlite:///adk.db ada morning
    python examples/adk_runner.py sqlite:///adk.db ada evening   # -> "visit 2"

Any tether store URL works (``file:``, ``sqlite:``, ``redis://``, ``postgresql://``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

import tether
from tether.integrations.adk import TetherSessionService

APP = "visits"


class ScriptedLlm(BaseLlm):
    """Calls ``count_visit`` first; once the tool has answered, replies with its result."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1] if llm_request.contents else None
        answered = (
            [p.function_response for p in (last.parts or []) if p.function_response] if last else []
        )
        if answered and answered[0].response is not None:
            text = f"visit {answered[0].response['visits']}"
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))
            return
        call = types.FunctionCall(name="count_visit", args={})
        yield LlmResponse(
            content=types.Content(role="model", parts=[types.Part(function_call=call)])
        )


def count_visit(tool_context: ToolContext) -> dict[str, Any]:
    """Count this user's visits (user: state, shared by all of the user's sessions)."""
    visits = int(tool_context.state.get("user:visits", 0)) + 1
    tool_context.state["user:visits"] = visits
    tool_context.state["temp:scratch"] = "never stored"
    return {"visits": visits}


async def turn(store_url: str, user_id: str, session_id: str) -> str:
    """One turn of ``session_id`` (created if new); the agent's final text."""
    async with tether.open_async_store(store_url) as store:
        service = TetherSessionService(store)
        if await service.get_session(app_name=APP, user_id=user_id, session_id=session_id) is None:
            await service.create_session(app_name=APP, user_id=user_id, session_id=session_id)
        agent = LlmAgent(name="counter", model=ScriptedLlm(), tools=[count_visit])
        runner = Runner(app_name=APP, agent=agent, session_service=service)
        reply = ""
        message = types.Content(role="user", parts=[types.Part(text="hello")])
        async for event in runner.run_async(
            user_id=user_id, session_id=session_id, new_message=message
        ):
            if event.content and event.content.parts and event.content.parts[0].text:
                reply = event.content.parts[0].text
        await runner.close()
        return reply


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: adk_runner.py STORE_URL USER_ID SESSION_ID", file=sys.stderr)
        return 2
    print(asyncio.run(turn(*argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
