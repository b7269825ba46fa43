"""The store contract's argument types, and the check its versioned writes share:
the same for the async contract (:mod:`.base_async`) and the sync one generated from it, so
written once here. Import them from :mod:`tether.stores.base`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

from .. import _core
from .._ids import validate_session_id
from ..models import KeyedItem, Lease, SessionStatus

__all__ = [
    "CheckedItems",
    "CheckedKeys",
    "ListFilters",
    "NewItems",
    "RawWindow",
    "StatusFilter",
    "commit_args",
]

StatusFilter = str | SessionStatus | Collection[str | SessionStatus] | None


class ListFilters(TypedDict, total=False):
    """The keyword arguments of :meth:`AsyncStore.list`, as one value: what a store that passes
    a listing on (a wrapping store, ``Sessions.list``) takes as ``**filters`` and forwards as
    given."""

    owner: str | None
    agent: str | None
    status: StatusFilter
    metadata: Mapping[str, Any] | None
    updated_after: datetime | None
    updated_before: datetime | None
    limit: int
    cursor: str | None


NewItems = Iterable[Mapping[str, Any] | KeyedItem]
"""Items to append: plain dicts, or :class:`~tether.KeyedItem` for an item with a key."""
CheckedItems = list[Mapping[str, Any] | KeyedItem]
"""New items as a protected method receives them: drained into a list (each item is checked
when the store encodes it with ``_core.prepare_items``, before anything is written)."""
RawWindow = tuple[_core.Doc, list[tuple[int, bytes]]]
"""What the optional ``_load_raw`` returns: the header document and the window's rows, each
``(seq, the stored JSON)``."""
CheckedKeys = list[str]
"""The keys of ``items_by_key`` as ``_items_by_key`` receives them: checked, distinct, a list."""


_NO_AFTER: Any = object()
"""``commit_args``' ``after`` for the writes that take none."""


def commit_args(
    session_id: str,
    expected_version: int,
    append: NewItems,
    changes: Mapping[str, Any] | None,
    lease: Lease | None,
    *,
    after: int = _NO_AFTER,
) -> tuple[CheckedItems, _core.Doc, Lease | None]:
    """A versioned write's arguments checked, in the contract's one order: ``commit``'s,
    ``commit_stamped``'s, ``replace_history``'s and, with its ``after``, ``replace_tail``'s."""
    validate_session_id(session_id)
    normalized = _core.normalize_changes(changes)
    _core.check_version(expected_version)
    if after is not _NO_AFTER:
        _core.check_after(after)
    checked_lease = None if lease is None else _core.check_lease_arg(lease, optional=True)
    return _core.item_list(append), normalized, checked_lease
