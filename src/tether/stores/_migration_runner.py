"""One migration runner for the stores that keep tables: SQLite and PostgreSQL.

A store's database (not its session documents: see :mod:`tether.schema`) changes through
numbered steps, each applied once and in order, each recorded with its number. Every store
ran the same loop: read the last applied step; if it is the last this code knows, stop (the
common case: no lock taken); else take the migration lock, read again (another process may
have migrated meanwhile), refuse a database newer than the code, apply the missing steps in
order and record each one. That loop lives here once; a store supplies a :class:`Migrator`
(or an :class:`AsyncMigrator`): how to read the applied step, how to hold the lock, how to
apply and record one step.

The runner holds no I/O of its own, so it is tested with an in-memory migrator and used by
both the blocking stores and the async ones.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol

from ..errors import StoreError

__all__ = ["AsyncMigrator", "Migrator", "migrate", "migrate_async", "pending", "too_new"]

log = logging.getLogger("tether.stores.migrations")


class Migrator(Protocol):
    """What the runner needs from a store's database, blocking side."""

    @property
    def target(self) -> int:
        """The last migration step this code knows (the length of its list of steps)."""
        ...

    @property
    def where(self) -> str:
        """The database, for messages: ``"database '/srv/app.db'"``."""
        ...

    def applied(self) -> int | None:
        """The last step applied, 0 if none is recorded, None if the record itself (its table
        or schema) does not exist yet. Called outside and inside :meth:`locked`."""
        ...

    def locked(self) -> AbstractContextManager[None]:
        """A transaction holding the migration lock (one migrator at a time, across processes),
        with the record table created; everything inside commits together or not at all."""
        ...

    def apply(self, version: int) -> None:
        """Run step ``version`` (1-based), inside :meth:`locked`."""
        ...

    def record(self, version: int) -> None:
        """Record step ``version`` as applied, inside :meth:`locked`."""
        ...


class AsyncMigrator(Protocol):
    """:class:`Migrator` for an async driver."""

    @property
    def target(self) -> int: ...

    @property
    def where(self) -> str: ...

    async def applied(self) -> int | None: ...

    def locked(self) -> AbstractAsyncContextManager[None]: ...

    async def apply(self, version: int) -> None: ...

    async def record(self, version: int) -> None: ...


def too_new(where: str, applied: int, target: int) -> StoreError:
    """The error for a database migrated by a newer tether: this code must not write to it."""
    return StoreError(
        f"{where} has database migration {applied}, newer than this tether knows "
        f"({target}); upgrade tether to use it"
    )


def pending(where: str, applied: int | None, target: int) -> range:
    """The steps to apply, in order, over a database at step ``applied`` (None or 0: none yet);
    raises :func:`too_new`'s error for a database past ``target``."""
    current = applied or 0
    if current > target:
        raise too_new(where, current, target)
    return range(current + 1, target + 1)


def migrate(migrator: Migrator) -> list[int]:
    """Bring ``migrator``'s database to its last step; returns the steps this call applied."""
    target = migrator.target
    if not pending(migrator.where, migrator.applied(), target):
        return []  # the common case: one read, no lock
    done: list[int] = []
    with migrator.locked():
        # read again under the lock: a process that got there first has migrated already
        for version in pending(migrator.where, migrator.applied(), target):
            migrator.apply(version)
            migrator.record(version)
            done.append(version)
    for version in done:  # logged once committed: a rolled-back step was never applied
        log.info("%s: applied database migration %d", migrator.where, version)
    return done


async def migrate_async(migrator: AsyncMigrator) -> list[int]:
    """:func:`migrate` for an async driver."""
    target = migrator.target
    if not pending(migrator.where, await migrator.applied(), target):
        return []
    done: list[int] = []
    async with migrator.locked():
        for version in pending(migrator.where, await migrator.applied(), target):
            await migrator.apply(version)
            await migrator.record(version)
            done.append(version)
    for version in done:
        log.info("%s: applied database migration %d", migrator.where, version)
    return done
