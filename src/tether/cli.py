"""The ``tether`` command: see and steer the sessions of any store without writing code.

``tether ls``, ``show``, ``replay`` and ``inspect`` read; ``reviews``, ``approve``, ``deny`` and
``resume`` answer what waits for a human; ``fork``, ``rm``, ``archive`` and ``clear`` change
sessions. Every command takes ``--store URL`` (else ``$TETHER_URL``, else the embedded SQLite
default). Bad input is one ``error: ...`` line on stderr and exit status 2 (usage) or 1 (the
store or the session said no), never a traceback. Needs ``pip install 'tether[cli]'``.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NoReturn

import click

from . import __version__
from . import _cli_render as render
from ._registry import DEFAULT_URL, open_store
from ._time import system_clock
from ._urls import redact, scrub
from .agent import Agent, Hibernation, _turn, tools_by_name
from .errors import AlreadyClaimed, MissingSnapshot, MissingTools, SessionNotFound, TetherError
from .models import SessionStatus
from .sessions_sync import Sessions

__all__ = ["cli", "main"]

_STATUSES = [status.value for status in SessionStatus]


# --- errors: one line, the right exit status ------------------------------------------------------


class CliError(click.ClickException):
    """Shown as one ``error: ...`` line on stderr, exit status 1: the store or session said no."""

    def __init__(self, message: str) -> None:
        # one line, no password of any URL on the command line or in $TETHER_URL (a driver's
        # message may quote one), nothing that acts on the terminal (ids and lease owners
        # come from the store)
        text = scrub(" ".join(message.split()), *_urls_in_use())
        super().__init__(render.clean(text))

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class CliUsageError(CliError):
    """The command line itself is wrong: exit status 2."""

    exit_code = 2


def _usage(message: str) -> NoReturn:
    raise CliUsageError(message)


def _urls_in_use() -> list[str]:
    """Every URL this command was given: $TETHER_URL and the URL-like options and arguments."""
    found = [os.environ.get("TETHER_URL") or ""]
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        values = [*ctx.params.values(), *ctx.args]
        found += [v for v in values if isinstance(v, str) and (":" in v or "=" in v)]
        ctx = ctx.parent
    return found


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except (CliError, click.exceptions.Exit, click.Abort, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        raise CliUsageError(exc.format_message() + where) from None
    except click.ClickException as exc:
        raise CliError(exc.format_message()) from None
    except TetherError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:
        if os.environ.get("TETHER_DEBUG"):
            raise
        raise CliError(
            f"unexpected {type(exc).__name__}: {exc} (set TETHER_DEBUG=1 to see the traceback)"
        ) from None


class _Group(click.Group):
    """Turns every error, while parsing or running a command, into one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are defined: reading first


# --- parameter types -----------------------------------------------------------------------------


class _IsoTime(click.ParamType[datetime, Any]):
    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 time; use e.g. 2024-05-01 or "
                "2024-05-01T12:00:00+02:00 (no zone means UTC)",
                param,
                ctx,
            )
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class _KeyValue(click.ParamType[tuple[str, Any], Any]):
    name = "KEY=VALUE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return (str(value[0]), value[1])
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE (e.g. channel=web or priority=2)", param, ctx)
        try:  # JSON when it parses (2, true, "2", {"a": 1}), else the text itself
            parsed: Any = json.loads(raw, parse_constant=_no_constant)
        except ValueError:
            parsed = raw
        return key.strip(), parsed


def _no_constant(name: str) -> NoReturn:
    raise ValueError(name)  # NaN and Infinity are not JSON: keep them as text


# --- the store and the agent, opened once per command --------------------------------------------


# The commands that may bring a store into being. Every other one reads, or changes a session
# that must already exist, so a missing SQLite file or file store directory is a mistyped
# path: it is refused, never created empty.
_MAY_CREATE_THE_STORE = frozenset({"import", "demo"})


