"""The data that flows between a turn, its model and its tools (plain, JSON-friendly, no I/O).

A *model* is any callable ``model(request: ModelRequest) -> ModelReply`` (or an awaitable of
one, for the async runtime). A *tool* is a Python callable wrapped in :class:`Tool` with a
JSON-schema description and a rerun policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "Model",
    "ModelReply",
    "ModelRequest",
    "Rerun",
    "ToolCall",
    "ToolSpec",
]


class Rerun(str, Enum):
    """What running a tool again means, which decides what resume may do after a crash."""

    PURE = "pure"
    """No side effects: run it again freely."""
    IDEMPOTENT = "idempotent"
    """Side effects, but running it twice with the same arguments equals running it once."""
    ONCE = "once"
    """Must never run twice. If a crash leaves it unknown whether it ran, resume asks a human."""


@dataclass(frozen=True)
class ToolCall:
    """A model asking for one tool to run."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    def to_message(self) -> dict[str, Any]:
        """The OpenAI chat-completions shape of this call (as stored in history)."""
        from .. import _json

        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": _json.dumps(dict(self.arguments)).decode(),
            },
        }


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about a tool: its name, description and JSON-schema parameters."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True)
class ModelRequest:
    """Everything a model call needs: the messages (chat-completions dicts), tools, options."""

    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    options: Mapping[str, Any] = field(default_factory=dict)
    """The session's options: ``model``, ``system_prompt``, ``temperature``, ..."""


@dataclass(frozen=True)
class ModelReply:
    """A model's answer: text, tool calls, or both; token usage when the model reports it."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Mapping[str, int] | None = None


Model = Callable[[ModelRequest], "ModelReply | Awaitable[ModelReply]"]
