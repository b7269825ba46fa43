"""Agent turns on durable sessions: run / chat, tools, checkpoints, hibernate and resume,
human review, replay.

``Agent`` (sync) and ``AsyncAgent`` (async) run turns on any store; ``ScriptedModel`` is a
deterministic model for tests and demos; ``tool`` turns a Python function into a tool.
"""

from ._turn import Hibernation, Replay, Review, TurnResult
from .agent_async import AsyncAgent
from .agent_sync import Agent
from .models import AsyncOpenAIChatModel, AsyncScriptedModel, OpenAIChatModel, ScriptedModel
from .tools import Tool, ToolArgumentError, schema_from_signature, tool, tools_by_name
from .types import Model, ModelReply, ModelRequest, Rerun, ToolCall, ToolSpec

__all__ = [
    "Agent",
    "AsyncAgent",
    "AsyncOpenAIChatModel",
    "AsyncScriptedModel",
    "Hibernation",
    "Model",
    "ModelReply",
    "OpenAIChatModel",
    "ModelRequest",
    "Replay",
    "Rerun",
    "Review",
    "ScriptedModel",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolSpec",
    "TurnResult",
    "schema_from_signature",
    "tool",
    "tools_by_name",
]
