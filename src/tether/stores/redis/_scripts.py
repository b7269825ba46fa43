"""The Redis store's Lua scripts: where they are, and one typed description of each.

The scripts are files in ``lua/`` (package data, read with :mod:`importlib.resources`):
shared preludes whose names start with ``_`` and one file per script. Each script is described
once here, by a :class:`LuaScript`: the preludes it needs, the names of its KEYS and a
dataclass of its named ARGV (not frozen: a frozen dataclass sets each field through
``object.__setattr__``, ~2 µs for a commit's 19, and the store builds one per call and only
reads it). The loader puts a generated header in front of the Lua, so that
neither side reads an argument by position::

    local H, ITEMS = KEYS[1], KEYS[2]
    local A1, A2, A3, A4 = string.match(ARGV[1], '^([^%z]*)%z...$')
    ARG = {now = A1, last = A2, after = A3, limit = A4}
    local ARG_TAIL = 2    -- where a script's variable-length part starts

The store builds the dataclass (``CommitArgs(now=..., base=..., ...)``) and
:meth:`ScriptArgs.argv` turns it into the argument list: the named fields (None as "", a bool
as "1" / "0") joined by NUL into ARGV[1], then the tail. One packed argument instead of up to
19: redis-py encodes every argument in Python (~0.6 µs each here: packing a commit's ~40
arguments was a fifth of its client CPU), while one ``string.match`` in Lua costs what Redis
saves by making fewer ARGV strings. No named field can hold a NUL (ids and namespaces are
validated, JSON escapes it); ``argv`` refuses one that does rather than shift the fields.
The header also binds the few constants the scripts share with Python (``HEADER_FIELDS``,
``RUNTIME_KEY``, ``SWEEP``), so no Lua text is spliced with ``.replace``.

The same files make two texts: each script's own, for EVALSHA (:attr:`LuaScript.source`), and
one Redis 7 function library of them all (:class:`Library`), where the preludes are defined
once and each script is a function that binds its KEYS and ARG first. The preludes hold only
functions and constants for that reason: what they read per call (NOW, BASE, ID,
SESSION_KEYS) is bound after the arguments (:data:`BINDS`).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from importlib import resources
from typing import Any, Generic, TypeVar

from ... import _core

LUA_PACKAGE = "tether.stores.redis"
LUA_FOLDER = "lua"

# Every header field but the lease token, in the order the scripts return them. Each is
# stored as its own JSON text in the session's header hash.
HEADER_FIELDS = tuple(name for name in _core.DOC_FIELDS if name != "lease_token")
SWEEP = 2
"""Index entries every create re-checks (round robin), so entries of sessions that Redis
expired by itself cannot pile up even in a namespace nobody lists."""

# The constants the Lua reads, bound in every script's header.
_READ_BY_LOAD = ("version", "expires_at", "last_seq", "history_len")
_CONSTANTS: dict[str, str | int | tuple[str, ...]] = {
    "HEADER_FIELDS": HEADER_FIELDS,
    # where a field is in HEADER_FIELDS: the load script reads its HMGET by position
    **{f"AT_{name.upper()}": HEADER_FIELDS.index(name) + 1 for name in _READ_BY_LOAD},
    "RUNTIME_KEY": _core.RUNTIME_KEY,
    "SWEEP": SWEEP,
}

# KEYS, by name. A script that makes a session (create, fork, restore) takes all eleven: the
# namespace's six index keys, then the session's header hash, items list, metadata hash, keyed
# rows hash and keys-by-seq sorted set. The other writes never sweep the index (``placed`` in
# _session.lua does), so they take the ten without IX_SWEEP: a script declares what it touches,
# and each key declared costs every call (sent, then made a Lua string).
INDEX_KEYS = ("IX_UPDATED", "IX_OWNER", "IX_AGENT", "IX_STATUS", "IX_WHO", "IX_SWEEP")
SESSION_KEYS = ("H", "ITEMS", "META", "IKEYS", "ISEQS")
WRITE_KEYS = INDEX_KEYS + SESSION_KEYS
UPDATE_KEYS = tuple(name for name in WRITE_KEYS if name != "IX_SWEEP")

SEPARATOR = "\0"
"""Between the named arguments in ARGV[1] (see :meth:`ScriptArgs.argv`)."""
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:-]*")
_ARG_NAME = re.compile(r"\bARG\.([A-Za-z_][A-Za-z0-9_]*)")


# --- the arguments -----------------------------------------------------------------------------


@dataclass
class ScriptArgs:
    """A script's named ARGV. Subclasses add fields; ``tail`` is the variable-length rest."""

    now: str
    """Now in µs, or "" for Redis's own TIME (see ``_codec.now_arg``)."""
    tail: Sequence[Any] = field(default=(), kw_only=True)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        names = _NAMES.get(cls)
        if names is None:  # dataclasses.fields() per call would cost more than the packing
            names = _NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "tail")
        return names

    def argv(self) -> list[Any]:
        """ARGV: the named fields packed into one NUL-separated text, then the tail."""
        getter = _GETTERS.get(type(self))
        if getter is None:  # one C call reads every field (a commit's has 22)
            getter = _GETTERS[type(self)] = _getter(self.names())
        # most fields are already text, most others ints: only the rest go through _text
        parts = [
            v if type(v) is str else str(v) if type(v) is int else _text(v) for v in getter(self)
        ]
        packed = SEPARATOR.join(parts)
        if packed.count(SEPARATOR) != len(parts) - 1:
            bad = [
                name for name, part in zip(self.names(), parts, strict=True) if SEPARATOR in part
            ]
            raise ValueError(f"Redis script arguments {bad} hold a NUL character")
        return [packed, *self.tail]


