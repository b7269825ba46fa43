"""``tether worker``: run queued agent turns from the store (tether.worker), until SIGTERM.

Registered on the ``tether`` group by tether.cli.
"""

from __future__ import annotations

import logging
import sys

import click

from .._urls import redact
from .common import CliError, _Env

__all__ = ["worker_command"]


@click.command(
    "worker",
    epilog="\b\nExamples:\n"
    "  tether worker --store sqlite:////srv/app/sessions.db --agent myapp.agents:make_agent\n"
    "  tether worker --store postgresql://db/app --agent myapp.agents:make_agent "
    "--concurrency 8\n\n"
    "The factory is a function of your application, def make_agent(store): return "
    "Agent(store, llm=..., tools=[...]), building the agent on the store it is given (which "
    "renews leases and stamps fences). Messages are queued with tether.worker_turns.submit "
    "(or the Celery integration's submit); sessions left hibernated by any process are "
    "picked up too. SIGTERM or Ctrl-C stops it cleanly: no new turn starts, each running turn "
    "is checkpointed at its next step (status hibernated) and another worker resumes it.",
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    help="The store to work on (default: the one tether --store names, else $TETHER_URL, "
    "else the SQLite default). SQLite: workers of one host; Redis, PostgreSQL: many hosts.",
)
@click.option(
    "--agent",
    "factory",
    metavar="MODULE:FUNCTION",
    required=True,
    help="Your agent factory: a function taking the store and returning a tether Agent.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Turns run at once (threads); turns wait on the model, so more than the cores is fine.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 3600),
    default=0.5,
    show_default=True,
    help="Seconds an idle worker waits before looking for due sessions again.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log each session run and lease event.")
@click.pass_obj
def worker_command(
    env: _Env,
    *,
    url: str | None,
    factory: str,
    concurrency: int,
    poll_interval: float,
    verbose: bool,
) -> None:
    """Run the agent turns queued in a store, until SIGTERM.

    Runs pending turns, queued inbox messages and turns whose worker died: polls the store's
    status index for due sessions, claims each (one runner per session), runs it with your
    agent while renewing its lease, and stops writing the moment a lease is lost. Every turn's
    effect happens once: a finished turn is never run again, a turn cut off by a crash
    continues from its last committed step, and a once-only tool that may have run becomes a
    review. Prints what it did when it stops.
    """
    from ..errors import TetherError
    from ..worker import Worker

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    store_url = url or env.url
    from .._registry import DEFAULT_URL

    where = redact(store_url or "") or env.where
    try:
        worker = Worker(
            store_url or DEFAULT_URL, factory, concurrency=concurrency, poll_interval=poll_interval
        )
    except TetherError as exc:
        raise CliError(str(exc)) from None
    worker.install_signal_handlers()
    click.echo(f"tether worker on {where}: {concurrency} thread(s); SIGTERM or Ctrl-C stops it")
    stats = worker.run()
    click.echo(
        f"stopped: {stats.turns_finished} turn(s) finished, {stats.checkpointed} checkpointed, "
        f"{stats.busy_skips} busy skip(s), {stats.leases_lost} lease(s) lost, "
        f"{stats.failed} failed"
    )
