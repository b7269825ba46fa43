"""The commands that read: ``tether ls``, ``show``, ``replay`` and ``inspect``. None writes."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from .._time import system_clock
from ..agent import Replay, stored
from . import render
from .common import _STATUSES, _Env, _examples, _IsoTime, _KeyValue, pass_env


@click.command(
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


@click.command(
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
    runtime = stored.runtime(session)
    out = render.console()
    render.print_grid(out, render.header_rows(session.header, system_clock(), runtime))
    state = {k: v for k, v in session.state.items() if k != stored.RESERVED}
    title = f"state (without {stored.RESERVED!r}, the turn above; --json shows it)"
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


def _replay_view(name: str, json_help: str) -> Callable[[Callable[[Replay], None]], click.Command]:
    """A command that reads one session's replay: ``--json`` prints it as data, else the
    decorated function shows it (its docstring is the command's help)."""

    def build(show: Callable[[Replay], None]) -> click.Command:
        @click.command(
            name,
            help=show.__doc__,
            epilog=_examples(f"tether {name} ticket-42", f"tether {name} ticket-42 --json"),
        )
        @click.argument("session_id", metavar="ID")
        @click.option("--json", "as_json", is_flag=True, help=json_help)
        @pass_env
        def command(env: _Env, session_id: str, as_json: bool) -> None:
            replay = env.agent().replay(session_id)
            if as_json:
                render.echo_json(render.replay_json(replay))
            else:
                show(replay)

        return command

    return build


@_replay_view("replay", "Print JSON.")
def replay_command(replay: Replay) -> None:
    """Show the timeline of a session's turns, as data.

    Calls no model and no tool: it reads what the session holds.
    """
    out = render.console()
    rows = [render.timeline_row(entry) for entry in replay.timeline]
    title = f"session {replay.session_id}  status {replay.status}"
    render.print_table(out, ["seq", "at", "kind", "detail"], rows, title=title)
    for review in replay.pending_reviews:
        args = json.dumps(dict(review.arguments), ensure_ascii=False)
        render.say(out, f"pending review {review.id}: {review.tool}({args})")
    if replay.result:
        render.say(out, f"result: {replay.result.get('text') or replay.result.get('error')}")


@_replay_view("inspect", "Print JSON (the same as replay --json).")
def inspect_command(replay: Replay) -> None:
    """Print a session's turns as plain text for a person."""
    click.echo(render.inspect_text(replay))
