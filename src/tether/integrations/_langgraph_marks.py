"""What serializes a thread's writes in this process (:class:`_Serial`), the early-write
registry (:class:`Marks`) and the writes waiting for a put (:class:`_Batch`) of
:class:`~tether.integrations._langgraph_core.ThreadStore`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

_STRIPES = 64  # locks serializing one thread's writes (see _Serial)
_ASIDE = 1.0  # seconds a put_writes waits, at most, for a put to take its writes
_GRACE = 0.005  # ... and for a put to come, when none waits (see _Turn.step_aside)
_RETRY = 32  # writes that do not wait, once two waits met no put, before one waits again
_MISSED_THREADS = 10_000  # threads whose missed waits a saver remembers
_MARKS = 100_000  # first-write marks a process remembers appending (see Marks)


class _Serial:
    """One write (``put``, ``put_writes``) to a thread at a time in this process.

    LangGraph runs a checkpoint's ``put`` and the previous step's ``put_writes`` at once (in
    threads, or tasks). Each is one store write, but the ``put`` commits against the version
    this process last saw: an append landing first makes the store refuse it, and the retry
    costs a header read and a second commit (on PostgreSQL nearly every turn). In turn, the
    ``put`` finds the version the append left. Threads share a lock by hash (a fixed number,
    whatever the threads); a sync store's calls never suspend, so a threading lock serves
    there, and an asyncio lock per event loop for an async store.

    A ``put_writes`` holding the lock while a ``put`` of the same thread waits for it may step
    aside (:meth:`_Turn.step_aside`): the put goes first and may commit its writes with the
    checkpoint (see :class:`_Batch`), one commit instead of two."""

    def __init__(self, *, direct: bool) -> None:
        self._direct = direct
        self._threads = [threading.Lock() for _ in range(_STRIPES)]
        self._conds = [threading.Condition(lock) for lock in self._threads]
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Condition]]
        self._loops = weakref.WeakKeyDictionary()
        self._count_lock = threading.Lock()
        self._puts: dict[str, int] = {}  # per thread: puts waiting for its lock
        # per thread: the writes' waits for a put (_GRACE) that ended with no put, in a row
        # (then counting the writes that did not wait since: see ``grace``)
        self._missed: dict[str, int] = {}

    def _count(self, thread_id: str, step: int) -> None:
        with self._count_lock:
            left = self._puts.get(thread_id, 0) + step
            if left:
                self._puts[thread_id] = left
            else:
                del self._puts[thread_id]

    def put_waiting(self, thread_id: str) -> bool:
        with self._count_lock:
            return thread_id in self._puts

    def grace(self, thread_id: str) -> float:
        """How long a thread's writes wait for a put to come (:meth:`_Turn.step_aside`):
        ``_GRACE``, but not after two waits in a row that no put ended (a graph whose puts
        wait for the writes first, LangGraph's delta channels; runs that end in interrupts),
        then again once every ``_RETRY`` writes."""
        with self._count_lock:
            missed = self._missed.get(thread_id, 0)
            if missed < 2:
                return _GRACE
            self._missed[thread_id] = 1 if missed >= _RETRY else missed + 1
            return 0.0

    def waited(self, thread_id: str, *, taken: bool) -> None:
        """A wait of :meth:`grace` ended: with the writes ``taken`` by a put, or not."""
        with self._count_lock:
            if taken:
                self._missed.pop(thread_id, None)
                return
            self._missed[thread_id] = self._missed.get(thread_id, 0) + 1
            if len(self._missed) > _MISSED_THREADS:
                del self._missed[next(iter(self._missed))]

    @contextlib.asynccontextmanager
    async def __call__(self, thread_id: str, *, put: bool = False) -> AsyncIterator[_Turn]:
        stripe = hash(thread_id) % _STRIPES
        waiting = put
        if waiting:
            self._count(thread_id, 1)
        try:
            if self._direct:
                cond = self._conds[stripe]
                with cond:
                    if waiting:
                        waiting = False
                        self._count(thread_id, -1)
                    try:
                        yield _Turn(self, thread_id, cond)
                    finally:
                        cond.notify_all()  # writes that stepped aside look again
                return
            loop = asyncio.get_running_loop()
            with self._threads[0]:  # two threads' loops may make their locks at once
                conds = self._loops.setdefault(loop, [asyncio.Condition() for _ in range(_STRIPES)])
            async with conds[stripe]:
                if waiting:
                    waiting = False
                    self._count(thread_id, -1)
                try:
                    yield _Turn(self, thread_id, conds[stripe])
                finally:
                    conds[stripe].notify_all()
        finally:
            if waiting:  # never got the lock (cancelled, or failed on the way)
                self._count(thread_id, -1)


class _Turn:
    """The lock of one thread's writes, held (see :class:`_Serial`)."""

    def __init__(
        self, serial: _Serial, thread_id: str, cond: threading.Condition | asyncio.Condition
    ) -> None:
        self._serial = serial
        self._thread_id = thread_id
        self._cond = cond

    async def step_aside(self, done: Callable[[], bool]) -> None:
        """Let the puts of this thread waiting for the lock go first; back with the lock held
        once ``done()`` or none waits. Bounded (``_ASIDE`` seconds): a put that gave up
        waiting (a cancelled task) never leaves a write waiting for it.

        With none waiting, wait up to ``_GRACE`` seconds for one to come and take them (the
        lock free meanwhile): LangGraph puts a step's checkpoint right after it saves the
        step's writes, so they nearly always share its commit (a chat turn's input writes,
        stored alone otherwise: four commits a turn, now three); a put that does not come
        (an interrupt, an error, a put waiting for these writes) costs the wait, and two in a
        row stop the waits of the thread's writes for a while (see :meth:`_Serial.grace`)."""

        def ready() -> bool:
            return done() or not self._serial.put_waiting(self._thread_id)

        if not ready():
            await self._wait(ready, _ASIDE)
        if done():
            return
        grace = self._serial.grace(self._thread_id)
        if grace > 0:
            await self._wait(done, grace)
            self._serial.waited(self._thread_id, taken=done())

    async def _wait(self, until: Callable[[], bool], timeout: float) -> None:
        if isinstance(self._cond, threading.Condition):
            self._cond.wait_for(until, timeout=timeout)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._cond.wait_for(until), timeout)


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


class _Batch:
    """A ``put_writes`` and, while it waits for its thread's lock, the one append it would
    make (``items``; None when it is not offered): a ``put`` that takes the lock first commits
    these items ahead of its checkpoint's (the order they would land in one after the other),
    and marks them ``stored``. Only under the lock is an offer taken or withdrawn, so a
    put_writes that gets the lock finds its writes either stored or still its own to write."""

    __slots__ = ("at", "items", "lease", "stored", "writes")

    def __init__(self, at: tuple[str, str], writes: list[tuple[str, Any]], lease: Any) -> None:
        self.at = at  # (namespace, checkpoint id)
        self.writes = writes
        self.lease = lease
        self.items: list[Any] | None = None
        self.stored = False
