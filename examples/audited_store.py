"""A custom store: wraps any other store and records every write in an audit trail.

It shows the recipe for a store of your own that wraps another: subclass
``tether.stores.WrappingStore`` (and ``AsyncWrappingStore``), which forwards every method of
the contract and the optional abilities to ``inner``, override only what the wrapper changes
(here: each successful write is appended to ``audit``), give it ``from_url`` and register a
scheme, and prove it with the conformance suite (``tests/test_audited_store_example.py``).

    tether.register_store("audited", "audited_store:AuditedStore",
                          "audited_store:AsyncAuditedStore")
    store = tether.open_store("audited:sqlite:///app.db")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import tether
from tether import Lease, Session
from tether.stores import AsyncWrappingStore, WrappingStore
from tether.stores.base import NewItems

AuditEntry = tuple[str, str, int]
"""(operation, session id, version written, or the lease's fence for claim / release)."""


class AuditedStore(WrappingStore):
    """Passes every call to ``inner`` and appends an entry to ``audit`` after each write that
    succeeded (reads, ``renew`` and ``exists`` are the inner store's, untouched)."""

    def __init__(self, inner: tether.Store) -> None:
        super().__init__(inner)
        self.audit: list[AuditEntry] = []

    @classmethod
    def from_url(cls, url: str) -> AuditedStore:
        return cls(tether.open_store(url.removeprefix("audited:")))

    def create(self, session: Session) -> Session:
        created = super().create(session)
        self.audit.append(("create", created.id, created.version))
        return created

    def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = super().commit(
            session_id, expected_version, append=append, changes=changes, lease=lease
        )
        self.audit.append(("commit", session_id, version))
        return version

    def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = super().replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_history", session_id, version))
        return version

    def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        version = super().append(session_id, items, lease=lease)
        self.audit.append(("append", session_id, version))
        return version

    def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = super().replace_tail(
            session_id, expected_version, after, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_tail", session_id, version))
        return version

    def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        deleted = super().delete(session_id, expected_version, lease=lease, force=force)
        if deleted:
            self.audit.append(("delete", session_id, 0))
        return deleted

    def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        lease = super().claim(session_id, owner, ttl)
        self.audit.append(("claim", session_id, lease.fence))
        return lease

    def release(self, lease: Lease) -> None:
        super().release(lease)
        self.audit.append(("release", lease.session_id, lease.fence))

    def wrap_restore(
        self,
        restore: Callable[..., Any],
        session: Session,
        *,
        replace: bool,
        expected_version: int | None,
    ) -> None:
        """``restore`` (an optional ability: this store has it when the inner store does)."""
        super().wrap_restore(restore, session, replace=replace, expected_version=expected_version)
        self.audit.append(("restore", session.id, session.version))


class AsyncAuditedStore(AsyncWrappingStore):
    """The async twin of :class:`AuditedStore`."""

    def __init__(self, inner: tether.AsyncStore) -> None:
        super().__init__(inner)
        self.audit: list[AuditEntry] = []

    @classmethod
    def from_url(cls, url: str) -> AsyncAuditedStore:
        return cls(tether.open_async_store(url.removeprefix("audited:")))

    async def create(self, session: Session) -> Session:
        created = await super().create(session)
        self.audit.append(("create", created.id, created.version))
        return created

    async def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = await super().commit(
            session_id, expected_version, append=append, changes=changes, lease=lease
        )
        self.audit.append(("commit", session_id, version))
        return version

    async def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = await super().replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_history", session_id, version))
        return version

    async def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        version = await super().append(session_id, items, lease=lease)
        self.audit.append(("append", session_id, version))
        return version

    async def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = await super().replace_tail(
            session_id, expected_version, after, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_tail", session_id, version))
        return version

    async def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        deleted = await super().delete(session_id, expected_version, lease=lease, force=force)
        if deleted:
            self.audit.append(("delete", session_id, 0))
        return deleted

    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        lease = await super().claim(session_id, owner, ttl)
        self.audit.append(("claim", session_id, lease.fence))
        return lease

    async def release(self, lease: Lease) -> None:
        await super().release(lease)
        self.audit.append(("release", lease.session_id, lease.fence))

    async def wrap_restore(
        self,
        restore: Callable[..., Any],
        session: Session,
        *,
        replace: bool,
        expected_version: int | None,
    ) -> None:
        """``restore`` (an optional ability: this store has it when the inner store does)."""
        await super().wrap_restore(
            restore, session, replace=replace, expected_version=expected_version
        )
        self.audit.append(("restore", session.id, session.version))
