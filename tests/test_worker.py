"""tether worker's library side: submit, drain, the Worker loop, fencing and a clean stop.

On SQLite (one host's processes) here; Redis and PostgreSQL run in tests/test_workers_chaos.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import tether
from tether.agent import Agent, ModelReply, ModelRequest, ScriptedModel, ToolCall, tool
from tether.errors import ConfigurationError, LeaseLost
from tether.worker import Worker, current_lease
from tether.worker_store import FencedStore, TurnCheckpointed
from tether.worker_turns import build_agent, drain, due_sessions, inbox_id, submit

LEDGER: list[tuple[str, str, int]] = []
LEDGER_LOCK = threading.Lock()


@tool(rerun="once")
def record(note: str) -> str:
    """Record a note in the ledger (once)."""
    lease = current_lease()
    assert lease is not None, "a worker's tool runs under its lease"
    with LEDGER_LOCK:
        LEDGER.append((lease.session_id, note, lease.fence))
    return f"recorded {note}"


def reply(request: ModelRequest) -> ModelReply | str:
    """Asks for `record` with the user's words, then answers: a model that needs no script."""
    last = request.messages[-1]
    if last["role"] == "user":
        return ModelReply(
            tool_calls=[
                ToolCall(
                    id=f"c{len(request.messages)}",
                    name="record",
                    arguments={"note": last["content"]},
                )
            ]
        )
    return f"done: {last['content']}"


def make_agent(store: tether.Store) -> Agent:
    return Agent(store, llm=ScriptedModel(reply), tools=[record], lease_ttl=5)


@pytest.fixture
def store(tmp_path: Path):
    LEDGER.clear()
    with tether.open_store(f"sqlite:///{tmp_path}/s.db") as opened:
        yield opened


def fences(store: tether.Store, session_id: str) -> list[int]:
    return [item["fence"] for item in store.load(session_id).history if "fence" in item]


def test_submit_then_worker_runs_the_turn(store):
    assert submit(store, "s1", "hello").queued == "turn"
    header = store.load("s1", last=0)
    assert header.status.value == "hibernated"  # the pending turn: tether ls shows it
    assert due_sessions(store) == ["s1"]
    stats = Worker(store, make_agent, concurrency=2, poll_interval=0.05).run(until_idle=True)
    assert stats.turns_finished == 1
    session = store.load("s1")
    assert session.status.value == "finished"
    assert session.history[-2]["content"] == "done: recorded hello"
    assert [(s, n) for s, n, _ in LEDGER] == [("s1", "hello")]
    stamped = fences(store, "s1")
    assert len(stamped) == len(session.history)  # every item carries its writer's fence
    assert stamped == sorted(stamped)
    assert stamped[0] < stamped[-1]
    assert due_sessions(store) == []


def test_messages_to_one_session_run_in_order(store):
    assert submit(store, "s2", "one").queued == "turn"
    assert submit(store, "s2", "two").queued == "inbox"  # behind the pending turn
    assert submit(store, "s2", "three").queued == "inbox"
    assert store.load(inbox_id("s2"), last=0).status.value == "hibernated"
    Worker(store, make_agent, concurrency=3, poll_interval=0.05).run(until_idle=True)
    users = [i["content"] for i in store.load("s2").history if i["role"] == "user"]
    assert users == ["one", "two", "three"]
    assert [n for _, n, _ in LEDGER] == ["one", "two", "three"]
    assert store.load(inbox_id("s2"), last=0).status.value == "finished"
    # a second pass (a redelivered task) finds nothing to do
    fenced = FencedStore(store)
    assert drain(build_agent(make_agent, fenced), "s2").finished == 0
    assert len(LEDGER) == 3
    fenced.close()


def test_inbox_message_is_consumed_once_even_if_drained_twice(store):
    submit(store, "s3", "a")
    submit(store, "s3", "b")
    fenced = FencedStore(store)
    first, second = build_agent(make_agent, fenced), build_agent(make_agent, fenced)
    assert drain(first, "s3").finished == 2
    # the bookkeeping of how far the inbox ran is lost: the keyed prompts still refuse a rerun
    inbox = inbox_id("s3")
    header = store.load(inbox, last=0)
    store.commit(inbox, header.version, changes={"status": "hibernated", "state": {}})
    assert drain(second, "s3").finished == 0
    assert [n for _, n, _ in LEDGER] == ["a", "b"]
    fenced.close()


