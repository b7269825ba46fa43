"""The store side of :mod:`tether.integrations.langgraph`: one thread as one tether session.

Written once, async, against an :class:`~tether.stores.base.AsyncStore`. The sync saver runs
the same coroutines over a sync store through :class:`Direct`, whose calls never suspend, so
:func:`run_sync` drives them to the end without an event loop (no thread, no second copy).

Layout of a thread's session (agent :data:`AGENT`, id ``encode_external_id(thread_id)``):

- header ``state[STATE_KEY]``: ``{"heads": {namespace: newest checkpoint id}}`` (the head is
  the max checkpoint id, not the last written: time travel writes older parents later);
- a keyed item per checkpoint (its ``channel_values`` holding only its small values: None,
  bools, numbers, short strings; its channels empty at their version listed as ``empty``; its
  encoding marked ``v``, which older tethers refuse: :mod:`._langgraph_inline`), per other
  channel value that changed (key: namespace, channel, version: written once, shared by every
  later checkpoint that did not change it) and per write (key: namespace, checkpoint, task,
  index, so a regular write is inserted only if absent); special writes (negative index) are
  unkeyed items, the newest one wins;
- a keyed marker for the first write of a checkpoint, so the writes of a checkpoint are read
  from the first of (checkpoint, marker) on, also when ``put_writes`` came before ``put``.
  Writes a ``put`` commits after their checkpoint have none (the put's own checkpoint's,
  placed after it in its commit; the previous checkpoint's, when it is the head that commit
  is judged on and this process put it): a checkpoint of the current layout without one
  has its writes after it;
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

import contextlib
import uuid
from typing import Any

from ..errors import AlreadyClaimed, ConflictError, DuplicateItemKey, SessionNotFound
from ..models import KeyedItem
from ._langgraph_direct import Direct, iterate_sync, run_sync
from ._langgraph_layout import (
    AGENT,
    BLOB,
    CHECKPOINT,
    EARLY_NOTE,
    LATE,
    MARK,
    STATE_KEY,
    WRITE,
    _heads,
    _now,
    _state,
    header_only,
    heads_of,
    key,
    order_of,
    session_id,
    state_of,
    tag,
)
from ._langgraph_marks import Marks, _Batch
from ._langgraph_reads import ThreadReads, past
from ._langgraph_values import INLINE, Snapshot, Value

# the names the saver, its admin side and the tests take from here (defined in the modules
# this one was split into: keeping them here keeps every import path)
__all__ = [
    "AGENT",
    "BLOB",
    "CHECKPOINT",
    "EARLY_NOTE",
    "LATE",
    "MARK",
    "STATE_KEY",
    "WRITE",
    "Direct",
    "Marks",
    "ThreadReads",
    "ThreadStore",
    "header_only",
    "heads_of",
    "iterate_sync",
    "key",
    "order_of",
    "run_sync",
    "session_id",
    "state_of",
    "tag",
]


class ThreadStore(ThreadReads):
    """The reads and writes of LangGraph threads on one tether store (the reads, and the
    caches, in :class:`~tether.integrations._langgraph_reads.ThreadReads`)."""

    async def put(self, thread_id: str, *parts: Any, **options: Any) -> None:
        """:meth:`_put` (its parameters), one write to a thread at a time in this process (see
        :class:`~tether.integrations._langgraph_marks._Serial`)."""
        async with self._serial(thread_id, put=True):
            await self._put(thread_id, *parts, **options)

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

        The ``put_writes`` of this thread waiting for the lock (see :class:`_Batch`) go first
        in that same commit, when none of them is late under the header it is judged on: one
        commit (one fsync on PostgreSQL) where there were two or three, in the order they
        would have landed one by one. If the commit fails they are left to run on their own.

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
        combine = True  # with the waiting put_writes, until a commit with them fails
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
            taken = self._waiting(thread_id, lease, _heads(header)) if combine else []
            # this checkpoint's own writes in the same commit: after it, without their mark,
            # in the layout whose readers look after a checkpoint for writes it has no mark
            # for (older readers refuse the checkpoint); before it otherwise, then early
            own = [b for b in taken if b.at == (ns, cid)] if self._layout(item) else []
            before = [b for b in taken if b not in own]
            flag = early or (early is not None and any(b.at == (ns, cid) for b in before))
            append.append(KeyedItem(ckey, {**item, "rev": rev, "early": flag}))
            if before:
                for batch in before:
                    self.marks.add(thread_id, *batch.at)  # before it can land: see Marks
                ahead = [i for b in before for i in self._batched(thread_id, b, header)]
                append = [*ahead, *append]
            append.extend(i for b in own for i in (b.items or [])[1:])  # the mark goes first
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
                combine = False
            except DuplicateItemKey:
                if taken:
                    combine = False  # the writes' keys, or ours: try ours alone first
                else:
                    optimistic = False  # some of it is stored already: store only the rest
            else:
                if self._layout(item):
                    self.remember_put(thread_id, ns, cid)
                self._stored(thread_id, taken)
                self._remember(
                    thread_id, header.model_copy(update={"version": version, "state": state})
                )
                for blob_key, (channel, snap) in snapshots.items():
                    if blob_key not in present:  # a delta's base is only one stored whole here
                        self.snapshots.keep(thread_id, ns, channel, snap)
                if flag is False and self.marks.has(thread_id, ns, cid):
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
        """See :meth:`_put_writes`; one write to a thread at a time in this process. While it
        waits for its turn, a ``put`` of the thread that goes first may commit these writes
        with its checkpoint (see :class:`_Batch`): then they are stored, in that commit."""
        batch = self._offer(thread_id, ns, cid, writes, lease)
        try:
            async with self._serial(thread_id) as turn:
                if batch.items is not None:
                    # a put waiting for the lock goes first: it may store these writes too
                    await turn.step_aside(lambda: batch.stored)
                    if self._withdraw(thread_id, batch):
                        return
                await self._put_writes(thread_id, batch)
        finally:
            self._withdraw(thread_id, batch)

    def _offer(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: list[tuple[str, dict[str, Any]]],
        lease: Any,
    ) -> _Batch:
        """These writes, offered to the next ``put`` of the thread as the append
        :meth:`_put_writes` would make first (no read); not offered (``items`` None) when that
        first append would be different: a write to a checkpoint older than its namespace's
        head (a late one), or a face that does not serialize its writes."""
        batch = _Batch((ns, cid), writes, lease)
        cached = self._cached(thread_id)
        head = _heads(cached).get(ns) if cached is not None else None
        if not self._flags or (head is not None and head > cid):
            return batch
        items = [KeyedItem(key("f", ns, cid), {"type": MARK, "ns": ns, "checkpoint": cid})]
        items.extend(KeyedItem(k, item) for k, item in writes if k)
        items.extend(
            KeyedItem(key("u", ns, cid, uuid.uuid4().hex), item) for k, item in writes if not k
        )
        batch.items = items
        with self._lock:
            self._batches.setdefault(thread_id, []).append(batch)
        return batch

    @staticmethod
    def _layout(item: dict[str, Any]) -> bool:
        """Whether a checkpoint item is in the current layout (its encoding marked)."""
        packed = item.get("checkpoint")
        return isinstance(packed, list) and len(packed) == 3 and packed[2].endswith(INLINE)

    def _batched(self, thread_id: str, batch: _Batch, header: Any) -> list[KeyedItem]:
        """The items a put commits for ``batch``: its append, without the first-write mark
        when its checkpoint is the head of the header the commit is judged on (stored before:
        its writes land after it, where a reader looks when it finds no mark) and this process
        put it (so in the layout whose readers do look there, see SaverBase._get_tuple)."""
        items = batch.items or []
        ns, cid = batch.at
        if items and _heads(header).get(ns) == cid and self.put_last(thread_id, ns) == cid:
            return items[1:]  # the mark goes first (see _offer)
        return items

    def _waiting(self, thread_id: str, lease: Any, heads: dict[str, str]) -> list[_Batch]:
        """The offered writes a ``put`` (holding the thread's lock) may commit first: those
        under the same lease, none late under ``heads`` (the header it commits on)."""
        with self._lock:
            waiting = list(self._batches.get(thread_id, ()))
        return [
            b
            for b in waiting
            if b.lease is lease and not (b.at[0] in heads and heads[b.at[0]] > b.at[1])
        ]

    def _stored(self, thread_id: str, batches: list[_Batch]) -> None:
        """``batches`` landed in a put's commit (their callers, waiting, return at once)."""
        if not batches:
            return
        with self._lock:
            for batch in batches:
                batch.stored = True
            left = [b for b in self._batches.get(thread_id, ()) if not b.stored]
            if left:
                self._batches[thread_id] = left
            else:
                self._batches.pop(thread_id, None)

    def _withdraw(self, thread_id: str, batch: _Batch) -> bool:
        """Take back an offer (no put takes it any more); whether a put stored it."""
        with self._lock:
            waiting = self._batches.get(thread_id)
            if waiting is not None and batch in waiting:
                waiting.remove(batch)
                if not waiting:
                    del self._batches[thread_id]
            return batch.stored

    async def _put_writes(self, thread_id: str, batch: _Batch) -> None:
        """Blind appends of ``batch``'s writes: keyed writes only if absent, upserts (special
        writes) always, the first-write mark; then, if a newer checkpoint of ``ns`` was stored
        before them, a late entry naming them (see the module's doc)."""
        (ns, cid), writes, lease = batch.at, batch.writes, batch.lease
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
                at = past(own, known.version)
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

    async def delete(self, thread_id: str) -> None:
        sid = session_id(thread_id)
        self.forget(thread_id)
        await self.store.delete(sid)
