"""The commands that change sessions: ``tether fork``, ``rm``, ``archive`` and ``clear``."""

from __future__ import annotations

import click

from ..errors import AlreadyClaimed, SessionNotFound
from . import render
from .common import CliError, _confirm, _echo, _Env, _examples, _usage, pass_env


@click.command(
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


@click.command(
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


@click.command(
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


@click.command("clear", epilog=_examples("tether clear ticket-42 --yes"))
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
