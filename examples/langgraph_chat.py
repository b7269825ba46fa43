"""A LangGraph chat whose checkpoints live in tether, offline (a scripted reply node).

Run it: ``python examples/langgraph_chat.py [store URL]`` (default: an SQLite file in a
temporary directory). Three turns on one thread, then the same thread under ownership: a
second invocation while the first holds the thread is refused at once.
"""

from __future__ import annotations

import operator
import sys
import tempfile
import threading
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

import tether
from tether.errors import AlreadyClaimed
from tether.ids import encode_external_id
from tether.integrations.langgraph import TetherSaver


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def build(saver: TetherSaver, hold: threading.Event | None = None) -> Any:
    def reply(state: Chat) -> dict[str, Any]:
        if hold is not None:
            hold.wait(5)  # a slow model: the run holds the thread meanwhile
        return {"messages": [f"echo: {state['messages'][-1]}"]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)  # the one-line switch


def main(url: str) -> list[str]:
    """Three turns, then two concurrent invocations under ownership; returns the report."""
    lines: list[str] = []
    with tether.open_store(url) as store:
        saver = TetherSaver(store, ownership=True)
        graph = build(saver)
        config: Any = {"configurable": {"thread_id": "chat-1"}}
        for text in ("hello", "how are you?", "bye"):
            graph.invoke({"messages": [text]}, config)
        lines += graph.get_state(config).values["messages"]
        lines.append(f"checkpoints: {len(list(graph.get_state_history(config)))}")

        hold = threading.Event()
        slow = build(saver, hold)

        def first() -> None:
            with saver.owning("chat-1"):
                slow.invoke({"messages": ["first run"]}, config)

        runner = threading.Thread(target=first)
        runner.start()
        while store.load(encode_external_id("chat-1"), last=0).lease_owner is None:
            time.sleep(0.01)  # until the first run holds the thread
        try:
            graph.invoke({"messages": ["second run"]}, config)
        except AlreadyClaimed:
            lines.append("second run refused: the thread is owned by the first")
        hold.set()
        runner.join()
        lines.append(graph.get_state(config).values["messages"][-1])
    return lines


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/graph.db"
    for line in main(target):
        print(line)
