"""A write's checked arguments as one value, and what a write that adds items wrote (no I/O,
so one module serves the async and the sync side).

The contract's protected writes (``_commit``, ``_commit_stamped``, ``_append``,
``_replace_history``, ``_replace_tail``) all take a session id, a version to compare, the new
items, the changes and the lease: in the built-in stores those travel together as one
:class:`Write` (see ``_adding_async.py``). ``commit``, a stamped ``commit`` and ``append`` are
one ``_add``, which answers with what it wrote, an :class:`Added`: the new version (for
``commit`` / ``append``) and, only when asked, the whole stamp (for ``commit_stamped``).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from .. import _core
from .._core import CommitStamp
from ..models import Lease
from ._arguments import CheckedItems

__all__ = ["Added", "DocAdded", "Write"]


class Write(NamedTuple):
    """A write's checked arguments, as the contract's protected methods receive them
    (``expected_version`` None: a blind append, at any version; ``changes`` normalised, ``{}``
    for an append)."""

    session_id: str
    expected_version: int | None
    items: CheckedItems
    changes: _core.Doc
    lease: Lease | None


class Added(Protocol):
    """What a store's ``_add`` wrote, as the three protected methods read it."""

    @property
    def version(self) -> int:
        """The new version."""
        ...

    def stamp(self) -> CommitStamp:
        """The write's :class:`~tether.stores.base.CommitStamp` (built only when asked)."""
        ...


class DocAdded(NamedTuple):
    """:class:`Added` for a store that holds the new header document and the rows
    ``_core.prepare_items`` encoded for the new items."""

    doc: _core.Doc
    rows: _core.PreparedItems

    @property
    def version(self) -> int:
        return int(self.doc["version"])

    def stamp(self) -> CommitStamp:
        return _core.commit_stamp(self.doc, self.rows)
