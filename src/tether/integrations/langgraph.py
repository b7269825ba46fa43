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
import functools
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from ..errors import InvalidRequest
from ..models import Lease
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore
from ._extras import missing_extra

try:
    from langgraph.checkpoint.base import CheckpointTuple
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("langgraph", "LangGraph", "langgraph", exc) from exc

from . import _langgraph_core as core
from ._langgraph_admin import LEASES
from ._langgraph_core import Direct, ThreadStore
from ._langgraph_saver import SaverBase

__all__ = ["AGENT", "AsyncTetherSaver", "TetherSaver"]

_T = TypeVar("_T")
AGENT = core.AGENT
"""The ``agent`` of every session that holds a LangGraph thread."""


_Run = Callable[[SaverBase], Coroutine[Any, Any, _T]]
_Pages = Callable[[SaverBase], AsyncGenerator[CheckpointTuple, None]]
_P = ParamSpec("_P")


def _named(face: Any, op: Callable[..., Any], returns: Any = None) -> Any:
    """``face`` under the public name of ``op`` (``_put`` -> ``put``, ``aput`` for an async
    face) with ``op``'s parameters for ``inspect`` (LangGraph reads ``put_writes``'s)."""
    functools.update_wrapper(face, op)
    del face.__wrapped__
    name = op.__name__.lstrip("_")
    is_async = asyncio.iscoroutinefunction(face) or inspect.isasyncgenfunction(face)
    face.__name__ = face.__qualname__ = f"a{name}" if is_async else name
    signature = inspect.signature(op)
    if returns is not None:
        signature = signature.replace(return_annotation=returns)
    face.__signature__ = signature
    return face


