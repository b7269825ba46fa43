"""What the inspector's pages show: tether's data turned into plain values for the templates.

Nothing here reads or writes a store, and nothing here makes HTML: the templates do, with
Jinja's autoescape on. What this module adds is what autoescape does not do: every string that
comes from a session goes through :func:`text` (bidi overrides, controls and invisible marks
shown as their escapes, the way the CLI shows them) and is folded when long, so a megabyte
string costs the page a few kilobytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..agent import Review, stored
from ..cli import render
from ..models import HistoryItem, Session

__all__ = ["Folded", "Entry", "entries", "fold", "json_fold", "review_view", "text"]

SHORT = 600
"""Characters of a long content shown before the rest is folded away (a click opens it)."""
LONG = 20_000
"""Characters of a content the page holds at most; the JSON API has the rest."""

# What render.clean escapes, less the line break and the tab: a message keeps its lines here
# (HTML shows them as lines, they cannot move a cursor), the rest is shown as its escape.
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{render._INVISIBLE}]")


def text(value: object) -> str:
    """``value`` as text that is inert on a page: bidi overrides and isolates, controls and
    invisible marks written as their escapes (``\\u202e``), CR LF as one line break."""
    raw = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(render._visible, raw.replace("\r\n", "\n"))


@dataclass(frozen=True)
class Folded:
    """A long text cut for the page: ``head`` always shown, ``rest`` behind a click, and how
    many characters the page does not hold at all (``dropped``)."""

    head: str
    rest: str = ""
    dropped: int = 0

    @property
    def folded(self) -> bool:
        return bool(self.rest) or self.dropped > 0

    @property
    def size(self) -> int:
        return len(self.head) + len(self.rest) + self.dropped


def fold(value: object, *, short: int = SHORT) -> Folded:
    """Clean ``value`` (see :func:`text`) and cut it: ``short`` characters shown, up to
    :data:`LONG` behind a click, the rest left to the JSON API (a megabyte string costs the
    page 20 kB)."""
    raw = value if isinstance(value, str) else str(value)
    dropped = max(0, len(raw) - LONG)
    cleaned = text(raw[:LONG])
    if len(cleaned) <= short and not dropped:
        return Folded(cleaned)
    # cut after a space or line break near the limit, so that no word is split in two
    cut = max(cleaned.rfind(" ", short - 80, short), cleaned.rfind("\n", short - 80, short)) + 1
    cut = cut if cut > 0 else short
    return Folded(cleaned[:cut], cleaned[cut:], dropped)


def json_fold(data: Any, *, short: int = SHORT) -> Folded:
    """Indented JSON of ``data``, folded as :func:`fold` does (the JSON is the CLI's: the
    characters that could reorder text are escapes already)."""
    return fold(render.terminal_json(data), short=short)


def _args(value: Any) -> Folded:
    return fold(value) if isinstance(value, str) else json_fold(value)


@dataclass
class Entry:
    """One row of a session's timeline.

    ``kind`` is what the template draws (``user``, ``assistant``, ``system``, ``tool_call``,
    ``tool_result``, ``reasoning``, ``event``, ``other``); ``label`` is what the row says it is.
    """

    seq: int | None
    at: str
    kind: str
    label: str
    body: Folded | None = None
    tool: str | None = None
    call_id: str | None = None
    detail: Folded | None = None
    error: bool = False
    calls: list[Entry] = field(default_factory=list)


_MESSAGE_ROLES = ("user", "assistant", "system")


def entries(items: Sequence[HistoryItem]) -> list[Entry]:
    """The timeline of a window of history: one entry per item, oldest first.

    The rules are the CLI's (``tether show`` and ``tether inspect``): a framework's item (one
    with a ``type``: OpenAI Agents / Responses items, Google ADK events) reads as
    :func:`tether.agent.stored.framework_entry` makes it; tether's own events as their name and
    data; chat messages as a conversation, an assistant's tool calls under it, a tool's output
    with the name of the call it answers when that call is in the same window. Nothing is
    dropped: an item of an unknown shape is shown as its JSON.
    """
    calls: dict[str, dict[str, Any]] = {}
    return [_entry(item, calls) for item in items]


def _entry(item: HistoryItem, calls: dict[str, dict[str, Any]]) -> Entry:
    seq = item.get("seq")
    at = render.iso(item.get("timestamp"))
    role = item.get("role")
    seq = seq if isinstance(seq, int) else None
    if isinstance(item.get("type"), str) and role != stored.EVENT_ROLE:
        return _framework(seq, at, item, calls)
    rest = {k: v for k, v in item.items() if k not in ("role", "seq", "timestamp", "content")}
    if role == stored.EVENT_ROLE:
        event = str(rest.pop("event", "?"))
        is_error = "error" in event or "fail" in event
        return Entry(
            seq,
            at,
            "event",
            text(event),
            detail=json_fold(rest, short=300) if rest else None,
            error=is_error,
        )
    content = item.get("content")
    body = None if content in (None, "") else _content(content)
    if role == "assistant" and isinstance(item.get("tool_calls"), list):
        # a reply that only calls tools reads as its calls; one with text too, as a message
        kind, label = ("assistant", "assistant") if body else ("tool_call", "tool call")
        entry = Entry(seq, at, kind, label, body=body)
        for call in item["tool_calls"]:
            entry.calls.append(_chat_call(seq, at, call, calls))
        return entry
    if role == "tool":
        call_id = item.get("tool_call_id")
        known = calls.get(str(call_id), {})
        name = item.get("name") or known.get("tool") or "?"
        return Entry(
            seq,
            at,
            "tool_result",
            "tool result",
            body=None if content in (None, "") else _result(content),
            tool=text(name),
            call_id=None if call_id is None else text(call_id),
        )
    if role in _MESSAGE_ROLES:
        return Entry(seq, at, str(role), str(role), body=body)
    # a role tether does not know (a developer message, an application's own item): as data
    return Entry(seq, at, "other", text(role if role is not None else "item"), detail=_data(item))


def _content(content: Any) -> Folded:
    shown = stored.item_text(content)
    return fold(shown) if isinstance(shown, str) else json_fold(shown)


def _result(content: Any) -> Folded:
    """A tool's output: indented when it is a JSON object or array (most are), else as is."""
    if isinstance(content, str) and content[:1] in ("{", "[") and len(content) <= LONG:
        try:
            return json_fold(json.loads(content))
        except ValueError:
            pass
    return _content(content)


