"""The rules of an agent turn, with no I/O: what the model sees, what is stored, what replay shows.

Where a turn's data lives:

* **history** (append-only): the user message, each assistant reply (with its tool calls), each
  tool result, and *events* (``{"role": "tether", "event": ...}``): turn started / finished,
  checkpoints, reviews asked and answered, tool runs, errors. Events are never sent to the
  model; they make replay a plain read of the history.
* **state["_tether"]** (replaced on each commit, small): the *snapshot* of a turn in progress
  (its step, the tool calls still to resolve, the ``once`` tools started) and the open reviews.
  The key is reserved for the agent runtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import _json
from .._core.checks import trusted_copy
from .._time import from_micros, to_micros
from ..errors import ConfigurationError, InvalidRequest, InvalidToken, ModelError
from ..integrations import _langgraph_view
from ..models import HistoryItem, Session, SessionHeader
from .types import Model, ModelReply, ModelRequest, ToolCall

RESERVED = "_tether"
EVENT_ROLE = "tether"
CHECKPOINTS = frozenset({"none", "after_prompt", "after_each_tool"})


# what the model sees (the messages built from the history): ._messages


USER_KEYS = frozenset({"role", "content", "name"})


def user_item(message: str | Mapping[str, Any]) -> HistoryItem:
    """The user message a turn starts with; nothing else may be sent as one.

    Any other role would let a caller write the runtime's own records (a ``tether`` event such
    as a fake ``review_approved``) or a ``system`` / ``tool`` message into the history.
    """
    if isinstance(message, str):
        return {"role": "user", "content": message}
    if not isinstance(message, Mapping):
        raise InvalidRequest(
            f"a message is a str or a user message dict, not a {type(message).__name__}"
        )
    if message.get("role") != "user":
        raise InvalidRequest(
            f"run() takes a user message, not role {message.get('role')!r}: pass the text, or "
            "{'role': 'user', 'content': ...}. Set a system prompt with "
            "ChangeOptions(system_prompt=...)"
        )
    extra = sorted(set(message) - USER_KEYS)
    if extra:
        raise InvalidRequest(
            f"a user message has only the keys {sorted(USER_KEYS)}; remove {extra}"
        )
    content = message.get("content")
    if not isinstance(content, (str, list)):
        raise InvalidRequest("a user message needs 'content': a str or a list of content parts")
    return dict(message)


def assistant_item(reply: ModelReply) -> HistoryItem:
    item: HistoryItem = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        item["tool_calls"] = [call.to_message() for call in reply.tool_calls]
    return item


def tool_result_item(call: ToolCall, content: object) -> HistoryItem:
    text = (
        content if isinstance(content, str) else _json.dumps(content, what="tool result").decode()
    )
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text}


def event(kind: str, **data: Any) -> HistoryItem:
    return {"role": EVENT_ROLE, "event": kind, **data}


def call_to_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}


def call_from_json(data: Mapping[str, Any]) -> ToolCall:
    return ToolCall(id=data["id"], name=data["name"], arguments=data["arguments"])


def call_model_sync(llm: Model, request: ModelRequest) -> ModelReply:
    reply = llm(request)
    if inspect.isawaitable(reply):
        close = getattr(reply, "close", None)
        if close is not None:
            close()
        raise TypeError("this model is async: use the async Agent (AsyncAgent)")
    return _checked_reply(reply)


async def call_model(llm: Model, request: ModelRequest) -> ModelReply:
    reply = llm(request)
    if inspect.isawaitable(reply):
        reply = await _await(reply)
    return _checked_reply(reply)


async def _await(awaitable: Awaitable[ModelReply]) -> ModelReply:
    return await awaitable


def _checked_reply(reply: object) -> ModelReply:
    if isinstance(reply, str):
        return ModelReply(text=reply)
    if not isinstance(reply, ModelReply):
        raise ModelError(f"a model must return a ModelReply (or str), not {type(reply).__name__}")
    return reply


# --- runtime state: the snapshot and the reviews -------------------------------------------------


def runtime(session: Session, *, trusted: bool = False) -> dict[str, Any]:
    """The reserved runtime part of the session's state (a copy). ``trusted``: the state is
    as a store returned it (checked as JSON when written), copied without checking it again."""
    data = session.state.get(RESERVED)
    if not isinstance(data, dict):
        return {}
    copied: dict[str, Any] = trusted_copy(data) if trusted else _json.loads(_json.dumps(data))
    return copied


def state_with(session_state: Mapping[str, Any], rt: Mapping[str, Any]) -> dict[str, Any]:
    """The session's state with its runtime part replaced (dropped when empty)."""
    state = {k: v for k, v in session_state.items() if k != RESERVED}
    kept = {k: v for k, v in rt.items() if v not in (None, [], {})}
    if kept:
        state[RESERVED] = kept
    return state


