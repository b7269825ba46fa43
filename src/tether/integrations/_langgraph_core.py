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
  from the first of (checkpoint, marker) on, also when ``put_writes`` came before ``put``;
- a keyed "late" index entry for writes to a checkpoint made once a newer checkpoint of its
  namespace was stored (time travel, a resumed old checkpoint): every other write of a
  checkpoint lies before the first newer checkpoint of its namespace, so a reader by id reads
  from its checkpoint to that bound and the late entries by key, never to the thread's end.

Order flags (header ``state[STATE_KEY]["order"]``): ``unordered`` lists the namespaces where a
checkpoint older than the head was put, ``mixed`` says one older than the newest of any
namespace was. Without them (the normal case: LangGraph's ids grow with time) a thread's
checkpoints are in id order in the history, so ``list`` pages backward from the end; with
them it sorts the whole thread, as LangGraph's order requires.

Every value goes through the saver's ``serde`` (``dumps_typed``), its bytes packed as JSON (see
:mod:`tether.integrations._langgraph_values`): compressed when that shrinks them, as text when
they are the serde's JSON, else as base64; and a message list that grew since the last one
this process stored whole (its snapshot) as a delta on it, the new messages only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
)
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import AlreadyClaimed, ConflictError, DuplicateItemKey, SessionExists, SessionNotFound
from ..ids import encode_external_id, external_id_metadata
from ..models import KeyedItem, Session, SessionHeader, StoredItem
from ..stores.base import AsyncStore, Store
from ._langgraph_values import Snapshot, Snapshots, Value

AGENT = "langgraph"
STATE_KEY = "langgraph"
CHECKPOINT = "langgraph.checkpoint"
BLOB = "langgraph.blob"
WRITE = "langgraph.write"
MARK = "langgraph.first_write"
LATE = "langgraph.late_writes"
_MAX_KEY = 256
_PAGE = 1000
_CACHED_THREADS = 10_000  # threads whose header a saver keeps (the least recently used go)
_STRIPES = 64  # locks serializing one thread's writes (see _Serial)
_MARKS = 100_000  # first-write marks a process remembers appending (see Marks)
_HEAD_WINDOW = (4, 64)  # the newest items read with the head: at least, at most
EARLY_NOTE = "langgraph.early_writes"

_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine whose awaits never suspend (calls through :class:`Direct`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a tether sync saver call suspended: it needs a sync store")


def iterate_sync(agen: AsyncGenerator[_T, None]) -> Iterator[_T]:
    """Iterate an async generator whose awaits never suspend (calls through :class:`Direct`),
    one step per item: a consumer that stops early reads no further."""
    try:
        while True:
            step: Any = agen.__anext__()
            try:
                step.send(None)
            except StopIteration as done:
                yield done.value
                continue
            except StopAsyncIteration:
                return
            step.close()
            raise RuntimeError("a tether sync saver call suspended: it needs a sync store")
    finally:
        _finish(agen.aclose())


def _finish(awaitable: Any) -> None:
    gen: Generator[Any, None, Any] = awaitable
    try:
        gen.send(None)
    except (StopIteration, StopAsyncIteration):
        return
    gen.close()


class Direct:
    """An async face over a sync :class:`Store`: each method calls the store directly."""

    def __init__(self, store: Store) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


class _Serial:
    """One write (``put``, ``put_writes``) to a thread at a time in this process.

    LangGraph runs a checkpoint's ``put`` and the previous step's ``put_writes`` at once (in
    threads, or tasks). Each is one store write, but the ``put`` commits against the version
    this process last saw: an append landing first makes the store refuse it, and the retry
    costs a header read and a second commit (on PostgreSQL nearly every turn). In turn, the
    ``put`` finds the version the append left. Threads share a lock by hash (a fixed number,
    whatever the threads); a sync store's calls never suspend, so a threading lock serves
    there, and an asyncio lock per event loop for an async store."""

    def __init__(self, *, direct: bool) -> None:
        self._direct = direct
        self._threads = [threading.Lock() for _ in range(_STRIPES)]
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Lock]]
        self._loops = weakref.WeakKeyDictionary()

    @contextlib.asynccontextmanager
    async def __call__(self, thread_id: str) -> AsyncIterator[None]:
        stripe = hash(thread_id) % _STRIPES
        if self._direct:
            with self._threads[stripe]:
                yield
            return
        loop = asyncio.get_running_loop()
        with self._threads[0]:  # two threads' loops may make their locks at once
            locks = self._loops.setdefault(loop, [asyncio.Lock() for _ in range(_STRIPES)])
        async with locks[stripe]:
            yield