def _sync_face(
    op: Callable[Concatenate[SaverBase, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_Faces, _P], _T]:
    """A checkpointer method, sync: the saver's coroutine ``op`` run by ``_run_sync``."""

    def face(self: _Faces, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return self._run_sync(lambda saver: op(saver, *args, **kwargs))

    return cast("Callable[Concatenate[_Faces, _P], _T]", _named(face, op))


def _async_face(
    op: Callable[Concatenate[SaverBase, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_Faces, _P], Coroutine[Any, Any, _T]]:
    """The same method, async: ``op`` run by ``_run_async``."""

    async def face(self: _Faces, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._run_async(lambda saver: op(saver, *args, **kwargs))

    return cast("Callable[Concatenate[_Faces, _P], Coroutine[Any, Any, _T]]", _named(face, op))


def _sync_pages(
    op: Callable[Concatenate[SaverBase, _P], AsyncGenerator[CheckpointTuple, None]],
) -> Callable[Concatenate[_Faces, _P], Iterator[CheckpointTuple]]:
    """``list``: the saver's async generator ``op`` read by ``_pages_sync``."""

    def face(self: _Faces, *args: _P.args, **kwargs: _P.kwargs) -> Iterator[CheckpointTuple]:
        yield from self._pages_sync(lambda saver: op(saver, *args, **kwargs))

    named = _named(face, op, "Iterator[CheckpointTuple]")
    return cast("Callable[Concatenate[_Faces, _P], Iterator[CheckpointTuple]]", named)


def _async_pages(
    op: Callable[Concatenate[SaverBase, _P], AsyncGenerator[CheckpointTuple, None]],
) -> Callable[Concatenate[_Faces, _P], AsyncIterator[CheckpointTuple]]:
    """``alist``: ``op`` read by ``_pages_async``."""

    async def face(
        self: _Faces, *args: _P.args, **kwargs: _P.kwargs
    ) -> AsyncIterator[CheckpointTuple]:
        async for tup in self._pages_async(lambda saver: op(saver, *args, **kwargs)):
            yield tup

    named = _named(face, op, "AsyncIterator[CheckpointTuple]")
    return cast("Callable[Concatenate[_Faces, _P], AsyncIterator[CheckpointTuple]]", named)


class _Faces(SaverBase):
    """LangGraph's checkpointer methods, sync and async, each made once from the saver's
    coroutine (:class:`SaverBase`, the same parameters): the two savers differ only in how
    they run one (``_run_sync`` / ``_run_async``) and read pages (``_pages_sync`` /
    ``_pages_async``)."""

    def _run_sync(self, make: _Run[_T]) -> _T:
        raise NotImplementedError

    async def _run_async(self, make: _Run[_T]) -> _T:
        raise NotImplementedError

    def _pages_sync(self, make: _Pages) -> Iterator[CheckpointTuple]:
        raise NotImplementedError

    def _pages_async(self, make: _Pages) -> AsyncIterator[CheckpointTuple]:
        raise NotImplementedError

    get_tuple = _sync_face(SaverBase._get_tuple)
    aget_tuple = _async_face(SaverBase._get_tuple)
    list = _sync_pages(SaverBase._list)
    alist = _async_pages(SaverBase._list)
    put = _sync_face(SaverBase._put)
    aput = _async_face(SaverBase._put)
    put_writes = _sync_face(SaverBase._put_writes)
    aput_writes = _async_face(SaverBase._put_writes)
    delete_thread = _sync_face(SaverBase._delete_thread)
    adelete_thread = _async_face(SaverBase._delete_thread)
    delete_for_runs = _sync_face(SaverBase._delete_for_runs)
    adelete_for_runs = _async_face(SaverBase._delete_for_runs)
    copy_thread = _sync_face(SaverBase._copy_thread)
    acopy_thread = _async_face(SaverBase._copy_thread)
    prune = _sync_face(SaverBase._prune)
    aprune = _async_face(SaverBase._prune)
    get_delta_channel_history = _sync_face(SaverBase._get_delta_channel_history)
    aget_delta_channel_history = _async_face(SaverBase._get_delta_channel_history)

    # ``owning`` (each saver's own, sync or async): the claim and its release
    async def _claim(self, thread_id: str, owner: str, ttl: float | timedelta) -> Lease:
        await self._threads.ensure(str(thread_id))
        lease: Lease = await self._threads.store.claim(core.session_id(str(thread_id)), owner, ttl)
        return lease

    async def _release(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):
            await self._threads.store.release(lease)


@contextlib.contextmanager
def _carrying(thread_id: str, lease: Lease) -> Iterator[None]:
    """The saver's writes to ``thread_id`` in this context carry ``lease``."""
    token = LEASES.set({**(LEASES.get() or {}), str(thread_id): lease})
    try:
        yield
    finally:
        LEASES.reset(token)


class AsyncTetherSaver(_Faces):
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

    async def _run_async(self, make: _Run[_T]) -> _T:
        self._loop = asyncio.get_running_loop()
        return await make(self)

    async def _pages_async(self, make: _Pages) -> AsyncIterator[CheckpointTuple]:
        async for tup in make(self):
            yield tup

    # --- the sync methods, for sync code run beside an async graph (a sync node's
    # get_state, a sync subgraph): over a sync store they run its calls directly; over a
    # native async store they run on the loop the saver was used from, never on this thread.

    def _direct(self) -> SaverBase | None:
        """Over a sync store, this saver calling that store directly; else None."""
        inner = getattr(self._threads.store, "sync", None)
        if not isinstance(inner, Store):
            return None
        shadow = copy.copy(self)
        shadow._threads = ThreadStore(Direct(inner), marks=self._threads.marks, flags=False)
        return shadow

    def _run_sync(self, make: _Run[_T]) -> _T:
        direct = self._direct()
        if direct is not None:
            return core.run_sync(make(direct))
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

    def _pages_sync(self, make: _Pages) -> Iterator[CheckpointTuple]:
        direct = self._direct()
        if direct is not None:  # read page by page, as consumed
            yield from core.iterate_sync(make(direct))
            return

        async def collect(saver: SaverBase) -> list[CheckpointTuple]:
            return [tup async for tup in make(saver)]

        yield from self._run_sync(collect)

    @contextlib.asynccontextmanager
    async def owning(
        self, thread_id: str, *, owner: str = "langgraph", ttl: float | timedelta = 300
    ) -> AsyncIterator[Lease]:
        """Claim the thread for one invocation: see :meth:`TetherSaver.owning`."""
        lease = await self._claim(thread_id, owner, ttl)
        try:
            with _carrying(thread_id, lease):
                yield lease
        finally:
            await self._release(lease)


class TetherSaver(_Faces):
    """A LangGraph checkpointer on any sync tether store (``tether.open_store(url)``).

    Sync calls run the saver's code directly on the store; the async ones run them in a
    worker thread. The store is not closed by the saver.
    """

    def __init__(
        self, store: Store, *, serde: SerializerProtocol | None = None, ownership: bool = False
    ) -> None:
        super().__init__(ThreadStore(Direct(store)), serde=serde, ownership=ownership)
        self.store = store

    def _run_sync(self, make: _Run[_T]) -> _T:
        result: _T = core.run_sync(make(self))
        return result

    async def _run_async(self, make: _Run[_T]) -> _T:
        return await _off(self._run_sync, make)

    def _pages_sync(self, make: _Pages) -> Iterator[CheckpointTuple]:
        yield from core.iterate_sync(make(self))

    async def _pages_async(self, make: _Pages) -> AsyncIterator[CheckpointTuple]:
        # read as consumed: each step of the sync iterator in the worker thread
        tuples = cast(Generator[CheckpointTuple, None, None], self._pages_sync(make))
        done = object()
        try:
            while (tup := await _off(next, tuples, done)) is not done:
                yield tup
        finally:
            tuples.close()

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
        lease = core.run_sync(self._claim(thread_id, owner, ttl))
        try:
            with _carrying(thread_id, lease):
                yield lease
        finally:
            core.run_sync(self._release(lease))


async def _off(fn: Callable[..., _T], *args: Any) -> _T:
    # the caller's context travels along: the lease of ``owning`` is a context variable
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, fn, *args)
