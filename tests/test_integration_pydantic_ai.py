"""TetherConversationStore against Pydantic AI's ConversationStore contract, on every built-in
store.

Pydantic AI ships no test kit for conversation stores, so the clauses below are written from
the docstrings of ``pydantic_ai.conversation_store.ConversationStore`` (2.68.0): each test
names the method whose promise it checks. Then a real ``Agent`` with ``TestModel`` runs through
the store: turns, a fork, and a conflict.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    require_module,
)

require_module("pydantic_ai", "pydantic-ai")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.conversation import Conversation  # noqa: E402
from pydantic_ai.conversation_store import (  # noqa: E402
    ConversationConflict,
    ConversationEntry,
    ConversationRecord,
)
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart  # noqa: E402
from pydantic_ai.models.test import TestModel  # noqa: E402

import tether  # noqa: E402
from tether.errors import InvalidRequest  # noqa: E402
from tether.integrations.pydantic_ai import AGENT, TetherConversationStore  # noqa: E402
from tether.stores.base import AsyncStore  # noqa: E402

STORES = ["memory", "file", "sqlite", "redis", "postgres"]


@pytest.fixture
async def tstore(store_url: str) -> AsyncIterator[AsyncStore]:
    async with tether.open_async_store(store_url) as opened:
        yield opened


@pytest.fixture
def cs(tstore: AsyncStore) -> TetherConversationStore:
    return TetherConversationStore(tstore)


every_store = pytest.mark.parametrize("store_url", STORES, indirect=True)


def _msg(text: str) -> ModelRequest:
    return ModelRequest(parts=[UserPromptPart(text)])


def _chain(*texts: str, parent: str | None = None) -> list[ConversationEntry]:
    entries = []
    for text in texts:
        entry = ConversationEntry(parent_id=parent, message=_msg(text))
        entries.append(entry)
        parent = entry.id
    return entries


async def _new(
    cs: TetherConversationStore, cid: str, *texts: str, scope: str | None = None
) -> tuple[ConversationRecord, list[ConversationEntry]]:
    entries = _chain(*texts)
    record = ConversationRecord(
        conversation_id=cid, head_id=entries[-1].id if entries else None, scope=scope
    )
    await cs.write_record(record, new_entries=entries, expected_revision=None)
    return record, entries


def _texts(entries: list[ConversationEntry]) -> list[str]:
    return [str(e.message.parts[0].content) for e in entries]  # type: ignore[union-attr]


# --- read_record / write_record ----------------------------------------------------------------


@every_store
async def test_read_record_is_none_until_written_then_the_record_as_written(
    cs: TetherConversationStore,
) -> None:
    # read_record: "The record for a conversation, or None if the store doesn't have it."
    assert await cs.read_record("chat/1 ada@example.com") is None
    record, _ = await _new(cs, "chat/1 ada@example.com", "hi", "there", scope="ada")
    assert await cs.read_record("chat/1 ada@example.com") == record


@every_store
async def test_write_record_compares_the_revision_and_writes_nothing_on_conflict(
    cs: TetherConversationStore,
) -> None:
    # write_record: "Raises ConversationConflict if the stored record's revision isn't
    # expected_revision, [or] a record exists when expected_revision is None".
    record, entries = await _new(cs, "c", "one")
    more = _chain("two", parent=entries[-1].id)
    newer = ConversationRecord(conversation_id="c", head_id=more[-1].id)
    with pytest.raises(ConversationConflict):
        await cs.write_record(newer, new_entries=more, expected_revision=None)
    with pytest.raises(ConversationConflict):
        await cs.write_record(newer, new_entries=more, expected_revision="not-the-revision")
    assert await cs.read_record("c") == record
    with pytest.raises(KeyError):
        await cs.read_entry(more[0].id)  # "a conflict leaves neither behind"
    await cs.write_record(newer, new_entries=more, expected_revision=record.revision)
    assert await cs.read_record("c") == newer
    assert _texts(await cs.read_history(newer.head_id)) == ["one", "two"]


@every_store
async def test_write_record_refuses_a_head_no_entry_has(cs: TetherConversationStore) -> None:
    # write_record: "...or record.head_id names an entry that neither the store nor
    # new_entries has".
    record, _ = await _new(cs, "c", "one")
    dangling = ConversationRecord(conversation_id="c", head_id=str(uuid.uuid4()))
    with pytest.raises(ConversationConflict):
        await cs.write_record(dangling, expected_revision=record.revision)
    with pytest.raises(ConversationConflict):  # a new conversation too
        await cs.write_record(
            ConversationRecord(conversation_id="d", head_id=str(uuid.uuid4())),
            expected_revision=None,
        )
    assert await cs.read_record("d") is None
    assert await cs.read_record("c") == record


@every_store
async def test_write_record_lets_one_of_two_writers_from_one_revision_win(
    cs: TetherConversationStore,
) -> None:
    # write_record / ConversationConflict: "concurrent writers can't overwrite each other
    # unnoticed" (ConversationRecord.revision).
    record, entries = await _new(cs, "c", "one")

    async def write(text: str) -> str:
        more = _chain(text, parent=entries[-1].id)
        new = ConversationRecord(conversation_id="c", head_id=more[-1].id)
        await cs.write_record(new, new_entries=more, expected_revision=record.revision)
        return text

    outcomes = await asyncio.gather(write("a"), write("b"), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, str)]
    assert len(won) == 1, outcomes
    assert [type(o) for o in outcomes if not isinstance(o, str)] == [ConversationConflict]
    stored = await cs.read_record("c")
    assert stored is not None
    assert _texts(await cs.read_history(stored.head_id)) == ["one", won[0]]


# --- read_records ------------------------------------------------------------------------------


@every_store
async def test_read_records_newest_first_by_scope_with_a_limit(
    cs: TetherConversationStore,
) -> None:
    # read_records: "The stored records, or those with the given scope, newest updated_at
    # first, and at most limit of them."
    await _new(cs, "a1", "x", scope="ada")
    await _new(cs, "b1", "x", scope="bob")
    await _new(cs, "a2", "x", scope="ada")
    await _new(cs, "none", "x")
    assert [r.conversation_id for r in await cs.read_records(scope="ada")] == ["a2", "a1"]
    assert [r.conversation_id for r in await cs.read_records()] == ["none", "a2", "b1", "a1"]
    assert [r.conversation_id for r in await cs.read_records(limit=2)] == ["none", "a2"]
    assert await cs.read_records(limit=0) == []
    assert await cs.list_conversations(scope="bob") == [await cs.read_record("b1")]


# --- read_entry / read_history -----------------------------------------------------------------


@every_store
async def test_read_entry_by_id_from_any_instance(tstore: AsyncStore) -> None:
    # read_entry: "The entry with this identifier." Entries are global: a second store object
    # (another process) that never saw the record finds it too.
    cs = TetherConversationStore(tstore)
    await _new(cs, "other", "noise")
    _, entries = await _new(cs, "c", "one", "two")
    assert await cs.read_entry(entries[0].id) == entries[0]
    fresh = TetherConversationStore(tstore)
    assert await fresh.read_entry(entries[1].id) == entries[1]
    with pytest.raises(KeyError):
        await fresh.read_entry(str(uuid.uuid4()))


class _CountingLoads:
    """Counts load() calls on a store (delegating everything)."""

    def __init__(self, inner: AsyncStore) -> None:
        self.inner = inner
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, *args: Any, **kwargs: Any) -> Any:
        self.loads += 1
        return await self.inner.load(*args, **kwargs)


@every_store
async def test_read_history_reads_a_chain_in_one_call(tstore: AsyncStore) -> None:
    # read_history: "The entries from the first one up to head_id, in order, or only the last
    # limit of them"; read_entry: "Backends that can read a whole history in one query should
    # override read_history instead of relying on one call per entry."
    cs = TetherConversationStore(tstore)
    record, entries = await _new(cs, "c", *[f"m{i}" for i in range(30)])
    counting = _CountingLoads(tstore)
    cs.store = counting  # type: ignore[assignment]
    assert await cs.read_history(record.head_id) == entries
    assert counting.loads == 1
    assert await cs.read_history(record.head_id, limit=3) == entries[-3:]
    assert counting.loads == 2
    assert await cs.read_history(entries[9].id, limit=4) == entries[6:10]  # further back
    assert await cs.read_history(None) == []
    with pytest.raises(KeyError):
        await cs.read_history(str(uuid.uuid4()))


@every_store
async def test_a_rewritten_history_branches_and_both_branches_read_back(
    cs: TetherConversationStore,
) -> None:
    # save (its docstring): "if it was rewritten, the messages from the first difference on
    # branch off the last message both share, keeping the old branch stored"; branch:
    # "the history it leaves stays stored ... so the conversation can branch back".
    conversation = Conversation(conversation_id="c", messages=[_msg("a"), _msg("b"), _msg("c")])
    await cs.save(conversation)
    rewritten = Conversation(
        conversation_id="c", messages=[_msg("a"), _msg("B")], revision=conversation.revision
    )
    await cs.save(rewritten)
    record = await cs.read_record("c")
    assert record is not None
    assert len(record.branches) == 1
    assert _texts(await cs.read_history(record.head_id)) == ["a", "B"]
    assert _texts(await cs.read_history(record.branches[0])) == ["a", "b", "c"]
    back = await cs.branch("c", from_entry=record.branches[0], expected_revision=record.revision)
    assert [m.parts[0].content for m in back.messages] == ["a", "b", "c"]  # type: ignore[union-attr]
    fresh = TetherConversationStore(cs.store)  # another process: no hints
    loaded = await fresh.load("c")
    assert loaded is not None
    assert len(loaded.messages) == 3


# --- fork / delete_record ----------------------------------------------------------------------


@every_store
async def test_fork_shares_the_parents_entries_through_tethers_fork(
    cs: TetherConversationStore, tstore: AsyncStore
) -> None:
    # fork: "Start a new conversation from a stored one's history, sharing its entries rather
    # than copying them."; write_record: head_id may name an entry the store has.
    _record, entries = await _new(cs, "parent", "a", "b", "c", scope="ada")
    forked = await cs.fork("parent", at=2, new_conversation_id="child")
    assert forked.messages == [e.message for e in entries[:2]]
    child = await cs.read_record("child")
    assert child is not None
    assert (child.forked_from, child.forked_at, child.scope) == ("parent", entries[1].id, "ada")
    history = await cs.read_history(child.head_id)
    assert [e.id for e in history] == [e.id for e in entries[:2]]  # the same entries
    session = await tstore.load("child", last=0)
    assert (session.parent_id, session.fork_seq, session.agent) == ("parent", 2, AGENT)
    with pytest.raises(ConversationConflict):  # fork: "a conversation with
        await cs.fork("parent", new_conversation_id="child")  # new_conversation_id is stored"


@every_store
async def test_delete_record_frees_what_no_record_reaches(
    cs: TetherConversationStore, tstore: AsyncStore
) -> None:
    # delete_record: "Delete a conversation's record, and ... the entries no remaining
    # record's history reaches"; "ConversationConflict: If no record with expected_revision is
    # stored".
    record, entries = await _new(cs, "parent", "a", "b", "c")
    await cs.fork("parent", at=2, new_conversation_id="child")
    with pytest.raises(ConversationConflict):
        await cs.delete_record("parent", expected_revision="stale")
    await cs.delete_record("parent", expected_revision=record.revision)
    assert await cs.read_record("parent") is None
    with pytest.raises(ConversationConflict):
        await cs.delete_record("parent", expected_revision=record.revision)
    fresh = TetherConversationStore(tstore)
    with pytest.raises(KeyError):
        await fresh.read_entry(entries[2].id)  # reached by no record: gone
    child = await fresh.load("child")  # the fork still reaches its two
    assert child is not None
    assert child.messages == [e.message for e in entries[:2]]
    assert not await tstore.exists("parent")


@every_store
async def test_a_session_of_another_application_is_never_written(
    cs: TetherConversationStore, tstore: AsyncStore
) -> None:
    await tstore.create(tether.Session(id="c", agent="support"))
    with pytest.raises(InvalidRequest, match="not a Pydantic AI conversation"):
        await cs.read_record("c")
    with pytest.raises(InvalidRequest, match="not a Pydantic AI conversation"):
        await _new(cs, "c", "x")
    assert (await tstore.load("c")).version == 1


# --- a real agent ------------------------------------------------------------------------------


@every_store
async def test_an_agent_runs_turns_forks_and_meets_a_conflict(
    cs: TetherConversationStore, tstore: AsyncStore
) -> None:
    agent = Agent(TestModel(custom_output_text="noted"))
    conversation = await cs.load("t1") or Conversation(conversation_id="t1")
    result = await agent.run("first", conversation=conversation)
    assert len(await cs.save(result, scope="ada")) == 2
    loaded = await cs.load("t1")
    assert loaded is not None
    assert loaded.messages == result.all_messages()
    result = await agent.run("second", conversation=loaded)
    await cs.save(result)
    assert len((await cs.load("t1")).messages) == 4  # type: ignore[union-attr]

    # Two workers load the same revision; the second save is a conflict, not a lost turn.
    one, two = await cs.load("t1"), await cs.load("t1")
    assert one is not None
    assert two is not None
    first = await agent.run("from one", conversation=one)
    second = await agent.run("from two", conversation=two)
    await cs.save(first)
    with pytest.raises(ConversationConflict):
        await cs.save(second)
    stored = await cs.load("t1")
    assert stored is not None
    assert stored.messages == first.all_messages()
    retry = await agent.run("from two", conversation=stored)  # reload, run again: saved
    await cs.save(retry)

    # A fork at the first turn carries on by itself; the parent is untouched.
    fork = await cs.fork("t1", at=2, new_conversation_id="t1-alt")
    side = await agent.run("another way", conversation=fork)
    await cs.save(side)
    assert [m.kind for m in (await cs.load("t1-alt")).messages] == ["request", "response"] * 2  # type: ignore[union-attr]
    assert (await cs.load("t1")).messages == retry.all_messages()  # type: ignore[union-attr]
    texts = [
        p.content
        for m in (await cs.load("t1-alt")).messages  # type: ignore[union-attr]
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, TextPart)
    ]
    assert texts == ["noted", "noted"]
    # tether sees the conversations as sessions: listed by owner, items exact
    page = await tstore.list(owner="ada")
    assert sorted(h.id for h in page.sessions) == ["t1", "t1-alt"]
    items = (await tstore.load("t1")).items
    assert items[0].key == (await cs.load_entries("t1"))[0].id  # type: ignore[index]


@pytest.mark.heavy
def test_the_example_runs_offline(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "pydantic_ai_chat.py"
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
        "conflict: reloaded and ran the turn again",
        "support-1-alt: 4 messages",
        "support-1: 6 messages",
    ]
    with tether.open_store(url) as store:
        assert [h.id for h in store.list(owner="ada").sessions] == ["support-1-alt", "support-1"]
