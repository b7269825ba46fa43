"""A store that wraps another, async side; tools/unasync.py writes the sync side from it.

``tether.stores.WrappingStore`` and its async twin forward every method of the contract, the
optional abilities (``fork_session``, ``restore``, ``purge_expired``) and ``close`` to the
store they wrap, ``inner``, unchanged. A wrapper subclasses one and overrides only what it
changes: :class:`~tether.encryption.EncryptedStore` seals values on the way in and opens them
on the way out, the worker's ``FencedStore`` stamps fences and checks leases,
``examples/audited_store.py`` records each write. Everything a wrapper does not override is
the inner store's, errors included, so it passes the conformance suite wherever the inner
store does. A wrapper that changes the items of every write overrides ``_write_items`` once
(the worker's store stamps fences there), one that changes what every ``load`` returns
overrides ``_loaded`` (the encrypted store opens its values there). Every forwarding method
passes its call on through ``_forward``, one place (:class:`~tether.stores.SyncBackedAsyncStore`
is a wrapping store whose ``_forward`` runs a sync store's method in a thread).

Whole calls are forwarded (the public methods, not the protected ``_create`` / ``_commit``
/ ...): the inner store checks the arguments once, in the contract's order, as it would
unwrapped, and a wrapper of a wrapper keeps what the middle one adds. ``iter_sessions`` and
``iter_history`` are the base class's, built on this store's ``list`` and ``load``, so a
wrapper that changes those changes them too.

A wrapper has an optional ability exactly when its inner store has it (set on the instance,
as :class:`~tether.stores.SyncBackedAsyncStore` does, so ``isinstance(wrapper, Restores)`` and
``getattr(wrapper, "restore", None)`` answer for the store underneath). It calls
:meth:`~AsyncWrappingStore.wrap_restore` (``wrap_fork_session``, ``wrap_purge_expired``) with
the inner store's method: a wrapper overrides that to change the ability, and leaves a name
out of ``passes_on`` to withhold it (the encrypted store cannot let a fork share the parent's
ciphertexts, so it has no ``fork_session`` and the runtime copies the items through
``restore``, encrypting each for the child).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, ParamSpec, TypeVar

from ..errors import InvalidRequest
from ..models import Lease, Page, Session, SessionHeader, StoredItem
from .base_async import AsyncStore, CommitStamp, ListFilters, NewItems, RawWindow

if TYPE_CHECKING:
    from typing_extensions import Unpack  # pydantic's dependency; Python 3.11 has it in typing

__all__ = ["AsyncWrappingStore"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class AsyncWrappingStore(AsyncStore):
    """An async store that forwards everything to ``inner``; subclass it to change a part.

    ``inner`` must be an :class:`~tether.AsyncStore` (anything else raises
    :class:`~tether.errors.InvalidRequest`). ``close`` closes it: a wrapper that does not own
    its inner store overrides ``close``.
    """

    passes_on: ClassVar[frozenset[str]] = frozenset({"fork_session", "restore", "purge_expired"})
    """The optional abilities this wrapper offers when its inner store has them."""

    def __init__(self, inner: AsyncStore) -> None:
        if not isinstance(inner, AsyncStore):
            raise InvalidRequest(
                f"{type(self).__name__} wraps a {AsyncStore.__name__}, not {type(inner).__name__}"
            )
        self.inner = inner
        """The wrapped store."""
        self._offer_abilities()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r})"

    # --- how a call is passed on: the one place ---------------------------------------------

    @property
    def _target(self) -> Any:
        """The store calls are passed on to (``inner``; a sync store's async adapter, its sync
        store)."""
        return self.inner

    async def _run(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call one of the target's methods (the async adapter of a sync store runs it in a
        thread instead)."""
        return await method(*args, **kwargs)

    async def _forward(
        self,
        method: Callable[Concatenate[AsyncStore, _P], Awaitable[_R]],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _R:
        """The target's ``method`` (named as the contract's, ``AsyncStore.load``, so the
        arguments type-check) called with these arguments: every method below forwards so."""
        result: _R = await self._run(getattr(self._target, method.__name__), *args, **kwargs)
        return result

    def _write_items(self, items: NewItems, lease: Lease | None) -> NewItems:
        """The items a write passes on (``commit``, ``commit_stamped``, ``replace_history``,
        ``append``, ``replace_tail``): these, unchanged. A wrapper that changes the items of
        every write (the worker's store stamps each with its lease's fence) overrides this once
        instead of each write."""
        return items

    def _loaded(self, session: Session) -> Session:
        """The session ``load`` passes back: this one, unchanged. A wrapper that changes what
        every load returns (the encrypted store opens its values) overrides this once."""
        return session

    async def _load_raw(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> RawWindow | None:
        """The target's undecoded load (:meth:`AsyncStore._load_raw`), if it offers one and
        this wrapper's loads are its target's unchanged: a wrapper that changes what ``load``
        returns (overriding ``load`` or ``_loaded``) offers none, so nothing it adds is skipped."""
        cls = type(self)
        if cls.load is not AsyncWrappingStore.load or cls._loaded is not AsyncWrappingStore._loaded:
            return None
        raw = getattr(self._target, "_load_raw", None)
        if raw is None:
            return None
        window: RawWindow | None = await self._run(
            raw, session_id, last=last, after=after, limit=limit
        )
        return window

    # --- the contract -------------------------------------------------------------------------

    async def create(self, session: Session) -> Session:
        return await self._forward(AsyncStore.create, session)

    async def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        loaded = await self._forward(
            AsyncStore.load, session_id, last=last, after=after, limit=limit
        )
        return self._loaded(loaded)

    async def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return await self._forward(
            AsyncStore.commit,
            session_id,
            expected_version,
            append=self._write_items(append, lease),
            changes=changes,
            lease=lease,
        )

    async def commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> CommitStamp:
        """The inner store's ``commit_stamped``, unless a subclass changes ``commit``: then
        that commit, reporting its version alone, as the base class does for any store whose
        commit is not the stamped one (the inner store's stamp would describe a write the
        subclass changed, or skip what it adds: encryption, an audit entry, a fence)."""
        if not self._stamps_commits:  # the base class's rule: this store's commit, its version
            return await super().commit_stamped(
                session_id, expected_version, append=append, changes=changes, lease=lease
            )
        return await self._forward(
            AsyncStore.commit_stamped,
            session_id,
            expected_version,
            append=self._write_items(append, lease),
            changes=changes,
            lease=lease,
        )

    async def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return await self._forward(
            AsyncStore.replace_history,
            session_id,
            expected_version,
            self._write_items(items, lease),
            changes=changes,
            lease=lease,
        )

    async def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        return await self._forward(
            AsyncStore.append, session_id, self._write_items(items, lease), lease=lease
        )

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
        return await self._forward(
            AsyncStore.replace_tail,
            session_id,
            expected_version,
            after,
            self._write_items(items, lease),
            changes=changes,
            lease=lease,
        )

    async def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        return await self._forward(AsyncStore.items_by_key, session_id, keys)

    async def list(self, **filters: Unpack[ListFilters]) -> Page:
        """The inner store's page (the filters as :meth:`AsyncStore.list` takes them)."""
        return await self._forward(AsyncStore.list, **filters)

    async def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        return await self._forward(
            AsyncStore.delete, session_id, expected_version, lease=lease, force=force
        )

    async def exists(self, session_id: str) -> bool:
        return await self._forward(AsyncStore.exists, session_id)

    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        return await self._forward(AsyncStore.claim, session_id, owner, ttl)

    async def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return await self._forward(AsyncStore.renew, lease, ttl)

    async def release(self, lease: Lease) -> None:
        await self._forward(AsyncStore.release, lease)

    async def close(self) -> None:
        await self._forward(AsyncStore.close)

    # --- the optional abilities: the inner store's, when it has them --------------------------

    def _inner_ability(self, name: str) -> Callable[..., Awaitable[Any]] | None:
        method = getattr(self._target, name, None) if name in self.passes_on else None
        return functools.partial(self._run, method) if callable(method) else None

    def _offer_abilities(self) -> None:
        """Set on this instance each ability of ``passes_on`` the inner store has (module doc)."""
        fork = self._inner_ability("fork_session")
        if fork is not None:

            async def fork_session(child: Session, at: int) -> SessionHeader:
                """See the inner store's ``fork_session``."""
                return await self.wrap_fork_session(fork, child, at)

            self.fork_session = fork_session
        restore = self._inner_ability("restore")
        if restore is not None:

            async def restore_session(
                session: Session, *, replace: bool = False, expected_version: int | None = None
            ) -> None:
                """See the inner store's ``restore``."""
                await self.wrap_restore(
                    restore, session, replace=replace, expected_version=expected_version
                )

            self.restore = restore_session
        purge = self._inner_ability("purge_expired")
        if purge is not None:

            async def purge_expired() -> int:
                """See the inner store's ``purge_expired``."""
                return await self.wrap_purge_expired(purge)

            self.purge_expired = purge_expired

    async def wrap_fork_session(
        self, fork: Callable[..., Any], child: Session, at: int
    ) -> SessionHeader:
        """This wrapper's ``fork_session``, given the inner store's: passes the call on."""
        header: SessionHeader = await fork(child, at)
        return header

    async def wrap_restore(
        self,
        restore: Callable[..., Any],
        session: Session,
        *,
        replace: bool,
        expected_version: int | None,
    ) -> None:
        """This wrapper's ``restore``, given the inner store's: passes the call on."""
        if expected_version is None:  # a store written before expected_version= works too
            await restore(session, replace=replace)
        else:
            await restore(session, replace=replace, expected_version=expected_version)

    async def wrap_purge_expired(self, purge: Callable[[], Any]) -> int:
        """This wrapper's ``purge_expired``, given the inner store's: passes the call on."""
        count: int = await purge()
        return count
