"""An agent turn on a session the runtime holds does not read it after the claim: the turn's
first commit, at the cached version, is the check that the cache is current. Behind the cache
(someone wrote between two turns), that commit conflicts and the turn reads what is new and
starts again, so the model never sees a stale history and nothing is lost."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import AppendMessages
from tether.agent import Agent, ScriptedModel, _messages
from tether.agent._turn import TurnResult
from tether.agent.tools import tool
from tether.agent.types import ModelReply, ModelRequest, ToolCall
from tether.errors import TurnInProgress
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from .store_calls import count_calls

CALLS = ("load", "commit", "commit_stamped", "claim", "release", "renew")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tether.Store]:
    opened: tether.Store = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "agent.db")
    )
    yield opened
    opened.close()


def _recording(requests: list[ModelRequest]) -> ScriptedModel:
    def reply(request: ModelRequest) -> str:
        requests.append(request)
        return "ok"

    return ScriptedModel(reply)


def _seen(requests: list[ModelRequest]) -> list[Any]:
    return [m.get("content") for m in requests[-1].messages]


def test_a_worker_turn_on_a_held_session_reads_nothing(store: tether.Store) -> None:
    requests: list[ModelRequest] = []
    agent = Agent(tether.Sessions(store), llm=_recording(requests))
    sid = agent.sessions.create(history=[{"role": "user", "content": "u0"}]).id
    agent.run(sid, "u1")
    calls = count_calls(store, CALLS)
    result = agent.run(sid, "u2")
    assert isinstance(result, TurnResult)
    writes = calls["commit"] + calls["commit_stamped"]
    assert (calls["claim"], calls["load"], writes, calls["release"]) == (1, 0, 2, 1)
    assert _seen(requests) == ["u0", "u1", "ok", "u2"]
    # what the turn reports carries the seqs the store gave its items
    stored = store.load(sid)
    by_seq = {item["seq"]: item for item in stored.history}
    for item in [*result.items, *result.events]:
        assert by_seq[item["seq"]]["role"] == item["role"]
    assert stored == tether.Sessions(store, cache_size=0).get(sid)


def test_a_turn_behind_the_cache_reads_what_is_new_and_starts_again(store: tether.Store) -> None:
    requests: list[ModelRequest] = []
    agent = Agent(tether.Sessions(store), llm=_recording(requests))
    sid = agent.sessions.create().id
    agent.run(sid, "u1")
    # another process writes between two turns of this worker
    tether.Sessions(store).execute(sid, AppendMessages({"role": "user", "content": "theirs"}))
    calls = count_calls(store, CALLS)
    agent.run(sid, "u2")
    assert _seen(requests) == ["u1", "ok", "theirs", "u2"]
    assert calls["claim"] == calls["release"] == 1
    assert calls["load"] >= 1  # the conflict made it read
    contents = [i.get("content") for i in store.load(sid).history if i["role"] != "tether"]
    assert contents == ["u1", "ok", "theirs", "u2", "ok"]
    assert store.load(sid, last=0).status == tether.SessionStatus.FINISHED


def test_a_turn_in_progress_elsewhere_is_refused_though_the_cache_says_finished(
    store: tether.Store,
) -> None:
    agent = Agent(tether.Sessions(store), llm=ScriptedModel(lambda r: "ok"))
    sid = agent.sessions.create().id
    agent.run(sid, "u1")  # the cache holds it finished
    other = Agent(tether.Sessions(store), llm=ScriptedModel(lambda r: "ok"))
    other.run(sid, "theirs", checkpoint="after_prompt")  # hibernated: a turn in progress
    version = store.load(sid, last=0).version
    with pytest.raises(TurnInProgress):
        agent.run(sid, "u2")
    assert store.load(sid, last=0).version == version  # nothing written
    assert store.load(sid, last=0).status == tether.SessionStatus.HIBERNATED


def test_after_load_hooks_still_see_every_turn(store: tether.Store) -> None:
    sessions = tether.Sessions(store)
    loads: list[str] = []
    sessions.add_hook("after_load", lambda ctx: loads.append(ctx.operation))
    agent = Agent(sessions, llm=ScriptedModel(lambda r: "ok"))
    sid = sessions.create().id
    agent.run(sid, "u1")
    agent.run(sid, "u2")
    assert loads == ["get", "get"]


@tool(rerun="pure")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"{order_id} shipped"


def test_the_messages_kept_between_turns_are_the_whole_history_s(store: tether.Store) -> None:
    """Each model call gets exactly the messages of the session's whole history as stored,
    though a turn on a held session builds only the new ones; a model that changes what it
    was sent changes nothing the next call gets; a history replaced is read whole again."""
    sent: list[list[dict[str, Any]]] = []

    expected: list[list[dict[str, Any]]] = []

    def reply(request: ModelRequest) -> Any:
        sent.append(copy.deepcopy(request.messages))
        # every step is committed before the model is called: the stored history is the turn's
        expected.append(_messages.model_messages(store.load(sid).history))
        request.messages[0]["content"] = "changed by the model"  # must not reach the memo
        request.messages.append({"role": "user", "content": "added by the model"})
        asked = sum(1 for m in request.messages if m.get("role") == "tool")
        if len(sent) % 3 == 1:  # a tool call, answered within the turn
            return ModelReply(tool_calls=[ToolCall(f"c{len(sent)}", "lookup", {"order_id": "A"})])
        return f"answer {asked}"

    sessions = tether.Sessions(store)
    agent = Agent(sessions, llm=ScriptedModel(reply), tools=[lookup])
    sid = sessions.create(history=[{"role": "system", "content": "be brief"}]).id
    for n in range(5):
        agent.run(sid, f"u{n}")
        if n == 2:  # compacted behind the runtime: read whole, the memo starts again
            stored = store.load(sid, last=0)
            store.replace_history(sid, stored.version, [{"role": "user", "content": "summary"}])
    assert len(sent) == 8  # 5 turns, 3 of them with a tool call
    assert sent == expected
    assert all(m["content"] not in ("changed by the model", "added by the model") for m in sent[-1])
    assert sent[-1][0] == {"role": "user", "content": "summary"}
    assert max(sum(m["role"] == "tool" for m in messages) for messages in sent) == 2
