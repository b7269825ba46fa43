"""How the ``tether`` command shows things: rich tables on a terminal, plain text otherwise.

Everything here turns tether's data into text or JSON; nothing here reads or writes a store.
Every value that comes from a session (ids, owners, metadata, contents, tool calls, reviews)
reaches the terminal through :func:`clean` (text) or :func:`terminal_json` (JSON): a session's data
is written by whoever talks to the agent, and must never drive the operator's terminal.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text

from ..agent import Replay, Review, stored
from ..models import HistoryItem, Page, Session, SessionHeader

__all__ = [
    "clean",
    "console",
    "count",
    "echo_json",
    "header_rows",
    "inspect_text",
    "item_row",
    "terminal_json",
    "json_time",
    "page_json",
    "print_blocks",
    "print_grid",
    "print_section",
    "print_table",
    "replay_json",
    "review_json",
    "say",
    "timeline_row",
]

_STATUS_STYLES = {
    "new": "cyan",
    "running": "blue",
    "hibernated": "magenta",
    "waiting": "yellow",
    "finished": "green",
    "error": "red",
    "suspended": "dim",
    "archived": "dim",
}
_WRAPPED_COLUMNS = frozenset({"content", "detail", "arguments", "reason", "owner", "agent"})
_MAX_TEXT = 300  # longer message contents are cut in tables; --json shows them whole

# --- what may reach the terminal -----------------------------------------------------------------

# C0 controls (ESC starts the sequences that clear, retitle, recolour or hide text; CR, BS and
# VT move the cursor back over what was printed), DEL, the C1 controls (0x9b is a one-byte
# ESC [), the bidirectional overrides and isolates that reorder text ("Trojan Source"), the
# line and paragraph separators, and the invisible marks (zero-width space, LRM/RLM, BOM).
_INVISIBLE = "\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
# In JSON text, json.dumps already escapes C0 controls inside strings, and a raw newline is
# the indentation's; the rest of the set above must still be escaped.
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_INVISIBLE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def clean(value: object, *, newlines: bool = False) -> str:
    """``value`` as text that cannot act on a terminal: every control, bidi or invisible
    character is shown as its escape (``\\x1b``, ``\\u202e``, ``\\n``). With ``newlines=True``
    line breaks are kept (text whose lines tether made)."""
    text = value if isinstance(value, str) else str(value)
    if newlines:
        return "\n".join(_UNSAFE.sub(_visible, line) for line in text.split("\n"))
    return _UNSAFE.sub(_visible, text)


def say(out: Console, text: str, *, newlines: bool = False) -> None:
    """One line of text that may quote a session's data (with ``newlines=True``, text whose
    line breaks are kept: see :func:`clean`)."""
    out.print(Text(clean(text, newlines=newlines)))


def count(number: float, noun: str) -> str:
    """``1 session``, ``2 sessions``, ``0 items``, ``1.5 days``."""
    shown = f"{number:g}" if isinstance(number, float) else str(number)
    return f"{shown} {noun}{'' if number == 1 else 's'}"


def console() -> Console:
    """A console on the current stdout: rich on a terminal; plain, unwrapped text otherwise."""
    tty = sys.stdout.isatty()
    return Console(
        markup=False,  # session contents are data, never rich markup
        highlight=False,
        emoji=False,
        soft_wrap=not tty,
        width=None if tty else 100_000,
    )


def terminal_json(data: Any) -> str:
    """Indented JSON that is safe on a terminal and still the same data: json.dumps escapes
    controls inside strings, and the characters it leaves raw (DEL, C1, bidi, invisible) are
    written as ``\\uXXXX`` escapes here."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def echo_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts."""
    click.echo(terminal_json(data))


def json_time(moment: datetime | str | None) -> str | None:
    """A time as ``--json`` writes every time: ISO 8601, ``Z`` for UTC (as pydantic writes a
    header's times), microseconds when there are any. Text that is not a time is kept."""
    if moment is None:
        return None
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
        return json_time(parsed)
    text = moment.isoformat()
    return text[:-6] + "Z" if moment.utcoffset() == timedelta(0) else text


