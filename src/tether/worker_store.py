"""The store a worker's agents write through: leases kept alive, fences stamped, a clean stop.

:class:`FencedStore` wraps any sync store and changes nothing of the contract; it adds what a
background worker needs around the :class:`~tether.agent.Agent` it runs, without the agent
knowing:

* **Renewal.** Every lease claimed through it is renewed by one background thread every third
  of its ttl, so a turn whose model call or tool runs longer than the ttl keeps its session.
  The agent renews between steps too; both use the same lease (same token and fence).
* **Fencing.** Every item written under a lease carries that lease's ``fence``, so the history
  is also a commit log: a session never had two writers if its items' fences never go down.
  Once the renewer learns the lease was lost (it expired, another worker claimed the session),
  every write under it is refused here, before the store is asked, and :func:`current_lease`
  tells a tool its fence (to stamp external writes) and :func:`lease_lost` whether to stop.
* **Stopping.** After :meth:`FencedStore.request_stop`, the next commit of a running turn that
  is safe to stop at (its snapshot is written and no ``once`` tool is about to run) is turned
  into a checkpoint (status ``hibernated``) and :class:`TurnCheckpointed` is raised to the
  worker: another worker resumes the turn from there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import LeaseLost, TurnCheckpointed
from .models import KeyedItem, Lease, SessionStatus
from .stores._writes import Added, Write
from .stores.base import NewItems, Store
from .stores.wrapping_sync import WrappingStore

__all__ = ["FencedStore", "TurnCheckpointed", "current_lease", "keyed_prompt", "lease_lost"]

log = logging.getLogger("tether.worker")

RUNTIME_KEY = "_tether"


@dataclass
class _Held:
    lease: Lease
    ttl: int
    """In µs, as the contract's protected methods take it."""
    lost: bool = False


_local = threading.local()


def current_lease() -> Lease | None:
    """The lease of the turn running in this thread, if a worker runs it.

    A ``once`` tool passes ``current_lease().fence`` along with what it writes outside tether
    (a ledger, a payment API): the receiver can then refuse a write stamped with an older fence
    than one it has already seen, the write of a worker whose lease was taken over.
    """
    held: _Held | None = getattr(_local, "held", None)
    return None if held is None else held.lease


def lease_lost() -> bool:
    """Whether this thread's turn lost its lease (renewal refused): stop, write nothing more."""
    held: _Held | None = getattr(_local, "held", None)
    return held is not None and held.lost


