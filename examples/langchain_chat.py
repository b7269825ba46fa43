"""A LangChain chat whose history lives in tether, offline (a fake chat model).

Run it: ``python examples/langchain_chat.py [store URL]`` (default: an SQLite file in a
temporary directory).
"""

from __future__ import annotations

import sys
import tempfile
import warnings

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables.history import RunnableWithMessageHistory

import tether
from tether.integrations.langchain import TetherChatMessageHistory

# BaseChatMessageHistory is deprecated upstream (in favour of LangGraph), still widely used.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(url: str) -> list[str]:
    """Two turns through RunnableWithMessageHistory; returns the stored messages."""
    model = FakeListChatModel(responses=["Hello Ada.", "Your name is Ada."])
    with tether.open_store(url) as store:
        chain = RunnableWithMessageHistory(
            model,
            lambda session_id: TetherChatMessageHistory(store, session_id),  # the one-line switch
        )
        config = {"configurable": {"session_id": "chat-1"}}
        chain.invoke("I am Ada.", config=config)  # type: ignore[arg-type]
        chain.invoke("Who am I?", config=config)  # type: ignore[arg-type]
        history = TetherChatMessageHistory(store, "chat-1")
        return [f"{m.type}: {m.content}" for m in history.messages]


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/chat.db"
    for line in main(target):
        print(line)