def new_snapshot(turn_id: str, step: str, checkpoint: str, tools: list[str]) -> dict[str, Any]:
    """Where a turn stands: everything else it needs (messages, options) is on the session.

    Never in-flight or unserializable objects: the tool *names* it may call, not the tools.
    """
    return {
        "turn": turn_id,
        "step": step,
        "pending": [],
        "started": [],
        "checkpoint": checkpoint,
        "tools": tools,
    }


# --- reviews -------------------------------------------------------------------------------------


def review_id(session_id: str) -> str:
    """Review ids carry their session id (ids never contain '/'), so an answer finds it."""
    return f"{session_id}/rv_{secrets.token_hex(6)}"


def split_review_id(review: str) -> tuple[str, str]:
    if not isinstance(review, str) or "/" not in review:
        raise InvalidRequest(f"{review!r} is not a review id (they look like 'session/rv_...')")
    session_id, _, _ = review.partition("/")
    return session_id, review


def new_review(
    session_id: str, call: ToolCall, reason: str, now: datetime, ttl: float | None
) -> dict[str, Any]:
    created = to_micros(now)
    return {
        "id": review_id(session_id),
        "session_id": session_id,
        "call": call_to_json(call),
        "tool": call.name,
        "arguments": dict(call.arguments),
        "reason": reason,
        "created_at": created,
        "expires_at": None if ttl is None else created + int(ttl * 1_000_000),
        "decision": None,
        "note": None,
        "by": None,
        "answered_at": None,
    }


@dataclass(frozen=True)
class Review:
    """A tool call waiting for a human: approve it or deny it, then resume the session."""

    id: str
    session_id: str
    tool: str
    arguments: Mapping[str, Any]
    reason: str
    created_at: datetime
    expires_at: datetime | None
    decision: str | None = None
    """``approved``, ``denied`` or ``expired`` once answered; ``None`` while open."""
    note: str | None = None
    """The reason given with a denial."""
    by: str | None = None
    """Who answered (``approve(..., by=)``; by default the OS user)."""
    answered_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Review:
        expires = data.get("expires_at")
        answered = data.get("answered_at")
        return cls(
            id=data["id"],
            session_id=data["session_id"],
            tool=data["tool"],
            arguments=data["arguments"],
            reason=data["reason"],
            created_at=from_micros(data["created_at"]),
            expires_at=None if expires is None else from_micros(expires),
            decision=data.get("decision"),
            note=data.get("note"),
            by=data.get("by"),
            answered_at=None if answered is None else from_micros(answered),
        )


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnResult:
    """A finished turn: the final text, what the turn added, its events, token usage."""

    session_id: str
    text: str | None
    items: list[HistoryItem]
    events: list[HistoryItem]
    usage: dict[str, int] = field(default_factory=dict)
    status: str = "finished"


@dataclass(frozen=True)
class Hibernation:
    """A turn that stopped at a safe point; ``resume`` continues it (in any process).

    ``status`` is ``hibernated`` (a checkpoint) or ``waiting`` (a human must answer ``reviews``).
    """

    session_id: str
    status: str
    snapshot: Mapping[str, Any]
    reviews: list[Review] = field(default_factory=list)


