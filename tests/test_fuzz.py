"""Property-based fuzz of every store's public calls: bad input is refused before any write.

Each example makes a fresh session in a store shared by the whole test, then runs one to
three calls with arguments drawn from valid and hostile values (ids, strings with lone
surrogates or NUL, huge or negative integers, ttls out of range, naive or extreme datetimes,
non-JSON values such as UUIDs and Enums, forged cursors, wrong types). For every call:

- accepted: what was written reads back exactly (history, state, header fields, lease);
- refused: the error is a :class:`~tether.TetherError` and the store holds what it held;
- either way, the session still loads and the store still lists.

The six stores run the same properties; Redis, PostgreSQL and NATS are the real servers, each
in a namespace / schema / bucket of its own. The runs are derandomized (no example database),
so CI sees the same examples every time; ``max_examples`` keeps the whole file to about a
minute and a half.
"""

from __future__ import annotations

import base64
import enum
import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tether import SessionStatus, TetherError
from tether.stores.file import FileStore
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from .conftest import (
    delete_nats_bucket,
    drop_postgres_schema,
    require_server,
    wipe_redis_namespace,
    with_options,
)

# about a minute and a half: make check leaves it out, make test runs it
pytestmark = pytest.mark.heavy

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


# --- hostile values ----------------------------------------------------------------------------

NOT_STR = st.sampled_from([None, 0, 1.5, b"bytes", ["a"], {"a": 1}, object(), True])
HASHABLE_NOT_STR = st.sampled_from([None, 0, 1.5, b"bytes", True, (1,)])
SURROGATE_TEXT = st.sampled_from(["\ud800", "a\udfffb", "\udc80"])
LONG_TEXT = st.integers(250, 2000).map(lambda n: "o" * n)
TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8"), max_size=6),
    SURROGATE_TEXT,
    st.just("nul\x00here"),
    LONG_TEXT,
)
VALID_ID = st.from_regex(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,20}", fullmatch=True)
IDS = st.one_of(VALID_ID, TEXT, NOT_STR, st.just("x" * 129), st.just("../etc"))
BIG_INTS = st.sampled_from([2**31, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**100])
INTS = st.one_of(
    st.integers(-3, 5), BIG_INTS, BIG_INTS.map(lambda n: -n), st.sampled_from([True, 1.0, "1"])
)
TTLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.001, max_value=3600),
    st.integers(-5, 10**12),
    BIG_INTS,
    st.sampled_from(
        [timedelta.max, timedelta(days=3651), timedelta(days=-1), timedelta(0), timedelta(60)]
    ),
    st.sampled_from([True, "60", None, [60]]),
)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)
)
DATETIMES = st.one_of(
    AWARE,
    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2300, 1, 1)).map(
        lambda d: d.replace(tzinfo=timezone.utc)
    ),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime.min.replace(tzinfo=timezone.utc),
            datetime.max.replace(tzinfo=timezone.utc),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-12))),
            datetime(1969, 12, 31, tzinfo=timezone.utc),
            "2030-01-01",
            1700000000,
        ]
    ),
)
EXOTIC = st.sampled_from(
    [
        uuid.UUID(int=7),
        Color.RED,
        Level.ONE,
        datetime(2020, 1, 1),
        b"raw",
        {1, 2},
        Decimal("1.5"),
        object(),
        SessionStatus.NEW,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    st.one_of(SCALARS, EXOTIC),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.one_of(TEXT, st.integers(0, 3), HASHABLE_NOT_STR), inner, max_size=3),
    ),
    max_leaves=6,
)
OBJECTS = st.one_of(st.dictionaries(TEXT, JSON, max_size=3), JSON)
ITEMS = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant"]), "content": TEXT}
            ),
            st.fixed_dictionaries(
                {"role": st.one_of(TEXT, NOT_STR)},
                optional={"content": JSON, "x": JSON, "timestamp": st.one_of(TEXT, NOT_STR)},
            ),
            # a framework's items: a type and no role, tether's own key names inside
            st.fixed_dictionaries(
                {"type": st.sampled_from(["function_call", "reasoning", "message"])},
                optional={"seq": JSON, "timestamp": JSON, "item": JSON, "key": JSON},
            ),
            st.builds(
                tether.KeyedItem,
                key=st.one_of(st.sampled_from(["k1", "k2"]), TEXT, NOT_STR),
                item=st.one_of(st.fixed_dictionaries({"type": TEXT}), st.just({}), NOT_STR),
            ),
            NOT_STR,
        ),
        max_size=3,
    ),
    NOT_STR,
)
KEYS = st.one_of(
    st.lists(st.one_of(st.sampled_from(["k1", "k2", "missing"]), TEXT, NOT_STR), max_size=3),
    TEXT,
    NOT_STR,
    st.just([f"k{i}" for i in range(1001)]),
)
STATUSES = st.one_of(
    st.sampled_from([s.value for s in SessionStatus]),
    st.sampled_from(list(SessionStatus)),
    TEXT,
    NOT_STR,
    st.lists(st.one_of(st.sampled_from(["new", "running"]), TEXT), max_size=2),
)
CHANGE_FIELDS = ["state", "metadata", "options", "status", "owner", "agent", "expires_at"]