def _text(value: object) -> str:
    """A named argument's text: None as "", a bool as "1" / "0", bytes (JSON) as UTF-8."""
    if value is None:
        return ""
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _getter(names: tuple[str, ...]) -> Callable[[ScriptArgs], tuple[Any, ...]]:
    """The named fields' values as one tuple (attrgetter of one name gives the bare value)."""
    if len(names) == 1:
        return lambda args: (getattr(args, names[0]),)
    return operator.attrgetter(*names)


_NAMES: dict[type[ScriptArgs], tuple[str, ...]] = {}
_GETTERS: dict[type[ScriptArgs], Callable[[ScriptArgs], tuple[Any, ...]]] = {}
_LUA_MAX_CAPTURES = 32
"""Lua 5.1's LUA_MAXCAPTURES: the named fields one ``string.match`` can split."""


@dataclass
class _NamespaceArgs(ScriptArgs):
    base: str
    """The namespace's key prefix, ``tether:{ns}:``."""


@dataclass
class _SessionArgs(_NamespaceArgs):
    session_id: str


@dataclass
class LoadArgs(_SessionArgs):
    """``base`` and ``session_id``: a fork's items may be read through its parents'.
    ``listed``: the same transaction's LRANGE reads the items (see ``_codec.use_transaction``),
    so the script returns the header alone unless the session reads items through a share."""

    last: int | None
    after: int | None
    limit: int | None
    listed: bool = False


@dataclass
class ItemsByKeyArgs(ScriptArgs):
    """The tail: the keys wanted."""

    schema_version: int


@dataclass
class ExistsArgs(ScriptArgs):
    pass


@dataclass
class _NewSessionArgs(_SessionArgs):
    """What the scripts that write a whole new header (create, fork, restore) share. Their
    tail starts with n_fields (name, JSON) header fields, then n_meta metadata pairs."""

    schema_version: int
    store_ttl_ms: int
    nonce: str
    owner_prefix: str
    agent_prefix: str
    status_prefix: str
    expires_at: bytes
    n_fields: int
    n_meta: int


@dataclass
class CreateArgs(_NewSessionArgs):
    """The tail: fields, metadata pairs, (needs timestamp, JSON without its "}") item pairs."""

    n_items: int


@dataclass
class ForkArgs(_NewSessionArgs):
    """The tail: the child's fields, then its metadata pairs."""

    parent_id: str
    at: int