def _data(item: Mapping[str, Any]) -> Folded:
    return json_fold({k: v for k, v in item.items() if k not in ("seq", "timestamp")}, short=300)


def _chat_call(seq: int | None, at: str, call: Any, calls: dict[str, dict[str, Any]]) -> Entry:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        return Entry(seq, at, "tool_call", "tool call", detail=json_fold(call, short=300))
    raw = function.get("arguments")
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        arguments = raw  # not JSON (a model's slip, or a hostile item): shown as the text it is
    call_id = str(call.get("id", ""))
    name = str(function.get("name", "?"))
    calls[call_id] = {"tool": name, "arguments": arguments}
    return Entry(
        seq, at, "tool_call", "tool call", tool=text(name), call_id=text(call_id),
        detail=_args(arguments),
    )  # fmt: skip


def _framework(
    seq: int | None, at: str, item: HistoryItem, calls: dict[str, dict[str, Any]]
) -> Entry:
    try:
        entry = stored.framework_entry(item, calls)
    except (TypeError, ValueError, AttributeError):  # a malformed item: shown as its data
        return Entry(seq, at, "other", text(item.get("type")), detail=_data(item))
    kind = str(entry.pop("kind"))
    if kind == "tool_call":
        return Entry(
            seq, at, "tool_call", "tool call", tool=text(entry.get("tool", "?")),
            call_id=text(entry.get("id", "")), detail=_args(entry.get("arguments")),
        )  # fmt: skip
    if kind == "tool_result":
        result = entry.get("result")
        return Entry(
            seq, at, "tool_result", "tool result", tool=text(entry.get("tool", "?")),
            call_id=text(entry.get("id", "")), body=_result(result),
        )  # fmt: skip
    if "text" in entry:
        shown = kind if kind in _MESSAGE_ROLES else "reasoning" if kind == "reasoning" else "other"
        return Entry(seq, at, shown, text(kind), body=_content(entry["text"]))
    rest = {k: v for k, v in entry.items() if k != "id"}
    return Entry(seq, at, "other", text(kind), detail=json_fold(rest, short=300))


# --- reviews -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewView:
    id: str
    session_id: str
    tool: str
    arguments: Folded
    reason: str
    asked: str
    expires: str
    expired: bool
    decision: str | None
    note: str | None
    by: str | None
    answered: str


def review_view(review: Review, now: datetime) -> ReviewView:
    """A review for the page: the call, why it waits, and its answer (or that it expired)."""
    expired = review.decision is None and review.expires_at is not None and review.expires_at <= now
    return ReviewView(
        id=review.id,
        session_id=review.session_id,
        tool=text(review.tool),
        arguments=json_fold(dict(review.arguments), short=400),
        reason=text(review.reason),
        asked=render.iso(review.created_at),
        expires=render.iso(review.expires_at) if review.expires_at else "never",
        expired=expired or review.decision == "expired",
        decision=review.decision,
        note=None if review.note is None else text(review.note),
        by=None if review.by is None else text(review.by),
        answered=render.iso(review.answered_at) if review.answered_at else "",
    )


def runtime_reviews(header: Session, now: datetime) -> list[ReviewView]:
    """The reviews a session's agent runtime holds (open ones and answered, not yet resumed)."""
    reviews = stored.runtime(header).get("reviews") or []
    shown: list[ReviewView] = []
    for data in reviews:
        try:
            shown.append(review_view(Review.from_json(data), now))
        except (KeyError, TypeError, ValueError):
            continue  # not a review tether wrote: the state section shows it as data
    return shown
