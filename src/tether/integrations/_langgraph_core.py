"""The store side of :mod:`tether.integrations.langgraph`: one thread as one tether session.

Written once, async, against an :class:`~tether.stores.base.AsyncStore`. The sync saver runs
the same coroutines over a sync store through :class:`Direct`, whose calls never suspend, so
:func:`run_sync` drives them to the end without an event loop (no thread, no second copy).

Layout of a thread's session (agent :data:`AGENT`, id ``encode_external_id(thread_id)``):

- header ``state[STATE_KEY]``: ``{"heads": {namespace: newest checkpoint id}}`` (the head is
  the max checkpoint id, not the last written: time travel writes older parents later);
- a keyed item per checkpoint (its ``channel_values`` left out), per channel value that
  changed (key: namespace, channel, version: written once, shared by every later checkpoint
  that did not change it) and per write (key: namespace, checkpoint, task, index, so a
  regular write is inserted only if absent); special writes (negative index) are unkeyed
  items, the newest one wins;
- a keyed marker for the first write of a checkpoint, so the writes of a checkpoint are read
  from the first of (checkpoint, marker) on, also when ``put_writes`` came before ``put``.

Every value goes through the saver's ``serde`` (``dumps_typed``), its bytes as base64 in JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import AlreadyClaimed, ConflictError, DuplicateItemKey, SessionExists, SessionNotFound
from ..ids import encode_external_id, external_id_metadata
from ..models import KeyedItem, Session, StoredItem
from ..stores.base import AsyncStore, Store

AGENT = "langgraph"
STATE_KEY = "langgraph"
CHECKPOINT = "langgraph.checkpoint"
BLOB = "langgraph.blob"
WRITE = "langgraph.write"
MARK = "langgraph.first_write"
_MAX_KEY = 256
_PAGE = 1000

_T = TypeVar("_T")
Typed = tuple[str, bytes]


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine whose awaits never suspend (calls through :class:`Direct`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a tether sync saver call suspended: it needs a sync store")


class Direct:
    """An async face over a sync :class:`Store`: each method calls the store directly."""

    def __init__(self, store: Store) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


def session_id(thread_id: str) -> str:
    return encode_external_id(str(thread_id))


def key(kind: str, *parts: str | int) -> str:
    """An item key: readable, unambiguous (JSON), a digest past tether's 256 characters."""
    text = kind + json.dumps([str(p) for p in parts], separators=(",", ":"))
    if len(text) <= _MAX_KEY:
        return text
    import hashlib

    return kind + "#" + hashlib.sha256(text.encode()).hexdigest()


def pack(typed: Typed) -> list[str]:
    return [typed[0], base64.b64encode(typed[1]).decode("ascii")]


def unpack(packed: Sequence[str]) -> Typed:
    return (packed[0], base64.b64decode(packed[1]))