@dataclass
class RestoreArgs(_NewSessionArgs):
    """The tail: fields, metadata pairs, numbered items, (key, index, seq) triples."""

    replace: bool
    updated_at: int
    n_items: int
    expected_version: int | None
    n_keys: int


@dataclass
class CommitArgs(_SessionArgs):
    """The tail: changes, metadata pairs, (needs timestamp, JSON without its "}") item pairs,
    (key, offset)."""

    schema_version: int
    expected_version: int | None
    lease_token: bytes | None
    store_ttl_ms: int
    nonce: str
    mode: str
    n_changes: int
    n_meta: int
    n_items: int
    owner_prefix: str
    agent_prefix: str
    status_prefix: str
    expires_at: bytes | str
    keep_runtime_block: bool
    after: int | None
    n_keys: int


@dataclass
class UpgradeArgs(_SessionArgs):
    """The tail: fields, metadata pairs, numbered items (none when ``n_items`` is -1)."""

    version: int
    stored_schema_version: int
    store_ttl_ms: int
    n_fields: int
    n_meta: int
    n_items: int
    owner_prefix: str
    agent_prefix: str
    status_prefix: str


@dataclass
class DeleteArgs(_SessionArgs):
    schema_version: int
    expected_version: int | None
    lease_token: bytes | None
    force: bool


@dataclass
class ClaimArgs(_SessionArgs):
    schema_version: int
    owner: bytes
    lease_ttl_us: int
    token: bytes
    store_ttl_ms: int


@dataclass
class LeaseArgs(_SessionArgs):
    """renew (``lease_ttl_us``: the new length) or release (``lease_ttl_us`` None)."""

    token: bytes
    lease_ttl_us: int | None
    store_ttl_ms: int
    nonce: str


@dataclass
class ListArgs(_NamespaceArgs):
    """The tail: (metadata key, canonical JSON) pairs that must match."""

    schema_version: int
    which: int
    prefix: str
    upper: str
    lower: str
    want: int
    budget: int
    want_owner: str
    want_agent: str
    want_statuses: str
    n_meta: int


@dataclass
class PurgeArgs(_NamespaceArgs):
    schema_version: int
    resume: str
    budget: int


# --- the scripts -------------------------------------------------------------------------------

_A = TypeVar("_A", bound=ScriptArgs)


def _lua_value(value: str | int | tuple[str, ...]) -> str:
    """A constant as Lua source; only plain names and ints, so nothing needs escaping."""
    if isinstance(value, tuple):
        return "{" + ", ".join(_lua_value(part) for part in value) + "}"
    if isinstance(value, int):
        return str(value)
    if not _SAFE_TEXT.fullmatch(value):
        raise ValueError(f"{value!r} cannot be a Lua constant of the Redis scripts")
    return f"'{value}'"


def _read(name: str) -> str:
    return resources.files(LUA_PACKAGE).joinpath(LUA_FOLDER).joinpath(name).read_text("utf-8")


PRELUDES = ("_core", "_shares", "_index", "_session", "_lease_rules", "_json_member")
"""Every prelude, in an order where each defines what the later ones call (the library's)."""
BINDS: dict[str, tuple[str, ...]] = {
    # NOW from ARG.now, else Redis's TIME: at once for the scripts that write or list (their
    # preludes include _index), only when live() needs it for the others (a load of a session
    # without expiry then makes no TIME call)
    "_core": ("NOW = tonumber(ARG.now)",),
    "_shares": ("BASE = ARG.base",),
    "_index": ("BASE = ARG.base", "NOW = NOW or server_now()"),
    "_session": ("ID = ARG.session_id", "SESSION_KEYS = {H, ITEMS, META, IKEYS, ISEQS}"),
}
"""What a prelude reads per call, bound after the arguments are split: the preludes hold only
functions and constants, so a function library defines them once (see :class:`Library`)."""
_PER_CALL = ("ARG", "NOW", "BASE", "ID", "SESSION_KEYS")
_ALL_KEYS = WRITE_KEYS  # every script's keys are among them


