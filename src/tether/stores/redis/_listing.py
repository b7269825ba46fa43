"""The Redis store's listings (no I/O): which index a query reads between which bounds, and
the page its rows make."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ... import _core
from ...errors import (
    TetherError,
)
from ...models import Page, SessionHeader
from ...schema import schema
from . import _scripts as lua
from ._codec import as_text, decode_header
from ._keys import MAX_STAMP, pad, prefix_of

log = logging.getLogger("tether.stores.redis")

# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPlan:
    """Which index a listing reads, between which lex bounds, and what else must match."""

    which: int
    prefix: str
    upper: str
    lower: str
    want_owner: str
    want_agent: str
    want_statuses: str
    metadata: tuple[tuple[str, str], ...]

    def args(self, upper: str, want: int, budget: int, now: str, base: str) -> lua.ListArgs:
        return lua.ListArgs(
            now=now,
            base=base,
            schema_version=schema.current,
            which=self.which,
            prefix=self.prefix,
            upper=upper,
            lower=self.lower,
            want=want,
            budget=budget,
            want_owner=self.want_owner,
            want_agent=self.want_agent,
            want_statuses=self.want_statuses,
            n_meta=len(self.metadata),
            tail=[part for pair in self.metadata for part in pair],
        )


def list_plan(query: _core.ListQuery) -> ListPlan | None:
    """The plan for ``query``, or None when no session can match (empty time range)."""
    if query.owner is not None:
        which, prefix = 1, prefix_of(query.owner)
    elif query.agent is not None:
        which, prefix = 2, prefix_of(query.agent)
    elif query.statuses is not None and len(query.statuses) == 1:
        which, prefix = 3, next(iter(query.statuses)) + ":"
    else:
        which, prefix = 0, ""
    upper = prefix + ";"  # ';' sorts right after ':' and every digit: the end of this prefix
    if query.updated_before is not None:
        if query.updated_before <= 0:
            return None
        if query.updated_before <= MAX_STAMP:
            upper = min(upper, prefix + pad(query.updated_before))
    if query.cursor is not None:
        stamp, last_id = query.cursor
        if stamp < 0:
            return None
        if stamp <= MAX_STAMP:
            upper = min(upper, prefix + pad(stamp) + ":" + last_id)
    lower = "[" + prefix
    if query.updated_after is not None and query.updated_after >= 0:
        if query.updated_after >= MAX_STAMP:
            return None
        lower = "(" + prefix + pad(query.updated_after) + ";"
    statuses = (
        "*"
        if query.statuses is None
        else "|" + "|".join(status + ":" for status in sorted(query.statuses)) + "|"
    )
    return ListPlan(
        which,
        prefix,
        "(" + upper,
        lower,
        want_owner="*" if query.owner is None else prefix_of(query.owner),
        want_agent="*" if query.agent is None else prefix_of(query.agent),
        want_statuses=statuses,
        metadata=tuple(query.metadata),
    )


def list_rows(reply: Any) -> tuple[list[tuple[str, bytes | str]], str]:
    """(member, header JSON) pairs found, and where to resume ("" when done)."""
    flat, resume = reply
    rows = [(as_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
    return rows, as_text(resume)


def purged(reply: Any) -> tuple[int, str]:
    removed, resume = reply
    return int(removed), as_text(resume)


def list_page(rows: list[tuple[str, bytes | str]], limit: int, prefix: str) -> Page:
    headers: list[SessionHeader] = []
    cut = len(prefix)
    for member, raw in rows[:limit]:
        session_id = member[cut + 17 :]
        try:
            doc = decode_header(session_id, raw)
            headers.append(_core.listed_header(doc))
        except TetherError as exc:  # one bad session must not hide the others
            log.warning("skipping session %r in listing: %s", session_id, exc)
    next_cursor = None
    if len(rows) > limit:
        member = rows[limit - 1][0]
        next_cursor = _core.encode_cursor(int(member[cut : cut + 16]), member[cut + 17 :])
    return Page(sessions=headers, next_cursor=next_cursor)
