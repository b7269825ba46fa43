"""Hooks: your code at fixed points of the session runtime's pipelines.

Stages, in the order they run:

* ``create`` / ``fork``: ``before_create`` -> ``before_save`` -> persist -> ``after_save`` ->
  ``after_create``
* ``execute``: load -> ``after_load`` -> the action -> ``after_action`` -> ``before_save`` ->
  commit -> ``after_save``
* ``get``: load -> ``after_load``

A hook is a function of one :class:`HookContext`. Before the save it may change
``ctx.session`` (and, in ``execute``, append through ``ctx.draft``); raising stops the save and
the exception reaches the caller. After the save (``after_save``, ``after_create``) the
session is already stored: hooks there get a copy, may not change what was saved, and must
return ``None`` (returning anything else raises ``TypeError``, so a hook that means to change
the session cannot silently do nothing). Within a stage, higher ``priority`` runs first; equal
priorities run in the order they were added.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from ._sync_async import refuse_awaitable, resolve
from .errors import InvalidRequest
from .models import Session

if TYPE_CHECKING:
    from .actions import Action, Draft

__all__ = ["Hook", "HookContext", "HookStage"]


class HookStage(str, Enum):
    BEFORE_CREATE = "before_create"
    BEFORE_SAVE = "before_save"
    AFTER_SAVE = "after_save"
    AFTER_CREATE = "after_create"
    AFTER_LOAD = "after_load"
    AFTER_ACTION = "after_action"


AFTER_PERSIST = frozenset({HookStage.AFTER_SAVE, HookStage.AFTER_CREATE})


@dataclass
class HookContext:
    """What a hook sees."""

    stage: HookStage
    operation: str
    """``create``, ``fork``, ``execute`` or ``get``."""
    session: Session
    """The session: as it will be saved (before), as it was saved (after, a copy)."""
    draft: Draft | None = None
    """In ``execute``: the pending change (``draft.append(...)`` adds history items)."""
    action: Action | None = None


HookFunction = Callable[[HookContext], Any]


@dataclass(frozen=True)
class Hook:
    name: str
    stage: HookStage
    fn: HookFunction
    priority: int
    order: int


@dataclass
class HookRegistry:
    hooks: list[Hook] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, stage: HookStage | str, fn: HookFunction, name: str | None, priority: int) -> str:
        try:
            stage = HookStage(stage)
        except ValueError:
            valid = ", ".join(s.value for s in HookStage)
            raise InvalidRequest(f"unknown hook stage {stage!r}; valid stages: {valid}") from None
        if not callable(fn):
            raise InvalidRequest(f"a hook must be callable, not {fn!r}")
        name = name or f"{getattr(fn, '__qualname__', 'hook')}#{next(self._counter)}"
        if any(h.name == name for h in self.hooks):
            raise InvalidRequest(f"a hook named {name!r} is already registered; remove it first")
        self.hooks.append(Hook(name, stage, fn, priority, next(self._counter)))
        return name

    def remove(self, name: str) -> None:
        before = len(self.hooks)
        self.hooks = [h for h in self.hooks if h.name != name]
        if len(self.hooks) == before:
            raise InvalidRequest(f"no hook named {name!r} is registered")

    def for_stage(self, stage: HookStage) -> list[Hook]:
        chosen = [h for h in self.hooks if h.stage == stage]
        return sorted(chosen, key=lambda h: (-h.priority, h.order))


def _check_result(hook: Hook, result: Any) -> None:
    if result is not None and hook.stage in AFTER_PERSIST:
        raise TypeError(
            f"hook {hook.name!r} returned a value at {hook.stage.value}: the session is already "
            "saved there and cannot be changed; change it in before_save instead"
        )


def call_hook(hook: Hook, ctx: HookContext) -> None:
    """Run one hook from the sync runtime (a coroutine function is refused)."""
    result = hook.fn(ctx)
    refuse_awaitable(
        result,
        f"hook {hook.name!r} is async; the sync Sessions cannot await it. Use AsyncSessions "
        "or a plain function.",
    )
    _check_result(hook, result)


async def call_hook_async(hook: Hook, ctx: HookContext) -> None:
    """Run one hook from the async runtime (plain functions and coroutine functions alike)."""
    _check_result(hook, await resolve(hook.fn(ctx)))