def add_usage(total: dict[str, int], usage: Mapping[str, int] | None) -> None:
    for key, value in (usage or {}).items():
        total[key] = total.get(key, 0) + int(value)


# --- signed snapshots ----------------------------------------------------------------------------

MIN_KEY_BYTES = 32
_TOKEN_CONTEXT = b"tether-snapshot-token-v1."


def check_key(secret: object) -> bytes:
    """The signing key: bytes, at least 32 of them (HMAC-SHA256's own strength)."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < MIN_KEY_BYTES:
        size = len(secret) if isinstance(secret, (bytes, bytearray)) else type(secret).__name__
        raise ConfigurationError(
            f"secret= must be bytes of at least {MIN_KEY_BYTES} (got {size}); make one with "
            "secrets.token_bytes(32) and keep it out of the code"
        )
    return bytes(secret)


def key_id(secret: bytes) -> str:
    """A public name for a key (a hash of it), so a token says which key signed it."""
    return hashlib.sha256(b"tether-key-id." + secret).hexdigest()[:16]


def sign_snapshot(
    secret: bytes, session: SessionHeader, snapshot: Mapping[str, Any], now: datetime, ttl: float
) -> str:
    """A token carrying a snapshot out of the store, signed with HMAC-SHA256.

    It binds the session id, its version and created_at (a session deleted and made again is
    another session), the key id and an expiry, so an old token does not verify forever.
    """
    issued = to_micros(now)
    claims = {
        "kid": key_id(secret),
        "session": session.id,
        "version": session.version,
        "created_at": None if session.created_at is None else to_micros(session.created_at),
        "iat": issued,
        "exp": issued + int(ttl * 1_000_000),
        "snapshot": snapshot,
    }
    body = base64.urlsafe_b64encode(_json.dumps(claims, what="snapshot token"))
    mac = hmac.new(secret, _TOKEN_CONTEXT + body, hashlib.sha256).hexdigest()
    return f"{body.decode()}.{mac}"


def verify_snapshot(secret: bytes, token: object, now: datetime) -> dict[str, Any]:
    """The claims of a token made by :func:`sign_snapshot`; :class:`InvalidToken` otherwise.

    Any input, however hostile (not a str, not ASCII, not base64, not JSON, wrong fields),
    raises :class:`InvalidToken`, never a ``TypeError`` or ``AttributeError``.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"a token is a str, not a {type(token).__name__}")
    body, _, mac = token.rpartition(".")
    if not body or len(mac) != 64 or not token.isascii():
        raise InvalidToken("it is not a snapshot token (body.signature)")
    expected = hmac.new(secret, _TOKEN_CONTEXT + body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise InvalidToken("the signature does not match: altered, or signed with another key")
    try:
        claims = _json.loads(base64.urlsafe_b64decode(body.encode()))
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise InvalidToken(f"its body cannot be read ({type(exc).__name__})") from None
    fields = {"kid": str, "session": str, "version": int, "iat": int, "exp": int, "snapshot": dict}
    if not isinstance(claims, dict) or not all(
        isinstance(claims.get(k), t) for k, t in fields.items()
    ):
        raise InvalidToken("its body is not a snapshot token's")
    if claims["kid"] != key_id(secret):
        raise InvalidToken("it was signed with another key")
    if claims["exp"] <= to_micros(now):
        raise InvalidToken(f"it expired at {from_micros(claims['exp']).isoformat()}")
    return claims


def check_token_session(claims: Mapping[str, Any], session: SessionHeader) -> None:
    """Refuse a token for another session, or one made before the session moved on."""
    created = None if session.created_at is None else to_micros(session.created_at)
    if claims["session"] != session.id or claims.get("created_at") != created:
        raise InvalidToken(f"it was made for another session than {session.id!r}")
    if claims["version"] != session.version:
        raise InvalidToken(
            f"it was made at version {claims['version']} of {session.id!r}, which is now at "
            f"version {session.version}"
        )


# --- errors, as stored ----------------------------------------------------------------------------


def stored_error(exc: BaseException) -> str:
    """What a failed model call leaves in the session: the kind of failure, never its text.

    The exception's own message can hold the server's URL (with credentials in it), the raw
    body of an HTTP error, or a provider's internals; the session keeps only what kind of
    failure it was. The caller gets the exception itself, message and all.
    """
    if isinstance(exc, ModelError):
        kind = exc.kind or "failed"
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        return f"model call {kind}{status}"
    return f"model call failed: {type(exc).__name__}"


# --- replay: a projection of what a session already knows ----------------------------------------


@dataclass(frozen=True)
class Replay:
    """What happened, in order, from the stored data alone: no model or tool is called."""

    session_id: str
    status: str
    timeline: list[dict[str, Any]]
    journal: list[dict[str, Any]]
    pending_reviews: list[Review]
    result: Mapping[str, Any] | None
    answered_reviews: list[Review] = field(default_factory=list)
    """Reviews answered (who, when) whose turn has not been resumed yet."""


def item_text(content: Any) -> Any:
    """A message's content as text where it is text: a str as it is, a list of parts (a
    Responses-API message, a chat message with parts) as their ``text`` joined; else as is."""
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        if texts and all(isinstance(t, str) for t in texts):
            return " ".join(str(t) for t in texts)
    return content


def _adk_entry(event: Mapping[str, Any], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A Google ADK event (tether.integrations.adk stores each as ``{"type": "adk.event",
    "event": <its JSON>}``): its first function call as a call, its first function response as
    a result, else its text under its author."""
    content = event.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    parts = [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []
    for part in parts:
        call = part.get("function_call")
        if isinstance(call, Mapping):
            call_id = str(call.get("id", ""))
            calls[call_id] = {"tool": str(call.get("name", "?")), "arguments": call.get("args")}
            return {"kind": "tool_call", "id": call_id, **calls[call_id]}
        answer = part.get("function_response")
        if isinstance(answer, Mapping):
            call_id = str(answer.get("id", ""))
            found = calls.get(call_id, {"tool": str(answer.get("name", "?"))})
            return {"kind": "tool_result", "id": call_id, **found, "result": answer.get("response")}
    author = str(event.get("author", "?"))
    text = item_text(parts) if parts else None
    if isinstance(text, str):
        return {"kind": author, "text": text}
    actions = event.get("actions")
    delta = actions.get("state_delta") if isinstance(actions, Mapping) else None
    return {"kind": author, "state_delta": sorted(delta) if isinstance(delta, Mapping) else []}


def framework_entry(item: Mapping[str, Any], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A timeline entry for a framework's item, one with a ``type`` (an agent SDK's
    Responses-API items): a function call as a call, its output as a result, a message or a
    reasoning summary as text, anything else as its type and its other fields."""
    kind = item.get("type")
    if kind == "function_call":
        raw = item.get("arguments")
        try:
            arguments = _json.loads(raw) if isinstance(raw, str) else raw
        except _json.JSONDecodeError:
            arguments = raw
        call_id = str(item.get("call_id", item.get("id", "")))
        calls[call_id] = {"tool": str(item.get("name", "?")), "arguments": arguments}
        return {"kind": "tool_call", "id": call_id, **calls[call_id]}
    if kind == "function_call_output":
        call_id = str(item.get("call_id", ""))
        return {"kind": "tool_result", "id": call_id, **calls.get(call_id, {}),
                "result": item.get("output")}  # fmt: skip
    if kind == "message":
        role = item.get("role")
        label = role if role in ("user", "assistant", "system") else f"message ({role})"
        return {"kind": label, "text": item_text(item.get("content"))}
    if kind == "reasoning":
        return {"kind": "reasoning", "text": item_text(item.get("summary")) or "(no summary)"}
    if kind == "adk.event" and isinstance(item.get("event"), Mapping):
        return _adk_entry(item["event"], calls)
    if kind in _langgraph_view.KINDS:  # a LangGraph thread's checkpoints, writes, values
        return _langgraph_view.entry(item)
    rest = {k: v for k, v in item.items() if k not in ("type", "seq", "timestamp")}
    return {"kind": str(kind), **rest}


def replay(session: Session) -> Replay:
    timeline: list[dict[str, Any]] = []
    journal: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for item in session.history:
        role = item.get("role")
        base = {"seq": item.get("seq"), "at": item.get("timestamp")}
        if isinstance(item.get("type"), str) and role != EVENT_ROLE:
            entry = framework_entry(item, calls)
            if entry["kind"] == "tool_result":
                journal.append({k: v for k, v in entry.items() if k != "kind"})
            timeline.append({**base, **entry})
        elif role == EVENT_ROLE:
            timeline.append({**base, "kind": item.get("event"), **_event_data(item)})
        elif role == "assistant" and item.get("tool_calls"):
            for call in item["tool_calls"]:
                arguments = _json.loads(call["function"]["arguments"])
                calls[call["id"]] = {"tool": call["function"]["name"], "arguments": arguments}
                timeline.append(
                    {**base, "kind": "tool_call", "id": call["id"], **calls[call["id"]]}
                )
            if item.get("content"):
                timeline.append({**base, "kind": "assistant", "text": item["content"]})
        elif role == "tool":
            entry = {**calls.get(item.get("tool_call_id", ""), {}), "result": item.get("content")}
            journal.append({"id": item.get("tool_call_id"), **entry})
            timeline.append(
                {**base, "kind": "tool_result", "id": item.get("tool_call_id"), **entry}
            )
        elif role in ("user", "assistant", "system"):
            timeline.append({**base, "kind": role, "text": item.get("content")})
    rt = runtime(session)
    reviews = [Review.from_json(r) for r in rt.get("reviews", [])]
    result = rt.get("result")
    return Replay(
        session.id,
        session.status.value,
        timeline,
        journal,
        [r for r in reviews if r.decision is None],
        result,
        [r for r in reviews if r.decision is not None],
    )


def answered_text(review: Review) -> str:
    """One line on an answered review: what, who, when (and why, for a denial)."""
    when = review.answered_at.isoformat(timespec="seconds") if review.answered_at else "?"
    why = f": {review.note}" if review.note else ""
    return (
        f"review {review.id} ({review.tool}) {review.decision} by {review.by or '?'} "
        f"at {when}{why}; resume runs it"
        if review.decision == "approved"
        else f"review {review.id} ({review.tool}) {review.decision} by {review.by or '?'} "
        f"at {when}{why}"
    )


def _event_data(item: HistoryItem) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("role", "event", "seq", "timestamp")}


def render(replay_: Replay) -> str:
    """A plain-text view of a replay for a person."""
    lines = [f"session {replay_.session_id}  status {replay_.status}"]
    for entry in replay_.timeline:
        kind = entry["kind"]
        head = f"  #{entry['seq']:<4} {kind:<16}"
        if kind in ("user", "assistant", "system", "reasoning") or kind.startswith("message"):
            lines.append(f"{head} {entry.get('text')}")
        elif kind == "tool_call":
            lines.append(f"{head} {entry['tool']}({_json.dumps(entry['arguments']).decode()})")
        elif kind == "tool_result":
            lines.append(f"{head} {entry.get('tool', '?')} -> {entry.get('result')}")
        else:
            detail = {k: v for k, v in entry.items() if k not in ("seq", "at", "kind")}
            if list(detail) == ["text"] and isinstance(detail["text"], str):
                lines.append(f"{head} {detail['text']}")  # a framework's entry, said as text
                continue
            lines.append(f"{head} {_json.dumps(detail).decode() if detail else ''}".rstrip())
    for review in replay_.pending_reviews:
        lines.append(f"  pending review {review.id}: {review.tool}({dict(review.arguments)})")
    for review in replay_.answered_reviews:
        lines.append(f"  {answered_text(review)}")
    if replay_.result:
        lines.append(f"  result: {replay_.result.get('text') or replay_.result.get('error')}")
    return "\n".join(lines)