class ThreadStore:
    """The reads and writes of LangGraph threads on one tether store."""

    def __init__(self, store: AsyncStore | Direct) -> None:
        self.store: Any = store

    async def header(self, thread_id: str) -> Session | None:
        try:
            header: Session = await self.store.load(session_id(thread_id), last=0)
        except SessionNotFound:
            return None
        return header

    async def ensure(self, thread_id: str) -> Session:
        header = await self.header(thread_id)
        if header is not None:
            return header
        sid = session_id(thread_id)
        fresh = Session(
            id=sid,
            agent=AGENT,
            metadata=external_id_metadata(str(thread_id)),
            state={STATE_KEY: {"heads": {}}},
        )
        try:
            created: Session = await self.store.create(fresh)
            return created
        except SessionExists:
            loaded: Session = await self.store.load(sid, last=0)
            return loaded

    async def by_key(self, thread_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, StoredItem] = {}
        for start in range(0, len(wanted), _PAGE):
            try:
                found.update(
                    await self.store.items_by_key(
                        session_id(thread_id), wanted[start : start + _PAGE]
                    )
                )
            except SessionNotFound:
                return {}
        return found

    async def items(self, thread_id: str, after: int = 0) -> list[StoredItem]:
        """The thread's items with seq > after, a page per load."""
        out: list[StoredItem] = []
        sid = session_id(thread_id)
        while True:
            try:
                page = await self.store.load(sid, after=after, limit=_PAGE)
            except SessionNotFound:
                return out
            out.extend(page.items)
            if not page.items or page.items[-1].seq >= page.last_seq:
                return out
            after = page.items[-1].seq

    async def put(  # noqa: PLR0917 - the checkpoint's parts, as LangGraph hands them over
        self,
        thread_id: str,
        ns: str,
        cid: str,
        parent: str | None,
        item: dict[str, Any],
        blobs: dict[str, dict[str, Any]],
        *,
        expect_parent: bool,
        lease: Any = None,
    ) -> None:
        """Store a checkpoint and its changed channel values; move the head in the same write.

        With ``expect_parent`` (ownership), a checkpoint whose parent is not the head is
        refused by that same versioned write: a stale run never overwrites a newer one.
        """
        sid = session_id(thread_id)
        ckey = key("c", ns, cid)
        # First try without reading keys: the channel versions are new (a random tail) and a
        # checkpoint is put once, so the commit nearly always stores everything; a key that
        # is there already (a re-put) makes the store refuse it whole, and then we look.
        optimistic = True
        while True:
            header = await self.ensure(thread_id)
            heads = dict(_heads(header))
            head = heads.get(ns)
            held = header.lease_expires_at
            if expect_parent and lease is None and held is not None and held > _now():
                # another invocation owns the thread: say so before judging our parent
                raise AlreadyClaimed(sid, header.lease_owner, held)
            if expect_parent and head is not None and head not in (parent, cid):
                raise ConflictError(
                    sid,
                    header.version,
                    header.version,
                    f"thread {thread_id!r} moved on: this run's checkpoint follows {parent!r} "
                    f"but the thread's newest is {head!r} (another run wrote it). Nothing was "
                    "written: reload the thread's state and invoke again.",
                )
            present = {} if optimistic else await self.by_key(thread_id, [ckey, *blobs])
            append: list[KeyedItem] = [
                KeyedItem(k, v) for k, v in blobs.items() if k not in present
            ]
            rev = 0
            while ckey in present:  # the same checkpoint put again: a newer revision
                rev += 1
                ckey = key("c", ns, cid, rev)
                present.update(await self.by_key(thread_id, [ckey]))
            append.append(KeyedItem(ckey, {**item, "rev": rev}))
            if head is None or cid > head:
                heads[ns] = cid
            state = {**header.state, STATE_KEY: {**_state(header), "heads": heads}}
            try:
                await self.store.commit(
                    sid, header.version, append=append, changes={"state": state}, lease=lease
                )
                return
            except ConflictError:
                pass  # a parallel write landed first: read again
            except DuplicateItemKey:
                optimistic = False  # some of it is stored already: store only the rest
            ckey = key("c", ns, cid)

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: list[tuple[str, dict[str, Any]]],
        lease: Any = None,
    ) -> None:
        """Blind appends: keyed writes only if absent, unkeyed upserts, the first-write mark."""
        mark = key("f", ns, cid)
        optimistic = True  # one append, no read, unless a key is there already
        while True:
            keyed = [k for k, _ in writes if k]
            present = {} if optimistic else await self.by_key(thread_id, [mark, *keyed])
            append: list[KeyedItem | dict[str, Any]] = []
            if mark not in present:
                append.append(KeyedItem(mark, {"type": MARK, "ns": ns, "checkpoint": cid}))
            for k, item in writes:
                if not k:
                    append.append(item)
                elif k not in present:
                    append.append(KeyedItem(k, item))
            if not append:
                return
            try:
                await self.store.append(session_id(thread_id), append, lease=lease)
                return
            except SessionNotFound:
                await self.ensure(thread_id)  # the thread's first write
            except DuplicateItemKey:
                optimistic = False  # stored by a parallel task or before: keep its, add the rest

    async def delete(self, thread_id: str) -> None:
        sid = session_id(thread_id)
        await self.store.delete(sid)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _state(header: Session) -> dict[str, Any]:
    raw = header.state.get(STATE_KEY)
    return dict(raw) if isinstance(raw, dict) else {"heads": {}}


def _heads(header: Session) -> dict[str, str]:
    heads = _state(header).get("heads")
    return dict(heads) if isinstance(heads, dict) else {}


def heads_of(header: Session) -> dict[str, str]:
    return _heads(header)
