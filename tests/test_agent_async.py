"""Agent turns on durable sessions.

This is the async side; tools/unasync.py writes the sync side from it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.agent.agent_async import AsyncAgent
from tether.agent.models import ScriptedModel
from tether.agent.tools import tool
from tether.agent.types import ModelReply, ModelRequest, ToolCall
from tether.stores.file import AsyncFileStore
from tether.stores.memory import AsyncMemoryStore
from tether.stores.sqlite import AsyncSQLiteStore
from tether.testing import FakeClock

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options

ORDERS = {"A1001": "shipped"}


@tool(rerun="pure")
def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order": order_id, "status": ORDERS.get(order_id, "unknown")}


refunds: list[str] = []


@tool(rerun="once", requires_approval=True, approval_ttl=3600)
def refund(order_id: str) -> str:
    """Refund an order (money moves: a human must approve)."""
    refunds.append(order_id)
    return f"refunded {order_id}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    refunds.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tether.AsyncStore]:
    kind = request.param
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if kind == "memory":
        opened: tether.AsyncStore = AsyncMemoryStore(clock=clock)
    elif kind == "file":
        opened = AsyncFileStore(tmp_path / "files", clock=clock)
    elif kind == "sqlite":
        opened = AsyncSQLiteStore(tmp_path / "agent.db", clock=clock)
    elif kind == "redis":
        from tether.stores.redis_async import AsyncRedisStore

        url, namespace = require_server("redis"), f"ag{uuid.uuid4().hex}"
        opened = AsyncRedisStore.from_url(with_options(url, namespace=namespace), clock=clock)
        cleanup = functools.partial(wipe_redis_namespace, url, namespace)
    else:
        from tether.stores.postgres_async import AsyncPostgresStore

        url, schema = require_server("postgres"), f"tether_tag_{uuid.uuid4().hex[:16]}"
        opened = AsyncPostgresStore.from_url(with_options(url, schema=schema), clock=clock)
        cleanup = functools.partial(drop_postgres_schema, url, schema)
    try:
        async with opened:
            yield opened
    finally:
        cleanup()


def call(name: str, id_: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=id_, name=name, arguments=arguments)


async def new_session(store: tether.AsyncStore, session_id: str = "s1") -> None:
    await store.create(tether.Session(id=session_id, options={"model": "scripted"}))


# --- turns ---------------------------------------------------------------------------------------


async def test_a_turn_with_a_tool(store: tether.AsyncStore, clock: FakeClock) -> None:
    await new_session(store)
    model = ScriptedModel(
        [
            ModelReply(
                tool_calls=[call("lookup_order", "c1", order_id="A1001")], usage={"total_tokens": 7}
            ),
            ModelReply(text="Order A1001 has shipped.", usage={"total_tokens": 5}),
        ]
    )
    agent = AsyncAgent(store, llm=model, tools=[lookup_order], clock=clock)
    result = await agent.run("s1", "Where is order A1001?")
    assert isinstance(result, tether.agent.TurnResult)
    assert result.text == "Order A1001 has shipped."
    assert result.usage == {"total_tokens": 12}
    assert [i["role"] for i in result.items] == ["user", "assistant", "tool", "assistant"]
    assert [e["event"] for e in result.events] == ["turn_started", "tool_ran", "turn_finished"]
    # the model saw the tool's result, and never tether's own events
    second = model.requests[1]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool"]
    assert '"shipped"' in second.messages[2]["content"]
    assert second.tools[0].name == "lookup_order"
    assert second.options["model"] == "scripted"
    session = await store.load("s1")
    assert session.status == tether.SessionStatus.FINISHED
    assert session.state["_tether"]["result"]["text"] == "Order A1001 has shipped."
    assert "snapshot" not in session.state["_tether"]


async def test_chat_returns_the_text(store: tether.AsyncStore) -> None:
    await new_session(store)
    agent = AsyncAgent(store, llm=ScriptedModel(["Hello!"]))
    assert await agent.chat("s1", "Hi") == "Hello!"
    roles = [i.get("event", i["role"]) for i in (await store.load("s1")).history]
    assert roles == ["user", "turn_started", "assistant", "turn_finished"]


async def test_a_second_runner_gets_already_running_before_any_model_call(
    store: tether.AsyncStore,
) -> None:
    await new_session(store)
    held = await store.claim("s1", "other-worker", 60)
    model = ScriptedModel(["never"])
    agent = AsyncAgent(store, llm=model)
    with pytest.raises(tether.AlreadyRunning) as info:
        await agent.run("s1", "hello?")
    assert isinstance(info.value, tether.AlreadyClaimed)
    assert info.value.holder == "other-worker"
    assert model.requests == []
    assert (await store.load("s1")).history == []
    await store.release(held)


async def test_a_model_error_is_recorded_and_raised(store: tether.AsyncStore) -> None:
    await new_session(store)

    def broken(request: ModelRequest) -> ModelReply:
        raise tether.ModelError("upstream 500", status=500)

    agent = AsyncAgent(store, llm=broken)
    with pytest.raises(tether.ModelError):
        await agent.run("s1", "hi")
    session = await store.load("s1")
    assert session.status == tether.SessionStatus.ERROR
    assert session.history[-1]["event"] == "error"
    replay = await agent.replay("s1")
    assert replay.result is not None
    assert replay.result["error"] == "upstream 500"
    # the lease was released: the next turn can run
    agent.llm = ScriptedModel(["recovered"])
    assert await agent.chat("s1", "again") == "recovered"


async def test_tool_errors_go_back_to_the_model(store: tether.AsyncStore) -> None:
    await new_session(store)

    @tool(rerun="pure")
    def flaky(x: int) -> int:
        """Fails."""
        raise ValueError("no such x")

    model = ScriptedModel(
        [ModelReply(tool_calls=[call("flaky", "c1", x=1), call("nope", "c2")]), "sorry"]
    )
    agent = AsyncAgent(store, llm=model, tools=[flaky])
    result = await agent.run("s1", "go")
    assert isinstance(result, tether.agent.TurnResult)
    tools_said = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert "ValueError" in tools_said[0]
    assert "no tool named 'nope'" in tools_said[1]


# --- checkpoints and resume ----------------------------------------------------------------------


async def test_after_prompt_hibernates_and_another_agent_resumes(store: tether.AsyncStore) -> None:
    await new_session(store)
    front = AsyncAgent(store, runner="web")
    stopped = await front.run("s1", "Where is A1001?", checkpoint="after_prompt")
    assert isinstance(stopped, tether.agent.Hibernation)
    assert stopped.status == "hibernated"
    assert (await store.load("s1", last=0)).status == tether.SessionStatus.HIBERNATED
    with pytest.raises(tether.InvalidRequest, match="resume"):
        await front.run("s1", "another message")
    worker = AsyncAgent(store, llm=ScriptedModel(["It shipped."]), runner="worker")
    result = await worker.resume("s1")
    assert isinstance(result, tether.agent.TurnResult)
    assert result.text == "It shipped."
    with pytest.raises(tether.MissingSnapshot):
        await worker.resume("s1")


async def test_after_each_tool_stops_after_every_tool(store: tether.AsyncStore) -> None:
    await new_session(store)
    model = ScriptedModel(
        [
            ModelReply(
                tool_calls=[
                    call("lookup_order", "c1", order_id="A1"),
                    call("lookup_order", "c2", order_id="A2"),
                ]
            ),
            "both looked up",
        ]
    )
    agent = AsyncAgent(store, llm=model, tools=[lookup_order], checkpoint="after_each_tool")
    first = await agent.run("s1", "look both up")
    assert isinstance(first, tether.agent.Hibernation)
    assert first.snapshot["pending"][0]["id"] == "c2"
    second = await agent.resume("s1")
    assert isinstance(second, tether.agent.Hibernation)
    done = await agent.resume("s1")
    assert isinstance(done, tether.agent.TurnResult)
    assert done.text == "both looked up"
    assert len(model.requests) == 2, "no model call was sent twice"


# --- human review --------------------------------------------------------------------------------


async def test_approval_flow(store: tether.AsyncStore) -> None:
    await new_session(store)
    model = ScriptedModel(
        [ModelReply(tool_calls=[call("refund", "c1", order_id="A1001")]), "Refunded."]
    )
    agent = AsyncAgent(store, llm=model, tools=[refund, lookup_order])
    stopped = await agent.run("s1", "Refund A1001 please")
    assert isinstance(stopped, tether.agent.Hibernation)
    assert stopped.status == "waiting"
    assert refunds == []
    [review] = stopped.reviews
    assert (review.tool, dict(review.arguments), review.session_id) == (
        "refund",
        {"order_id": "A1001"},
        "s1",
    )
    assert [r.id for r in await agent.pending_reviews()] == [review.id]
    assert [r.id for r in await agent.pending_reviews("s1")] == [review.id]
    again = await agent.resume("s1")  # not answered yet: still waiting, nothing runs
    assert isinstance(again, tether.agent.Hibernation)
    await agent.approve(review.id)
    with pytest.raises(tether.ReviewMismatch):
        await agent.approve(review.id)
    result = await agent.resume("s1")
    assert isinstance(result, tether.agent.TurnResult)
    assert result.text == "Refunded."
    assert refunds == ["A1001"], "approved: run exactly once"
    assert await agent.pending_reviews() == []


async def test_a_denied_tool_is_not_run_and_the_model_is_told(store: tether.AsyncStore) -> None:
    await new_session(store)
    model = ScriptedModel(
        [ModelReply(tool_calls=[call("refund", "c1", order_id="A1")]), "Understood."]
    )
    agent = AsyncAgent(store, llm=model, tools=[refund])
    stopped = await agent.run("s1", "refund")
    assert isinstance(stopped, tether.agent.Hibernation)
    await agent.deny(stopped.reviews[0].id, "over the limit")
    await agent.resume("s1")
    assert refunds == []
    told = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert told == ["not run: a human denied it (over the limit)"]


async def test_an_expired_approval(store: tether.AsyncStore, clock: FakeClock) -> None:
    await new_session(store)
    model = ScriptedModel(
        [ModelReply(tool_calls=[call("refund", "c1", order_id="A1")]), "Too late."]
    )
    agent = AsyncAgent(store, llm=model, tools=[refund], clock=clock)
    stopped = await agent.run("s1", "refund")
    assert isinstance(stopped, tether.agent.Hibernation)
    clock.advance(3601)
    with pytest.raises(tether.ApprovalExpired):
        await agent.approve(stopped.reviews[0].id)
    result = await agent.resume("s1")
    assert isinstance(result, tether.agent.TurnResult)
    assert refunds == []
    with pytest.raises(tether.ReviewMismatch):
        await agent.deny("s1/rv_000000000000", "no such review")


async def test_replay_shows_tools_reviews_and_errors(store: tether.AsyncStore) -> None:
    await new_session(store)
    model = ScriptedModel(
        [
            ModelReply(tool_calls=[call("lookup_order", "c1", order_id="A1001")]),
            ModelReply(tool_calls=[call("refund", "c2", order_id="A1001")]),
            "Refunded.",
        ]
    )
    agent = AsyncAgent(store, llm=model, tools=[lookup_order, refund])
    stopped = await agent.run("s1", "refund A1001")
    assert isinstance(stopped, tether.agent.Hibernation)
    await agent.approve(stopped.reviews[0].id)
    await agent.resume("s1")

    def broken(request: ModelRequest) -> ModelReply:
        raise tether.ModelError("model down")

    with pytest.raises(tether.ModelError):
        await agent.run("s1", "and now?", llm=broken)
    replay = await agent.replay("s1")
    kinds = [entry["kind"] for entry in replay.timeline]
    for expected in (
        "user",
        "tool_call",
        "tool_result",
        "review_requested",
        "review_approved",
        "resumed",
        "assistant",
        "turn_finished",
        "error",
    ):
        assert expected in kinds, expected
    assert [(j["tool"], j["id"]) for j in replay.journal] == [
        ("lookup_order", "c1"),
        ("refund", "c2"),
    ]
    text = await agent.inspect("s1")
    assert "refund" in text
    assert "model down" in text
    assert len(model.requests) == 3, "replay called no model"


async def test_the_snapshot_names_the_tools_and_holds_no_objects(store: tether.AsyncStore) -> None:
    await new_session(store)
    agent = AsyncAgent(store, tools=[lookup_order, refund])
    stopped = await agent.run("s1", "later", checkpoint="after_prompt")
    assert isinstance(stopped, tether.agent.Hibernation)
    assert stopped.snapshot["tools"] == ["lookup_order", "refund"]
    stored = (await store.load("s1", last=0)).state["_tether"]["snapshot"]
    assert stored == dict(stopped.snapshot)  # plain JSON, as stored


async def test_an_agent_needs_a_store() -> None:
    with pytest.raises(tether.MissingStore, match="Pass the store"):
        AsyncAgent(tether.Session())  # type: ignore[arg-type]


async def test_snapshot_tokens_are_signed(store: tether.AsyncStore) -> None:
    await new_session(store)
    agent = AsyncAgent(store, secret=b"k" * 32)
    await agent.run("s1", "later", checkpoint="after_prompt")
    token = await agent.snapshot_token("s1")
    session_id, snapshot = agent.verify_token(token)
    assert (session_id, snapshot["step"]) == ("s1", "model")
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    with pytest.raises(tether.InvalidRequest):
        agent.verify_token(forged)
    with pytest.raises(tether.InvalidRequest):
        AsyncAgent(store, secret=b"other").verify_token(token)
