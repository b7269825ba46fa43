# generated from src/tether/agent/agent_async.py by tools/unasync.py, do not edit
"""Agent turns on durable sessions, sync side.

A turn claims its session (so a second caller gets AlreadyRunning before any model call),
commits the prompt, then alternates model calls and tool runs, committing each completed step.
It can stop at a checkpoint or on a human-approval interrupt and be resumed later by any process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import _core
from .._closing import Closing
from .._time import Clock, from_micros, system_clock, to_micros
from ..errors import (
    AlreadyClaimed,
    AlreadyRunning,
    ApprovalExpired,
    ConflictError,
    InvalidRequest,
    MissingSnapshot,
    MissingStore,
    MissingTools,
    ModelError,
    ReviewMismatch,
    TurnInProgress,
)
from ..models import HistoryItem, SessionHeader, SessionStatus
from ..sessions_sync import Sessions
from ..stores.base import Store
from . import _messages, _turn
from ._progress import ToolErrorMessage, Turn, checked_checkpoint, os_user, tool_error_message
from ._turn import Hibernation, Replay, Review, TurnResult, call_model_sync
from .tools import Tool, ToolArgumentError, tools_by_name
from .types import Model, ModelRequest, Rerun, ToolCall

__all__ = ["Agent"]

TurnOutcome = TurnResult | Hibernation

log = logging.getLogger("tether.agent")


class Agent(Closing):
    """Runs agent turns on the sessions of one store.

    ``llm`` is any model callable (see :mod:`tether.agent.types`); ``tools`` are callables or
    :class:`~tether.agent.tools.Tool` objects. ``runner`` names this process in leases (default:
    host and pid); ``lease_ttl`` is how long a crashed runner can block a session; ``secret``
    (bytes, at least 32) signs snapshot tokens, which expire after ``token_ttl`` seconds.
    ``tool_errors`` says what the model is told when a tool raises: ``"generic"`` (default: that
    it failed), ``"detailed"`` (the exception's type and message), or a function
    ``(call, exc) -> result``; the exception itself is always logged on the ``tether.agent``
    logger with its traceback. Each of ``llm``, ``tools`` and ``checkpoint`` can be overridden
    per call. Closing the agent closes the store only if the agent opened it (from a URL).
    """

    def __init__(
        self,
        store: Sessions | Store | str | None = None,
        *,
        llm: Model | None = None,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        checkpoint: str = "none",
        runner: str | None = None,
        lease_ttl: float = 60.0,
        max_steps: int = 16,
        secret: bytes | None = None,
        token_ttl: float = 3600.0,
        tool_errors: str | ToolErrorMessage = "generic",
        clock: Clock = system_clock,
    ) -> None:
        if store is not None and not isinstance(store, (Sessions, Store, str)):
            raise MissingStore(type(store).__name__)
        if isinstance(token_ttl, bool) or not isinstance(token_ttl, (int, float)) or token_ttl <= 0:
            raise InvalidRequest(f"token_ttl must be a number of seconds > 0, not {token_ttl!r}")
        self.secret = None if secret is None else _turn.check_key(secret)
        # close only what was opened here: a Sessions or a store passed in belongs to the caller
        self._owns_sessions = not isinstance(store, Sessions)
        self.sessions = store if isinstance(store, Sessions) else Sessions(store, clock=clock)
        self.store = self.sessions.store
        self.llm = llm
        self.tools = tools_by_name(tools)
        self.checkpoint = checked_checkpoint(checkpoint)
        self.runner = runner or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_ttl = lease_ttl
        self.max_steps = max_steps
        self.token_ttl = float(token_ttl)
        self.tool_errors = tool_error_message(tool_errors)
        self._clock = clock
        # the model's messages of the sessions this agent ran, kept so that a turn on a
        # session the runtime holds builds only the new ones (as many as the runtime caches)
        self._messages = _messages.MessageMemo(min(self.sessions._cache.size, 256))

    # --- turns ---------------------------------------------------------------------------------

    def run(
        self,
        session_id: str,
        message: str | Mapping[str, Any],
        *,
        llm: Model | None = None,
        tools: Iterable[Tool | Callable[..., Any]] | None = None,
        checkpoint: str | None = None,
    ) -> TurnOutcome:
        """Run one turn: the result, or a :class:`Hibernation` if it stopped to wait.

        ``message`` is the user's: a str, or ``{"role": "user", "content": ...}``. Every
        precondition (the message, the checkpoint, a model unless the turn stops right after
        the prompt, the tools, no turn in progress) is checked before anything is written.
        """
        policy = checked_checkpoint(checkpoint or self.checkpoint)
        user = _turn.user_item(message)
        toolbox = self.tools if tools is None else tools_by_name(tools)
        if policy != "after_prompt":
            self._model(llm)
        turn = self._begin(session_id, cached=True)
        try:
            # 48 random bits as 12 hex digits: what uuid4().hex[:12] gave, a quarter of its cost
            turn_id = os.urandom(6).hex()
            started = _turn.event("turn_started", turn=turn_id, checkpoint=policy)
            first = [user, started]
            if policy == "after_prompt":
                first.append(_turn.event("checkpoint", step="model"))
            status = SessionStatus.HIBERNATED if policy == "after_prompt" else SessionStatus.RUNNING
            while True:
                snapshot = turn.rt.get("snapshot")
                if snapshot and turn.cached:  # perhaps finished since: read before refusing
                    turn = self._reread(turn)
                    continue
                if snapshot:
                    raise TurnInProgress(session_id, str(snapshot.get("step")), turn.status)
                turn.snapshot = _turn.new_snapshot(turn_id, "model", policy, sorted(toolbox))
                # the prompt is committed before any model call: a conflict shows up here, free.
                # From the cache, the conflict says only that it was behind (the claim keeps
                # anyone else from writing from now on): read what is new and start again.
                try:
                    self._commit(turn, first, status)
                except ConflictError:
                    if not turn.cached:
                        raise
                    turn = self._reread(turn)
                    continue
                break
            if policy == "after_prompt":
                return self._hibernate(turn, SessionStatus.HIBERNATED)
            return self._drive(turn, self._model(llm), toolbox)
        finally:
            self._release(turn)

    def chat(
        self, session_id: str, message: str | Mapping[str, Any], **options: Any
    ) -> str | Hibernation:
        """Run one turn and return just its text (or the :class:`Hibernation` if it stopped)."""
        outcome = self.run(session_id, message, **options)
        return outcome if isinstance(outcome, Hibernation) else (outcome.text or "")

    def resume(
        self,
        session_id: str,
        *,
        llm: Model | None = None,
        tools: Iterable[Tool | Callable[..., Any]] | None = None,
    ) -> TurnOutcome:
        """Continue the session's hibernated turn from its snapshot.

        Never re-sends a model call or re-runs a tool whose result was committed. A ``once``
        tool that had started when the turn was cut off is not run again: it becomes a review
        ("did this happen?"). A turn whose model call failed continues from its last
        committed step. Raises :class:`~tether.errors.MissingSnapshot` if there is nothing to
        resume, and :class:`~tether.errors.MissingTools` if the turn's snapshot names tools
        this call was not given: both before anything is written, so approvals are kept.
        """
        model = self._model(llm)
        toolbox = self.tools if tools is None else tools_by_name(tools)
        turn = self._begin(session_id)
        try:
            snapshot = turn.rt.get("snapshot")
            if not snapshot:
                raise MissingSnapshot(session_id, turn.status)
            missing = sorted(set(snapshot.get("tools") or ()) - set(toolbox))
            if missing:
                raise MissingTools(session_id, missing)
            turn.snapshot = snapshot
            if turn.open_reviews():
                return self._hibernate(turn, SessionStatus.WAITING)
            self._commit(
                turn, [_turn.event("resumed", step=snapshot["step"])], SessionStatus.RUNNING
            )
            return self._drive(turn, model, toolbox)
        finally:
            self._release(turn)

    def _model(self, llm: Model | None) -> Model:
        model = llm or self.llm
        if model is None:
            raise InvalidRequest(
                "no model: pass llm= to the agent or to run() / resume(); nothing was written"
            )
        return model

    # --- the loop ------------------------------------------------------------------------------

    def _drive(self, turn: Turn, model: Model, toolbox: dict[str, Tool]) -> TurnOutcome:
        for _ in range(self.max_steps):
            self._keep_lease(turn)
            if turn.snapshot["step"] == "model":
                request = ModelRequest(
                    messages=self._messages.messages(turn.session_id, turn.loaded, turn.added),
                    tools=[tool.spec() for tool in toolbox.values()],
                    options=turn.options,
                )
                try:
                    reply = call_model_sync(model, request)
                except Exception as exc:  # any failure: recorded, the turn stays resumable
                    self._fail(turn, exc)
                    raise
                _turn.add_usage(turn.usage, reply.usage)
                assistant = _turn.assistant_item(reply)
                if not reply.tool_calls:
                    return self._finish(turn, assistant, reply.text)
                turn.snapshot["step"] = "tools"
                turn.snapshot["pending"] = [_turn.call_to_json(c) for c in reply.tool_calls]
                # committed before any tool runs: a resume never sends this model call again
                self._commit(turn, [assistant], SessionStatus.RUNNING)
                continue
            outcome = self._next_tool(turn, toolbox)
            if outcome is not None:
                return outcome
        error = ModelError(
            f"the turn took more than {self.max_steps} steps; raise max_steps and resume it",
            kind="took too many steps",
        )
        self._fail(turn, error)
        raise error

    def _next_tool(self, turn: Turn, toolbox: dict[str, Tool]) -> TurnOutcome | None:
        """Resolve the first pending tool call; a Hibernation if the turn must stop."""
        snapshot = turn.snapshot
        if not snapshot["pending"]:
            snapshot["step"] = "model"
            return None
        call = _turn.call_from_json(snapshot["pending"][0])
        tool = toolbox.get(call.name)
        review = turn.review_for(call.id)
        if tool is not None and review is None:
            interrupted = call.id in snapshot["started"]
            if tool.requires_approval or interrupted:
                reason = (
                    "the turn was cut off after this once-only tool started: did it run? "
                    "Approve to run it now, deny to tell the model it did not run"
                    if interrupted
                    else "this tool needs a human's approval"
                )
                new = _turn.new_review(
                    turn.session_id, call, reason, self._clock(), tool.approval_ttl
                )
                turn.rt.setdefault("reviews", []).append(new)
                self._commit(
                    turn,
                    [_turn.event("review_requested", review=new["id"], tool=call.name)],
                    SessionStatus.WAITING,
                )
                return self._hibernate(turn, SessionStatus.WAITING)
        failed: str | None = None
        if tool is None:  # the model named a tool the turn never had (resume checks the rest)
            result: object = f"error: there is no tool named {call.name!r}"
        elif review is not None and review["decision"] != "approved":
            result = f"not run: a human {review['decision']} it" + (
                f" ({review['note']})" if review.get("note") else ""
            )
        else:
            if tool.rerun == Rerun.ONCE:  # recorded first: a crash now is seen on resume
                snapshot["started"].append(call.id)
                self._commit(
                    turn,
                    [_turn.event("tool_started", id=call.id, tool=call.name)],
                    SessionStatus.RUNNING,
                )
            result, failed = self._run_tool(tool, call, turn.session_id)
        snapshot["pending"].pop(0)
        if call.id in snapshot["started"]:
            snapshot["started"].remove(call.id)
        if review is not None:
            turn.rt["reviews"] = [r for r in turn.rt.get("reviews", []) if r["id"] != review["id"]]
        ran = _turn.event("tool_ran", id=call.id, tool=call.name)
        if failed is not None:
            ran["error"] = failed  # the exception's type: its text may hold internals
        items = [_turn.tool_result_item(call, result), ran]
        if snapshot["checkpoint"] == "after_each_tool":
            items.append(
                _turn.event("checkpoint", step="tools" if snapshot["pending"] else "model")
            )
            if not snapshot["pending"]:
                snapshot["step"] = "model"
            self._commit(turn, items, SessionStatus.HIBERNATED)
            return self._hibernate(turn, SessionStatus.HIBERNATED)
        self._commit(turn, items, SessionStatus.RUNNING)
        return None

    def _run_tool(self, tool: Tool, call: ToolCall, session_id: str) -> tuple[object, str | None]:
        """(what the model is told, the exception's type name if the tool raised)."""
        try:
            return tool.call(call.arguments), None
        except ToolArgumentError as exc:  # tether's own words about the model's arguments
            return f"error: bad arguments for {call.name}: {exc}", None
        except Exception as exc:  # logged in full; the model is told what tool_errors says
            log.error(
                "tool %s raised %s in session %r (call %s)",
                call.name,
                type(exc).__name__,
                session_id,
                call.id,
                exc_info=exc,
            )
            return self.tool_errors(call, exc), type(exc).__name__

    # --- commits -------------------------------------------------------------------------------

    def _begin(self, session_id: str, *, cached: bool = False) -> Turn:
        """Claim the session and read it. With ``cached``, a session the runtime holds is not
        read: the caller's first write, at the cached version, checks it (``Turn.cached``)."""
        try:
            lease = self.store.claim(session_id, self.runner, self.lease_ttl)
        except AlreadyClaimed as exc:
            raise AlreadyRunning(session_id, exc.holder, exc.expires_at) from None
        try:
            held = self.sessions._held(session_id) if cached else None
            if held is not None:
                return Turn(held, lease, {}, cached=True)
            # through the runtime's cache: a worker that ran the last turn reads only what is new
            session = self.sessions.get(session_id)
        except BaseException:
            self.store.release(lease)
            raise
        return Turn(session, lease, {})

    def _reread(self, turn: Turn) -> Turn:
        """``turn`` started again from the session as stored (read under the same lease,
        which the caller releases)."""
        return Turn(self.sessions.get(turn.session_id), turn.lease, {})

    def _commit(self, turn: Turn, items: list[HistoryItem], status: SessionStatus) -> None:
        rt = dict(turn.rt)
        rt["snapshot"] = turn.snapshot or None
        state = _turn.state_with(turn.state, rt)
        changes = {"state": state, "status": status}
        with _core.runtime_writes():  # the one writer of state["_tether"]
            stamp = self.store.commit_stamped(
                turn.session_id, turn.version, append=items, changes=changes, lease=turn.lease
            )
        # the runtime's cache follows this commit, so the next turn's read fetches only what
        # is new (else it would see someone else's write and read the whole history again)
        self.sessions._follow_commit(turn.session_id, turn.version, changes, items, stamp)
        turn.version = stamp.version
        turn.state = state
        turn.status = status.value
        turn.cached = False  # the commit at its version proved it current
        numbered = [{**item, "seq": turn.last_seq + n} for n, item in enumerate(items, 1)]
        turn.last_seq += len(items)
        turn.added.extend(numbered)

    def _finish(self, turn: Turn, assistant: HistoryItem, text: str | None) -> TurnResult:
        turn.rt["result"] = {"turn": turn.snapshot["turn"], "text": text, "usage": turn.usage}
        turn.snapshot = {}
        self._commit(
            turn,
            [assistant, _turn.event("turn_finished", usage=turn.usage)],
            SessionStatus.FINISHED,
        )
        events = [i for i in turn.added if i["role"] == _turn.EVENT_ROLE]
        items = [i for i in turn.added if i["role"] != _turn.EVENT_ROLE]
        return TurnResult(turn.session_id, text, items, events, dict(turn.usage))

    def _fail(self, turn: Turn, error: Exception) -> None:
        """Record a failed step; the snapshot stays, so ``resume`` continues from the last
        committed step (the prompt is never sent twice). The session stores only a sanitized
        description (:func:`_turn.stored_error`): never the URL or the server's reply."""
        message = _turn.stored_error(error)
        turn.rt["result"] = {"turn": turn.snapshot.get("turn"), "error": message}
        # the error still reaches the caller; on a conflict the session shows the other write
        with contextlib.suppress(ConflictError):
            self._commit(turn, [_turn.event("error", message=message)], SessionStatus.ERROR)

    def _hibernate(self, turn: Turn, status: SessionStatus) -> Hibernation:
        reviews = [Review.from_json(r) for r in turn.open_reviews()]
        return Hibernation(turn.session_id, status.value, dict(turn.snapshot), reviews)

    def _keep_lease(self, turn: Turn) -> None:
        left = to_micros(turn.lease.expires_at) - to_micros(self._clock())
        if left < self.lease_ttl * 1_000_000 / 2:
            turn.lease = self.store.renew(turn.lease, self.lease_ttl)

    def _release(self, turn: Turn) -> None:
        with contextlib.suppress(Exception):  # lost or gone: nothing to give back
            self.store.release(turn.lease)

    # --- human review --------------------------------------------------------------------------

    def pending_reviews(self, session_id: str | None = None) -> list[Review]:
        """Open reviews of one session, or of every waiting session (an indexed status query)."""
        return [r for r in self.reviews(session_id) if r.decision is None]

    def _review_headers(self, session_id: str | None) -> list[SessionHeader]:
        if session_id is not None:
            return [self.store.load(session_id, last=0)]
        headers = []
        for header in self.store.iter_sessions(status="waiting", limit=200):
            headers.append(header)
        return headers

    def reviews(self, session_id: str | None = None) -> list[Review]:
        """Open reviews and answered ones whose turn was not resumed yet (who, when), of one
        session or of every waiting session."""
        headers = self._review_headers(session_id)
        return [
            Review.from_json(r)
            for header in headers
            for r in (header.state.get(_turn.RESERVED) or {}).get("reviews", [])
        ]

    def approve(self, review_id: str, *, by: str | None = None) -> Review:
        """Approve a pending tool call; ``resume`` then runs it once.

        ``by`` names who approved (default: the OS user); it is recorded with the time.
        """
        return self._answer(review_id, "approved", None, by)

    def deny(self, review_id: str, reason: str, *, by: str | None = None) -> Review:
        """Deny a pending tool call; ``resume`` then tells the model it was denied, and why."""
        return self._answer(review_id, "denied", reason, by)

    def _answer(self, review_id: str, decision: str, note: str | None, by: str | None) -> Review:
        if by is not None and (not isinstance(by, str) or not by.strip()):
            raise InvalidRequest(f"by= names who answered: a non-empty str, not {by!r}")
        who = by if by is not None else os_user()
        session_id, _ = _turn.split_review_id(review_id)
        for _attempt in range(5):
            session = self.store.load(session_id, last=0)
            rt = _turn.runtime(session)
            review = next((r for r in rt.get("reviews", []) if r["id"] == review_id), None)
            if review is None:
                raise ReviewMismatch(review_id, "the session has no such open review")
            if review.get("decision") is not None:
                raise ReviewMismatch(review_id, f"it was already answered ({review['decision']})")
            expires = review.get("expires_at")
            expired = expires is not None and expires <= to_micros(self._clock())
            now = to_micros(self._clock())
            review["decision"] = "expired" if expired else decision
            review["note"] = note
            review["by"] = who
            review["answered_at"] = now
            kind = "review_expired" if expired else f"review_{decision}"
            at = from_micros(now).isoformat(timespec="microseconds")
            answered = _turn.event(kind, review=review_id, note=note, by=who, answered_at=at)
            try:
                with _core.runtime_writes():
                    self.store.commit(
                        session_id,
                        session.version,
                        append=[answered],
                        changes={"state": _turn.state_with(session.state, rt)},
                    )
            except ConflictError:
                continue  # someone wrote in between: read the review again
            if expired:
                raise ApprovalExpired(
                    review_id, Review.from_json(review).expires_at or self._clock()
                )
            return Review.from_json(review)
        raise ReviewMismatch(review_id, "the session kept changing while answering; try again")

    # --- looking back --------------------------------------------------------------------------

    def replay(self, session_id: str) -> Replay:
        """The timeline, journal, open reviews and latest result: data only, nothing is called."""
        return _turn.replay(self.store.load(session_id))

    def inspect(self, session_id: str) -> str:
        """A plain-text rendering of :meth:`replay` for a person."""
        return _turn.render(self.replay(session_id))

    def snapshot_token(self, session_id: str) -> str:
        """The session's snapshot as a token signed with ``secret`` (HMAC-SHA256).

        The token binds the session (id, version, created_at), the key's id and an expiry
        (``token_ttl`` seconds from now).
        """
        if self.secret is None:
            raise InvalidRequest("snapshot tokens need a secret: pass secret= to the agent")
        session = self.store.load(session_id, last=0)
        snapshot = _turn.runtime(session).get("snapshot")
        if not snapshot:
            raise MissingSnapshot(session_id, session.status.value)
        return _turn.sign_snapshot(self.secret, session, snapshot, self._clock(), self.token_ttl)

    def verify_token(
        self, token: str, *, session: SessionHeader | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(session id, snapshot) from a token made by :meth:`snapshot_token`.

        Raises :class:`~tether.errors.InvalidToken` if it was altered, signed with another key,
        has expired, or is not a token at all; with ``session`` (its header as it is now), also
        if the token was made for another session or before the session's last write.
        """
        if self.secret is None:
            raise InvalidRequest("verifying snapshot tokens needs the secret they were signed with")
        claims = _turn.verify_snapshot(self.secret, token, self._clock())
        if session is not None:
            _turn.check_token_session(claims, session)
        return claims["session"], claims["snapshot"]

    def close(self) -> None:
        """Close the runtime and store this agent opened; one passed in is the caller's."""
        if self._owns_sessions:
            self.sessions.close()
