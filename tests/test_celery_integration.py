"""tether.integrations.celery: settings, submit before send, retries, stranded sessions.

Workers killed mid-turn are in tests/test_workers_chaos.py; the example app end to end in
tests/test_worker_example.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from .conftest import require_module

require_module("celery", "celery")

from celery import Celery  # noqa: E402
from celery.exceptions import Retry  # noqa: E402

import tether  # noqa: E402
from tether.agent import Agent, ModelReply, ModelRequest, ScriptedModel  # noqa: E402
from tether.integrations.celery import AT_LEAST_ONCE, TurnQueue  # noqa: E402


def make_agent(store: tether.Store) -> Agent:
    def reply(request: ModelRequest) -> ModelReply | str:
        return f"you said: {request.messages[-1]['content']}"

    return Agent(store, llm=ScriptedModel(reply), lease_ttl=5)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'turns.db'}"


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[tuple[Celery, str]]:
    """An app on the real RabbitMQ, with a queue of this test's own (deleted after)."""
    queue = f"tether-test-{uuid.uuid4().hex[:12]}"
    app = Celery(f"tether-test-{queue}", broker=rabbitmq_url)
    yield app, queue
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


def queued(app: Celery, queue: str) -> int:
    with app.connection_for_write() as conn:
        declared = conn.default_channel.queue_declare(queue=queue, passive=True)
        return int(declared.message_count)


def test_the_app_is_set_up_for_at_least_once_delivery(url: str) -> None:
    app = Celery("tether-settings")
    turns = TurnQueue(app, store=url, agent=make_agent)
    for key, value in AT_LEAST_ONCE.items():
        assert app.conf[key] == value, key
    assert turns.task.acks_late
    assert turns.task.reject_on_worker_lost
    kept = Celery("tether-own-settings")
    TurnQueue(kept, store=url, agent=make_agent, name="other", configure_app=False)
    assert not kept.conf.task_acks_late


def test_submit_stores_the_turn_then_sends_one_task_each(url: str, broker) -> None:
    app, queue = broker
    turns = TurnQueue(app, store=url, agent=make_agent, queue=queue, name=f"t.{queue}")
    assert turns.submit("s1", "hello").queued == "turn"
    assert turns.submit("s1", "again").queued == "inbox"  # behind the pending turn
    store = turns.store()
    assert store.load("s1", last=0).status.value == "hibernated"
    assert queued(app, queue) == 2
    # a lost task is found again: every session with work due, not touched for older_than
    assert turns.requeue_stranded(older_than=0) == ["s1"]
    assert queued(app, queue) == 3
    assert turns.requeue_stranded(older_than=3600) == []  # too recent: its task may be queued
    turns.close()


def test_the_task_retries_while_another_runner_holds_the_session(url: str) -> None:
    app = Celery("tether-direct")
    turns = TurnQueue(app, store=url, agent=make_agent, name="t.direct")
    store = turns.store()
    from tether.worker_turns import submit

    submit(store, "s2", "ping")
    lease = store.claim("s2", "someone-else", ttl=30)
    # called outside a worker, Celery's retry raises Retry instead of sending the task again
    with pytest.raises(Retry):
        turns.task("s2")  # AlreadyRunning: retried with backoff, nothing written
    assert store.load("s2", last=0).status.value == "hibernated"
    store.release(lease)
    assert turns.task("s2") == "idle"  # ran the turn, then found nothing more due
    assert store.load("s2").history[-2]["content"] == "you said: ping"
    assert turns.task("s2") == "idle"  # a redelivered task: nothing to do
    assert [i["role"] for i in store.load("s2").history].count("assistant") == 1
    turns.close()


def test_retries_back_off_but_not_past_the_holders_lease(url: str) -> None:
    turns = TurnQueue(Celery("tether-backoff"), store=url, agent=make_agent, name="t.backoff",
                      backoff=0.5, max_backoff=8.0)  # fmt: skip
    now = datetime.now(timezone.utc)
    for retries, base in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 8.0), (500, 8.0)]:
        delay = turns.retry_delay(retries, None)
        assert base * 0.5 <= delay <= base * 1.5, (retries, delay)
    # the holder's lease ends in a second: retrying much later than that is time lost
    soon = turns.retry_delay(10, now + timedelta(seconds=1))
    assert soon <= (1 + 0.5) * 1.5
    # a lease already over: the shortest wait
    assert turns.retry_delay(10, now - timedelta(seconds=5)) <= 0.5 * 1.5
