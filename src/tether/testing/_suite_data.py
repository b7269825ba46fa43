"""What the conformance suite's clauses store: plain items, and the items a framework keeps
(shared by the core clauses and the ability classes, sync and async)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["FRAMEWORK_ITEMS", "NESTED", "UNICODE", "future", "items", "past"]

UNICODE = 'héllo wörld ✓ 日本語 עברית 🙂 \u0000 nul and \\ backslash " quote'
NESTED = {"a": [1, 2.5, {"b": None, "c": [True, False]}], "d": {"e": {"f": "g"}}, "n": -(2**63)}

FRAMEWORK_ITEMS: list[dict[str, Any]] = [
    # Responses-API items: a type and no role; a framework replays them to its model as they are
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
    {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"o": 1}'},
    {"type": "function_call_output", "call_id": "c1", "output": '{"ok": true}'},
    # keys tether uses itself, kept as the item's own (an event's float timestamp, say)
    {"seq": "mine", "timestamp": 1712345678.25, "key": "k", "item": {"nested": True}},
    {},
]


def items(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{prefix}{i}"}
        for i in range(count)
    ]


def past() -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=5)


def future() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=1)
