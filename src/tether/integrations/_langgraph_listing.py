"""What the saver's reads keep and select (no I/O): the values a walk decoded
(:class:`Memo`), a ``list`` call's selection (:class:`Scope`), and a decoded value's own
container for each tuple (:func:`own_copy`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..models import StoredItem


class Memo:
    """What a walk decoded: the channel values of the checkpoint it built last (by blob key),
    the snapshots its deltas were joined to, and the checkpoint and metadata of the items it
    chose (decoded once, to filter, and taken when their tuple is built)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.heads: dict[str, Any] = {}  # the snapshots decoded last, by key
        self._chosen: dict[int, tuple[Any, Any]] = {}

    def keep_head(self, base: str, value: Any) -> None:
        if len(self.heads) >= 4:  # a walk meets snapshots one after the other
            del self.heads[next(iter(self.heads))]
        self.heads[base] = value

    def keep(self, stored: StoredItem, checkpoint: Any, metadata: Any) -> None:
        self._chosen[stored.seq] = (checkpoint, metadata)

    def take(self, stored: StoredItem, value: Any) -> tuple[Any, Any]:
        parts = self._chosen.pop(stored.seq, None)
        if parts is None:
            return value(stored.item["checkpoint"]), value(stored.item["metadata"])
        return parts


def own_copy(value: Any) -> Any:
    """A value decoded for another tuple, with its own outer container (a caller appending
    to one snapshot's message list never changes another's)."""
    if isinstance(value, (list, dict, set)):
        return copy.copy(value)
    return value


class Scope:
    """What a ``list`` call selects: namespace, id, ``before``, metadata filter."""

    def __init__(
        self, *, ns: str | None, cid: str | None, before: str | None, filter: dict[str, Any]
    ) -> None:
        self.ns, self.cid, self.before, self.filter = ns, cid, before, filter

    def admits(self, ns: str, cid: str) -> bool:
        return (
            (self.ns is None or ns == self.ns)
            and (self.cid is None or cid == self.cid)
            and (self.before is None or cid < self.before)
        )

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(metadata.get(k) == v for k, v in self.filter.items())
