"""What waits for a human: ``tether reviews``, ``approve``, ``deny`` and ``resume``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from ..agent import Agent, Hibernation, stored, tools_by_name
from ..errors import MissingSnapshot, MissingTools
from . import render
from .common import CliError, _echo, _Env, _examples, _usage, pass_env


@click.command(
    "reviews",
    epilog=_examples("tether reviews", "tether reviews --session ticket-42 --json"),
)
@click.option("--session", "session_id", metavar="ID", help="Only this session's reviews.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def reviews_command(env: _Env, session_id: str | None, as_json: bool) -> None:
    """List the tool calls waiting for a human.

    Reviews answered but not yet resumed are listed too, with the decision, who answered
    (approve / deny --by) and when.
    """
    reviews = env.agent().reviews(session_id)
    if as_json:
        render.echo_json([render.review_json(r) for r in reviews])
        return
    out = render.console()
    if not reviews:
        of = f" of session {session_id}" if session_id is not None else ""
        render.say(out, f"no pending reviews{of} in {env.where}")
        return
    render.print_blocks(out, [(r.id, render.review_rows(r)) for r in reviews])


_BY_HELP = "Who answers, recorded with the time (default: your OS user name)."


@click.command(
    "approve",
    epilog=_examples(
        "tether approve ticket-42/rv_0123456789ab",
        "tether approve ticket-42/rv_0123456789ab --by ada",
    ),
)
@click.argument("review_id", metavar="REVIEW_ID")
@click.option("--by", metavar="NAME", help=_BY_HELP)
@pass_env
def approve_command(env: _Env, review_id: str, by: str | None) -> None:
    """Approve a pending tool call (resume then runs it)."""
    review = env.agent().approve(review_id, by=by)
    _echo(
        f"approved {review.id} by {review.by}: {review.tool} will run when the session is resumed"
    )


@click.command(
    "deny",
    epilog=_examples(
        "tether deny ticket-42/rv_0123456789ab --reason 'refunds need a receipt' --by ada"
    ),
)
@click.argument("review_id", metavar="REVIEW_ID")
@click.option("--reason", required=True, help="Why; the model is told.")
@click.option("--by", metavar="NAME", help=_BY_HELP)
@pass_env
def deny_command(env: _Env, review_id: str, reason: str, by: str | None) -> None:
    """Deny a pending tool call, saying why."""
    review = env.agent().deny(review_id, reason, by=by)
    _echo(
        f"denied {review.id} by {review.by}: {review.tool} will not run; the model is told when "
        "the session is resumed"
    )


def _import_object(spec: str, option: str) -> Any:
    """``module:attr`` (attr may be dotted), imported with the working directory on the path."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        _usage(f"{option} takes module:attribute (e.g. myapp.tools:TOOLS), not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as python -m does: the application's own modules
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"{option} {spec}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CliError(f"{option} {spec}: {module_name!r} has no {attr!r}") from None
    return found


def _tools_from(specs: tuple[str, ...]) -> list[Any]:
    """The tools named by --tools: each a Tool, a function, or a list / dict of them."""
    tools: list[Any] = []
    for spec in specs:
        found = _import_object(spec, "--tools")
        if isinstance(found, Mapping):
            found = list(found.values())
        tools += list(found) if isinstance(found, (list, tuple, set, frozenset)) else [found]
    for item in tools:
        if not callable(item):
            raise CliError(f"--tools: {item!r} is not a tool (a @tool function or a callable)")
    return tools


@click.command(
    "resume",
    epilog=_examples(
        "tether resume ticket-42 --tools support.tools:TOOLS --model-url http://localhost:8000/v1",
        "OPENAI_API_KEY=... tether resume job-7 --model-url https://api.openai.com/v1 "
        "--model gpt-4o-mini",
        "tether resume ticket-42 --agent support.app:make_agent",
    )
    + "\n\nA turn that may call tools needs them: --tools module:attr names your application's "
    "(a list, a dict or a single tool; repeatable), or --agent module:factory builds your "
    "Agent from the store (factory(sessions) -> Agent). If one the turn needs is missing, "
    "nothing is written and the approvals are kept. Modules are imported with the working "
    "directory on the path.",
)
@click.argument("session_id", metavar="ID")
@click.option(
    "--model-url", metavar="URL", help="An OpenAI-compatible chat-completions server (…/v1)."
)
@click.option("--model", metavar="NAME", help="The model, if the session's options name none.")
@click.option(
    "--tools",
    "tool_specs",
    metavar="MODULE:ATTR",
    multiple=True,
    help="Your application's tools (a list, dict or tool); repeatable.",
)
@click.option(
    "--agent",
    "agent_spec",
    metavar="MODULE:FACTORY",
    help="factory(sessions) -> Agent: your agent, with its tools and model.",
)
@pass_env
def resume_command(
    env: _Env,
    *,
    session_id: str,
    model_url: str | None,
    model: str | None,
    tool_specs: tuple[str, ...],
    agent_spec: str | None,
) -> None:
    """Continue a hibernated or approved turn, with your tools.

    The model is an OpenAI-compatible server (--model-url), or your agent's (--agent). The API
    key is read from $OPENAI_API_KEY.
    """
    if agent_spec and tool_specs:
        _usage("give --agent or --tools, not both (the agent brings its own tools)")
    agent = env.agent()
    if agent_spec:
        factory = _import_object(agent_spec, "--agent")
        try:
            agent = factory(env.sessions) if callable(factory) else factory
        except Exception as exc:  # the application's code: say where it failed, in one line
            raise CliError(
                f"--agent {agent_spec}: factory(sessions) raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(agent, Agent):
            raise CliError(f"--agent {agent_spec}: expected an Agent, got {type(agent).__name__}")
    else:
        agent.tools = tools_by_name(_tools_from(tool_specs))
    if not model_url and agent.llm is None:
        _usage(
            "resume needs a model: pass --model-url URL (an OpenAI-compatible server, e.g. "
            "https://api.openai.com/v1) and --model NAME; the API key is read from $OPENAI_API_KEY"
        )
    header = env.sessions.store.load(session_id, last=0)
    snapshot = stored.runtime(header).get("snapshot")
    if not snapshot:
        raise MissingSnapshot(session_id, header.status.value)
    missing = sorted(set(snapshot.get("tools") or ()) - set(agent.tools))
    if missing:  # resume() refuses this too; said first here, before any model option
        raise MissingTools(session_id, missing)
    if model_url and not (model or header.options.get("model")):
        _usage(
            f"session {session_id!r} names no model in its options: pass --model NAME "
            "(e.g. --model gpt-4o-mini)"
        )
    if model_url:
        from ..agent import OpenAIChatModel

        with OpenAIChatModel(model, base_url=model_url) as llm:
            outcome = agent.resume(session_id, llm=llm)
    else:
        outcome = agent.resume(session_id)
    if isinstance(outcome, Hibernation):
        _echo(f"session {session_id} stopped again: {outcome.status}")
        for review in outcome.reviews:
            _echo(f"pending review {review.id}: {review.tool}")
    else:
        # the model's reply is the whole output: its line breaks are kept, the rest of what a
        # steered reply could send the terminal is escaped
        _echo(outcome.text or "", newlines=True)
