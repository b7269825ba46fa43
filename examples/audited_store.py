"""A custom store: wraps any other store and records every write in an audit trail.

It shows the whole recipe for your own store: subclass ``tether.Store`` (and
``tether.AsyncStore``), keep the contract, give it ``from_url`` and register a scheme, and
prove it with the conformance suite (``tests/test_audited_store_example.py``).

    tether.register_store("audited", "audited_store:AuditedStore",
                          "audited_store:AsyncAuditedStore")
    store = tether.open_store("audited:sqlite:///app.db")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import tether
from tether import AsyncStore, Lease, Page, Session, Store
from tether.stores.base import NewItems, StatusFilter

AuditEntry = tuple[str, str, int]
"""(operation, session id, version written, or the lease's fence for claim / release)."""


class AuditedStore(Store):
    """Delegates to ``inner`` and appends an entry to ``audit`` after every successful write."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.audit: list[AuditEntry] = []

    @classmethod
    def from_url(cls, url: str) -> AuditedStore:
        return cls(tether.open_store(url.removeprefix("audited:")))

    def create(self, session: Session) -> Session:
        created = self.inner.create(session)
        self.audit.append(("create", created.id, created.version))
        return created

    def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        return self.inner.load(session_id, last=last, after=after, limit=limit)

    def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = self.inner.commit(
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
        version = self.inner.replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_history", session_id, version))
        return version

    def list(
        self,
        *,
        owner: str | None = None,
        agent: str | None = None,
        status: StatusFilter = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return self.inner.list(
            owner=owner,
            agent=agent,
            status=status,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
        )

    def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        deleted = self.inner.delete(session_id, expected_version, lease=lease, force=force)
        if deleted:
            self.audit.append(("delete", session_id, 0))
        return deleted

    def exists(self, session_id: str) -> bool:
        return self.inner.exists(session_id)

    def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        lease = self.inner.claim(session_id, owner, ttl)
        self.audit.append(("claim", session_id, lease.fence))
        return lease

    def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return self.inner.renew(lease, ttl)

    def release(self, lease: Lease) -> None:
        self.inner.release(lease)
        self.audit.append(("release", lease.session_id, lease.fence))

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Optional ability (copying between stores): passed on if the inner store has it."""
        restore = getattr(self.inner, "restore", None)
        if restore is None:
            raise NotImplementedError(f"{type(self.inner).__name__} has no restore()")
        restore(session, replace=replace, expected_version=expected_version)
        self.audit.append(("restore", session.id, session.version))

    def close(self) -> None:
        self.inner.close()


class AsyncAuditedStore(AsyncStore):
    """The async twin of :class:`AuditedStore`."""

    def __init__(self, inner: AsyncStore) -> None:
        self.inner = inner
        self.audit: list[AuditEntry] = []

    @classmethod
    def from_url(cls, url: str) -> AsyncAuditedStore:
        return cls(tether.open_async_store(url.removeprefix("audited:")))

    async def create(self, session: Session) -> Session:
        created = await self.inner.create(session)
        self.audit.append(("create", created.id, created.version))
        return created

    async def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        return await self.inner.load(session_id, last=last, after=after, limit=limit)

    async def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        version = await self.inner.commit(
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
        version = await self.inner.replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )
        self.audit.append(("replace_history", session_id, version))
        return version

    async def list(
        self,
        *,
        owner: str | None = None,
        agent: str | None = None,
        status: StatusFilter = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return await self.inner.list(
            owner=owner,
            agent=agent,
            status=status,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
        )

    async def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        deleted = await self.inner.delete(session_id, expected_version, lease=lease, force=force)
        if deleted:
            self.audit.append(("delete", session_id, 0))
        return deleted

    async def exists(self, session_id: str) -> bool:
        return await self.inner.exists(session_id)

    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        lease = await self.inner.claim(session_id, owner, ttl)
        self.audit.append(("claim", session_id, lease.fence))
        return lease

    async def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return await self.inner.renew(lease, ttl)

    async def release(self, lease: Lease) -> None:
        await self.inner.release(lease)
        self.audit.append(("release", lease.session_id, lease.fence))

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Optional ability (copying between stores): passed on if the inner store has it."""
        restore = getattr(self.inner, "restore", None)
        if restore is None:
            raise NotImplementedError(f"{type(self.inner).__name__} has no restore()")
        await restore(session, replace=replace, expected_version=expected_version)
        self.audit.append(("restore", session.id, session.version))

    async def close(self) -> None:
        await self.inner.close()
