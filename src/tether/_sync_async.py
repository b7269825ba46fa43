"""The one place a hand-written sync / async pair shares its rule about user callables.

Most of tether's sync code is generated from its async source (``tools/unasync.py``). A few
pairs stay hand-written in one module because they differ in exactly one rule: what to do when
a user's callable (an event handler, a hook) returns an awaitable. The async side awaits it;
the sync side cannot, so it closes the coroutine (no "never awaited" warning) and refuses it
with a message that says what to use instead. Naming: the sync function has the plain name,
its async twin the ``_async`` suffix (``publish`` / ``publish_async``, ``call_hook`` /
``call_hook_async``, ``migrate`` / ``migrate_async``).
"""

from __future__ import annotations

import inspect
from typing import Any


def refuse_awaitable(result: object, message: str) -> None:
    """Raise TypeError(message) if ``result`` is awaitable, after closing it."""
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # a coroutine that will never be awaited: close it to avoid a warning
        raise TypeError(message)


async def resolve(result: object) -> Any:
    """``result``, awaited first if it is awaitable."""
    if inspect.isawaitable(result):
        return await result
    return result
