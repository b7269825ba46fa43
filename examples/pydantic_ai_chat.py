"""A Pydantic AI agent whose conversations live in tether, offline (TestModel).

Run it: ``python examples/pydantic_ai_chat.py [store URL]`` (default: an SQLite file in a
temporary directory). Then look with ``tether ls --url <URL> --owner ada``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from pydantic_ai import Agent
from pydantic_ai.conversation import Conversation
from pydantic_ai.conversation_store import ConversationConflict
from pydantic_ai.models.test import TestModel

import tether
from tether.integrations.pydantic_ai import TetherConversationStore


async def main(url: str) -> list[str]:
    """Two turns, a conflict caught and retried, and a fork; returns what happened."""
    log: list[str] = []
    agent = Agent(TestModel(custom_output_text="Noted."))
    async with tether.open_async_store(url) as tstore:
        store = TetherConversationStore(tstore)  # the one-line switch
        conversation = await store.load("support-1") or Conversation(conversation_id="support-1")
        result = await agent.run("My order A1001 is late.", conversation=conversation)
        await store.save(result, scope="ada")

        # Two workers continue the same revision: the second save is refused, not lost.
        one, two = await store.load("support-1"), await store.load("support-1")
        assert one is not None
        assert two is not None
        await store.save(await agent.run("Any news?", conversation=one))
        late = await agent.run("Hello?", conversation=two)
        try:
            await store.save(late)
        except ConversationConflict:
            log.append("conflict: reloaded and ran the turn again")
            fresh = await store.load("support-1")
            await store.save(await agent.run("Hello?", conversation=fresh))

        fork = await store.fork("support-1", at=2, new_conversation_id="support-1-alt")
        await store.save(await agent.run("Try another carrier.", conversation=fork))
        for record in await store.list_conversations(scope="ada"):
            loaded = await store.load(record.conversation_id)
            assert loaded is not None
            log.append(f"{record.conversation_id}: {len(loaded.messages)} messages")
    return log


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/chat.db"
    for line in asyncio.run(main(target)):
        print(line)
