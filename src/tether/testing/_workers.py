"""Concurrency helpers for the conformance suite: OS-process workers, threads and tasks.

Process workers receive an *opener*: a picklable zero-argument callable (e.g.
``functools.partial(tether.open_store, url)``) that opens another handle on the store under
test, sync or async. They are spawned (not forked) so each is a clean OS process.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import AlreadyClaimed, ConflictError
from ..stores.base import AsyncStore, Store

__all__ = ["gather_tasks", "gather_threads", "run_processes"]

Opener = Callable[[], Any]


def gather_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread at once; return their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


async def gather_tasks(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run every coroutine function as a task at once; return their results in order."""
    return list(await asyncio.gather(*(call() for call in calls)))


def run_processes(target: Callable[..., None], args_list: Sequence[tuple[Any, ...]]) -> None:
    """Start one spawned process per args tuple, wait for all, raise if any failed."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    if failed:
        raise AssertionError(f"worker processes failed with exit codes {failed}")


# --- work done inside the processes ------------------------------------------------------------


def append_with_retry(store: Store, session_id: str, worker: int, count: int) -> int:
    """Append ``count`` items one commit at a time, retrying each on conflict. Returns retries."""
    retries = 0
    for index in range(count):
        item = {"role": "user", "content": f"{worker}:{index}", "worker": worker, "index": index}
        while True:
            version = store.load(session_id, last=0).version
            try:
                store.commit(session_id, version, append=[item])
                break
            except ConflictError:
                retries += 1
    return retries


async def append_with_retry_async(
    store: AsyncStore, session_id: str, worker: int, count: int
) -> int:
    """The async twin of :func:`append_with_retry`."""
    retries = 0
    for index in range(count):
        item = {"role": "user", "content": f"{worker}:{index}", "worker": worker, "index": index}
        while True:
            version = (await store.load(session_id, last=0)).version
            try:
                await store.commit(session_id, version, append=[item])
                break
            except ConflictError:
                retries += 1
    return retries


def _in_process(
    opener: Opener,
    is_async: bool,
    run: Callable[[Store], object],
    run_async: Callable[[AsyncStore], Awaitable[object]],
) -> None:
    """Open another handle on the store in this process (sync or async), run on it, close it."""
    if is_async:

        async def main() -> None:
            store = opener()
            try:
                await run_async(store)
            finally:
                await store.close()

        asyncio.run(main())
        return
    with opener() as store:
        run(store)


def append_process(
    opener: Opener, is_async: bool, session_id: str, worker: int, count: int, start: Any
) -> None:
    start.wait()
    _in_process(
        opener,
        is_async,
        lambda store: append_with_retry(store, session_id, worker, count),
        lambda store: append_with_retry_async(store, session_id, worker, count),
    )


# --- commit races: the rounds are written once a side; processes, threads and tasks differ
# only in how the racers wait for each other and count a win


def _race_rounds(
    store: Store,
    session_id: str,
    rounds: int,
    wait: Callable[[], object],
    record: Callable[[bool], None],
) -> None:
    """Each round: load the version, wait for the rivals, commit from that version at once."""
    for round_ in range(rounds):
        version = store.load(session_id, last=0).version
        wait()
        try:
            store.commit(session_id, version, append=[_race_item(round_)])
            record(True)
        except ConflictError:
            record(False)
        wait()


async def _race_rounds_async(
    store: AsyncStore,
    session_id: str,
    rounds: int,
    wait: Callable[[], Awaitable[object]],
    record: Callable[[bool], None],
) -> None:
    """The async twin of :func:`_race_rounds`."""
    for round_ in range(rounds):
        version = (await store.load(session_id, last=0)).version
        await wait()
        try:
            await store.commit(session_id, version, append=[_race_item(round_)])
            record(True)
        except ConflictError:
            record(False)
        await wait()


def race_process(
    opener: Opener, is_async: bool, session_id: str, rounds: int, barrier: Any, wins: Any
) -> None:
    """One racer process: the rounds of :func:`_race_rounds` on its own store handle."""

    def record(won: bool) -> None:
        if won:
            with wins.get_lock():
                wins.value += 1

    _in_process(
        opener,
        is_async,
        lambda store: _race_rounds(store, session_id, rounds, barrier.wait, record),
        lambda store: _race_rounds_async(
            store, session_id, rounds, lambda: asyncio.to_thread(barrier.wait), record
        ),
    )


def _race_item(round_: int) -> dict[str, Any]:
    return {
        "role": "user",
        "content": f"round {round_}",
        "pid": multiprocessing.current_process().pid,
    }


def race_threads(store: Store, session_id: str, rounds: int, racers: int) -> int:
    """The race with threads on one store object (stores that cannot be opened twice)."""
    barrier = threading.Barrier(racers)
    wins = 0
    lock = threading.Lock()

    def record(won: bool) -> None:
        nonlocal wins
        if won:
            with lock:
                wins += 1

    racer = functools.partial(_race_rounds, store, session_id, rounds, barrier.wait, record)
    gather_threads([racer] * racers)
    return wins


async def race_tasks(store: AsyncStore, session_id: str, rounds: int, racers: int) -> int:
    """The race with asyncio tasks on one async store object."""
    barrier = _AsyncBarrier(racers)
    wins = 0

    def record(won: bool) -> None:
        nonlocal wins
        wins += won

    racer = functools.partial(_race_rounds_async, store, session_id, rounds, barrier.wait, record)
    await gather_tasks([racer] * racers)
    return wins


class _AsyncBarrier:
    """A reusable barrier for tasks (asyncio.Barrier exists only from Python 3.11)."""

    def __init__(self, parties: int) -> None:
        self._parties = parties
        self._count = 0
        self._event = asyncio.Event()

    async def wait(self) -> None:
        self._count += 1
        if self._count == self._parties:
            self._count = 0
            event, self._event = self._event, asyncio.Event()
            event.set()
            return
        await self._event.wait()


# --- claim races -------------------------------------------------------------------------------


def _claim_rounds(
    store: Store,
    session_id: str,
    worker: int,
    rounds: int,
    wait: Callable[[], object],
    won: Callable[[int], None],
) -> None:
    """Each round every racer claims at once; the winner releases after the round."""
    for round_ in range(rounds):
        wait()
        try:
            lease = store.claim(session_id, f"worker-{worker}", 60)
        except AlreadyClaimed:
            lease = None
        else:
            won(round_)
        wait()
        if lease is not None:
            store.release(lease)
        wait()


async def _claim_rounds_async(
    store: AsyncStore,
    session_id: str,
    worker: int,
    rounds: int,
    wait: Callable[[], Awaitable[object]],
    won: Callable[[int], None],
) -> None:
    """The async twin of :func:`_claim_rounds`."""
    for round_ in range(rounds):
        await wait()
        try:
            lease = await store.claim(session_id, f"worker-{worker}", 60)
        except AlreadyClaimed:
            lease = None
        else:
            won(round_)
        await wait()
        if lease is not None:
            await store.release(lease)
        await wait()


def claim_race_process(
    opener: Opener,
    is_async: bool,
    session_id: str,
    worker: int,
    rounds: int,
    barrier: Any,
    wins: Any,
) -> None:
    """One claiming process: the rounds of :func:`_claim_rounds` on its own store handle."""

    def won(round_: int) -> None:
        with wins.get_lock():
            wins[round_] += 1

    _in_process(
        opener,
        is_async,
        lambda store: _claim_rounds(store, session_id, worker, rounds, barrier.wait, won),
        lambda store: _claim_rounds_async(
            store, session_id, worker, rounds, lambda: asyncio.to_thread(barrier.wait), won
        ),
    )


def claim_race_threads(store: Store, session_id: str, rounds: int, racers: int) -> list[int]:
    """The claim race with threads on one store object; returns the winners of each round."""
    barrier = threading.Barrier(racers)
    wins = [0] * rounds
    lock = threading.Lock()

    def won(round_: int) -> None:
        with lock:
            wins[round_] += 1

    gather_threads(
        [
            functools.partial(_claim_rounds, store, session_id, w, rounds, barrier.wait, won)
            for w in range(racers)
        ]
    )
    return wins


async def claim_race_tasks(
    store: AsyncStore, session_id: str, rounds: int, racers: int
) -> list[int]:
    """The claim race with asyncio tasks on one async store object."""
    barrier = _AsyncBarrier(racers)
    wins = [0] * rounds

    def won(round_: int) -> None:
        wins[round_] += 1

    await gather_tasks(
        [
            functools.partial(_claim_rounds_async, store, session_id, w, rounds, barrier.wait, won)
            for w in range(racers)
        ]
    )
    return wins
