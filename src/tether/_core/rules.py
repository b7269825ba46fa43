"""The rules of a write, with no I/O: expiry, schema versions, header changes, commits,
``replace_history`` / ``replace_tail`` / ``fork`` ranges and the runtime's ``state["_tether"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal

from ..errors import (
    ConflictError,
    InvalidRequest,
    ReservedStateKey,
    SessionExists,
    SessionNotFound,
)
from ..models import (
    SessionStatus,
)
from ..schema import schema
from .checks import (
    JSON_FIELDS,
    STATUSES,
    Doc,
    check_text,
    check_time,
    json_copy,
    short,
    trusted_copy,
)

CHANGEABLE_FIELDS = frozenset({"owner", "agent", "status", "expires_at", *JSON_FIELDS})


def is_live(doc: Doc, now: int) -> bool:
    expires = doc.get("expires_at")
    return expires is None or expires > now


def needs_upgrade(doc: Doc) -> bool:
    return int(doc["schema_version"]) != schema.current


def is_newer(doc: Doc) -> bool:
    """Whether a newer tether stored this session: this one never deletes or overwrites it."""
    return int(doc["schema_version"]) > schema.current


def check_writable(session_id: str, doc: Doc) -> None:
    """Raise if this tether may not write over the stored session (a newer schema)."""
    schema.check(session_id, int(doc["schema_version"]))


def upgrade_doc(doc: Doc) -> Doc:
    """A copy of ``doc`` brought to the current schema if it is older; else ``doc`` itself."""
    if int(doc["schema_version"]) < schema.current:
        return schema.upgrade_header(dict(doc))
    return doc


def restore_over(
    session_id: str,
    stored: Doc | None,
    now: int,
    *,
    replace: bool = False,
    expected_version: int | None = None,
) -> bool:
    """Whether ``restore`` (or ``create``) must remove the ``stored`` session first; raises if
    it may not write over it. Every store decides with this, under its lock or in its script.

    A session stored by a newer tether is never written over, expired or not
    (:class:`~tether.errors.UnsupportedSchemaVersion`); a live one only with ``replace``
    (else :class:`~tether.errors.SessionExists`). With ``expected_version`` the write is a
    compare-and-replace: the live stored session must be at that version, else
    :class:`ConflictError` (:class:`~tether.errors.SessionNotFound` if there is none), so a
    commit that landed since the caller read it is never overwritten.
    """
    if stored is not None:
        check_writable(session_id, stored)
    live = stored is not None and is_live(stored, now)
    if expected_version is not None:
        if stored is None or not live:
            raise SessionNotFound(session_id)
        if stored["version"] != expected_version:
            raise ConflictError(session_id, expected_version, stored["version"])
    elif stored is not None and live and not replace:
        raise SessionExists(session_id, stored["version"])
    return stored is not None


# --- the agent runtime's block: state["_tether"] --------------------------------------------------
# The turn snapshot and the human reviews live in state["_tether"]. Were it writable like any
# other key, a commit could forge an approval. So the rule is here, once, in the checks every
# store's create and commit run: an application may not set or change the block, and replacing
# ``state`` keeps the stored block as it is. Only code inside ``runtime_writes()`` (the agent
# and the runtime's own actions) writes it. ``restore`` is exempt: it copies an exported session
# exactly, block included (importing a file trusts it as much as its history).

RUNTIME_KEY = "_tether"
_runtime_writes: ContextVar[bool] = ContextVar("tether_runtime_writes", default=False)


class runtime_writes:  # used as a function: ``with runtime_writes():``
    """Internal: the writes inside set ``state["_tether"]`` exactly as given (the runtime's path).

    A context variable, so it holds for this thread or task alone (and for the worker thread
    ``asyncio.to_thread`` runs a store call in), never for a concurrent caller. A class rather
    than a ``contextlib`` generator: a cached turn enters it twice, and the generator's
    machinery cost more than the rest of the check.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _runtime_writes.set(True)

    def __exit__(self, *exc: object) -> None:
        _runtime_writes.reset(self._token)


def check_runtime_block(state: Mapping[str, Any], how: str) -> None:
    """Refuse an application's ``state`` that carries the runtime's block."""
    if RUNTIME_KEY in state and not _runtime_writes.get():
        raise ReservedStateKey(RUNTIME_KEY, how)


def keep_runtime_block(changes: Doc, stored_state: Mapping[str, Any]) -> Doc:
    """``changes`` with an application's new ``state`` keeping the stored runtime block."""
    if "state" not in changes or _runtime_writes.get() or RUNTIME_KEY not in stored_state:
        return changes
    return {**changes, "state": {**changes["state"], RUNTIME_KEY: stored_state[RUNTIME_KEY]}}


def needs_runtime_block(changes: Doc) -> bool:
    """Whether the write of ``changes`` must keep the stored block: an application's new
    ``state``. The Redis and PostgreSQL stores pass this to their one write, which merges the
    stored block into the new state server-side (no read first)."""
    return "state" in changes and not _runtime_writes.get()


def normalize_changes(changes: Mapping[str, Any] | None, *, committed: bool = False) -> Doc:
    """Check header changes and turn them into document values; raise before any I/O.

    ``committed``: a store's commit just accepted these changes (it checked them with this
    function): the JSON values are copied without walking them again to prove they are JSON.
    """
    if changes is None:
        return {}
    if not isinstance(changes, Mapping):
        raise InvalidRequest(
            f"changes must be a dict of header fields or None, not {type(changes).__name__}"
        )
    unknown = set(changes) - CHANGEABLE_FIELDS
    if unknown:
        raise InvalidRequest(
            f"cannot change {sorted(unknown, key=repr)}: a commit may change only "
            f"{sorted(CHANGEABLE_FIELDS)} (history goes in append=, the rest is the store's)"
        )
    out: Doc = {}
    for name, value in changes.items():
        if name in JSON_FIELDS and committed and isinstance(value, dict):
            out[name] = trusted_copy(value)
        elif name in JSON_FIELDS:
            out[name] = json_copy(value, what=name, must_be_object=True)
            if name == "state":
                check_runtime_block(out[name], "a commit cannot set or change it")
        elif name == "status":
            status = value.value if isinstance(value, SessionStatus) else value
            if not isinstance(status, str) or status not in STATUSES:
                raise InvalidRequest(f"status {value!r} is not one of {sorted(STATUSES)}")
            out[name] = status
        elif name == "expires_at":
            out[name] = check_time(name, value)
        else:
            out[name] = check_text(name, value)
    return out


def apply_commit(doc: Doc, changes: Doc, appended: int, now: int) -> Doc:
    """The header document after a commit (a new dict; ``doc`` is not changed)."""
    new = {**doc, **keep_runtime_block(changes, doc["state"])}
    new["version"] = doc["version"] + 1
    new["updated_at"] = now
    new["last_seq"] = doc["last_seq"] + appended
    new["history_len"] = doc["history_len"] + appended
    new["schema_version"] = schema.current
    return new


def apply_replace(doc: Doc, count: int, now: int, changes: Doc | None = None) -> Doc:
    """The header after ``replace_history``: fresh seqs continue after the old ``last_seq``."""
    new = apply_commit(doc, changes or {}, 0, now)
    new["last_seq"] = doc["last_seq"] + count
    new["history_len"] = count
    return new


def items_kept(doc: Doc, seq: object, op: Literal["fork", "replace_tail"]) -> int:
    """How many stored items ``fork(at=seq)`` or ``replace_tail(after=seq)`` keeps: those up to
    ``seq``, which must be a seq from ``first_seq - 1`` (keep none) to ``last_seq`` (keep all).

    One rule for both: each keeps a prefix of the history and raises the same way outside it.
    """
    name = "at" if op == "fork" else "after"
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise InvalidRequest(f"{name} must be a seq (int), not {short(seq)}")
    first = int(doc["last_seq"] - doc["history_len"] + 1)
    last = int(doc["last_seq"])
    if not first - 1 <= seq <= last:
        doing = "fork" if op == "fork" else "replace the items of"
        raise InvalidRequest(
            f"cannot {doing} {doc['id']!r} {name} seq {seq}: its history holds seqs "
            f"{first}..{last}, so {name} must be from {first - 1} to {last}"
        )
    return seq - first + 1


def apply_tail(doc: Doc, changes: Doc, after: int, count: int, now: int) -> Doc:
    """The header after ``replace_tail``: the items after ``after`` replaced by ``count`` new
    ones numbered from ``after + 1`` (the kept items keep their seqs)."""
    kept = items_kept(doc, after, "replace_tail")
    new = apply_commit(doc, changes, 0, now)
    new["last_seq"] = after + count
    new["history_len"] = kept + count
    return new