def _times(entry: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``entry`` with its tether-made time fields (``keys`` and every ``*_at``) in one form."""
    return {
        key: json_time(value)
        if (key in keys or key.endswith("_at")) and isinstance(value, (str, datetime))
        else value
        for key, value in entry.items()
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return json_time(value)
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def iso(moment: datetime | str | None) -> str:
    """ISO 8601 to the second, for tables (``--json`` keeps the microseconds)."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        try:
            return iso(datetime.fromisoformat(moment.replace("Z", "+00:00")))
        except ValueError:
            return moment
    if moment.utcoffset() == timedelta(0):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat(timespec="seconds")


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return Text(clean(value.plain), style=value.style)
    return Text("-" if value is None else clean(value))


def print_table(
    out: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table: boxed with a bold header on a terminal, plain aligned columns otherwise."""
    table = Table(
        title=None if title is None else clean(title),
        box=box.SIMPLE_HEAD if out.is_terminal else None,
        header_style="bold",
        title_justify="left",
        pad_edge=False,
    )
    for name in columns:
        # ids and times are never wrapped; the text columns give way
        table.add_column(name, overflow="fold", no_wrap=name not in _WRAPPED_COLUMNS)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    _print(out, table)


def print_grid(out: Console, rows: Iterable[tuple[str, Any]]) -> None:
    """Key / value lines, the keys aligned."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, _cell(value))
    _print(out, grid)


def _print(out: Console, table: Table) -> None:
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:  # plain text: no padding after the last column
        out.print(table)
    out.print("\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_blocks(out: Console, blocks: Iterable[tuple[str, Sequence[tuple[str, Any]]]]) -> None:
    """Records one under the other: a title line, then its fields indented."""
    for title, rows in blocks:
        out.print(Text(clean(title), style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column(overflow="fold")
        for key, value in rows:
            grid.add_row("  " + key, _cell(value))
        _print(out, grid)


def print_section(out: Console, title: str, data: Mapping[str, Any]) -> None:
    """A titled JSON object (highlighted on a terminal)."""
    out.print(Text(f"\n{title}", style="bold"))
    if not data:
        out.print("  (empty)")
    elif out.is_terminal:
        out.print(JSONHighlighter()(Text(terminal_json(data))))
    else:
        out.print(Text(terminal_json(data)))


# --- sessions ------------------------------------------------------------------------------------


def header_rows(
    header: SessionHeader, now: datetime, runtime: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """What ``tether show`` says about a session before its state and history.

    ``runtime`` is the agent runtime's part of the state: the turn in progress and its reviews.
    """
    rows: list[tuple[str, Any]] = [
        ("id", header.id),
        ("status", status_text(header.status.value)),
        ("owner", header.owner),
        ("agent", header.agent),
        ("version", header.version),
        ("created", iso(header.created_at)),
        ("updated", iso(header.updated_at)),
    ]
    if header.expires_at is not None:
        rows.append(("expires", iso(header.expires_at)))
    if header.parent_id is not None:
        rows.append(("forked from", f"{header.parent_id} at seq {header.fork_seq}"))
    span = f" (seq {header.first_seq}..{header.last_seq})" if header.history_len else ""
    rows.append(("items", f"{header.history_len}{span}"))
    rows.append(("lease", lease_text(header, now)))
    snapshot = runtime.get("snapshot")
    if snapshot:
        pending = ", ".join(call["name"] for call in snapshot.get("pending", []))
        waits = f", tool calls pending: {pending}" if pending else ""
        rows.append(("turn", f"{snapshot.get('turn')} stopped at step {snapshot['step']}{waits}"))
    reviews = [r for r in runtime.get("reviews", []) if r.get("decision") is None]
    if reviews:
        waiting = f"{len(reviews)} pending (tether reviews --session {header.id})"
        rows.append(("reviews", Text(waiting, style="yellow")))
    result = runtime.get("result")
    if result and not snapshot:
        rows.append(("last turn", _short(result.get("text") or result.get("error"))))
    return rows


def lease_text(header: SessionHeader, now: datetime) -> str:
    if header.lease_owner is None or header.lease_expires_at is None:
        return "none"
    live = header.lease_expires_at > now
    state = "held" if live else "expired"
    return f"{state}: {header.lease_owner} until {iso(header.lease_expires_at)}"


def page_json(page: Page) -> dict[str, Any]:
    """``tether ls --json`` (and the inspector's ``/api/sessions``): one page of headers."""
    return {
        "sessions": [h.model_dump(mode="json") for h in page.sessions],
        "next_cursor": page.next_cursor,
    }


def session_json(session: Session) -> dict[str, Any]:
    data: dict[str, Any] = session.model_dump(mode="json")
    data["history"] = [_times(item, "timestamp") for item in data["history"]]
    return data


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def item_row(item: HistoryItem, calls: dict[str, dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """seq, time, role, what it says: one history item as a table row. A framework's item
    (one with a ``type``) reads as the agent's replay shows it: a call as ``name(arguments)``,
    its output as ``name -> output``, a message or a reasoning summary as its text."""
    if isinstance(item.get("type"), str) and item.get("role") != "tether":
        entry = stored.framework_entry(item, {} if calls is None else calls)
        kind = entry.pop("kind")
        if kind == "tool_call":
            what = f"{entry['tool']}({_short(entry['arguments'])})"
            kind = "call"
        elif kind == "tool_result":
            what = f"{entry.get('tool', '?')} -> {_short(entry.get('result'))}"
            kind = "result"
        elif "text" in entry:
            what = _short(entry["text"])
        else:
            what = _short({k: v for k, v in entry.items() if k != "id"})
        return item.get("seq"), iso(item.get("timestamp")), kind, _short(what)
    role = str(item.get("role"))
    extra = {k: v for k, v in item.items() if k not in ("role", "seq", "timestamp", "content")}
    if role == "tether":
        event = extra.pop("event", "?")
        shown = Text(f"{event} {_short(extra) if extra else ''}".rstrip(), style="dim")
        return item.get("seq"), iso(item.get("timestamp")), Text("event", style="dim"), shown
    content = item.get("content")
    parts = [] if content in (None, "") else [_short(content)]
    if role == "assistant" and item.get("tool_calls"):
        named = [
            f"{c['function']['name']}({c['function']['arguments']})" for c in item["tool_calls"]
        ]
        parts.append("calls " + ", ".join(named))
    elif role == "tool":
        parts.insert(0, f"{item.get('name', '?')} ->")
    return item.get("seq"), iso(item.get("timestamp")), role, _short(" ".join(parts))


# --- agent turns ---------------------------------------------------------------------------------


def review_json(review: Review) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(review, default=_json_default))
    return data


def replay_json(replay: Replay) -> dict[str, Any]:
    return {
        "session_id": replay.session_id,
        "status": replay.status,
        "timeline": [_times(entry, "at") for entry in replay.timeline],
        "journal": [_times(entry, "at") for entry in replay.journal],
        "pending_reviews": [review_json(r) for r in replay.pending_reviews],
        "answered_reviews": [review_json(r) for r in replay.answered_reviews],
        "result": dict(replay.result) if replay.result is not None else None,
    }


def review_rows(review: Review) -> list[tuple[str, Any]]:
    """What ``tether reviews`` says about one review: the call, why, when, and who answered."""
    rows: list[tuple[str, Any]] = [
        ("call", f"{review.tool}({json.dumps(dict(review.arguments), ensure_ascii=False)})"),
        ("reason", review.reason),
        ("asked", iso(review.created_at)),
        ("expires", iso(review.expires_at) if review.expires_at else "never"),
    ]
    if review.decision is not None:
        why = f" ({review.note})" if review.note else ""
        rows.append(("answered", f"{review.decision}{why} by {review.by or '?'}"))
        rows.append(("answered at", iso(review.answered_at)))
        rows.append(("next", "tether resume runs the turn on"))
    return rows


def inspect_text(replay: Replay) -> str:
    """What ``tether inspect`` prints: the agent's plain-text replay, one line per entry, of a
    copy of ``replay`` whose every string was :func:`clean`-ed (a message's own line breaks
    show as ``\\n``, so no value can start a line that looks like tether's)."""
    return clean(stored.render(_cleaned(replay)), newlines=True)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {_cleaned(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cleaned(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        changes = {f.name: _cleaned(getattr(value, f.name)) for f in fields if f.init}
        return dataclasses.replace(value, **changes)
    return value


def timeline_row(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """seq, time, kind, detail: one replay timeline entry as a table row."""
    kind = str(entry["kind"])
    if kind in ("user", "assistant", "system"):
        detail = _short(entry.get("text"))
    elif kind == "tool_call":
        detail = f"{entry['tool']}({json.dumps(entry['arguments'], ensure_ascii=False)})"
    elif kind == "tool_result":
        detail = f"{entry.get('tool', '?')} -> {_short(entry.get('result'))}"
    else:
        rest = {k: v for k, v in entry.items() if k not in ("seq", "at", "kind")}
        if list(rest) == ["text"] and isinstance(rest["text"], str):
            detail = _short(rest["text"])  # a framework's entry said as text (LangGraph's)
        else:
            detail = _short(rest) if rest else ""
    return entry.get("seq"), iso(entry.get("at")), kind, detail
