"""What serializes a thread's writes in this process (:class:`_Serial`) and the early-write
registry (:class:`Marks`) of :class:`~tether.integrations._langgraph_core.ThreadStore`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator

_STRIPES = 64  # locks serializing one thread's writes (see _Serial)
_MARKS = 100_000  # first-write marks a process remembers appending (see Marks)


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
