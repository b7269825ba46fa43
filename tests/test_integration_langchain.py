"""TetherChatMessageHistory: LangChain's BaseChatMessageHistory on every built-in store."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    drop_postgres_schema,
    require_module,
    require_server,
    wipe_redis_namespace,
    with_options,
)

require_module("langchain_core", "langchain")

from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402

import tether  # noqa: E402
from tether.integrations.langchain import AGENT, TetherChatMessageHistory  # noqa: E402
from tether.stores.base import Store  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # upstream's, on the base


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind = request.param
    cleanup = None
    if kind == "memory":
        url = "memory://"
    elif kind == "file":
        url = f"file:{tmp_path / 'sessions'}"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
    elif kind == "redis":
        base, namespace = require_server("redis"), f"t{uuid.uuid4().hex}"
        url = with_options(base, namespace=namespace)
        cleanup = lambda: wipe_redis_namespace(base, namespace)  # noqa: E731
    else:
        base, schema = require_server("postgres"), f"tether_t_{uuid.uuid4().hex}"
        url = with_options(base, schema=schema)
        cleanup = lambda: drop_postgres_schema(base, schema)  # noqa: E731
    with tether.open_store(url) as opened:
        yield opened
    if cleanup is not None:
        cleanup()


MESSAGES = [
    SystemMessage("You are terse."),
    HumanMessage("Where is order A1001?", id="h1"),
    AIMessage(
        "",
        tool_calls=[{"name": "lookup", "args": {"order": "A1001"}, "id": "c1"}],
        additional_kwargs={"refusal": None},
    ),
    ToolMessage('{"status": "shipped"}', tool_call_id="c1"),
    AIMessage("It shipped yesterday.", response_metadata={"model_name": "fake"}),
]


def test_the_four_methods_round_trip_every_message_type(store: Store) -> None:
    history = TetherChatMessageHistory(store, "user/ada thread 1", owner="ada")
    assert history.messages == []  # no session yet
    history.add_messages(MESSAGES[:2])
    history.add_messages(MESSAGES[2:])
    assert history.messages == MESSAGES
    again = TetherChatMessageHistory(store, "user/ada thread 1")  # another process
    assert again.messages == MESSAGES
    session = store.load(history.tether_id)
    assert [stored.item for stored in session.items] == [message_to_dict(m) for m in MESSAGES]
    assert (session.agent, session.owner) == (AGENT, "ada")
    assert tether.ids.decode_external_id(session.id, session.metadata) == "user/ada thread 1"
    history.clear()
    assert history.messages == []
    assert again.messages == []
    history.add_message(HumanMessage("again"))
    assert [m.content for m in again.messages] == ["again"]


def test_one_commit_per_add_messages(store: Store) -> None:
    history = TetherChatMessageHistory(store, "t")
    history.add_messages(MESSAGES)  # creates: version 1
    assert store.load(history.tether_id, last=0).version == 1
    history.add_messages(MESSAGES)
    history.add_messages([])  # nothing to write: no write
    session = store.load(history.tether_id, last=0)
    assert (session.version, session.history_len) == (2, 10)


def test_two_histories_on_one_session_lose_nothing(store: Store) -> None:
    one = TetherChatMessageHistory(store, "shared")
    two = TetherChatMessageHistory(store, "shared")
    one.add_user_message("from one")
    two.add_user_message("from two")  # no read first, no conflict: both kept
    one.add_ai_message("reply")
    assert [m.content for m in two.messages] == ["from one", "from two", "reply"]
    other = TetherChatMessageHistory(store, "other")
    assert other.messages == []


async def test_the_async_methods(store: Store) -> None:
    history = TetherChatMessageHistory(store, "async")
    await history.aadd_messages(MESSAGES[:2])
    assert await history.aget_messages() == MESSAGES[:2]
    await history.aclear()
    assert await history.aget_messages() == []


def test_a_runnable_with_message_history_keeps_turns_in_tether(store: Store) -> None:
    model = FakeListChatModel(responses=["Hello Ada.", "You said your name is Ada."])
    chain = RunnableWithMessageHistory(
        model, lambda session_id: TetherChatMessageHistory(store, session_id)
    )
    config = {"configurable": {"session_id": "chat-1"}}
    assert chain.invoke("I am Ada.", config=config).content == "Hello Ada."  # type: ignore[arg-type]
    assert chain.invoke("Who am I?", config=config).content == "You said your name is Ada."  # type: ignore[arg-type]
    turns = TetherChatMessageHistory(store, "chat-1").messages
    assert [type(m).__name__ for m in turns] == ["HumanMessage", "AIMessage"] * 2
    assert store.load("chat-1", last=0).version == 2  # one write per turn


@pytest.mark.heavy
def test_the_example_runs_offline(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "langchain_chat.py"
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    done = subprocess.run(
        [sys.executable, str(example), url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "human: I am Ada.",
        "ai: Hello Ada.",
        "human: Who am I?",
        "ai: Your name is Ada.",
    ]
    assert done.stderr == ""
    with tether.open_store(url) as store:
        assert store.load("chat-1", last=0).history_len == 4