class FencedStore(WrappingStore):
    """Delegates to ``inner``; renews leases, stamps fences and stops cleanly (module doc).

    A :class:`~tether.stores.WrappingStore`: reads, ``create``, ``exists`` and the inner
    store's optional abilities pass through unchanged; the lease calls, commits (``_add``)
    and ``delete`` are changed here, at the protected layer (the contract's public methods
    check the arguments first), and every write's items pass through ``_write_items``.
    ``renew_ratio`` is the part of a lease's ttl between two renewals (default a third);
    ``renew=False`` starts no renewer (for writes that hold a lease for a moment only).
    """

    def __init__(self, inner: Store, *, renew_ratio: float = 1 / 3, renew: bool = True) -> None:
        if not 0 < renew_ratio < 1:
            raise ValueError(f"renew_ratio is a fraction of the ttl in (0, 1), not {renew_ratio}")
        super().__init__(inner)
        self.renew_ratio = renew_ratio
        self._held: dict[str, _Held] = {}  # by lease token
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._stopping = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewing = renew  # False: short writes only (a submit), no background thread

    # --- leases --------------------------------------------------------------------------------

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        lease: Lease = super()._claim(session_id, owner, ttl)
        held = _Held(lease, ttl)
        with self._lock:
            self._held[lease.token] = held
            if self._renewer is None and self._renewing:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="tether-lease-renewer", daemon=True
                )
                self._renewer.start()
        _local.held = held
        self._wake.set()
        return lease

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        held = self._check(lease)
        renewed: Lease = super()._renew(lease, ttl)
        if held is not None:
            held.lease = renewed
        return renewed

    def _release(self, lease: Lease) -> None:
        with self._lock:
            held = self._held.pop(lease.token, None)
        if getattr(_local, "held", None) is held:
            _local.held = None
        if held is not None and held.lost:
            raise LeaseLost(lease.session_id, "its renewal was refused: another runner holds it")
        super()._release(lease)

    def _check(self, lease: Lease) -> _Held | None:
        with self._lock:
            held = self._held.get(lease.token)
        if held is not None and held.lost:
            # fencing: the renewer saw the lease go; nothing more is written under it
            raise LeaseLost(lease.session_id, "its renewal was refused: another runner holds it")
        return held

    def _renew_loop(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                held = [h for h in self._held.values() if not h.lost]
            if not held:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            wait = min(h.ttl for h in held) / 1_000_000 * self.renew_ratio
            if self._closed.wait(wait):
                return
            for entry in held:
                with self._lock:
                    if entry.lease.token not in self._held:
                        continue  # released meanwhile
                try:
                    entry.lease = self._forward("_renew", entry.lease, entry.ttl)
                except LeaseLost:
                    entry.lost = True
                    log.warning(
                        "lease on session %r lost (fence %d): its turn stops writing",
                        entry.lease.session_id,
                        entry.lease.fence,
                    )
                except Exception as exc:  # the store is unreachable: try again next round
                    log.warning(
                        "renewing the lease on session %r failed (%s); retrying",
                        entry.lease.session_id,
                        type(exc).__name__,
                    )

    # --- stopping ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Checkpoint each running turn at its next safe commit (see the module doc)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- writes --------------------------------------------------------------------------------

    def _write_items(self, items: NewItems, lease: Lease | None) -> NewItems:
        """Every write under a lease: refused once the lease is lost, its items stamped with
        the lease's fence (the module doc's fencing); ``replace_history``, ``append`` and
        ``replace_tail`` are the wrapping store's, which pass their items through here."""
        if lease is None:
            return items
        self._check(lease)
        return [_stamped(item, lease.fence) for item in items]

    def _add(self, write: Write) -> Added:
        """A commit under a lease: its user message keyed (:func:`keyed_prompt`), and turned
        into a checkpoint once a stop is requested (module doc)."""
        session_id, expected_version, items, changes, lease = write
        if lease is None or expected_version is None:  # a blind append: the wrapping store's
            return super()._add(write)
        key = getattr(_local, "prompt_key", None)
        if key is not None:
            items = _keyed_prompt(items, key)
        checkpointed = self._stopping.is_set() and _safe_to_stop(items, changes)
        if checkpointed:
            snapshot = changes["state"][RUNTIME_KEY]["snapshot"]
            changes = {**changes, "status": SessionStatus.HIBERNATED.value}
            checkpoint = {
                "role": "tether",
                "event": "checkpoint",
                "step": snapshot.get("step"),
                "reason": "worker stopping",
                "fence": lease.fence,
            }
            items = [*items, checkpoint]
        added = super()._add(Write(session_id, expected_version, items, changes, lease))
        _local.prompt_key = None  # the keyed prompt is written: never key another item
        if checkpointed:
            raise TurnCheckpointed(session_id)
        return added

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        if lease is not None:
            self._check(lease)
        deleted: bool = super()._delete(session_id, expected_version, lease=lease, force=force)
        return deleted

    def close(self) -> None:
        """Stop the renewer; the inner store is closed by whoever opened it."""
        self._closed.set()
        self._wake.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)


@contextlib.contextmanager
def keyed_prompt(key: str) -> Iterator[None]:
    """Within it, this thread's next lease-carrying commit stores its user message under
    ``key``: a queued message is then consumed at most once (the store refuses the key twice
    with :class:`~tether.errors.DuplicateItemKey`)."""
    _local.prompt_key = key
    try:
        yield
    finally:
        _local.prompt_key = None


def _stamped(item: Mapping[str, Any] | KeyedItem, fence: int) -> Mapping[str, Any] | KeyedItem:
    if isinstance(item, KeyedItem):
        return KeyedItem(item.key, {**item.item, "fence": fence})
    return {**item, "fence": fence}


def _keyed_prompt(
    items: list[Mapping[str, Any] | KeyedItem], key: str
) -> list[Mapping[str, Any] | KeyedItem]:
    for index, item in enumerate(items):
        if not isinstance(item, KeyedItem) and item.get("role") == "user":
            return [*items[:index], KeyedItem(key, item), *items[index + 1 :]]
    return items


def _safe_to_stop(
    items: list[Mapping[str, Any] | KeyedItem], changes: Mapping[str, Any] | None
) -> bool:
    """A running turn's commit with its snapshot, not the one just before a ``once`` tool
    runs (stopping there would leave the tool marked started: a review on resume)."""
    if not changes or changes.get("status") not in (SessionStatus.RUNNING, "running"):
        return False
    state = changes.get("state")
    runtime = state.get(RUNTIME_KEY) if isinstance(state, Mapping) else None
    if not isinstance(runtime, Mapping) or not runtime.get("snapshot"):
        return False
    return not any(
        not isinstance(item, KeyedItem) and item.get("event") == "tool_started" for item in items
    )