class _Env:
    def __init__(self, url: str | None, *, create: bool = True, given: bool = False) -> None:
        self.url = url
        self.create = create
        self.given = given  # --store was on the command line (not $TETHER_URL)
        self._sessions: Sessions | None = None

    @property
    def where(self) -> str:
        """The store's URL for messages: redacted."""
        return redact(self.url or os.environ.get("TETHER_URL") or DEFAULT_URL)

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            self._sessions = Sessions(open_store(self.url, create=self.create), cache_size=0)
        return self._sessions

    def agent(self) -> Agent:
        return Agent(self.sessions, runner=f"tether-cli:{os.getpid()}")

    def close(self) -> None:
        if self._sessions is not None:
            self._sessions.close()


pass_env = click.make_pass_decorator(_Env)


def _examples(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not _interactive():
        _usage(f"{question.rstrip('?')}: refusing without --yes, since stdin is not a terminal")
    if not click.confirm(render.clean(question), default=False, err=True):
        raise CliError("nothing was changed")


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _echo(text: str, *, err: bool = False, newlines: bool = False) -> None:
    """One line of the command's own words, which may quote a session's data (a review's tool,
    a model's reply, why a session was left alone): through the one neutraliser, so nothing in
    it can act on the terminal. ``newlines=True`` keeps line breaks (see render.clean)."""
    click.echo(render.clean(text, newlines=newlines), err=err)


# --- the group -----------------------------------------------------------------------------------


@click.group(
    name="tether",
    cls=_Group,
    epilog=_examples(
        "tether ls --status waiting",
        "tether --store sqlite:////srv/app/sessions.db show ticket-42",
        "TETHER_URL=redis://localhost:6379/0 tether reviews",
    ),
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    envvar="TETHER_URL",
    show_envvar=True,
    help=f"The store to use (default: $TETHER_URL, else {DEFAULT_URL}).",
)
@click.version_option(__version__, prog_name="tether", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, url: str | None) -> None:
    """See and steer the durable sessions of a tether store."""
    env = _Env(
        url or None,
        create=ctx.invoked_subcommand in _MAY_CREATE_THE_STORE,
        given=ctx.get_parameter_source("url") == click.core.ParameterSource.COMMANDLINE,
    )
    ctx.obj = env
    ctx.call_on_close(env.close)


def main() -> None:
    """The console script ``tether``."""
    cli.main(prog_name="tether")


# --- reading -------------------------------------------------------------------------------------


@cli.command(
    "ls",
    epilog=_examples(
        "tether ls --owner ada --status waiting --status hibernated",
        "tether ls --meta channel=web --meta priority=2 --updated-since 2024-05-01",
        "tether ls --limit 50 --cursor <the cursor the last page printed>",
        "tether ls --all --json | jq -r '.sessions[].id'",
    ),
)
@click.option("--owner", help="Only this owner's sessions.")
@click.option("--agent", help="Only sessions run by this agent.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES),
    help="Only sessions with this status. Repeatable.",
)
@click.option("--updated-since", type=_IsoTime(), help="Updated after this time.")
@click.option("--updated-before", type=_IsoTime(), help="Updated before this time.")
@click.option(
    "--meta",
    multiple=True,
    type=_KeyValue(),
    help="Metadata key=value (the value is JSON if it parses, else text). Repeatable.",
)
@click.option("--all", "include_archived", is_flag=True, help="Include archived sessions.")
@click.option(
    "--limit",
    metavar="N",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Sessions per page.",
)
@click.option("--cursor", metavar="C", help="Continue where the previous page stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def ls_command(
    env: _Env,
    *,
    owner: str | None,
    agent: str | None,
    statuses: tuple[str, ...],
    updated_since: datetime | None,
    updated_before: datetime | None,
    meta: tuple[tuple[str, Any], ...],
    include_archived: bool,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List sessions, newest first, one page at a time."""
    page = env.sessions.list(
        include_archived=include_archived,
        owner=owner,
        agent=agent,
        status=list(statuses) or None,
        metadata=dict(meta) or None,
        updated_after=updated_since,
        updated_before=updated_before,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        render.echo_json(render.page_json(page))
        return
    out = render.console()
    if not page.sessions:
        render.say(out, f"no sessions{' on this page' if cursor else ''} in {env.where}")
    else:
        rows = [
            (
                h.id,
                render.status_text(h.status.value),
                h.owner,
                h.agent,
                h.version,
                h.history_len,
                render.iso(h.updated_at),
            )
            for h in page.sessions
        ]
        columns = ["id", "status", "owner", "agent", "version", "items", "updated"]
        render.print_table(out, columns, rows)
    if page.next_cursor:
        # the same command, store and filters, one page on
        again = ["tether", *(["--store", env.where] if env.given else []), "ls"]
        again += [f"--owner={owner}"] if owner is not None else []
        again += [f"--agent={agent}"] if agent is not None else []
        again += [f"--status={status}" for status in statuses]
        again += [f"--updated-since={updated_since.isoformat()}"] if updated_since else []
        again += [f"--updated-before={updated_before.isoformat()}"] if updated_before else []
        again += [f"--meta={key}={_meta_text(value)}" for key, value in meta]
        again += ["--all"] if include_archived else []
        again += [f"--limit={limit}"] if limit != 20 else []
        render.say(out, f"more: {shlex.join(again)} --cursor {page.next_cursor}")


def _meta_text(value: Any) -> str:
    """A --meta value as typed: text as itself, unless it would read as JSON (2, true)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False)


@cli.command(
    "show",
    epilog=_examples("tether show ticket-42", "tether show ticket-42 --last 50 --json"),
)
@click.argument("session_id", metavar="ID")
@click.option(
    "--last",
    metavar="N",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the newest history items to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def show_command(env: _Env, session_id: str, last: int, as_json: bool) -> None:
    """Show a session: header, state, options, newest items."""
    session = env.sessions.store.load(session_id, last=last)
    if as_json:
        render.echo_json(render.session_json(session))
        return
    runtime = _turn.runtime(session)
    out = render.console()
    render.print_grid(out, render.header_rows(session.header, system_clock(), runtime))
    state = {k: v for k, v in session.state.items() if k != _turn.RESERVED}
    title = f"state (without {_turn.RESERVED!r}, the turn above; --json shows it)"
    render.print_section(out, title if runtime else "state", state)
    render.print_section(out, "options", session.options)
    render.print_section(out, "metadata", session.metadata)
    if last:
        out.print()
        shown = len(session.history)
        title = f"last {shown} of {render.count(session.history_len, 'item')}"
        calls: dict[str, dict[str, Any]] = {}  # a call's name, for its output's row
        rows = [render.item_row(item, calls) for item in session.history]
        render.print_table(out, ["seq", "time", "role", "content"], rows, title=title)


@cli.command(
    "replay", epilog=_examples("tether replay ticket-42", "tether replay ticket-42 --json")
)
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def replay_command(env: _Env, session_id: str, as_json: bool) -> None:
    """Show the timeline of a session's turns, as data.

    Calls no model and no tool: it reads what the session holds.
    """
    replay = env.agent().replay(session_id)
    if as_json:
        render.echo_json(render.replay_json(replay))
        return
    out = render.console()
    rows = [render.timeline_row(entry) for entry in replay.timeline]
    title = f"session {replay.session_id}  status {replay.status}"
    render.print_table(out, ["seq", "at", "kind", "detail"], rows, title=title)
    for review in replay.pending_reviews:
        args = json.dumps(dict(review.arguments), ensure_ascii=False)
        render.say(out, f"pending review {review.id}: {review.tool}({args})")
    if replay.result:
        render.say(out, f"result: {replay.result.get('text') or replay.result.get('error')}")


@cli.command(
    "inspect", epilog=_examples("tether inspect ticket-42", "tether inspect ticket-42 --json")
)
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as replay --json).")
@pass_env
def inspect_command(env: _Env, session_id: str, as_json: bool) -> None:
    """Print a session's turns as plain text for a person."""
    replay = env.agent().replay(session_id)
    if as_json:
        render.echo_json(render.replay_json(replay))
        return
    click.echo(render.inspect_text(replay))


# --- human review --------------------------------------------------------------------------------


@cli.command(
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


@cli.command(
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


@cli.command(
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


@cli.command(
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
    snapshot = _turn.runtime(header).get("snapshot")
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
        from .agent import OpenAIChatModel

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


# --- changing sessions ---------------------------------------------------------------------------


@cli.command(
    "fork",
    epilog=_examples("tether fork ticket-42", "tether fork ticket-42 --at 6 --id ticket-42-retry"),
)
@click.argument("session_id", metavar="ID")
@click.option(
    "--at", type=click.IntRange(min=0), metavar="SEQ", help="Keep the items up to this seq."
)
@click.option("--id", "new_id", metavar="NEW_ID", help="The child's id (default: generated).")
@pass_env
def fork_command(env: _Env, session_id: str, at: int | None, new_id: str | None) -> None:
    """Copy a session into a new one (the parent is kept)."""
    child = env.sessions.fork(session_id, new_id, at=at)
    _echo(f"forked {session_id} at seq {child.fork_seq} -> {child.id}")


@cli.command(
    "rm",
    epilog=_examples(
        "tether rm ticket-42", "tether rm ticket-42 --yes", "tether rm ticket-42 --yes --force"
    ),
)
@click.argument("session_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Delete it even while a runner holds its lease (a stuck or crashed runner).",
)
@pass_env
def rm_command(env: _Env, session_id: str, yes: bool, force: bool) -> None:
    """Delete a session and its history, for good.

    A session a runner holds (a live lease) is refused, like every other write, unless
    --force is given.
    """
    header = env.sessions.info(session_id)
    _confirm(f"Delete session {session_id} ({render.count(header.history_len, 'item')})?", yes)
    try:
        deleted = env.sessions.delete(session_id, force=force)
    except AlreadyClaimed as exc:
        until = "" if exc.expires_at is None else f" until {exc.expires_at.isoformat()}"
        raise CliError(
            f"session {session_id} is held by runner {exc.holder!r}{until}: nothing was "
            "deleted. Wait for the runner to finish, or pass --force if it is stuck."
        ) from None
    if not deleted:
        raise SessionNotFound(session_id)
    _echo(f"deleted {session_id}")


@cli.command(
    "archive",
    epilog=_examples("tether archive ticket-42", "tether archive --inactive-days 30"),
)
@click.argument("session_id", metavar="ID", required=False)
@click.option(
    "--inactive-days",
    type=click.FloatRange(min=0),
    metavar="N",
    help="Archive every session not updated for N days.",
)
@pass_env
def archive_command(env: _Env, session_id: str | None, inactive_days: float | None) -> None:
    """Archive one session, or all inactive ones.

    Archived sessions are kept, but left out of listings unless asked for (ls --all).
    """
    if (session_id is None) == (inactive_days is None):
        _usage("give a session ID or --inactive-days N (exactly one of the two)")
    if session_id is not None:
        env.sessions.archive(session_id)
        _echo(f"archived {session_id}")
        return
    assert inactive_days is not None
    archived = render.count(env.sessions.archive_inactive(inactive_days), "session")
    _echo(f"archived {archived} not updated for {render.count(inactive_days, 'day')}")


@cli.command("clear", epilog=_examples("tether clear ticket-42 --yes"))
@click.argument("session_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def clear_command(env: _Env, session_id: str, yes: bool) -> None:
    """Empty a session's history (state and options are kept)."""
    header = env.sessions.info(session_id)
    items = render.count(header.history_len, "item")
    _confirm(f"Clear the {items} of session {session_id}?", yes)
    env.sessions.clear(session_id)
    _echo(f"cleared {session_id}: {items} removed")


# --- moving sessions between stores --------------------------------------------------------------


def _progress(label: str, total: int | None) -> Any:
    """A rich progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    return bar, bar.add_task(label, total=total)


INCOMPLETE = 3
"""Exit status of export, import, copy and migrate when they finished but left sessions as
they were: differing in the target, or stored by a newer tether (each is named on stderr)."""


def _report_left_alone(differing: dict[str, str], newer: list[str]) -> None:
    """Name, on stderr, every session that was left as it was, and why."""
    for session_id, why in differing.items():
        _echo(f"differs: {session_id}: {why}", err=True)
    for session_id in newer:
        _echo(
            f"skipped: {session_id}: stored by a newer tether, left untouched; upgrade tether "
            "to read it",
            err=True,
        )


def _finish(summary: str, differing: dict[str, str], newer: list[str], *, err: bool) -> None:
    _report_left_alone(differing, newer)
    _echo(summary, err=err)
    if differing or newer:
        raise click.exceptions.Exit(INCOMPLETE)


_replace_option = click.option(
    "--replace",
    is_flag=True,
    help="Overwrite sessions the target holds with different content (not ones it holds "
    "at a higher version, or claimed right now, without --force).",
)
_force_option = click.option(
    "--force",
    is_flag=True,
    help="With --replace: also overwrite target sessions at a higher version than the "
    "source's, or claimed by a runner.",
)


def _check_force(replace: bool, force: bool) -> None:
    if force and not replace:
        _usage("--force only strengthens --replace: pass both (--replace --force)")


@cli.command(
    "export",
    epilog=_examples(
        "tether export --all -o sessions.jsonl",
        "tether export ticket-42 ticket-43 -o two.jsonl",
    ),
)
@click.argument("session_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every session (archived ones too).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="The JSON-lines file to write ('-' for stdout); created readable by you only (0600).",
)
@click.option(
    "--decrypt",
    is_flag=True,
    help="An encrypted store (docs/encryption.md): write the sessions in clear. Without it "
    "they are written as stored, encrypted.",
)
@pass_env
def export_command(
    env: _Env, session_ids: tuple[str, ...], everything: bool, output: str, decrypt: bool
) -> None:
    """Write sessions, whole and exact, to a JSON-lines file."""
    from . import _transfer

    if bool(session_ids) == everything:
        _usage("give session ids or --all (not both)")
    store = env.sessions.store if decrypt else _transfer.raw_side(env.sessions.store)
    ids = list(_transfer.all_ids(store)) if everything else list(session_ids)
    bar, task = _progress("exporting", len(ids))
    to_stdout = output == "-"
    with bar, click.open_file("-", "wb") if to_stdout else _transfer.private_output(output) as out:
        outcome = _transfer.export(store, ids, out, lambda _: bar.advance(task), listed=everything)
    summary = f"exported {render.count(len(outcome.copied), 'session')} to {output}"
    if outcome.newer:
        summary += f"; {len(outcome.newer)} skipped (newer schema)"
    _finish(summary, {}, outcome.newer, err=to_stdout)


@cli.command(
    "import",
    short_help="Read sessions from an export file into the store.",
    epilog=_examples(
        "tether import sessions.jsonl",
        "tether --store redis://h:6379/0 import s.jsonl",
        "tether import sessions.jsonl --replace",
    ),
)
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@_replace_option
@_force_option
@pass_env
def import_command(env: _Env, path: str, replace: bool, force: bool) -> None:
    """Read sessions from an export file into the store; re-running imports nothing twice.

    A session the store holds identically is unchanged; one it holds differently is left
    as it is and named (exit status 3) unless --replace.
    """
    from . import _transfer

    _check_force(replace, force)
    with open(path, "rb") as handle:
        total = sum(1 for line in handle if line.strip())
    bar, task = _progress("importing", total)
    outcome = _transfer.Outcome()
    try:
        with bar, open(path, "rb") as handle:
            _transfer.import_lines(
                env.sessions.store,
                handle,
                lambda _: bar.advance(task),
                outcome,
                replace=replace,
                force=force,
            )
    except TetherError as exc:
        _report_left_alone(outcome.differing, outcome.newer)
        raise CliError(
            f"line {outcome.line}: {exc} -- stopped there; the lines before it were handled "
            f"({outcome.summary('imported')}). Fix or remove that line and run the same "
            "command again: what is already imported is found unchanged and not written twice."
        ) from None
    _finish(outcome.summary("imported"), outcome.differing, outcome.newer, err=False)


@cli.command(
    "copy",
    short_help="Copy every session between two stores, verified.",
    epilog=_examples(
        "tether copy --from sqlite:///app.db --to postgresql://db/app",
        "tether copy --from sqlite:///app.db --to postgresql://db/app --replace",
    ),
)
@click.option("--from", "source_url", metavar="URL", required=True, help="The store to copy from.")
@click.option("--to", "target_url", metavar="URL", required=True, help="The store to copy to.")
@_replace_option
@_force_option
def copy_command(source_url: str, target_url: str, replace: bool, force: bool) -> None:
    """Copy every session between two stores; resumable, verified at the end.

    A session the target holds identically is unchanged; one it holds differently is left as
    it is and named (exit status 3) unless --replace. Verification reads every copied session
    back and compares its digest (header and items) with the source's.
    """
    from . import _transfer
    from ._registry import open_store

    _check_force(replace, force)
    with open_store(source_url) as source, open_store(target_url) as target:
        total = sum(1 for _ in _transfer.all_ids(source))
        bar, task = _progress("copying", total)
        with bar:
            outcome = _transfer.copy(
                source, target, lambda _: bar.advance(task), replace=replace, force=force
            )
        problems = _transfer.verify(target, outcome)
    if problems:
        _report_left_alone(outcome.differing, outcome.newer)
        for session_id, problem in problems.items():
            _echo(f"not verified: {session_id}: {problem}", err=True)
        raise CliError(
            f"copy finished ({outcome.summary()}) but the target does not match what was "
            f"copied for {render.count(len(problems), 'session')} (named above); run the copy "
            "again to compare them"
        )
    _finish(
        f"{outcome.summary()}; verified: the target holds "
        f"{render.count(len(outcome.digests), 'session')} exactly as in the source (digests of "
        "header and items match)",
        outcome.differing,
        outcome.newer,
        err=False,
    )


@cli.command(
    "migrate",
    short_help="Bring a store and its sessions to this tether's schema.",
    epilog=_examples("tether migrate sqlite:///app.db", "tether --store file:sessions migrate"),
)
@click.argument("url", metavar="[URL]", required=False)
@pass_env
def migrate_command(env: _Env, url: str | None) -> None:
    """Bring a store and its sessions to this tether's schema; report what changed.

    Sessions stored by a newer tether are left untouched and named (exit status 3); the
    others are migrated.
    """
    from . import _transfer
    from ._registry import open_store
    from .schema import schema

    with open_store(url or env.url) as store:  # opening applies the store's own migrations
        total = sum(1 for _ in _transfer.all_ids(store))
        bar, task = _progress("migrating", total)
        with bar:
            result = _transfer.migrate(store, lambda _: bar.advance(task))
    summary = (
        f"store schema up to date; {result.upgraded} of {render.count(result.seen, 'session')} "
        "upgraded to "
        f"session schema version {schema.current}"
    )
    if result.newer:
        summary += f"; {len(result.newer)} skipped (newer schema)"
    _finish(summary, {}, result.newer, err=False)


# --- the demo ------------------------------------------------------------------------------------


@cli.command(
    "demo",
    epilog=_examples(
        "tether demo",
        "tether demo --store file:demo-sessions",
        "tether demo --store 'redis://localhost:6379/0?namespace=demo'",
    ),
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    help="The store to run it on (default: the one tether --store names, else $TETHER_URL, "
    f"else {DEFAULT_URL}).",
)
@pass_env
def demo_command(env: _Env, url: str | None) -> None:
    """Run the support-agent story, each step in its own process."""
    from .demo import run

    run(url or env.url)


# --- the web inspector (its own module: it needs the web extra only when run) ---------------------

from ._cli_serve import serve_command  # noqa: E402 - after the group it joins

cli.add_command(serve_command)

# --- tether worker (its own module: tether.worker runs queued turns) -----------------------------

from ._cli_worker import worker_command  # noqa: E402 - after the group it joins

cli.add_command(worker_command)

# --- tether rekey (its own module: encryption at rest, docs/encryption.md) -----------------------

from ._cli_rekey import rekey_command  # noqa: E402 - after the group it joins

cli.add_command(rekey_command)


if __name__ == "__main__":  # pragma: no cover
    main()