def _forged_cursor(payload: Any) -> str:
    try:
        raw = orjson.dumps(payload)
    except TypeError:
        raw = b"[1,"
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSORS = st.one_of(
    st.none(),
    TEXT,
    NOT_STR,
    st.tuples(st.one_of(INTS, TEXT), st.one_of(VALID_ID, TEXT, NOT_STR)).map(
        lambda t: _forged_cursor(list(t))
    ),
)


@st.composite
def changes(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(NOT_STR, st.just({"version": 5}), st.just({"history": []})))
    names = draw(st.lists(st.sampled_from(CHANGE_FIELDS), unique=True, max_size=3))
    out: dict[str, Any] = {}
    for name in names:
        if name in ("state", "metadata", "options"):
            out[name] = draw(OBJECTS)
        elif name == "status":
            out[name] = draw(STATUSES)
        elif name == "expires_at":
            out[name] = draw(st.one_of(st.none(), DATETIMES))
        else:
            out[name] = draw(st.one_of(st.none(), TEXT, NOT_STR))
    return out


@dataclass
class Call:
    name: str
    kwargs: dict[str, Any]


def calls() -> st.SearchStrategy[Call]:
    def call(name: str, **kwargs: st.SearchStrategy[Any]) -> st.SearchStrategy[Call]:
        return st.fixed_dictionaries(kwargs).map(lambda kw: Call(name, kw))

    session_id = st.one_of(st.just("<sid>"), IDS)
    return st.one_of(
        call(
            "create",
            id=st.one_of(st.just("<new>"), IDS),
            owner=st.one_of(st.none(), TEXT, NOT_STR),
            agent=st.one_of(st.none(), TEXT),
            status=STATUSES,
            state=OBJECTS,
            metadata=OBJECTS,
            history=ITEMS,
            expires_at=st.one_of(st.none(), DATETIMES),
        ),
        call(
            "load",
            session_id=session_id,
            last=st.one_of(st.none(), INTS),
            after=st.one_of(st.none(), INTS),
            limit=st.one_of(st.none(), INTS),
        ),
        call(
            "commit",
            session_id=session_id,
            expected_version=st.one_of(st.just("<version>"), INTS),
            append=ITEMS,
            changes=st.one_of(st.none(), changes()),
        ),
        call(
            "replace_history",
            session_id=session_id,
            items=ITEMS,
            changes=st.one_of(st.none(), changes()),
        ),
        call(
            "replace_tail",
            session_id=session_id,
            expected_version=st.one_of(st.just("<version>"), INTS),
            after=st.one_of(st.just("<last>"), st.just("<first>"), INTS),
            items=ITEMS,
            changes=st.one_of(st.none(), changes()),
        ),
        call("append", session_id=session_id, items=ITEMS),
        call("items_by_key", session_id=session_id, keys=KEYS),
        call("claim", session_id=session_id, owner=st.one_of(TEXT, NOT_STR), ttl=TTLS),
        call("renew", ttl=TTLS),
        call(
            "list",
            owner=st.one_of(st.none(), TEXT, NOT_STR),
            agent=st.one_of(st.none(), TEXT),
            status=st.one_of(st.none(), STATUSES),
            metadata=st.one_of(st.none(), OBJECTS),
            updated_after=st.one_of(st.none(), DATETIMES),
            updated_before=st.one_of(st.none(), DATETIMES),
            limit=st.one_of(st.just(50), INTS),
            cursor=CURSORS,
        ),
        call("delete", session_id=session_id, expected_version=st.one_of(st.none(), INTS)),
        call("exists", session_id=session_id),
        call("fork_at", at=INTS),
    )


