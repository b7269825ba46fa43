"""The CLI shows a framework's items readably: a function call as a call, not a JSON blob; a
LangGraph thread as checkpoints, writes and values, its messages as messages, its serde bytes
read as plain data only (nothing imported or constructed), every value escaped."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tether
from tether.cli import cli
from tether.ids import encode_external_id

from .conftest import require_module

ITEMS = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "refund A1"}]},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "check it"}]},
    {"type": "function_call", "call_id": "c1", "name": "refund", "arguments": '{"order": "A1"}'},
    {"type": "function_call_output", "call_id": "c1", "output": "refunded\x1b[31m red"},
    {"type": "mcp_list_tools", "server_label": "shop"},
]


def _run(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_show_replay_and_inspect_render_framework_items(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with tether.open_store(url) as store:
        store.create(tether.Session(id="fw", history=ITEMS))
    shown = _run(url, "show", "fw")
    assert "refund A1" in shown
    assert 'refund({"order":"A1"})' in shown.replace(" ", "")
    assert "refund -> refunded" in shown
    assert "check it" in shown
    assert "mcp_list_tools" in shown
    assert "\x1b" not in shown  # the output's escape is neutralised, never sent to the terminal
    for command in ("replay", "inspect"):
        text = _run(url, command, "fw")
        assert "tool_call" in text, command
        assert 'refund({"order":"A1"})' in text.replace(" ", ""), command
        assert "refund -> refunded" in text, command
        assert "reasoning" in text, command
        assert "check it" in text, command
        assert "\x1b" not in text, command


def _chat_thread(url: str) -> str:
    """A real LangGraph chat with a tool call, checkpointed by TetherSaver; its session id."""
    require_module("langgraph", "langgraph")
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    from tether.integrations.langgraph import TetherSaver

    def agent(state: Any) -> dict[str, Any]:
        if isinstance(state["messages"][-1], HumanMessage):
            call = {"name": "lookup", "args": {"order": "A1"}, "id": "call_1"}
            return {"messages": [AIMessage(content="", tool_calls=[call])]}
        return {"messages": [AIMessage(content="Order A1 ships today.")]}

    def tools(state: Any) -> dict[str, Any]:
        answer = ToolMessage(content="ships \x1b[2J today", tool_call_id="call_1", name="lookup")
        return {"messages": [answer]}

    def route(state: Any) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", tools)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    with tether.open_store(url) as store:
        graph: Any = builder.compile(checkpointer=TetherSaver(store))
        graph.invoke(
            {"messages": [HumanMessage("where is A1?")]}, {"configurable": {"thread_id": "chat 1"}}
        )
    return encode_external_id("chat 1")


def test_show_replay_and_inspect_render_a_langgraph_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lg.db'}"
    sid = _chat_thread(url)
    checkpoint = re.compile(r"checkpoint [0-9a-f-]{36} step 1 \(loop\) parent [0-9a-f-]{36}")
    for command in ("show", "replay", "inspect"):
        text = _run(url, command, sid, *(["--last", "100"] if command == "show" else []))
        flat = " ".join(text.split())
        assert checkpoint.search(flat), (command, text)
        assert "step -1 (input) (first)" in flat, command
        assert 'write messages from task agent: ai: calls lookup({"order": "A1"})' in flat
        assert "write messages from task tools: tool lookup: ships \\x1b[2J today" in flat
        assert "ai: Order A1 ships today." in flat, command
        assert "messages = user: where is A1? | ai: calls lookup(" in flat, command
        assert "\x1b" not in text, command
        assert "langchain_core" not in text, command  # messages read as messages, not as data


def _packed(value: Any) -> list[str]:
    ormsgpack = pytest.importorskip("ormsgpack")
    raw = ormsgpack.packb(value)
    return ["msgpack", base64.b64encode(raw).decode()]


def _ext(code: int, *fields: Any) -> Any:
    ormsgpack = pytest.importorskip("ormsgpack")
    return ormsgpack.Ext(code, ormsgpack.packb(list(fields)))


def test_a_hostile_langgraph_value_renders_inert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value naming a module and class (LangGraph's serializer would import and call them)
    is shown as data: nothing imported, nothing constructed, every control escaped; values
    that are not msgpack or not readable show as short summaries."""
    marker = tmp_path / "imported"
    (tmp_path / "tether_hostile_probe.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "class Boom:\n    def __init__(self, *a, **k):\n        raise SystemExit('constructed')\n"
        "HumanMessage = Boom\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = {"content": "hi\x1b]0;owned\x07\u202e there", "type": "human"}
    items = [
        {"type": "langgraph.write", "ns": "", "checkpoint": "c1", "task_id": "t",
         "task_path": "~__pregel_pull, evil\x1b[31m", "idx": 0, "channel": "messages",
         "value": _packed([_ext(5, "tether_hostile_probe", "HumanMessage", hostile, "m")])},
        {"type": "langgraph.write", "ns": "", "checkpoint": "c1", "task_id": "t",
         "task_path": "x", "idx": 1, "channel": "raw",
         "value": _packed(_ext(0, "tether_hostile_probe", "Boom", "\x1b[2Jarg"))},
        {"type": "langgraph.blob", "ns": "", "channel": "p", "version": "1",
         "value": ["pickle", base64.b64encode(b"cos\nsystem\n(S'echo'\ntR.").decode()]},
        {"type": "langgraph.blob", "ns": "", "channel": "bad", "version": "1",
         "value": ["msgpack", "%%% not base64 %%%"]},
        {"type": "langgraph.blob", "ns": "", "channel": "deep", "version": "1",
         "value": ["msgpack", base64.b64encode(b"\x91" * 5000 + b"\x01").decode()]},
        {"type": "langgraph.checkpoint", "ns": "", "id": "c1\x1b[1A", "parent": None,
         "checkpoint": ["json", base64.b64encode(b"{}").decode()],
         "metadata": ["json", base64.b64encode(b'{"step": 3, "source": "\\u001b[5m"}').decode()]},
    ]  # fmt: skip
    with tether.open_store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        store.create(tether.Session(id="hostile", history=items))
    url = f"sqlite:///{tmp_path / 'h.db'}"
    for command in ("show", "replay", "inspect"):
        text = _run(url, command, "hostile", *(["--last", "100"] if command == "show" else []))
        flat = " ".join(text.split())
        for raw in ("\x1b", "\x07", "\u202e"):
            assert raw not in text, command
        assert "from task evil\\x1b[31m: user: hi\\x1b]0;owned\\x07\\u202e there" in flat
        assert '"class": "Boom"' in flat, command
        assert "tether_hostile_probe" in flat, command
        assert "p = <pickle," in flat, command
        assert "bad = <msgpack, not base64>" in flat, command
        assert "deep = <msgpack," in flat, command
        assert "step 3 (\\x1b[5m)" in flat, command
    assert not marker.exists()
    assert "tether_hostile_probe" not in sys.modules


def test_without_a_msgpack_reader_values_show_as_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ormsgpack (LangGraph not installed) the CLI still shows the thread: msgpack
    values as their type and size."""
    from tether.integrations import _langgraph_view

    item = {"type": "langgraph.write", "ns": "", "checkpoint": "c1", "task_id": "t",
            "task_path": "~__pregel_pull, agent", "idx": 0, "channel": "messages",
            "value": ["msgpack", base64.b64encode(b"\x91\xa2hi").decode()]}  # fmt: skip
    with tether.open_store(f"sqlite:///{tmp_path / 'n.db'}") as store:
        store.create(tether.Session(id="plain", history=[item]))
    monkeypatch.setattr(_langgraph_view, "_msgpack", lambda: None)
    text = _run(f"sqlite:///{tmp_path / 'n.db'}", "inspect", "plain")
    assert "write messages from task agent: <msgpack, 4 bytes>" in text