@dataclass(frozen=True)
class LuaScript(Generic[_A]):
    """One script: ``lua/<name>.lua`` after its preludes, its KEYS and its ARGV."""

    name: str
    args: type[_A]
    keys: tuple[str, ...]
    preludes: tuple[str, ...] = ("_core",)

    def _binding(self, keys: str) -> list[str]:
        """The per-call Lua that comes before the script: its KEYS (from ``keys``) by name,
        ARG split from ARGV[1], then what its preludes read (:data:`BINDS`)."""
        names = self.args.names()
        if len(names) > _LUA_MAX_CAPTURES:
            raise RuntimeError(
                f"the Redis script {self.name!r} has more named arguments "
                f"than one Lua pattern can capture ({_LUA_MAX_CAPTURES})"
            )
        # One capture per named field; a text that does not split into exactly that many
        # fields fails here rather than shifting every field after the bad one.
        pattern = "^" + "%z".join(["([^%z]*)"] * len(names)) + "$"
        binds = dict.fromkeys(line for prelude in self.preludes for line in BINDS.get(prelude, ()))
        # The captures go to locals, then into ARG by one table constructor, which sizes the
        # table once (assigning ARG.x one by one into {} rehashed it five times for a commit).
        captured = [f"A{i}" for i in range(1, len(names) + 1)]
        return [
            f"{', '.join(self.keys)} = "
            + ", ".join(f"{keys}[{i}]" for i in range(1, len(self.keys) + 1)),
            f"local {', '.join(captured)} = string.match(ARGV[1] or '', '{pattern}')",
            "ARG = {" + ", ".join(f"{n} = {c}" for n, c in zip(names, captured, strict=True)) + "}",
            f"if A1 == nil then return redis.error_reply("
            f"'tether: the {self.name} script got arguments it cannot split') end",
            *binds,
        ]

    @cached_property
    def body(self) -> str:
        """The script's own Lua (``lua/<name>.lua``), checked against its description."""
        text = _read(f"{self.name}.lua")
        names = self.args.names()
        # A name the Lua reads that the description lacks would be nil at run time, and one it
        # never reads is a stale description: refuse both when the script is first used (the
        # binding names every field, so only the preludes, their binds and the script count).
        read = [_read(f"{prelude}.lua") for prelude in self.preludes]
        read += [line for prelude in self.preludes for line in BINDS.get(prelude, ())]
        used = set(_ARG_NAME.findall("\n".join([*read, text])))
        if used != set(names):
            raise RuntimeError(
                f"the Redis script {self.name!r} and its {self.args.__name__} disagree: "
                f"read but not described {sorted(used - set(names))}, described but not read "
                f"{sorted(set(names) - used)}"
            )
        return text

    @cached_property
    def source(self) -> str:
        """The Lua EVALSHA runs (Redis 6.2, or a server without functions): the constants,
        the binding's locals, the preludes, then the per-call binding and the script."""
        body = self.body
        binding = self._binding("KEYS")
        # The split comes before the preludes, so that a text that cannot be split returns
        # before anything else runs; the preludes' binds after them (NOW needs server_now).
        split = [line for line in binding if not _is_bind(line)]
        binds = [line for line in binding if _is_bind(line)]
        head = [
            *_constant_lines(),
            f"local {', '.join(_PER_CALL)}",
            f"local {', '.join(self.keys)}",
            *split,
        ]
        preludes = "".join(_read(f"{prelude}.lua") for prelude in self.preludes)
        return "\n".join(head) + "\n" + preludes + "\n".join(binds) + "\n" + body


def _is_bind(line: str) -> bool:
    return any(line in lines for lines in BINDS.values())


def _constant_lines() -> list[str]:
    return [
        *(f"local {name} = {_lua_value(value)}" for name, value in _CONSTANTS.items()),
        "local ARG_TAIL = 2  -- ARGV[1] holds the named arguments, the tail starts after",
    ]


_NAME_HOLE = "__TETHER_LIBRARY__"
"""Where the library's name goes in its function names: known once its text is hashed."""