# --- the stores ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres", "nats"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[tether.Store]:
    if kind == "memory":
        with MemoryStore() as memory:
            yield memory
    elif kind == "file":
        with FileStore(tmp_path / "sessions") as files:
            yield files
    elif kind == "sqlite":
        with SQLiteStore(tmp_path / "sessions.db") as lite:
            yield lite
    elif kind == "redis":
        url = require_server("redis")
        namespace = f"t{uuid.uuid4().hex}"
        try:
            with tether.open_store(with_options(url, namespace=namespace)) as redis_store:
                yield redis_store
        finally:
            wipe_redis_namespace(url, namespace)
    elif kind == "nats":
        url = require_server("nats")
        bucket = f"tether_t{uuid.uuid4().hex[:12]}"
        try:
            with tether.open_store(f"{url}/{bucket}?chunk_items=8") as nats_store:
                yield nats_store
        finally:
            delete_nats_bucket(url, bucket)
    else:
        url = require_server("postgres")
        schema = f"tether_t_{uuid.uuid4().hex}"
        try:
            with tether.open_store(with_options(url, schema=schema)) as pg_store:
                yield pg_store
        finally:
            drop_postgres_schema(url, schema)


# --- the properties ----------------------------------------------------------------------------

_ids = itertools.count()
_VALID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}")


def _snapshot(store: tether.Store, session_id: str) -> tuple[Any, Any]:
    """What a refused call must leave unchanged: the session as loaded, and the listing."""
    try:
        session = store.load(session_id)
        loaded: Any = session.model_dump()
        loaded["exact"] = [(e.seq, e.timestamp, e.key, e.item) for e in session.items]
    except tether.SessionNotFound:
        loaded = None
    listing = [header.model_dump() for header in store.iter_sessions(limit=1000)]
    return loaded, listing


def _same_json(given: Any, stored: Any) -> None:
    assert orjson.dumps(given, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        stored, option=orjson.OPT_SORT_KEYS
    ), (given, stored)


def _strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "seq" and k != "timestamp"} for item in items]


def _given(items: Any) -> list[tuple[str | None, Any]]:
    """(key, item) of each item a call was given, as it must be stored."""
    return [(i.key, i.item) if isinstance(i, tether.KeyedItem) else (None, i) for i in list(items)]


def _exact(old: list[tuple[int, str, str | None, Any]]) -> list[tuple[str | None, Any]]:
    return [(key, item) for _, _, key, item in old]


def _stored(session: tether.Session) -> list[tuple[str | None, Any]]:
    return [(e.key, e.item) for e in session.items]


