"""Listings, with no I/O: filters, order (``updated_at``, then ``id``, descending), cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import _json
from .._ids import validate_session_id
from ..errors import (
    InvalidRequest,
)
from ..models import (
    Page,
    SessionStatus,
)
from .checks import (
    DEFAULT_PAGE_SIZE,
    MAX_MICROS,
    MAX_PAGE_SIZE,
    MIN_MICROS,
    STATUSES,
    Doc,
    bound_micros,
    check_text,
    short,
)
from .headers import listed_headers
from .rules import is_live

# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """A checked ``list`` request. Order: ``updated_at`` descending, then ``id`` descending."""

    owner: str | None = None
    agent: str | None = None
    statuses: frozenset[str] | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """(key, canonical JSON of the value) pairs that must all match."""
    updated_after: int | None = None
    updated_before: int | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: tuple[int, str] | None = None
    """(updated_at, id) of the last session of the previous page."""

    def matches(self, doc: Doc, now: int) -> bool:
        if not is_live(doc, now):
            return False
        if self.owner is not None and doc["owner"] != self.owner:
            return False
        if self.agent is not None and doc["agent"] != self.agent:
            return False
        if self.statuses is not None and doc["status"] not in self.statuses:
            return False
        updated = doc["updated_at"]
        if self.updated_after is not None and updated <= self.updated_after:
            return False
        if self.updated_before is not None and updated >= self.updated_before:
            return False
        if self.cursor is not None and (updated, doc["id"]) >= self.cursor:
            return False
        meta = doc["metadata"]
        return all(
            key in meta and _json.canonical(meta[key]) == value for key, value in self.metadata
        )

    def page(self, docs: Iterable[Doc], now: int) -> Page:
        """Filter, order and cut a page from documents held in memory (memory and file stores)."""
        chosen = sorted(
            (d for d in docs if self.matches(d, now)),
            key=lambda d: (d["updated_at"], d["id"]),
            reverse=True,
        )[: self.limit + 1]
        headers = listed_headers(chosen[: self.limit])
        if len(chosen) <= self.limit:
            return Page(sessions=headers, next_cursor=None)
        # the cursor is the page's last document, even one that could not be shown
        tail = chosen[self.limit - 1]
        return Page(sessions=headers, next_cursor=encode_cursor(tail["updated_at"], tail["id"]))


def encode_cursor(updated_at: int, session_id: str) -> str:
    raw = _json.dumps([updated_at, session_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    if not isinstance(cursor, str):
        raise InvalidRequest(f"cursor must be the str a previous page returned, not {cursor!r}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, session_id = _json.loads(raw)
        if not isinstance(updated_at, int) or isinstance(updated_at, bool):
            raise ValueError("bad timestamp")
        if not MIN_MICROS <= updated_at <= MAX_MICROS:  # no stored session is outside
            raise ValueError("timestamp out of range")
        return updated_at, validate_session_id(session_id)
    except (ValueError, TypeError, binascii.Error, _json.JSONDecodeError) as exc:
        raise InvalidRequest(
            f"cursor {cursor[:40]!r} is not a cursor this store returned; pass the "
            "next_cursor of a previous page unchanged, or no cursor for the first page"
        ) from exc
    except Exception as exc:  # InvalidSessionId: the cursor was tampered with
        raise InvalidRequest(f"cursor {cursor[:40]!r} is not valid ({exc})") from exc


def build_list_query(
    *,
    owner: str | None = None,
    agent: str | None = None,
    status: str | SessionStatus | Collection[str | SessionStatus] | None = None,
    metadata: Mapping[str, Any] | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> ListQuery:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be an int from 1 to {MAX_PAGE_SIZE}, not {short(limit)}")
    check_text("owner", owner)
    check_text("agent", agent)
    statuses: frozenset[str] | None = None
    if status is not None:
        if isinstance(status, (str, SessionStatus)):
            raw: list[object] = [status]
        elif isinstance(status, Collection):
            raw = list(status)
        else:
            raise InvalidRequest(f"status must be a status or a list of them, not {status!r}")
        values = [s.value if isinstance(s, SessionStatus) else s for s in raw]
        bad = [v for v in values if not isinstance(v, str) or v not in STATUSES]
        if bad or not values:
            raise InvalidRequest(
                f"status {bad or '[]'!r} is not a status; use one or several of "
                f"{sorted(STATUSES)}, or None for any status"
            )
        statuses = frozenset(str(v) for v in values)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequest(f"metadata must be a dict of key: value or None, not {metadata!r}")
    pairs: list[tuple[str, str]] = []
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise InvalidRequest(f"metadata filter keys must be str, not {key!r}")
        pairs.append((key, _json.canonical(value, what=f"metadata filter {key!r}")))
        _json.dumps(key, what="a metadata filter key")  # valid Unicode, as stored keys are
    after = bound_micros("updated_after", updated_after)
    before = bound_micros("updated_before", updated_before)
    return ListQuery(
        owner=owner,
        agent=agent,
        statuses=statuses,
        metadata=tuple(sorted(pairs)),
        updated_after=after,
        updated_before=before,
        limit=limit,
        cursor=None if cursor is None else decode_cursor(cursor),
    )


def metadata_index(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, canonical value) for every top-level metadata key: what a store indexes."""
    return [(key, _json.canonical(value)) for key, value in metadata.items()]