class Library:
    """Every script as one Redis 7 function library (``FUNCTION LOAD`` once, ``FCALL``).

    EVALSHA runs a script's whole text on every call: defining the preludes' ~40 functions
    (closures, upvalues) cost a commit ~7 µs of its ~58 µs of server time (measured on a
    private server, docs/redis.md). A library defines
    them once, when Redis loads it; a call only binds its KEYS and arguments to upvalues and
    runs its script. Redis runs one function at a time, and each call binds every per-call
    value (keys it lacks to nil) before it reads any, so no call sees another's values.

    The library's name carries a hash of its text: a tether whose scripts differ loads a
    library of its own beside the old one, and processes of both versions keep working while
    an upgrade rolls out (``FUNCTION DELETE tether_<hash>`` of an unused one is always safe: a
    store loads what it needs again).
    """

    def __init__(self, scripts: Sequence[LuaScript[Any]]) -> None:
        parts = [
            *_constant_lines(),
            f"local KEYS, ARGV, {', '.join(_PER_CALL)}",
            f"local {', '.join(_ALL_KEYS)}",
            *(_read(f"{prelude}.lua") for prelude in PRELUDES),
        ]
        for script in scripts:
            unknown = set(script.preludes) - set(PRELUDES)
            if unknown:
                raise RuntimeError(
                    f"the Redis script {script.name!r} has unknown preludes {unknown}"
                )
            others = [key for key in _ALL_KEYS if key not in script.keys]
            parts += [
                f"redis.register_function('{_NAME_HOLE}_{script.name}', function(keys, args)",
                "KEYS, ARGV = keys, args",
                f"{', '.join(others)} = nil" if others else "",
                "NOW, BASE, ID, SESSION_KEYS = nil, nil, nil, nil",
                *script._binding("KEYS"),
                script.body,
                "end)",
            ]
        text = "\n".join(parts) + "\n"
        if text.count(_NAME_HOLE) != len(scripts):
            raise RuntimeError(f"a Redis script's Lua holds {_NAME_HOLE!r}")
        self.name = "tether_" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
        self.source = f"#!lua name={self.name}\n" + text.replace(_NAME_HOLE, self.name)
        self._functions = {script.name: f"{self.name}_{script.name}" for script in scripts}

    def function(self, script: str) -> str:
        """The name FCALL calls ``script`` by."""
        return self._functions[script]


_WRITE = ("_core", "_shares", "_index", "_session")
_LEASED = (*_WRITE, "_lease_rules")

LOAD = LuaScript("load", LoadArgs, ("H", "ITEMS"), ("_core", "_shares"))
ITEMS_BY_KEY = LuaScript("items_by_key", ItemsByKeyArgs, ("H", "IKEYS"))
EXISTS = LuaScript("exists", ExistsArgs, ("H",))
CREATE = LuaScript("create", CreateArgs, WRITE_KEYS, _WRITE)
FORK = LuaScript("fork", ForkArgs, WRITE_KEYS, _WRITE)
RESTORE = LuaScript("restore", RestoreArgs, WRITE_KEYS, _WRITE)
COMMIT = LuaScript("commit", CommitArgs, UPDATE_KEYS, (*_LEASED, "_json_member"))
UPGRADE = LuaScript("upgrade", UpgradeArgs, UPDATE_KEYS, _WRITE)
DELETE = LuaScript("delete", DeleteArgs, UPDATE_KEYS, _LEASED)
CLAIM = LuaScript("claim", ClaimArgs, UPDATE_KEYS, _LEASED)
LEASE = LuaScript("lease", LeaseArgs, UPDATE_KEYS, _LEASED)
LIST = LuaScript("list", ListArgs, INDEX_KEYS, ("_core", "_shares", "_index"))
PURGE = LuaScript("purge", PurgeArgs, INDEX_KEYS, ("_core", "_shares", "_index"))

SCRIPTS: tuple[LuaScript[Any], ...] = (
    LOAD,
    ITEMS_BY_KEY,
    EXISTS,
    CREATE,
    FORK,
    RESTORE,
    COMMIT,
    UPGRADE,
    DELETE,
    CLAIM,
    LEASE,
    LIST,
    PURGE,
)


@functools.cache
def library() -> Library:
    """Every script's library, built (and checked) the first time a store needs it."""
    return Library(SCRIPTS)