class Crash(BaseException):
    """A process dying mid-tool: not an Exception, so nothing records it."""


def test_worker_death_mid_once_tool_becomes_a_review(store):
    submit(store, "s4", "pay")

    @tool(rerun="once", name="record")
    def dying(note: str) -> str:
        """Dies while running."""
        raise Crash

    crashing = FencedStore(store)
    agent = Agent(crashing, llm=ScriptedModel(reply), tools=[dying], lease_ttl=5)
    with pytest.raises(Crash):
        drain(agent, "s4")
    crashing.close()
    assert store.load("s4", last=0).status.value == "running"  # cut off mid-turn
    assert due_sessions(store) == ["s4"]  # its lease is gone: due again
    Worker(store, make_agent, poll_interval=0.05).run(until_idle=True)
    header = store.load("s4", last=0)
    assert header.status.value == "waiting"  # did it run? a human says; never a silent rerun
    assert LEDGER == []
    [review] = Agent(store).pending_reviews("s4")
    assert review.tool == "record"


def test_stop_checkpoints_the_running_turn(store):
    submit(store, "s5", "slow")
    started, go_on = threading.Event(), threading.Event()

    def slow(request: ModelRequest) -> ModelReply | str:
        started.set()
        go_on.wait(5)
        return reply(request)

    worker = Worker(
        store,
        lambda s: Agent(s, llm=ScriptedModel(slow), tools=[record], lease_ttl=5),
        poll_interval=0.05,
    )
    runner = threading.Thread(target=worker.run)
    runner.start()
    assert started.wait(5)
    worker.stop()  # SIGTERM does this: the model call in flight ends, then a checkpoint
    go_on.set()
    runner.join(10)
    assert not runner.is_alive()
    header = store.load("s5", last=0)
    assert header.status.value == "hibernated"
    assert worker.stats.checkpointed == 1
    assert LEDGER == []  # stopped before the tool
    Worker(store, make_agent, poll_interval=0.05).run(until_idle=True)
    assert store.load("s5", last=0).status.value == "finished"
    assert [n for _, n, _ in LEDGER] == ["slow"]
    model_calls = [i for i in store.load("s5").history if i["role"] == "assistant"]
    assert len(model_calls) == 2  # the reply committed before stopping was not asked again


def test_lost_lease_stops_the_writes(store):
    submit(store, "s6", "x")
    fenced = FencedStore(store, renew_ratio=0.1)
    lease = fenced.claim("s6", "stalled", ttl=0.3)
    store.release(lease)  # as if it expired: another runner takes the session
    other = store.claim("s6", "fresh", ttl=30)
    assert other.fence == lease.fence + 1
    deadline = time.monotonic() + 5
    while not tether.worker.lease_lost() and time.monotonic() < deadline:
        time.sleep(0.02)  # the renewer learns it at its next round
    assert tether.worker.lease_lost()
    version = store.load("s6", last=0).version
    with pytest.raises(LeaseLost):
        fenced.commit("s6", version, append=[{"role": "assistant", "content": "late"}], lease=lease)
    store.release(other)
    fenced.close()


def test_factory_must_build_on_the_given_store(store, tmp_path):
    other = tether.open_store(f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(ConfigurationError, match="on the store it is given"):
        Worker(store, lambda s: Agent(other))
    with pytest.raises(ConfigurationError, match="module:function"):
        Worker(store, "no_colon")
    with pytest.raises(ConfigurationError, match="cannot import"):
        Worker(store, "tether_no_such_module:make")
    other.close()


def test_checkpointed_is_a_tether_error():
    assert issubclass(TurnCheckpointed, tether.TetherError)


def test_submit_starts_no_thread(store):
    before = threading.active_count()
    for n in range(5):
        submit(store, f"t{n}", "hi")
    assert threading.active_count() == before  # a submit holds its lease for one commit
