"""The reads of :class:`~tether.integrations._langgraph_core.ThreadStore` (its base class
:class:`ThreadReads`): the per-thread caches (header, head depth, channel-value keys), the
header and head reads, reads by key and by seq window, and a checkpoint's writes."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ..errors import SessionExists, SessionNotFound
from ..ids import external_id_metadata
from ..models import Session, StoredItem
from ..stores.base import AsyncStore
from ._langgraph_direct import Direct
from ._langgraph_layout import AGENT, CHECKPOINT, STATE_KEY, WRITE, header_only, key, session_id
from ._langgraph_marks import Marks, _Batch, _Serial
from ._langgraph_values import Snapshots

_PAGE = 1000
_CACHED_THREADS = 10_000  # threads whose header a saver keeps (the least recently used go)
_HEAD_WINDOW = (4, 64)  # the newest items read with the head: at least, at most


def past(own: set[int], at: int) -> int:
    """Version ``at`` moved over this process's own appends that follow it in order (each
    taken out of ``own``); a gap (another process's write) stops it."""
    while at + 1 in own:
        at += 1
        own.discard(at)
    return at


def _keep_newest(cache: dict[Any, Any], at: Any, value: Any) -> None:
    """Put ``value`` at ``at`` as the most recently used entry of a per-thread cache; past
    ``_CACHED_THREADS`` entries the least recently used goes. Under the caller's lock."""
    cache.pop(at, None)  # re-inserted: the newest used stays longest
    cache[at] = value
    if len(cache) > _CACHED_THREADS:
        del cache[next(iter(cache))]


class ThreadReads:
    """The reads of LangGraph threads on one tether store, and the caches its writes
    (:class:`~tether.integrations._langgraph_core.ThreadStore`) keep up to date."""

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
        # per thread: the put_writes waiting for its lock, offered to the put that goes first
        self._batches: dict[str, list[_Batch]] = {}
        # per (thread, namespace): the newest checkpoint this process put or read and the keys
        # of its channel values, read with the checkpoint in one keyed read by ``get_tuple``
        # (a guess: whatever the checkpoint names beyond it is read after)
        self._blob_keys: dict[tuple[str, str], tuple[str, list[str]]] = {}
        # per (thread, namespace): the empty channels (and their versions) of the checkpoint
        # this process put or read last, listed as empty by the next put that keeps them
        self._empties: dict[tuple[str, str], dict[str, str]] = {}
        # per (thread, namespace): the newest checkpoint this process put (in the layout
        # whose readers look for its writes after it when it has no first-write mark)
        self._put_last: dict[tuple[str, str], str] = {}
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
                at = past(own, header.version)
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
            for at in [at for at in self._empties if at[0] == thread_id]:
                del self._empties[at]
            for at in [at for at in self._put_last if at[0] == thread_id]:
                del self._put_last[at]
        self.snapshots.forget(thread_id)

    def remember_blob_keys(self, thread_id: str, ns: str, cid: str, keys: list[str]) -> None:
        with self._lock:
            _keep_newest(self._blob_keys, (thread_id, ns), (cid, keys))

    def remember_empties(self, thread_id: str, ns: str, empty: dict[str, str]) -> None:
        """The channels empty at the checkpoint just put or read, by version (a version is
        one value, so this stays true for any checkpoint naming that version)."""
        with self._lock:
            _keep_newest(self._empties, (thread_id, ns), empty)

    def remember_put(self, thread_id: str, ns: str, cid: str) -> None:
        with self._lock:
            _keep_newest(self._put_last, (thread_id, ns), cid)

    def put_last(self, thread_id: str, ns: str) -> str | None:
        """The newest checkpoint of ``ns`` this process put (see :meth:`remember_put`)."""
        with self._lock:
            return self._put_last.get((thread_id, ns))

    def empties(self, thread_id: str, ns: str) -> dict[str, str]:
        with self._lock:
            return self._empties.get((thread_id, ns), {})

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
            _keep_newest(self._depth, thread_id, max(low, min(depth + 2, high)))

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
