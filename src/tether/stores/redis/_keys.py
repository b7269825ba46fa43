"""The Redis store's key layout (no I/O): every key of a namespace, and the listing indexes'
members."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import _scripts as lua
from ._options import check_namespace

MAX_STAMP = 10**16 - 1
"""The largest timestamp (µs) an index entry can hold: 16 digits, past the year 2286."""


@dataclass(frozen=True)
class Keys:
    """Every key of one namespace. All share the hash tag ``{namespace}``: one cluster slot."""

    namespace: str
    base: str
    index: tuple[str, ...]
    """updated, owner, agent, status (lex-ordered sorted sets), who (hash), sweep (string)."""

    @classmethod
    def for_namespace(cls, namespace: str) -> Keys:
        base = f"tether:{{{check_namespace(namespace)}}}:"
        names = ("ix:updated", "ix:owner", "ix:agent", "ix:status", "ix:who", "ix:sweep")
        return cls(namespace, base, tuple(base + name for name in names))

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for this namespace's keys (the namespace has no glob chars)."""
        return self.base + "*"

    def session(self, session_id: str) -> list[str]:
        """Header hash, items list, metadata hash. ``session_id`` must be validated."""
        return [
            self.base + "s:" + session_id,
            self.base + "h:" + session_id,
            self.base + "m:" + session_id,
        ]

    def item_keys(self, session_id: str) -> list[str]:
        """Keyed items: a hash key -> the item's row, and a sorted set of the keys by seq
        (to drop the keys of a removed tail by seq range)."""
        return [self.base + "k:" + session_id, self.base + "ks:" + session_id]

    def write_keys(self, session_id: str) -> list[str]:
        """A write script's KEYS (``_scripts.WRITE_KEYS``)."""
        return [*self.index, *self.session(session_id), *self.item_keys(session_id)]

    def for_script(self, names: Iterable[str], session_id: str | None = None) -> list[str]:
        """The KEYS of a script, by the names it gives them (``LuaScript.keys``)."""
        named = dict(zip(lua.INDEX_KEYS, self.index, strict=True))
        if session_id is not None:
            session = (*self.session(session_id), *self.item_keys(session_id))
            named.update(zip(lua.SESSION_KEYS, session, strict=True))
        return [named[name] for name in names]


def prefix_of(value: str | None) -> str:
    """The index prefix of an owner or agent: hex, so any text is safe in a lex range."""
    if value is None:
        return ""
    return value.encode("utf-8", "surrogatepass").hex() + ":"


def pad(micros: int) -> str:
    return f"{micros:016d}"
