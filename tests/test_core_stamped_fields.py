"""The runtime's cached turn builds the saved header from the commit's stamp
(``_core.stamped_fields``) instead of reading it back: it must be the header the store wrote,
field for field, whatever the commit changed; and what a turn hands out must never reach into
the cache."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import tether
from tether import AppendMessages, Session, SetState, _core
from tether.actions import Action, Draft
from tether.models import SessionStatus
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

LATER = datetime(2100, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> tether.Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "stamps.db")


CHANGES: list[dict[str, Any]] = [
    {},
    {"status": SessionStatus.RUNNING},
    {"status": "finished", "owner": "ada", "agent": "bot"},
    {"state": {"a": [1, {"b": None}]}, "metadata": {"t": "x"}, "options": {"m": 1}},
    {"expires_at": LATER},
    {"expires_at": None},
]


@pytest.mark.parametrize("changes", CHANGES)
@pytest.mark.parametrize("runtime", [False, True])
def test_stamped_fields_are_the_header_the_store_wrote(
    store: tether.Store, changes: dict[str, Any], runtime: bool
) -> None:
    state = {"k": 1, "_tether": {"snapshot": {"step": "model"}}}
    made = Session(history=[{"role": "user", "content": "hi"}], expires_at=LATER)
    created = store.create(made)
    with _core.runtime_writes():  # the runtime's block is set only by the runtime
        store.commit(created.id, 1, changes={"state": state})
    loaded = store.load(created.id)
    claimed = store.claim(created.id, "w", 30)
    items: list[Mapping[str, Any] | tether.KeyedItem] = [
        {"role": "assistant", "content": "yo"},
        tether.KeyedItem("k1", {"x": 1}),
    ]
    normalized = _core.normalize_changes(changes)
    if runtime:
        with _core.runtime_writes():
            stamp = store.commit_stamped(
                created.id, loaded.version, append=items, changes=changes, lease=claimed
            )
            built = _core.stamped_fields(loaded, normalized, items, stamp)
    else:
        stamp = store.commit_stamped(
            created.id, loaded.version, append=items, changes=changes, lease=claimed
        )
        built = _core.stamped_fields(loaded, normalized, items, stamp)
    assert built is not None
    fields, records = built
    stored = store.load(created.id, after=loaded.last_seq)
    assert fields == stored.header.model_dump()
    assert list(fields) == list(tether.SessionHeader.model_fields)
    assert _core.history_view(created.id, records) == stored.history
    # the document route (stamped_parts) agrees with it
    with_block = _core.runtime_writes() if runtime else None
    if with_block is not None:
        with with_block:
            parts = _core.stamped_parts(loaded, normalized, items, stamp)
    else:
        parts = _core.stamped_parts(loaded, normalized, items, stamp)
    assert parts is not None
    assert _core.fields_from_doc(parts[0]) == fields


def test_stamped_fields_refuse_a_stamp_that_says_too_little(store: tether.Store) -> None:
    created = store.create(Session())
    loaded = store.load(created.id)
    stamp = store.commit_stamped(created.id, 1, append=[{"role": "user"}])
    assert _core.stamped_fields(loaded, {}, [], _core.CommitStamp(version=2)) is None
    skipped = _core.CommitStamp(
        version=3, updated_at=stamp.updated_at, lease_fence=stamp.lease_fence
    )
    assert _core.stamped_fields(loaded, {}, [], skipped) is None


class _Meddle(Action):
    """Changes the working copy's nested state in place, then fails: nothing is written."""

    name = "meddle"
    retry_safe = True

    def apply(self, draft: Draft) -> None:
        draft.session.state["k"]["n"] = 99
        draft.session.metadata["added"] = True
        raise RuntimeError("abort")


def test_what_a_cached_turn_hands_out_never_reaches_the_cache(store: tether.Store) -> None:
    sessions = tether.Sessions(store)
    sid = sessions.create(state={"k": {"n": 1}}, metadata={"m": [1]}).id
    saved = sessions.execute(sid, AppendMessages({"role": "user", "content": "a"}))
    # the caller changes everything it got back, nested values included
    saved.state["k"]["n"] = 2
    saved.metadata["m"].append(2)
    saved.options["o"] = 1
    saved.history.append({"role": "user", "content": "mine"})
    got = sessions.get(sid)
    assert got.state == {"k": {"n": 1}}
    assert got.metadata == {"m": [1]}
    assert got.options == {}
    assert len(got.history) == 1
    got.state["k"]["n"] = 3
    # an action that changed its working copy in place and then failed leaves no trace
    with pytest.raises(RuntimeError):
        sessions.execute(sid, _Meddle())
    after = sessions.execute(sid, SetState(x=1))
    assert after.state == {"k": {"n": 1}, "x": 1}
    assert after.metadata == {"m": [1]}
    assert after == tether.Sessions(store, cache_size=0).get(sid)
    # a conflict is still seen: someone else writes, the cached turn's commit is refused and
    # the action runs again on what is new
    store.commit(sid, after.version, changes={"owner": "other"})
    again = sessions.execute(sid, AppendMessages({"role": "user", "content": "b"}))
    assert again.owner == "other"
    assert again.version == after.version + 2
    assert again == tether.Sessions(store, cache_size=0).get(sid)
    assert again.expires_at is None
    assert again.updated_at is not None
    assert again.created_at is not None
    assert again.updated_at - again.created_at < timedelta(minutes=5)


def test_a_stamp_from_a_written_document_is_the_one_its_init_makes() -> None:
    doc = {
        "version": 3,
        "updated_at": 1_700_000_000_123_456,
        "lease_owner": "w1",
        "lease_fence": 2,
        "lease_expires_at": 1_700_000_060_000_000,
    }
    stamp = _core.commit_stamp(doc, [(5, b'{"seq":5}'), (6, b'{"seq":6}')])
    made = _core.CommitStamp(
        3,
        datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=timezone.utc),
        "w1",
        2,
        datetime(2023, 11, 14, 22, 14, 20, tzinfo=timezone.utc),
        (b'{"seq":5}', b'{"seq":6}'),
    )
    assert stamp == made
    assert hash(stamp) == hash(made)
    assert repr(stamp) == repr(made)
    assert stamp.rows == made.rows
    assert stamp.reported
    with pytest.raises(AttributeError):  # a stamp is a fact about a write: frozen
        stamp.version = 4  # type: ignore[misc]
    bare = _core.commit_stamp({"version": 2, "updated_at": 0}, None)
    assert bare == _core.CommitStamp(2, datetime(1970, 1, 1, tzinfo=timezone.utc), None, 0)
    assert bare.rows is None
    assert bare.lease_expires_at is None