def _resolve(store: tether.Store, call: Call, sid: str) -> tuple[Call, str]:
    """The call with its placeholders filled in, and the session it targets."""
    kw = dict(call.kwargs)
    if kw.get("session_id") == "<sid>":
        kw["session_id"] = sid
    target = kw.get("session_id", sid)
    if not isinstance(target, str) or not _VALID.fullmatch(target):
        target = sid
    if kw.get("expected_version") == "<version>" or call.name == "replace_history":
        try:
            kw["expected_version"] = store.load(target, last=0).version
        except tether.SessionNotFound:
            kw["expected_version"] = 1
    if kw.get("after") in ("<last>", "<first>"):
        try:
            head = store.load(target, last=0)
            kw["after"] = head.last_seq if kw["after"] == "<last>" else head.first_seq - 1
        except tether.SessionNotFound:
            kw["after"] = 0
    return Call(call.name, kw), target


def _run(store: tether.Store, call: Call, sid: str, lease: tether.Lease | None) -> Any:
    kw = dict(call.kwargs)
    if call.name == "create":
        new_id = kw.pop("id")
        fields = {**kw, "id": f"{sid}-c" if new_id == "<new>" else new_id}
        session = tether.Session.model_construct(**fields)  # as if assigned after construction
        return store.create(session)
    if call.name == "replace_history":
        return store.replace_history(
            kw["session_id"],
            kw["expected_version"],
            kw["items"],
            changes=kw["changes"],
            lease=lease,
        )
    if call.name == "replace_tail":
        return store.replace_tail(**kw, lease=lease)
    if call.name == "append":
        return store.append(**kw, lease=lease)
    if call.name == "commit":
        return store.commit(**kw, lease=lease)
    if call.name == "renew":
        assert lease is not None
        return store.renew(lease, kw["ttl"])
    if call.name == "list":
        return store.list(**kw)
    if call.name == "fork_at":
        fork = getattr(store, "fork_session", None)
        if fork is None:
            return None
        child = tether.Session(id=f"{sid}-f", parent_id=sid)
        return fork(child, kw["at"])
    return getattr(store, call.name)(**kw)


def _check_changes(loaded: tether.Session, changes: Any) -> None:
    for name, value in (changes or {}).items():
        if name == "status":
            assert loaded.status == SessionStatus(value)
        elif name == "expires_at":
            assert loaded.expires_at == value
        else:
            _same_json(value, getattr(loaded, name))


def _check_accepted(
    store: tether.Store, call: Call, sid: str, before: Any, result: Any, started: datetime
) -> None:
    """What an accepted call wrote reads back exactly."""
    kw = call.kwargs
    expiry = (kw.get("changes") or {}).get("expires_at")
    expiry = kw.get("expires_at") if call.name == "create" else expiry
    if expiry is not None and expiry <= datetime.now(timezone.utc):
        # stored already expired: it behaves exactly as a missing session
        assert not store.exists(result.id if call.name == "create" else sid)
        return
    if call.name == "create":
        loaded = store.load(result.id)
        for name in ("owner", "agent", "state", "metadata"):
            _same_json(kw[name], getattr(loaded, name))
        status = kw["status"]
        assert loaded.status == SessionStatus(status)
        assert loaded.expires_at == kw["expires_at"]
        _same_json(_strip(list(kw["history"])), _strip(loaded.history))
    elif call.name == "commit":
        loaded = store.load(sid)
        old = before[0]
        appended = list(kw["append"])
        assert loaded.version == result == old["version"] + 1
        _same_json(_strip(old["history"]), _strip(loaded.history[: len(old["history"])]))
        _same_json(_exact(old["exact"]) + _given(appended), _stored(loaded))
        _check_changes(loaded, kw["changes"])
    elif call.name == "replace_history":
        loaded = store.load(sid)
        _same_json(_given(kw["items"]), _stored(loaded))
        _check_changes(loaded, kw["changes"])
    elif call.name in ("replace_tail", "append"):
        loaded = store.load(sid)
        old = before[0]
        assert loaded.version == result == old["version"] + 1
        kept = [e for e in old["exact"] if call.name == "append" or e[0] <= kw["after"]]
        _same_json(_exact(kept) + _given(kw["items"]), _stored(loaded))
        assert [e.seq for e in loaded.items][: len(kept)] == [e[0] for e in kept]
        _check_changes(loaded, kw.get("changes"))
    elif call.name == "items_by_key":
        stored = {e.key: e for e in store.load(sid).items if e.key is not None}
        assert result == {k: stored[k] for k in result}
        assert set(result) == set(kw["keys"]) & set(stored)
    elif call.name in ("claim", "renew"):
        assert isinstance(result, tether.Lease)
        loaded = store.load(sid, last=0)
        assert loaded.lease_expires_at == result.expires_at
        assert result.expires_at > started
    elif call.name == "load":
        assert isinstance(result, tether.Session)
    elif call.name == "list":
        assert all(isinstance(h, tether.SessionHeader) for h in result.sessions)


