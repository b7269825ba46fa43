"""The action's working copy (``Draft.session``) is made only when asked for: an action and
hooks that never read it cost no copy of the header, and everything that reads or changes it
behaves as when it was made up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Action, AppendMessages, Draft, HookContext, Session, SetState
from tether.errors import InvalidRequest, ReservedStateKey
from tether.stores.sqlite import SQLiteStore


@pytest.fixture
def sessions(tmp_path: Path) -> tether.Sessions:
    return tether.Sessions(SQLiteStore(tmp_path / "draft.db"))


class Spy(Action):
    """Appends one item and records whether its draft's working copy was made."""

    name = "spy"
    retry_safe = True

    def __init__(self) -> None:
        self.drafts: list[Draft] = []

    def apply(self, draft: Draft) -> None:
        self.drafts.append(draft)
        draft.append({"role": "user", "content": "hi"})


def test_an_action_that_does_not_read_the_header_gets_no_copy(sessions: tether.Sessions) -> None:
    sid = sessions.create(state={"k": 1}).id
    sessions.get(sid)
    spy = Spy()
    saved = sessions.execute(sid, spy)
    assert [d.touched for d in spy.drafts] == [False]
    assert spy.drafts[0].changes() == {}
    assert saved.state == {"k": 1}
    assert len(saved.history) == 1
    saved.state["k"] = 2  # the caller's copy: the cache is not changed
    assert sessions.get(sid).state == {"k": 1}


def test_a_hook_asks_for_the_working_copy_and_its_change_is_committed(
    sessions: tether.Sessions,
) -> None:
    sid = sessions.create().id

    def mark(ctx: HookContext) -> None:
        assert ctx.draft is not None
        assert ctx.draft.touched
        ctx.session.state["seen"] = True

    sessions.add_hook("before_save", mark)
    spy = Spy()
    saved = sessions.execute(sid, spy)
    assert spy.drafts[0].touched
    assert saved.state == {"seen": True}
    assert sessions.store.load(sid).state == {"seen": True}


def test_a_hook_added_while_the_action_runs_still_runs(sessions: tether.Sessions) -> None:
    sid = sessions.create().id
    seen: list[str] = []

    class AddsHook(Action):
        name = "adds_hook"

        def apply(self, draft: Draft) -> None:
            sessions.add_hook("after_action", lambda ctx: seen.append(ctx.stage.value))
            draft.append({"role": "user", "content": "x"})

    sessions.execute(sid, AddsHook())
    assert seen == ["after_action"]


def test_the_runtime_block_is_still_refused(sessions: tether.Sessions) -> None:
    sid = sessions.create().id

    class SetsBlock(Action):
        name = "sets_block"

        def apply(self, draft: Draft) -> None:
            draft.session.state["_tether"] = {"x": 1}

    with pytest.raises(ReservedStateKey):
        sessions.execute(sid, SetsBlock())
    assert "_tether" not in sessions.store.load(sid).state


def test_changing_the_history_in_place_is_still_refused(sessions: tether.Sessions) -> None:
    sid = sessions.create(history=[{"role": "user", "content": "a"}]).id

    class EditsHistory(Action):
        name = "edits_history"
        needs_history = True

        def apply(self, draft: Draft) -> None:
            assert len(draft.session.history) == 1
            draft.session.history.append({"role": "user", "content": "b"})

    with pytest.raises(InvalidRequest, match="changed in place"):
        sessions.execute(sid, EditsHistory())
    assert len(sessions.get(sid).history) == 1


def test_a_lazy_draft_matches_an_eager_one() -> None:
    loaded = Session(state={"a": 1}, history=[{"role": "user", "content": "a"}])
    made: list[Session] = []

    def copy(session: Session) -> Session:
        made.append(session.model_copy(deep=True))
        return made[-1]

    lazy = Draft(loaded, copy=copy)
    assert not lazy.touched
    assert lazy.changes() == {}
    assert made == []
    lazy.session.state["a"] = 2
    assert made
    assert lazy.touched
    assert lazy.changes() == {"state": {"a": 2}}
    eager = Draft(loaded, loaded.model_copy(deep=True))
    eager.session.state["a"] = 2
    assert eager.touched
    assert eager.changes() == lazy.changes()
    replaced = Draft(loaded, copy=copy)  # assigning a working copy, as before
    replaced.session = Session(**{**loaded.model_dump(), "owner": "o"})
    assert replaced.changes() == {"owner": "o"}
    with pytest.raises(TypeError):
        Draft(loaded)


@pytest.mark.parametrize(
    "action", [AppendMessages({"role": "user", "content": "x"}), SetState(k=1)]
)
def test_events_and_after_save_hooks_still_fire(sessions: tether.Sessions, action: Action) -> None:
    sid = sessions.create().id
    sessions.get(sid)
    got: list[Any] = []
    sessions.subscribe(got.append, tether.events.ActionExecuted)
    sessions.add_hook("after_save", lambda ctx: got.append(ctx.stage.value))
    sessions.execute(sid, action)
    assert [type(g).__name__ if not isinstance(g, str) else g for g in got] == [
        "after_save",
        "ActionExecuted",
    ]
