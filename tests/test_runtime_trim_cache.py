"""The cached turn's shortcuts build what the general paths build: the saved session made
directly from a commit's fields (as ``construct_trusted`` makes it), the caller's copy, the
agent's turn id and its copy of the runtime block."""

from __future__ import annotations

import re

import tether
from tether import AppendMessages, Session, _core
from tether._cache import _SESSION_PRIVATE, _extended, _set_items, detach
from tether.agent import Agent, ScriptedModel, _turn
from tether.models import StoredItem

_MADE = Session(history=[{"role": "user", "content": "hi"}], state={"a": [1, {"b": 2}]})


def _fields() -> dict[str, object]:
    session = _MADE
    fields = dict(session.__dict__)
    del fields["history"]
    fields["history"] = [dict(item) for item in session.history]
    return fields


def test_private_defaults_are_none() -> None:
    defaults = {name: a.get_default() for name, a in Session.__private_attributes__.items()}
    assert defaults == _SESSION_PRIVATE
    assert all(value is None for value in defaults.values())


def test_extended_is_what_construct_trusted_makes() -> None:
    items = [StoredItem(1, "2026-01-01T00:00:00.000000+00:00", None, {"role": "user"})]
    cached = Session()
    direct = _extended(cached, _fields(), items)
    general = _core.construct_trusted(Session, _fields())
    _set_items(general, items)
    assert type(direct) is Session
    assert direct.__dict__ == general.__dict__
    assert list(direct.__dict__) == list(general.__dict__)
    assert direct.__pydantic_fields_set__ == general.__pydantic_fields_set__
    assert direct.__pydantic_extra__ == general.__pydantic_extra__
    assert direct.__pydantic_private__ == general.__pydantic_private__
    assert direct._items is items


def test_extended_of_a_subclass_takes_the_general_path() -> None:
    class Mine(Session):
        pass

    items: list[StoredItem] = []
    made = _extended(Mine(), _fields(), items)
    assert type(made) is Session
    assert made._items is items


def test_detach_copies_what_a_caller_may_change() -> None:
    sessions = tether.Sessions(tether.open_store("memory://"))
    made = sessions.create(state={"k": {"n": 1}}, metadata={"m": [1]}, options={"o": 1})
    sessions.execute(made.id, AppendMessages({"role": "user", "content": "x"}))
    cached = sessions._cache.get(made.id)
    assert cached is not None
    copy = detach(cached)
    assert copy == cached
    assert copy.model_fields_set >= {"metadata", "state", "options", "history"}
    copy.state["k"]["n"] = 2
    copy.metadata["m"].append(2)
    copy.history.append({"role": "user", "content": "y"})
    assert cached.state == {"k": {"n": 1}}
    assert cached.metadata == {"m": [1]}
    assert len(cached.history) == 1
    assert sessions.get(made.id).state == {"k": {"n": 1}}


def test_turn_ids_and_the_trusted_runtime_copy() -> None:
    agent = Agent(tether.Sessions(tether.open_store("memory://")), llm=ScriptedModel(["a", "b"]))
    session_id = agent.sessions.create().id
    agent.run(session_id, "hi")
    agent.run(session_id, "again")  # on the session the runtime holds
    session = agent.sessions.get(session_id)
    turns = [i["turn"] for i in session.history if i.get("event") == "turn_started"]
    assert len(turns) == 2
    assert turns[0] != turns[1]
    assert all(re.fullmatch(r"[0-9a-f]{12}", turn) for turn in turns)
    trusted = _turn.runtime(session, trusted=True)
    assert trusted == _turn.runtime(session)
    assert trusted["result"]["text"] == "b"
    trusted["result"]["text"] = "changed"
    assert session.state["_tether"]["result"]["text"] == "b"
