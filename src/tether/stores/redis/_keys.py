"""The Redis store's key layout (no I/O): every key of a namespace, and the listing indexes'
members."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    named_index: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """The index keys by their names in the scripts (``_scripts.INDEX_KEYS``)."""
    _plans: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """Each script's keys as :meth:`for_script` builds them, by the script's names."""

    @classmethod
    def for_namespace(cls, namespace: str) -> Keys:
        base = f"tether:{{{check_namespace(namespace)}}}:"
        names = ("ix:updated", "ix:owner", "ix:agent", "ix:status", "ix:who", "ix:sweep")
        index = tuple(base + name for name in names)
        return cls(namespace, base, index, dict(zip(lua.INDEX_KEYS, index, strict=True)))

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for this namespace's keys (the namespace has no glob chars)."""
        return self.base + "*"

    def session(self, session_id: str) -> list[str]:
        """Header hash, items list, metadata hash. ``session_id`` must be validated."""
        return [self.base + part + session_id for part in _SESSION_PARTS[:3]]

    def item_keys(self, session_id: str) -> list[str]:
        """Keyed items: a hash key -> the item's row, and a sorted set of the keys by seq
        (to drop the keys of a removed tail by seq range)."""
        return [self.base + part + session_id for part in _SESSION_PARTS[3:]]

    def write_keys(self, session_id: str) -> list[str]:
        """A write script's KEYS (``_scripts.WRITE_KEYS``)."""
        return [*self.index, *self.session(session_id), *self.item_keys(session_id)]

    def for_script(self, names: tuple[str, ...], session_id: str | None = None) -> list[str]:
        """The KEYS of a script, by the names it gives them (``LuaScript.keys``). Once per
        script call, so each script's names become, once a store, its fixed keys (the
        namespace's) and the prefixes its session's keys are made of (one concatenation
        each per call)."""
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plans[names] = self._plan(names)
        fixed, prefixes = plan
        if session_id is None:
            if prefixes:
                raise KeyError(f"the script keys {names} need a session id")
            return list(fixed)
        keys = [prefix + session_id for prefix in prefixes]
        return [*fixed, *keys] if fixed else keys

    def _plan(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A script's keys as (the namespace's keys, the prefixes of its session's keys), in
        its order: every script names the namespace's keys first (``_scripts``)."""
        index = self.named_index
        fixed = [name for name in names if name in index]
        if names[: len(fixed)] != tuple(fixed):
            raise ValueError(f"the script keys {names} name a session's key before the index's")
        session = names[len(fixed) :]
        return tuple(index[name] for name in fixed), tuple(
            self.base + _SESSION_BY_NAME[name] for name in session
        )


_SESSION_PARTS = ("s:", "h:", "m:", "k:", "ks:")
"""The session's keys after the namespace's prefix, in ``_scripts.SESSION_KEYS`` order."""
_SESSION_BY_NAME = dict(zip(lua.SESSION_KEYS, _SESSION_PARTS, strict=True))


def prefix_of(value: str | None) -> str:
    """The index prefix of an owner or agent: hex, so any text is safe in a lex range."""
    if value is None:
        return ""
    return value.encode("utf-8", "surrogatepass").hex() + ":"


def pad(micros: int) -> str:
    return f"{micros:016d}"
