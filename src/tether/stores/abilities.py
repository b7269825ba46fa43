"""The optional abilities of a store, as protocols: what a store may offer beyond the contract.

A store has an ability when it has the method; ``isinstance(store, Restores)`` says so (the
protocols are ``runtime_checkable``), and after that check a type checker knows the method's
signature. A caller that needs an ability it cannot do without raises :func:`missing`'s
:class:`~tether.errors.MissingAbility`, which names the store, the ability and how to get it.

Each ability has a sync protocol (for a :class:`~tether.Store`) and an async one (for an
:class:`~tether.AsyncStore`): ``isinstance`` gives the same answer for either (it checks the
method is there), the pair only tells a type checker whether the call is awaited.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import MissingAbility
from ..models import Session, SessionHeader

__all__ = [
    "AsyncForksInStore",
    "AsyncPurges",
    "AsyncRestores",
    "ForksInStore",
    "Purges",
    "Restores",
    "missing",
]


@runtime_checkable
class ForksInStore(Protocol):
    """Forks without copying: ``fork_session(child, at)`` creates ``child`` with its parent's
    items up to seq ``at`` inside the store (SQLite shares the parent's rows, memory their
    encoded form) and returns its header."""

    def fork_session(self, child: Session, at: int) -> SessionHeader: ...


@runtime_checkable
class AsyncForksInStore(Protocol):
    """:class:`ForksInStore` on an async store."""

    async def fork_session(self, child: Session, at: int) -> SessionHeader: ...


@runtime_checkable
class Restores(Protocol):
    """Writes a session exactly as given: ``restore(session, *, replace=False,
    expected_version=None)`` (version, timestamps, seqs and keys kept; never a live lease):
    what import, copy, migrate and rekey write with."""

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None: ...


@runtime_checkable
class AsyncRestores(Protocol):
    """:class:`Restores` on an async store."""

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None: ...


@runtime_checkable
class Purges(Protocol):
    """Deletes the sessions whose ``expires_at`` has passed: ``purge_expired()`` returns how
    many (never one a newer tether stored)."""

    def purge_expired(self) -> int: ...


@runtime_checkable
class AsyncPurges(Protocol):
    """:class:`Purges` on an async store."""

    async def purge_expired(self) -> int: ...


_ABILITIES: dict[type, tuple[str, str]] = {
    ForksInStore: (
        "fork_session",
        "forks then copy the parent's items instead (the memory and SQLite stores fork "
        "without copying)",
    ),
    Restores: (
        "restore",
        "every built-in store has it; give your store a restore(session, *, replace=False, "
        "expected_version=None) that writes the session exactly as given (docs/stores.md, "
        "'Optional abilities')",
    ),
    Purges: (
        "purge_expired",
        "every built-in store has it; give your store a purge_expired() that deletes the "
        "expired sessions and returns how many (docs/stores.md, 'Optional abilities')",
    ),
}
_ABILITIES[AsyncForksInStore] = _ABILITIES[ForksInStore]
_ABILITIES[AsyncRestores] = _ABILITIES[Restores]
_ABILITIES[AsyncPurges] = _ABILITIES[Purges]


def missing(store: object, ability: type) -> MissingAbility:
    """The error for ``store`` lacking ``ability`` (one of the protocols above), to raise."""
    method, how = _ABILITIES[ability]
    name = ability.__name__.removeprefix("Async")
    return MissingAbility(type(store).__name__, name, method, how)