class Marks:
    """The checkpoints whose first-write mark this process appended (or began to append).

    A ``put`` flags its checkpoint ``early`` when its mark is here: writes stored before their
    checkpoint (LangGraph saves a step's writes while that step's checkpoint ``put`` waits for
    the previous one). Only the process that runs a step knows its checkpoint's id before the
    checkpoint is stored, so no other process can write a mark before it; a checkpoint not
    flagged has every write after it, and the head is read from the thread's newest items
    alone (see ``SaverBase._get_tuple``). Shared by a saver's faces (the sync methods of
    ``AsyncTetherSaver``), bounded: the oldest go (a put long after its writes is then
    flagged wrongly as not early only if 100,000 marks came between, which a step's writes
    and its put, submitted together, never see)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marked: dict[tuple[str, str, str], None] = {}

    def add(self, thread_id: str, ns: str, cid: str) -> None:
        with self._lock:
            self._marked[(thread_id, ns, cid)] = None
            if len(self._marked) > _MARKS:
                del self._marked[next(iter(self._marked))]

    def has(self, thread_id: str, ns: str, cid: str) -> bool:
        with self._lock:
            return (thread_id, ns, cid) in self._marked


def header_only(session: Session) -> Session:
    """``session`` without its items (what the header cache keeps)."""
    if not session.history:
        return session
    return Session.model_construct(
        **{name: getattr(session, name) for name in SessionHeader.model_fields}
    )


def tag(header: Session) -> tuple[Any, int]:
    """What a snapshot's key is valid under: the session's creation and first seq. A thread
    deleted and made again, or rewritten by ``prune`` / ``delete_for_runs`` (new seqs), no
    longer holds the snapshots this process remembers, and its header says so."""
    return (header.created_at, header.first_seq)


def session_id(thread_id: str) -> str:
    return encode_external_id(str(thread_id))


def key(kind: str, *parts: str | int) -> str:
    """An item key: readable, unambiguous (JSON), a digest past tether's 256 characters."""
    text = kind + json.dumps([str(p) for p in parts], separators=(",", ":"))
    if len(text) <= _MAX_KEY:
        return text
    import hashlib

    return kind + "#" + hashlib.sha256(text.encode()).hexdigest()


