"""LangGraph checkpoints in tether: :class:`TetherSaver` (sync) and :class:`AsyncTetherSaver`.

``pip install 'tether[langgraph]'``. A drop-in for ``SqliteSaver`` / ``PostgresSaver``::

    saver = TetherSaver(tether.open_store("sqlite:///app.db"))
    graph = builder.compile(checkpointer=saver)

One tether session per thread (see :mod:`tether.integrations._langgraph_core` for the layout
and ``docs/integrations/langgraph.md`` for the costs). Values go through the saver's ``serde``
(LangGraph's msgpack serializer by default), never pickle.

Ownership (``ownership=True``): a checkpoint whose parent is no longer the thread's head is
refused (:class:`~tether.errors.ConflictError`) by the same versioned write that would store
it, and :meth:`TetherSaver.owning` claims the thread for one invocation, so a second
concurrent invocation fails at its first write with :class:`~tether.errors.AlreadyClaimed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import timedelta
from typing import Any, TypeVar, cast

from ..errors import InvalidRequest
from ..models import Lease
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        DeltaChannelHistory,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"tether.integrations.langgraph needs LangGraph ({exc}): pip install 'tether[langgraph]'"
    ) from exc

from . import _langgraph_core as core
from ._langgraph_admin import LEASES
from ._langgraph_core import Direct, ThreadStore
from ._langgraph_saver import SaverBase

__all__ = ["AGENT", "AsyncTetherSaver", "TetherSaver"]

_T = TypeVar("_T")
AGENT = core.AGENT
"""The ``agent`` of every session that holds a LangGraph thread."""


class AsyncTetherSaver(SaverBase):
    """A LangGraph checkpointer on any tether store, for ``ainvoke`` / ``astream``.

    ``store``: an async store (``tether.open_async_store(url)``), or a sync one (its calls
    then run in a worker thread). Not closed by the saver.
    """

    def __init__(
        self,
        store: AsyncStore | Store,
        *,
        serde: SerializerProtocol | None = None,
        ownership: bool = False,
    ) -> None:
        async_store = store if isinstance(store, AsyncStore) else SyncBackedAsyncStore(store)
        super().__init__(ThreadStore(async_store), serde=serde, ownership=ownership)
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._loop = asyncio.get_running_loop()
        return await self._get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for tup in self._list(config, filter, before, limit):
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._loop = asyncio.get_running_loop()
        return await self._put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._threads.delete(str(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._copy_thread(str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._prune(thread_ids, strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._delta(config, channels)

    # --- the sync methods, for sync code run beside an async graph (a sync node's
    # get_state, a sync subgraph): over a sync store they run its calls directly; over a
    # native async store they run on the loop the saver was used from, never on this thread.

    def _blocking(self, make: Callable[[SaverBase], Coroutine[Any, Any, _T]]) -> _T:
        inner = getattr(self._threads.store, "sync", None)
        if isinstance(inner, Store):
            shadow = copy.copy(self)
            shadow._threads = ThreadStore(Direct(inner), marks=self._threads.marks, flags=False)
            return core.run_sync(make(shadow))
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is None or loop is running or not loop.is_running():
            raise InvalidRequest(
                "AsyncTetherSaver over an async store was called synchronously from its own "
                "event loop (or before any async call): use ainvoke / aget_state, or "
                "TetherSaver with tether.open_store(url) for sync graphs"
            )
        return asyncio.run_coroutine_threadsafe(make(self), loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking(lambda saver: saver._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        inner = getattr(self._threads.store, "sync", None)
        if isinstance(inner, Store):  # read page by page, as consumed
            shadow = copy.copy(self)
            shadow._threads = ThreadStore(Direct(inner), marks=self._threads.marks, flags=False)
            yield from core.iterate_sync(shadow._list(config, filter, before, limit))
            return

        async def collect(saver: SaverBase) -> list[CheckpointTuple]:
            return [tup async for tup in saver._list(config, filter, before, limit)]

        yield from self._blocking(collect)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking(lambda saver: saver._put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking(lambda saver: saver._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking(lambda saver: saver._threads.delete(str(thread_id)))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._blocking(lambda saver: saver._delta(config, channels))

    @contextlib.asynccontextmanager
    async def owning(
        self, thread_id: str, *, owner: str = "langgraph", ttl: float | timedelta = 300
    ) -> AsyncIterator[Lease]:
        """Claim the thread for one invocation: see :meth:`TetherSaver.owning`."""
        await self._threads.ensure(str(thread_id))
        lease = await self._threads.store.claim(core.session_id(str(thread_id)), owner, ttl)
        token = LEASES.set({**(LEASES.get() or {}), str(thread_id): lease})
        try:
            yield lease
        finally:
            LEASES.reset(token)
            with contextlib.suppress(Exception):
                await self._threads.store.release(lease)


class TetherSaver(SaverBase):
    """A LangGraph checkpointer on any sync tether store (``tether.open_store(url)``).

    Sync calls run the saver's code directly on the store; the async ones run them in a
    worker thread. The store is not closed by the saver.
    """

    def __init__(
        self, store: Store, *, serde: SerializerProtocol | None = None, ownership: bool = False
    ) -> None:
        super().__init__(ThreadStore(Direct(store)), serde=serde, ownership=ownership)
        self.store = store

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        tup: CheckpointTuple | None = core.run_sync(self._get_tuple(config))
        return tup

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from core.iterate_sync(self._list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored: RunnableConfig = core.run_sync(
            self._put(config, checkpoint, metadata, new_versions)
        )
        return stored

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        core.run_sync(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        core.run_sync(self._threads.delete(str(thread_id)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        core.run_sync(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        core.run_sync(self._copy_thread(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        core.run_sync(self._prune(thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        history: Mapping[str, DeltaChannelHistory] = core.run_sync(self._delta(config, channels))
        return history

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await _off(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # read as consumed: each step of the sync iterator in the worker thread
        tuples = cast(
            Generator[CheckpointTuple, None, None],
            self.list(config, filter=filter, before=before, limit=limit),
        )
        done = object()
        try:
            while (tup := await _off(next, tuples, done)) is not done:
                yield tup
        finally:
            tuples.close()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await _off(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await _off(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await _off(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await _off(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await _off(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await _off(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await _off(lambda: self.get_delta_channel_history(config=config, channels=channels))

    @contextlib.contextmanager
    def owning(
        self, thread_id: str, *, owner: str = "langgraph", ttl: float | timedelta = 300
    ) -> Iterator[Lease]:
        """Claim the thread for one invocation (``with saver.owning(tid): graph.invoke(...)``).

        The saver's writes for this thread inside the block carry the lease; any other write
        to the thread meanwhile (a second invocation) fails at once with
        :class:`~tether.errors.AlreadyClaimed`, and a second ``owning`` on it too. Released
        at the end of the block; a crashed holder's claim ends after ``ttl`` seconds.
        """
        core.run_sync(self._threads.ensure(str(thread_id)))
        lease = self.store.claim(core.session_id(str(thread_id)), owner, ttl)
        token = LEASES.set({**(LEASES.get() or {}), str(thread_id): lease})
        try:
            yield lease
        finally:
            LEASES.reset(token)
            with contextlib.suppress(Exception):
                self.store.release(lease)


async def _off(fn: Callable[..., _T], *args: Any) -> _T:
    # the caller's context travels along: the lease of ``owning`` is a context variable
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, fn, *args)
