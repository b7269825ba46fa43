"""LangGraph thread items as a person reads them, for ``tether show`` / ``replay`` / ``inspect``.

A checkpoint reads ``checkpoint <id> step N (source) parent <id>``, a write ``write <channel>
from task <node>: <value>``, a stored channel value ``<channel> = <value>``, and a LangChain
message inside a value ``user: ...`` / ``ai: ...`` / ``ai: calls name({...})`` /
``tool name: ...``.

The values are the saver's serde bytes (msgpack or JSON, packed as base64, zlib or text: see
``_langgraph_values``; a message list that grew reads ``messages += <the new messages>``, a
delta on an earlier value), written by whoever talks to the graph; a compressed value is
inflated up to a cap, never without one. They are read as plain data only: LangGraph's own
serializer constructs the classes and imports the modules a value names, so it is never
called here. A msgpack extension (a class instance) becomes ``{"module", "class",
"value"}``; nothing is imported or constructed. Reading msgpack needs ``ormsgpack``
(installed with LangGraph); without it a value shows as a short opaque summary. The caller
escapes the text for the terminal.

This module imports no LangGraph: the CLI uses it with or without the extra installed.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from ._langgraph_values import INLINE, base_of, payload

__all__ = ["KINDS", "entry"]

CHECKPOINT = "langgraph.checkpoint"
BLOB = "langgraph.blob"
WRITE = "langgraph.write"
MARK = "langgraph.first_write"
LATE = "langgraph.late_writes"
KINDS = frozenset({CHECKPOINT, BLOB, WRITE, MARK, LATE})
"""The item types of a LangGraph thread (see :mod:`tether.integrations._langgraph_core`)."""

_MAX_DEPTH = 32  # nesting shown; deeper data is summarised
_MAX_PARTS = 50  # list or dict entries shown per value
_MAX_MESSAGES = 10  # the newest messages of a list (a chat's whole history is one value)
_MAX_INFLATE = 64 * 2**20  # bytes a compressed value may expand to when shown (a zip bomb stops)
_OPAQUE = object()
_ROLES = {
    "human": "user",
    "ai": "ai",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "ai",
    "HumanMessageChunk": "user",
}
_CLASS_ROLES = {
    "HumanMessage": "user",
    "AIMessage": "ai",
    "AIMessageChunk": "ai",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "tool",
}


def entry(item: Mapping[str, Any]) -> dict[str, Any]:
    """A replay timeline entry (``kind`` and ``text``) for one LangGraph thread item."""
    kind = item.get("type")
    ns = item.get("ns")
    where = f" in {ns}" if isinstance(ns, str) and ns else ""
    if kind == CHECKPOINT:
        meta = decode(item.get("metadata"))
        meta = meta if isinstance(meta, Mapping) else {}
        text = f"checkpoint {item.get('id')}{where}"
        if "step" in meta:
            text += f" step {_plain(meta['step'])}"
        if meta.get("source") is not None:
            text += f" ({_plain(meta['source'])})"
        parent = item.get("parent")
        text += f" parent {parent}" if parent else " (first)"
        if item.get("rev"):
            text += f" (put again: {item.get('rev')})"
        return {"kind": "checkpoint", "text": text + _inline(item.get("checkpoint"))}
    if kind == WRITE:
        head = f"write {item.get('channel')} from task {_task_name(item.get('task_path'))}"
        return {"kind": "write", "text": f"{head}{where}: {show(item.get('value'))}"}
    if kind == BLOB:
        value: Any = item.get("value")
        # a delta holds the elements its value adds to its snapshot's (see _langgraph_values)
        sign = "+=" if _packed(value) and base_of(value) is not None else "="
        return {"kind": "value", "text": f"{item.get('channel')}{where} {sign} {show(value)}"}
    if kind == MARK:
        return {"kind": "langgraph", "text": f"first write of checkpoint {item.get('checkpoint')}"}
    if kind == LATE:
        keys = item.get("keys")
        many = len(keys) if isinstance(keys, list) else 0
        text = f"{many} late write(s) to checkpoint {item.get('checkpoint')}{where}"
        return {"kind": "langgraph", "text": text}
    return {"kind": str(kind), "text": _plain(dict(item))}


def _inline(packed: Any) -> str:
    """The small channel values a checkpoint keeps in its item (its encoding marked
    ``INLINE``: see ``_langgraph_values.mark_inline``), as ``; channel = value, ...``."""
    if not (_packed(packed) and len(packed) == 3 and packed[2].endswith(INLINE)):
        return ""
    checkpoint = decode(packed)
    kept = checkpoint.get("channel_values") if isinstance(checkpoint, Mapping) else None
    if not isinstance(kept, Mapping) or not kept:
        return ""
    shown = [f"{_plain(ch)} = {_text(v, 1)}" for ch, v in list(kept.items())[:_MAX_PARTS]]
    return "; " + ", ".join(shown)


def _task_name(path: Any) -> str:
    """The node of a task path (``~__pregel_pull, agent`` -> ``agent``)."""
    if not isinstance(path, str) or not path:
        return "?"
    return path.rsplit(",", 1)[-1].strip() or path


def show(packed: Any) -> str:
    """A stored value (``[serde type, base64]``) as text."""
    value = decode(packed)
    if value is _OPAQUE:
        return _opaque(packed)
    return _text(value, 0)


def decode(packed: Any) -> Any:
    """A stored value as plain data (dicts, lists, strings, numbers), or ``_OPAQUE``."""
    if not _packed(packed):
        return _OPAQUE
    kind = packed[0]
    if kind in ("null", "empty"):
        return None if kind == "null" else _Cleared()
    try:
        raw = payload(packed, limit=_MAX_INFLATE)  # capped: a session may be hostile
    except (binascii.Error, ValueError):
        return _OPAQUE
    if kind == "json":
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            return _OPAQUE
    if kind == "msgpack":
        unpack = _msgpack()
        if unpack is None:
            return _OPAQUE
        try:
            return unpack(raw)
        except Exception:  # any malformed value shows as opaque, never raises
            return _OPAQUE
    return _OPAQUE  # bytes, pickle (never read), anything else


def _packed(packed: Any) -> bool:
    """``[type, base64]``, ``[type, data, encoding]``, or a delta ``[type, data, encoding,
    snapshot key]`` (see ``_langgraph_values``)."""
    return (
        isinstance(packed, list)
        and len(packed) in (2, 3, 4)
        and all(isinstance(p, str) for p in packed)
    )


class _Cleared:
    """A channel emptied at a checkpoint (stored as LangGraph's ``empty``)."""


def _opaque(packed: Any) -> str:
    if _packed(packed):
        try:
            size = len(payload(packed, limit=_MAX_INFLATE))
        except binascii.Error:
            return f"<{packed[0]}, not base64>"
        except ValueError:  # corrupt, or expands past the cap
            return f"<{packed[0]}, unreadable>"
        return f"<{packed[0]}, {size} bytes>"
    return "<unreadable value>"


def _msgpack() -> Callable[[bytes], Any] | None:
    try:
        import ormsgpack
    except ImportError:
        return None

    def ext(code: int, data: bytes) -> Any:
        # LangGraph's extensions hold (module, class, value[, method]): kept as data
        inner = ormsgpack.unpackb(data, ext_hook=ext, option=ormsgpack.OPT_NON_STR_KEYS)
        if isinstance(inner, (list, tuple)) and len(inner) >= 3:
            return {"module": inner[0], "class": inner[1], "value": inner[2]}
        return {"ext": code, "value": inner}

    def unpack(raw: bytes) -> Any:
        return ormsgpack.unpackb(raw, ext_hook=ext, option=ormsgpack.OPT_NON_STR_KEYS)

    return unpack


def _message(value: Any) -> tuple[str, Mapping[str, Any]] | None:
    """``(role, fields)`` if ``value`` is a LangChain message (as a msgpack extension, a
    ``message_to_dict`` dict, LangChain's JSON constructor, or its plain fields)."""
    if not isinstance(value, Mapping):
        return None
    fields = value.get("value")
    if "class" in value and isinstance(fields, Mapping):
        role = _CLASS_ROLES.get(str(value["class"]))
        return (role, fields) if role else None
    kwargs = value.get("kwargs")
    ids = value.get("id")
    if value.get("lc") == 1 and isinstance(kwargs, Mapping) and isinstance(ids, list) and ids:
        role = _CLASS_ROLES.get(str(ids[-1]))
        return (role, kwargs) if role else None
    data = value.get("data")
    if isinstance(data, Mapping) and "content" in data:
        role = _ROLES.get(str(value.get("type")))
        return (role, data) if role else None
    if "content" in value:
        role = _ROLES.get(str(value.get("type")))
        return (role, value) if role else None
    return None


def _message_text(role: str, fields: Mapping[str, Any], depth: int) -> str:
    content = fields.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        content = " ".join(t for t in texts if isinstance(t, str)) if texts else content
    text = content if isinstance(content, str) else _text(content, depth + 1)
    calls = fields.get("tool_calls")
    if role == "ai" and isinstance(calls, list) and calls:
        named = []
        for call in calls[:_MAX_PARTS]:
            if isinstance(call, Mapping):
                args = json.dumps(_jsonable(call.get("args"), depth + 1), ensure_ascii=False)
                named.append(f"{_plain(call.get('name', '?'))}({args})")
        text = (f"{text} " if text else "") + "calls " + ", ".join(named)
    if role == "tool":
        return f"tool {_plain(fields.get('name') or '?')}: {text}"
    return f"{role}: {text}"


def _text(value: Any, depth: int) -> str:
    if isinstance(value, _Cleared):
        return "(cleared)"
    if depth > _MAX_DEPTH:
        return "…"
    found = _message(value)
    if found is not None:
        return _message_text(found[0], found[1], depth)
    if isinstance(value, (list, tuple)):
        if value and all(_message(v) is not None for v in value):
            shown = [_text(v, depth + 1) for v in value[-_MAX_MESSAGES:]]
            more = len(value) - len(shown)
            return (f"({more} earlier) | " if more else "") + " | ".join(shown)
        return json.dumps(_jsonable(value, depth), ensure_ascii=False)
    if isinstance(value, Mapping):
        if any(_message(v) is not None or _messages(v) for v in value.values()):
            # a node's update ({"messages": [...]}): the messages read as messages
            parts = list(value.items())[:_MAX_PARTS]
            return "{" + ", ".join(f"{_plain(k)}: {_text(v, depth + 1)}" for k, v in parts) + "}"
        return json.dumps(_jsonable(value, depth), ensure_ascii=False)
    return _plain(value)


def _messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and _message(value[0]) is not None


def _jsonable(value: Any, depth: int) -> Any:
    """Plain JSON data, cut at depth and length (msgpack may hold bytes, non-str keys)."""
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:_MAX_PARTS]
        return {_plain(k): _jsonable(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value[:_MAX_PARTS]]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"
