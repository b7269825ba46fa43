"""The names of a LangGraph thread's session (see :mod:`tether.integrations._langgraph_core`
for its layout): the item types, the item keys, and the header's ``state[STATE_KEY]`` read."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .._core import construct_trusted
from ..ids import encode_external_id
from ..models import Session, SessionHeader

AGENT = "langgraph"
STATE_KEY = "langgraph"
CHECKPOINT = "langgraph.checkpoint"
BLOB = "langgraph.blob"
WRITE = "langgraph.write"
MARK = "langgraph.first_write"
LATE = "langgraph.late_writes"
_MAX_KEY = 256
EARLY_NOTE = "langgraph.early_writes"
_HEADER_FIELDS = tuple(SessionHeader.model_fields)


def header_only(session: Session) -> Session:
    """``session`` without its items (what the header cache keeps)."""
    if not session.history:
        return session
    # every field given, set up directly (``construct_trusted``): pydantic's
    # ``model_construct`` walks each field's defaults and aliases, ~6x the time, on every
    # head read
    fields = {name: getattr(session, name) for name in _HEADER_FIELDS}
    fields["history"] = []
    return construct_trusted(Session, fields)


def tag(header: Session) -> tuple[Any, int]:
    """What a snapshot's key is valid under: the session's creation and first seq. A thread
    deleted and made again, or rewritten by ``prune`` / ``delete_for_runs`` (new seqs), no
    longer holds the snapshots this process remembers, and its header says so."""
    return (header.created_at, header.first_seq)


def session_id(thread_id: str) -> str:
    return encode_external_id(str(thread_id))


def key(kind: str, *parts: str | int) -> str:
    """An item key: readable, unambiguous (JSON), a digest past tether's 256 characters."""
    texts = [str(p) for p in parts]
    bare = "".join(texts)
    if texts and bare.isascii() and bare.isprintable() and '"' not in bare and "\\" not in bare:
        # nothing to escape: the JSON that json.dumps writes, without its encoder (every
        # saver call makes several keys)
        text = kind + '["' + '","'.join(texts) + '"]'
    else:
        text = kind + json.dumps(texts, separators=(",", ":"))
    if len(text) <= _MAX_KEY:
        return text
    import hashlib

    return kind + "#" + hashlib.sha256(text.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _state(header: Session) -> dict[str, Any]:
    raw = header.state.get(STATE_KEY)
    return dict(raw) if isinstance(raw, dict) else {"heads": {}}


def _heads(header: Session) -> dict[str, str]:
    heads = _state(header).get("heads")
    return dict(heads) if isinstance(heads, dict) else {}


def state_of(header: Session) -> dict[str, Any]:
    return _state(header)


def heads_of(header: Session) -> dict[str, str]:
    return _heads(header)


def order_of(header: Session) -> tuple[list[str], bool] | None:
    """The order flags ``(unordered namespaces, mixed)``; None for a thread that predates
    them (its order is unknown)."""
    order = _state(header).get("order")
    if not isinstance(order, dict):
        return None
    unordered = order.get("unordered")
    return (list(unordered) if isinstance(unordered, list) else [], bool(order.get("mixed")))
