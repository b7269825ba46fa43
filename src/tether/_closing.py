"""``with`` / ``async with`` for any object that has a ``close``, defined once.

A class with a ``close`` method inherits :class:`Closing` (or :class:`AsyncClosing` when its
``close`` is a coroutine): entering the block gives the object itself, leaving it (normally or
by an exception, which still propagates) calls ``close``.
"""

from __future__ import annotations

import abc
from typing import TypeVar

__all__ = ["AsyncClosing", "Closing"]

_C = TypeVar("_C", bound="Closing")
_A = TypeVar("_A", bound="AsyncClosing")


class Closing(abc.ABC):
    """``with obj: ...`` closes ``obj`` on the way out."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing(abc.ABC):
    """``async with obj: ...`` awaits ``obj.close()`` on the way out."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what the object holds."""

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