class ThreadStore:
    """The reads and writes of LangGraph threads on one tether store."""

    def __init__(
        self, store: AsyncStore | Direct, *, marks: Marks | None = None, flags: bool = True
    ) -> None:
        self.store: Any = store
        # the marks this process appended (shared with a saver's other face), and whether this
        # face's puts flag their checkpoints' early writes: a face made for one sync call
        # (AsyncTetherSaver's sync methods) is not serialized with the others, so its puts
        # leave the flag out and readers read their checkpoints by key
        self.marks = marks if marks is not None else Marks()
        self._flags = flags
        self._depth: dict[str, int] = {}  # per thread: how many newest items hold its head
        # per thread: its header as this process last read or wrote it (version, heads, order
        # flags, lease). A ``put`` commits against it without reading first: the store's
        # versioned write refuses a stale one (ConflictError: read, then judge again), and a
        # ``put_writes`` whose append directly follows it knows the heads without a read.
        self._headers: dict[str, Session] = {}
        self._appended: dict[str, set[int]] = {}  # own appends past the cached version
        # per (thread, namespace): the newest checkpoint this process put or read and the keys
        # of its channel values, read with the checkpoint in one keyed read by ``get_tuple``
        # (a guess: whatever the checkpoint names beyond it is read after)
        self._blob_keys: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self.snapshots = Snapshots()  # what the next value of a channel may be a delta on
        self._lock = threading.Lock()
        self._serial = _Serial(direct=isinstance(store, Direct))

    def _cached(self, thread_id: str) -> Session | None:
        with self._lock:
            return self._headers.get(thread_id)

    def _remember(self, thread_id: str, header: Session) -> None:
        """Keep ``header``, the latest read or written, even if its version is lower than the
        cached one: the thread may have been deleted and made again meanwhile. An older one
        kept by a race between tasks costs one refused commit and a read, nothing more."""
        with self._lock:
            self._headers.pop(thread_id, None)  # re-inserted: the newest used stays longest
            own = self._appended.get(thread_id)
            if own:  # appends of parallel tasks that returned before this write was noted
                own.difference_update([v for v in own if v <= header.version])
                at = header.version
                while at + 1 in own:
                    at += 1
                    own.discard(at)
                if at != header.version:
                    header = header.model_copy(update={"version": at})
            self._headers[thread_id] = header
            if len(self._headers) > _CACHED_THREADS:
                oldest = next(iter(self._headers))
                del self._headers[oldest]
                self._appended.pop(oldest, None)

    def forget(self, thread_id: str) -> None:
        with self._lock:
            self._headers.pop(thread_id, None)
            self._appended.pop(thread_id, None)
            for at in [at for at in self._blob_keys if at[0] == thread_id]:
                del self._blob_keys[at]
        self.snapshots.forget(thread_id)

    def remember_blob_keys(self, thread_id: str, ns: str, cid: str, keys: list[str]) -> None:
        with self._lock:
            at = (thread_id, ns)
            self._blob_keys.pop(at, None)
            self._blob_keys[at] = (cid, keys)
            if len(self._blob_keys) > _CACHED_THREADS:
                del self._blob_keys[next(iter(self._blob_keys))]

    def blob_keys(self, thread_id: str, ns: str, cid: str) -> list[str]:
        """The channel-value keys of checkpoint ``cid`` if remembered, else none."""
        with self._lock:
            known = self._blob_keys.get((thread_id, ns))
        return known[1] if known is not None and known[0] == cid else []

    async def header(self, thread_id: str) -> Session | None:
        """The thread's header, read from the store (never the cache: another process may
        have written)."""
        try:
            header: Session = await self.store.load(session_id(thread_id), last=0)
        except SessionNotFound:
            self.forget(thread_id)
            return None
        self._remember(thread_id, header)
        return header

    async def head(self, thread_id: str) -> Session | None:
        """The thread's header and its newest items, in one read: the head checkpoint, its
        channel values and its writes are nearly always among them (see
        ``SaverBase._get_tuple``). As many as the last head needed (see :meth:`head_depth`)."""
        with self._lock:
            depth = self._depth.get(thread_id, 16)
        try:
            window: Session = await self.store.load(session_id(thread_id), last=depth)
        except SessionNotFound:
            self.forget(thread_id)
            return None
        self._remember(thread_id, header_only(window))
        return window

    def head_depth(self, thread_id: str, depth: int) -> None:
        """How many newest items the head read last needed: the next reads that many, and a
        few more (a step's writes may land between)."""
        low, high = _HEAD_WINDOW
        with self._lock:
            self._depth.pop(thread_id, None)
            self._depth[thread_id] = max(low, min(depth + 2, high))
            if len(self._depth) > _CACHED_THREADS:
                del self._depth[next(iter(self._depth))]

    async def ensure(self, thread_id: str) -> Session:
        header = await self.header(thread_id)
        if header is not None:
            return header
        sid = session_id(thread_id)
        fresh = Session(
            id=sid,
            agent=AGENT,
            metadata=external_id_metadata(str(thread_id)),
            state={STATE_KEY: {"heads": {}, "order": {"unordered": [], "mixed": False}}},
        )
        try:
            created: Session = await self.store.create(fresh)
        except SessionExists:
            loaded: Session = await self.store.load(sid, last=0)
            self._remember(thread_id, loaded)
            return loaded
        self._remember(thread_id, created)
        return created

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

    async def window(self, thread_id: str, lo: int, hi: int) -> list[StoredItem]:
        """The thread's items with ``lo < seq <= hi``, oldest first (one read; seqs are
        contiguous, so that is at most ``hi - lo`` items)."""
        if hi <= lo:
            return []
        try:
            page = await self.store.load(session_id(thread_id), after=lo, limit=hi - lo)
        except SessionNotFound:
            return []
        return [s for s in page.items if s.seq <= hi]

    async def writes_from(self, thread_id: str, ns: str, cid: str, start: int) -> list[StoredItem]:
        """The writes of checkpoint ``(ns, cid)``, its first write at seq ``start``.

        Read forward from ``start`` up to the first newer checkpoint of ``ns`` (no write made
        before it was stored lies past it), then the late ones by key: the cost is that of
        the checkpoint's own step, not of what the thread did after it."""
        out: dict[int, StoredItem] = {}
        sid = session_id(thread_id)
        after, size = start - 1, 16
        while True:
            try:
                page = await self.store.load(sid, after=after, limit=size)
            except SessionNotFound:
                return []
            bound = False
            for stored in page.items:
                item = stored.item
                kind = item.get("type")
                if kind == CHECKPOINT and item["ns"] == ns and item["id"] > cid:
                    bound = True
                    break
                if kind == WRITE and item["ns"] == ns and item["checkpoint"] == cid:
                    out[stored.seq] = stored
            if bound or not page.items or page.items[-1].seq >= page.last_seq:
                break
            after, size = page.items[-1].seq, min(size * 2, _PAGE)
        for stored in await self.late_writes(thread_id, ns, cid):
            out[stored.seq] = stored
        return list(out.values())

    async def put(  # noqa: PLR0917 - the checkpoint's parts, as LangGraph hands them over
        self,
        thread_id: str,
        ns: str,
        cid: str,
        parent: str | None,
        item: dict[str, Any],
        values: dict[str, Value],
        *,
        expect_parent: bool,
        lease: Any = None,
    ) -> None:
        """See :meth:`_put`; one write to a thread at a time in this process (see
        :class:`_Serial`)."""
        async with self._serial(thread_id):
            await self._put(
                thread_id, ns, cid, parent, item, values, expect_parent=expect_parent, lease=lease
            )

    async def _put(  # noqa: PLR0917 - the checkpoint's parts, as LangGraph hands them over
        self,
        thread_id: str,
        ns: str,
        cid: str,
        parent: str | None,
        item: dict[str, Any],
        values: dict[str, Value],
        *,
        expect_parent: bool,
        lease: Any = None,
    ) -> None:
        """Store a checkpoint and its changed channel values; move the head in the same write.

        ``values`` are encoded against the header the write is judged on: a delta names a
        snapshot the thread holds at that version, and the version check refuses the write if
        the thread changed since (then it is read and encoded again).

        A checkpoint older than a head sets the order flags (see the module's doc) in that
        same write.

        With ``expect_parent`` (ownership), a checkpoint whose parent is not the head is
        refused by that same versioned write: a stale run never overwrites a newer one.
        """
        sid = session_id(thread_id)
        ckey = key("c", ns, cid)
        # First try without reading keys: the channel versions are new (a random tail) and a
        # checkpoint is put once, so the commit nearly always stores everything; a key that
        # is there already (a re-put) makes the store refuse it whole, and then we look.
        optimistic = True
        header = self._cached(thread_id)
        # were some of its writes stored before it (see Marks)? None: not said, read by key
        early = self.marks.has(thread_id, ns, cid) if self._flags else None
        encoded: tuple[Any, dict[str, dict[str, Any]], dict[str, tuple[str, Snapshot]]] | None
        encoded = None
        while True:
            # the cached header first: the commit's version check catches a stale one
            fresh = header is None
            if header is None:
                header = await self.ensure(thread_id)
            heads = dict(_heads(header))
            head = heads.get(ns)
            held = header.lease_expires_at
            claimed = lease is None and held is not None and held > _now()
            moved = head is not None and head not in (parent, cid)
            if expect_parent and (claimed or moved) and not fresh:
                header = None  # refuse only on what the store says now, never on the cache
                continue
            if expect_parent and claimed:
                # another invocation owns the thread: say so before judging our parent
                raise AlreadyClaimed(sid, header.lease_owner, held)
            if expect_parent and moved:
                raise ConflictError(
                    sid,
                    header.version,
                    header.version,
                    f"thread {thread_id!r} moved on: this run's checkpoint follows {parent!r} "
                    f"but the thread's newest is {head!r} (another run wrote it). Nothing was "
                    "written: reload the thread's state and invoke again.",
                )
            valid_under = tag(header)
            if encoded is None or encoded[0] != valid_under:
                encoded = (valid_under, *self.snapshots.encode(thread_id, ns, valid_under, values))
            _, blobs, snapshots = encoded
            present = {} if optimistic else await self.by_key(thread_id, [ckey, *blobs])
            append: list[KeyedItem] = [
                KeyedItem(k, v) for k, v in blobs.items() if k not in present
            ]
            rev = 0
            while ckey in present:  # the same checkpoint put again: a newer revision
                rev += 1
                ckey = key("c", ns, cid, rev)
                present.update(await self.by_key(thread_id, [ckey]))
            append.append(KeyedItem(ckey, {**item, "rev": rev, "early": early}))
            thread_state = _state(header)
            order = thread_state.get("order")
            if isinstance(order, dict):  # kept since the thread began: keep it exact
                order = dict(order)
                if head is not None and cid < head:
                    order["unordered"] = sorted({*order.get("unordered", []), ns})
                if heads and cid < max(heads.values()):
                    order["mixed"] = True
                thread_state["order"] = order
            if head is None or cid > head:
                heads[ns] = cid
            state = {**header.state, STATE_KEY: {**thread_state, "heads": heads}}
            try:
                version: int = await self.store.commit(
                    sid, header.version, append=append, changes={"state": state}, lease=lease
                )
            except ConflictError:
                header = None  # a parallel write landed first (or the cache was stale): read
            except SessionNotFound:
                self.forget(thread_id)  # deleted since it was cached: create it again
                header = None
            except DuplicateItemKey:
                optimistic = False  # some of it is stored already: store only the rest
            else:
                self._remember(
                    thread_id, header.model_copy(update={"version": version, "state": state})
                )
                for blob_key, (channel, snap) in snapshots.items():
                    if blob_key not in present:  # a delta's base is only one stored whole here
                        self.snapshots.keep(thread_id, ns, channel, snap)
                if early is False and self.marks.has(thread_id, ns, cid):
                    # a write of this process's other face began meanwhile and may have
                    # landed first: say so after the checkpoint, where a head read sees it
                    with contextlib.suppress(DuplicateItemKey):
                        await self.store.append(
                            sid,
                            [
                                KeyedItem(
                                    key("e", ns, cid),
                                    {"type": EARLY_NOTE, "ns": ns, "checkpoint": cid},
                                )
                            ],
                            lease=lease,
                        )
                return
            ckey = key("c", ns, cid)

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: list[tuple[str, dict[str, Any]]],
        lease: Any = None,
    ) -> None:
        """See :meth:`_put_writes`; one write to a thread at a time in this process."""
        async with self._serial(thread_id):
            await self._put_writes(thread_id, ns, cid, writes, lease)

    async def _put_writes(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: list[tuple[str, dict[str, Any]]],
        lease: Any = None,
    ) -> None:
        """Blind appends: keyed writes only if absent, upserts (special writes) always, the
        first-write mark; then, if a newer checkpoint of ``ns`` was stored before them, a
        late entry naming them (see the module's doc)."""
        mark = key("f", ns, cid)
        optimistic = True  # one append, no read, unless a key is there already
        # a special write is an upsert (the newest wins): a key of its own, never taken
        upserts = [(key("u", ns, cid, uuid.uuid4().hex), item) for k, item in writes if not k]
        # a write to a checkpoint older than its namespace's head (the cached header says so:
        # heads only grow between rewrites) is late: its late entry goes in the same append,
        # at index 0 first (LangGraph's late writes are a step's writes landing after the
        # next checkpoint: the first for it), else at the first free one the keyed read finds
        cached = self._cached(thread_id)
        late_at = _heads(cached).get(ns) if cached is not None else None
        late_due = late_at is not None and late_at > cid
        late_entry: str | None = None
        while True:
            keyed = [k for k, _ in writes if k]
            probe = [key("l", ns, cid, n) for n in range(16)] if late_due else []
            present = {} if optimistic else await self.by_key(thread_id, [mark, *keyed, *probe])
            free = [k for k in probe if k not in present]
            late_entry = free[0] if free else None
            append: list[KeyedItem] = []
            if mark not in present:
                append.append(KeyedItem(mark, {"type": MARK, "ns": ns, "checkpoint": cid}))
                self.marks.add(thread_id, ns, cid)  # before it can land: see Marks
            append.extend(KeyedItem(k, item) for k, item in writes if k and k not in present)
            append.extend(KeyedItem(k, item) for k, item in upserts if k not in present)
            if not append:
                return
            named = [k.key for k in append if k.key != mark]
            if late_entry is not None:
                entry = {"type": LATE, "ns": ns, "checkpoint": cid, "keys": named}
                append.append(KeyedItem(late_entry, entry))
            try:
                version = await self.store.append(session_id(thread_id), append, lease=lease)
                break
            except SessionNotFound:
                await self.ensure(thread_id)  # the thread's first write
            except DuplicateItemKey:
                optimistic = False  # stored by a parallel task or before: keep its, add the rest
        heads = await self._heads_at(thread_id, version)
        head = heads.get(ns)
        if head is not None and head > cid and late_entry is None:
            await self._note_late(thread_id, ns, cid, named, lease)

    async def _heads_at(self, thread_id: str, version: int) -> dict[str, str]:
        """The heads at (or after) ``version``: known without a read when the write just
        before it was this process's (heads only grow between rewrites). The cached header
        moves to ``version`` then (an append changes nothing else), so the next ``put``
        commits against it at once."""
        with self._lock:
            # parallel tasks' appends return out of order: the cache moves over every
            # version this process appended, in order, and stops at a gap (another write)
            own = self._appended.setdefault(thread_id, set())
            own.add(version)
            known = self._headers.get(thread_id)
            if known is not None:
                at = known.version
                while at + 1 in own:
                    at += 1
                    own.discard(at)
                if at != known.version:
                    known = known.model_copy(update={"version": at})
                    self._headers[thread_id] = known
                if at >= version:
                    return _heads(known)
        header = await self.header(thread_id)
        return {} if header is None else _heads(header)

    async def _note_late(
        self, thread_id: str, ns: str, cid: str, keys: list[str], lease: Any
    ) -> None:
        """Name late writes in the checkpoint's next free late entry (rare: time travel)."""
        entry = {"type": LATE, "ns": ns, "checkpoint": cid, "keys": keys}
        start = 0
        while True:
            free = start
            while True:
                probe = [key("l", ns, cid, n) for n in range(free, free + 16)]
                found = await self.by_key(thread_id, probe)
                missing = [k for k in probe if k not in found]
                if missing:
                    free += probe.index(missing[0])
                    break
                free += 16
            try:
                await self.store.append(
                    session_id(thread_id), [KeyedItem(key("l", ns, cid, free), entry)], lease=lease
                )
                return
            except DuplicateItemKey:
                start = free + 1  # a parallel late write took it

    async def late_writes(self, thread_id: str, ns: str, cid: str) -> list[StoredItem]:
        """The writes named by a checkpoint's late entries."""
        entries: list[StoredItem] = []
        n = 0
        while True:
            probe = [key("l", ns, cid, i) for i in range(n, n + 16)]
            found = await self.by_key(thread_id, probe)
            entries.extend(found[k] for k in probe if k in found)
            if len(found) < len(probe):
                break
            n += 16
        names = [k for e in entries for k in e.item.get("keys", [])]
        return list((await self.by_key(thread_id, names)).values()) if names else []

    async def delete(self, thread_id: str) -> None:
        sid = session_id(thread_id)
        self.forget(thread_id)
        await self.store.delete(sid)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _state(header: Session) -> dict[str, Any]:
    raw = header.state.get(STATE_KEY)
    return dict(raw) if isinstance(raw, dict) else {"heads": {}}


def _heads(header: Session) -> dict[str, str]:
    heads = _state(header).get("heads")
    return dict(heads) if isinstance(heads, dict) else {}


def state_of(header: Session) -> dict[str, Any]:
    return _state(header)


def heads_of(header: Session) -> dict[str, str]:
    return _heads(header)


def order_of(header: Session) -> tuple[list[str], bool] | None:
    """The order flags ``(unordered namespaces, mixed)``; None for a thread that predates
    them (its order is unknown)."""
    order = _state(header).get("order")
    if not isinstance(order, dict):
        return None
    unordered = order.get("unordered")
    return (list(unordered) if isinstance(unordered, list) else [], bool(order.get("mixed")))
