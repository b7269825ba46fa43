"""A store that wraps another, async side; tools/unasync.py writes the sync side from it.

``tether.stores.WrappingStore`` and its async twin forward every method of the contract, the
optional abilities (``fork_session``, ``restore``, ``purge_expired``) and ``close`` to the
store they wrap, ``inner``, unchanged. A wrapper subclasses one and overrides only what it
changes: :class:`~tether.encryption.EncryptedStore` seals values on the way in and opens them
on the way out, the worker's ``FencedStore`` stamps fences and checks leases,
``examples/audited_store.py`` records each write. Everything a wrapper does not override is
the inner store's, errors included, so it passes the conformance suite wherever the inner
store does.

A wrapper hooks the protected layer, never restating a public signature: the contract's public
methods (``AsyncStore``'s, inherited) check the arguments once, in the contract's order, and
call the protected ones, which a wrapping store forwards. Its writes are those of
:class:`~tether.stores._adding_async._AsyncAddingStore`, each given as one
:class:`~tether.stores._writes.Write`: ``_add`` (a commit, or with ``expected_version`` None a
blind append), ``_replace_all`` (``replace_history``) and ``_replace_after`` (``replace_tail``).
A wrapper that changes the items of every write overrides ``_write_items`` (the worker's store
stamps fences there), one that changes what every load returns ``_loaded``. A subclass may
still override a public method whole (``examples/audited_store.py`` does): its ``super()``
call checks and forwards as above.

Every call is passed on through ``_forward``, one place: to the target's protected method when
the target's public twin is the contract's own (which would check the same values again and
call it), else to that public method, the checked values given back in public form (a store
written before the protected methods, a wrapper that overrides whole calls: what it adds is
kept). One shortcut, for every turn's commit (``_commit_through``): where the target is an
adding store whose ``_commit`` would only make the :class:`~tether.stores._writes.Write` and
call its ``_add`` (and the object has no ``commit`` or ``_commit`` of its own, a test's spy),
the write goes to that ``_add`` directly: the same call, without the steps between. A store
whose ``_add`` also takes items already encoded (``_adds_encoded``: SQLite's) may be handed
them there (:meth:`~AsyncWrappingStore._encoded_add`): the encrypting store's envelopes
as JSON, which the store then does not encode again.
:class:`~tether.stores.SyncBackedAsyncStore` is a wrapping store whose ``_run`` calls a
sync store's method in a thread. ``list`` passes its filters on as given, and
``iter_sessions`` and ``iter_history`` are the base class's, built on this store's ``list`` and
``load``, so a wrapper that changes those changes them too.

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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from .._time import from_micros
from ..errors import InvalidRequest
from ..models import Lease, Page, Session, SessionHeader
from ._adding_async import _AsyncAddingStore, write_of
from ._contract import _StoreMachinery
from ._writes import Added, Write
from .base_async import PROTECTED_METHODS, AsyncStore, CommitStamp, ListFilters, RawWindow

if TYPE_CHECKING:
    from typing_extensions import Unpack  # pydantic's dependency; Python 3.11 has it in typing

    from ._arguments import CheckedItems, NewItems

__all__ = ["AsyncWrappingStore"]

_PUBLIC = {protected: public for public, protected in PROTECTED_METHODS.items()}
_PUBLIC["_commit_stamped"] = "commit_stamped"
"""Each protected method a wrapper forwards, and its public twin."""

_LATER_ARGS: dict[str, object] = {
    "limit": None,
    "changes": None,
    "lease": None,
    "force": False,
    "expected_version": None,
}
"""Keyword arguments the contract gained after stores were written against it, with their
defaults: a public call leaves one out when it is at its default, so a store written before it
still works behind a wrapper."""


def _public_routes(cls: type) -> frozenset[str]:
    """The protected methods a wrapper reaches on a store of class ``cls`` through their public
    twins: those whose public method ``cls`` overrides (its protected one may be missing, or
    skip what the override adds) and, if ``cls`` does not stamp its commits itself, the
    stamped commit (the contract's ``commit_stamped`` then calls ``commit``). All of them for
    an object that is not a store class of the contract's."""
    routes = _ROUTES.get(cls)
    if routes is None:
        routes = _ROUTES[cls] = _routes_of(cls)
    return routes


_ROUTES: dict[type, frozenset[str]] = {}
""":func:`_public_routes` by class: a class's methods are looked up once, not on every call."""


def _routes_of(cls: type) -> frozenset[str]:
    contract = next((k for k in cls.__mro__ if _StoreMachinery in k.__bases__), None)
    if contract is None:
        return frozenset(_PUBLIC)
    routed = {
        p for p, public in _PUBLIC.items() if getattr(cls, public) is not getattr(contract, public)
    }
    if not getattr(cls, "_stamps_commits", False):
        routed.add("_commit_stamped")
    return frozenset(routed)


def _adds_directly(cls: type) -> bool:
    """Whether a store of class ``cls`` commits through its own ``_add`` unchanged: it is an
    adding store whose ``_commit`` is :class:`_AsyncAddingStore`'s (a call of ``_add`` with the
    same values) and whose public ``commit`` is the contract's (nothing routed through it)."""
    adds = _ADDS.get(cls)
    if adds is None:
        adds = _ADDS[cls] = (
            issubclass(cls, _AsyncAddingStore)
            and cls._commit is _AsyncAddingStore._commit
            and "_commit" not in _public_routes(cls)
        )
    return adds


_ADDS: dict[type, bool] = {}
""":func:`_adds_directly` by class."""


def _adds_encoded(cls: type) -> bool:
    """Whether a store of class ``cls`` commits through its own ``_add`` unchanged
    (:func:`_adds_directly`) and that ``_add`` takes items already encoded
    (``_adds_encoded``: not a subclass's own ``_add``)."""
    takes = _ENCODED.get(cls)
    if takes is None:
        takes = _ENCODED[cls] = _adds_directly(cls) and cls._adds_encoded is cls._add  # type: ignore[attr-defined]
    return takes


_ENCODED: dict[type, bool] = {}
""":func:`_adds_encoded` by class."""


def _public_call(
    protected: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """A protected call's checked values in the form its public twin takes: the new items of
    a commit as ``append=``, ``changes`` as the caller gave them (``expires_at`` a datetime
    again, None if empty), a ttl in µs as a timedelta; the later arguments left out at their
    defaults."""
    if protected in ("_commit", "_commit_stamped"):
        *args_, items = args
        args, kwargs = tuple(args_), {"append": items, **kwargs}
    elif protected in ("_claim", "_renew"):
        args = (*args[:-1], timedelta(microseconds=args[-1]))
    changes = kwargs.get("changes")
    if changes is not None:
        if changes.get("expires_at") is not None:
            changes = {**changes, "expires_at": from_micros(changes["expires_at"])}
        kwargs["changes"] = changes or None
    kwargs = {
        name: value
        for name, value in kwargs.items()
        if name not in _LATER_ARGS or value is not _LATER_ARGS[name]
    }
    return _PUBLIC[protected], args, kwargs


def _forwarding(protected: str) -> Callable[..., Any]:
    """A protected method of the contract (``_create``, ``_exists``, ...) that forwards its
    checked values as they are: its signature is the contract's, written once."""

    async def forward(self: AsyncWrappingStore, /, *args: Any, **kwargs: Any) -> Any:
        return await self._forward(protected, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = protected
    forward.__doc__ = f"The target's {_PUBLIC[protected]}() (see AsyncStore.{protected})."
    return forward


def loads_as_target(cls: type[AsyncWrappingStore]) -> bool:
    """Whether a wrapper class's loads are its target's unchanged (it overrides none of
    ``load``, ``_load`` and ``_loaded``): only then may it offer what skips or shortcuts its
    target's load (the undecoded load, the change mark) without skipping what it adds."""
    return (
        cls.load is AsyncStore.load
        and cls._load is AsyncWrappingStore._load
        and cls._loaded is AsyncWrappingStore._loaded
    )


def _raw_forwarding() -> Callable[..., Any]:
    """:meth:`AsyncWrappingStore._load_raw` (the contract's signature, written once there)."""

    async def _load_raw(
        self: AsyncWrappingStore, session_id: str, /, **window: Any
    ) -> RawWindow | None:
        """The target's undecoded load (:meth:`AsyncStore._load_raw`), if it offers one and
        this wrapper's loads are its target's unchanged: a wrapper that changes what ``load``
        returns (overriding ``load``, ``_load`` or ``_loaded``) offers none, so nothing it adds
        is skipped."""
        if not loads_as_target(type(self)):
            return None
        raw = getattr(self._target, "_load_raw", None)
        if raw is None:
            return None
        rows: RawWindow | None = await self._run(raw, session_id, **window)
        return rows

    return _load_raw


def _committing(protected: str) -> Callable[..., Any]:
    """The wrapping store's ``_commit`` / ``_commit_stamped`` (the contract's arguments: its
    signature, written once there): the target's, the items passed through ``_write_items``;
    through ``_add``, as :class:`_AsyncAddingStore` does, when a subclass changes commits
    there (the stamped one then reports the version alone, as the base class does for any
    store whose commit is not the stamped one: the target's stamp would describe a write the
    subclass changed, or skip what it adds, encryption or a fence)."""

    async def commit(self: AsyncWrappingStore, /, *args: Any, **kwargs: Any) -> Any:
        if type(self)._add is not AsyncWrappingStore._add:
            added = await self._add(write_of(args, kwargs))
            return added.stamp() if protected == "_commit_stamped" else added.version
        *checked, items = args  # the items are the last positional argument, as in a Write
        passed = self._items_passed(items, kwargs["lease"])
        if protected == "_commit":
            session_id, expected_version = checked
            return await self._commit_through(
                session_id, expected_version, passed, kwargs["changes"], kwargs["lease"]
            )
        return await self._forward(protected, *checked, passed, **kwargs)

    commit.__name__ = commit.__qualname__ = protected
    return commit


class Forwarded(int):
    """What a wrapper's ``_add`` wrote (an :class:`~tether.stores._writes.Added`): the new
    version, this int itself (cheaper to make than a tuple: every wrapped commit makes one);
    its stamp reports nothing more (the target's stamped commit is called only when the
    wrapper's commits are its target's unchanged)."""

    __slots__ = ()

    @property
    def version(self) -> int:
        return int(self)

    def stamp(self) -> CommitStamp:
        return CommitStamp(int(self))


class AsyncWrappingStore(_AsyncAddingStore):
    """An async store that forwards everything to ``inner``; subclass it to change a part.

    ``inner`` must be an :class:`~tether.AsyncStore` (anything else raises
    :class:`~tether.errors.InvalidRequest`). ``close`` closes it: a wrapper that does not own
    its inner store overrides ``close``.
    """

    passes_on: ClassVar[frozenset[str]] = frozenset({"fork_session", "restore", "purge_expired"})
    """The optional abilities this wrapper offers when its inner store has them."""

    _runs_plainly: ClassVar[bool] = True
    """Whether :meth:`_run` is this class's own (a plain call): set per class."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._runs_plainly = cls._run is AsyncWrappingStore._run

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

    async def _forward(self, protected: str, /, *args: Any, **kwargs: Any) -> Any:
        """The target's ``protected`` method (``"_load"``, ...) with these checked values, or
        its public twin with them in public form where the target overrides that (module
        doc): every forwarded call goes through here."""
        target = self._target
        routes = _ROUTES.get(type(target))  # _public_routes inlined: every call comes here
        if routes is None:
            routes = _public_routes(type(target))
        # a public method set on the store object itself (a test's spy, a patch) counts too
        if protected in routes or _PUBLIC.get(protected) in getattr(target, "__dict__", ()):
            protected, args, kwargs = _public_call(protected, args, kwargs)
        return await self._run(getattr(target, protected), *args, **kwargs)

    async def _commit_through(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        changes: dict[str, Any],
        lease: Lease | None,
    ) -> int:
        """``_forward("_commit", ...)`` with these values (passed on as they are, not through
        :meth:`_write_items`), straight to the target's ``_add`` when its ``_commit`` would
        only make the :class:`Write` and call that (:func:`_adds_directly`; not when the
        object has its own ``commit`` or ``_commit``, a test's spy): the same write, without
        the steps between, which every wrapped turn's commit would pay."""
        target = self._target
        adds = _ADDS.get(type(target))  # _adds_directly inlined: every turn's commit
        if adds is None:
            adds = _adds_directly(type(target))
        own = getattr(target, "__dict__", ())
        if adds and "commit" not in own and "_commit" not in own:
            write = Write._make((session_id, expected_version, items, changes, lease))
            return (await self._add_directly(target._add, write)).version
        version: int = await self._forward(
            "_commit", session_id, expected_version, items, changes=changes, lease=lease
        )
        return version

    async def _add_directly(self, add: Callable[[Write], Any], write: Write) -> Added:
        """The target's ``_add`` (``add``) of ``write``, where :meth:`_commit_through` may
        call it directly: what it wrote."""
        # through _run only where a subclass changes how the target's methods are run
        added: Added = await (add(write) if self._runs_plainly else self._run(add, write))
        return added

    def _encoded_add(self) -> Callable[[Write], Any] | None:
        """The target's ``_add`` if :meth:`_commit_through` would pass a commit straight to it
        and it takes items already checked and encoded (:class:`tether._core.EncodedNewItems`:
        the encrypting store's sealed envelopes, which the target then does not encode
        again), for :meth:`_add_directly`; else None. Only then may a commit's items be
        those."""
        target = self._target
        if not _adds_encoded(type(target)):
            return None
        own = getattr(target, "__dict__", ())
        if "commit" in own or "_commit" in own or "_add" in own:
            return None
        add: Callable[[Write], Any] = target._add
        return add

    def _write_items(self, items: NewItems, lease: Lease | None) -> NewItems:
        """The items a write passes on (``commit``, ``commit_stamped``, ``replace_history``,
        ``append``, ``replace_tail``): these, unchanged. A wrapper that changes the items of
        every write (the worker's store stamps each with its lease's fence) overrides this once
        instead of each write."""
        return items

    def _items_passed(self, items: CheckedItems, lease: Lease | None) -> CheckedItems:
        """``items`` as :meth:`_write_items` passes them on, in a list."""
        passed = self._write_items(items, lease)
        return passed if isinstance(passed, list) else list(passed)

    def _passed(self, write: Write) -> Write:
        """``write`` with its items as :meth:`_write_items` passes them on."""
        items = self._items_passed(write.items, write.lease)
        return write if items is write.items else write._replace(items=items)

    def _loaded(self, session: Session) -> Session:
        """The session ``load`` passes back: this one, unchanged. A wrapper that changes what
        every load returns (the encrypted store opens its values) overrides this once."""
        return session

    # --- the contract: its protected methods, forwarded -------------------------------------

    _create = _forwarding("_create")
    _items_by_key = _forwarding("_items_by_key")
    _delete = _forwarding("_delete")
    _exists = _forwarding("_exists")
    _claim = _forwarding("_claim")
    _renew = _forwarding("_renew")
    _release = _forwarding("_release")

    async def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        loaded = await self._forward("_load", session_id, last=last, after=after, limit=limit)
        return self._loaded(loaded)

    _load_raw = _raw_forwarding()

    async def _add(self, write: Write) -> Added:
        """A commit (the target's ``_commit``) or, with ``expected_version`` None, a blind
        append (its ``_append``), the items passed through :meth:`_write_items`."""
        session_id, expected_version, items, changes, lease = write
        items = self._items_passed(items, lease)
        if expected_version is None:
            version = await self._forward("_append", session_id, items, lease=lease)
        else:
            version = await self._forward(
                "_commit", session_id, expected_version, items, changes=changes, lease=lease
            )
        return Forwarded(version)

    # a turn's commit, without the Write _add takes: the hot path of every wrapped store
    _commit = _committing("_commit")
    _commit_stamped = _committing("_commit_stamped")

    async def _replace_all(self, write: Write) -> int:
        """``replace_history``: the target's, the items passed through :meth:`_write_items`."""
        version: int = await self._write_through("_replace_history", self._passed(write))
        return version

    async def _replace_after(self, write: Write, after: int) -> int:
        """``replace_tail``: the target's, the items passed through :meth:`_write_items`."""
        version: int = await self._write_through("_replace_tail", self._passed(write), after)
        return version

    async def _write_through(self, protected: str, write: Write, *after: int) -> Any:
        """The target's versioned write ``protected`` (``"_commit"``, ``"_replace_tail"``
        with its ``after``, ...) with ``write``'s values as they are: a wrapper that changed
        them (sealed, stamped) passes them on so."""
        session_id, expected_version, items, changes, lease = write
        return await self._forward(
            protected, session_id, expected_version, *after, items, changes=changes, lease=lease
        )

    async def list(self, **filters: Unpack[ListFilters]) -> Page:
        """The inner store's page (the filters as :meth:`AsyncStore.list` takes them, passed
        on as given: the inner store checks them)."""
        page: Page = await self._run(self._target.list, **filters)
        return page

    async def close(self) -> None:
        await self._run(self._target.close)

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