@given(steps=st.lists(calls(), min_size=1, max_size=3), data=st.data())
@FUZZ
def test_bad_input_is_refused_before_any_write(
    store: tether.Store, steps: list[Call], data: st.DataObject
) -> None:
    sid = f"fz-{next(_ids)}"
    store.create(
        tether.Session(
            id=sid,
            owner="ada",
            state={"k": 1},
            history=[{"role": "user", "content": "hi"}],
        )
    )
    lease: tether.Lease | None = None
    if data.draw(st.booleans(), label="claimed"):
        lease = store.claim(sid, "runner", 60)
    for step in steps:
        if step.name == "renew" and lease is None:
            continue
        call, target = _resolve(store, step, sid)
        before = _snapshot(store, target)
        started = datetime.now(timezone.utc)
        try:
            result = _run(store, call, sid, lease)
        except TetherError as exc:
            refused: TetherError | None = exc
        else:
            refused = None
        if refused is not None:
            after = _snapshot(store, target)
            assert after == before, f"{call.name} refused ({refused!r}) but wrote"
        else:
            _check_accepted(store, call, target, before, result, started)
            if call.name in ("claim", "renew"):
                lease = result
            if call.name == "delete" and result is True and target == sid:
                return
        # the session and the store stay readable, whatever was tried
        _snapshot(store, sid)


# --- one unreadable session never breaks a listing ---------------------------------------------


def _corrupt(kind: str, store: Any, session_id: str) -> None:
    """Give one stored session a status no tether writes, behind the store's back."""
    if kind == "memory":
        entry = store._sessions[session_id]
        entry.doc = {**entry.doc, "status": "bogus"}
    elif kind == "file":
        store._header_path(session_id).write_text('{"not": "a header"}')
    elif kind == "sqlite":
        store._conn.execute(
            "UPDATE tether_sessions SET status = 'bogus' WHERE id = ?", (session_id,)
        )
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(require_server("redis"))
        try:
            client.hset(store.keys.session(session_id)[0], "status", '"bogus"')
        finally:
            client.close()
    elif kind == "nats":  # the header key's value, written back at its revision
        import json

        from tether.stores._kv_common import header_key

        key = header_key(session_id)
        value, revision = store.backend.get(key)
        header = json.loads(value)
        header["doc"]["status"] = "bogus"
        store.backend.put(key, json.dumps(header).encode(), revision)
    else:
        import psycopg
        from psycopg import sql

        with psycopg.connect(require_server("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("UPDATE {}.tether_sessions SET status = 'bogus' WHERE id = %s").format(
                    sql.Identifier(store.schema)
                ),
                (session_id,),
            )


def test_one_unreadable_session_is_skipped_and_logged_by_a_listing(
    kind: str, store: tether.Store, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(4):
        store.create(tether.Session(id=f"row-{index}", owner="lister"))
    _corrupt(kind, store, "row-2")
    with caplog.at_level("WARNING"):
        listed = [header.id for header in store.iter_sessions(owner="lister", limit=2)]
        everything = [header.id for header in store.iter_sessions(limit=1)]
    assert listed == ["row-3", "row-1", "row-0"]  # pages of 2 go on past the bad one
    assert everything == listed
    assert "skipping" in caplog.text
    with pytest.raises(TetherError):  # CorruptSession, never a ValueError
        store.load("row-2")
