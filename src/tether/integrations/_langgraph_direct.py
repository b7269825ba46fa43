"""Running the async :class:`~tether.integrations._langgraph_core.ThreadStore` over a sync
store: :class:`Direct` calls the store directly, so the coroutines never suspend and
:func:`run_sync` / :func:`iterate_sync` drive them to the end without an event loop."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

from ..stores.base import Store

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
