"""The ``tether`` command: see and steer the sessions of any store without writing code.

``tether ls``, ``show``, ``replay`` and ``inspect`` read; ``reviews``, ``approve``, ``deny`` and
``resume`` answer what waits for a human; ``fork``, ``rm``, ``archive`` and ``clear`` change
sessions. Every command takes ``--store URL`` (else ``$TETHER_URL``, else the embedded SQLite
default). Bad input is one ``error: ...`` line on stderr and exit status 2 (usage) or 1 (the
store or the session said no), never a traceback. Needs ``pip install 'tether[cli]'``.

This module is the group and its registration; each concern has its own module:

- ``common``: errors, parameter types, the store a command opens, shared helpers
- ``reading`` (ls, show, replay, inspect), ``reviews`` (reviews, approve, deny, resume),
  ``changing`` (fork, rm, archive, clear), ``moving`` (export, import, copy, migrate)
- ``transfer``: the export / import / copy / migrate logic (digests, refusals), no click
- ``render``: how sessions are shown, on a terminal and as JSON
- ``demo``, ``serve``, ``worker``, ``rekey``: one command each, with what it runs
"""

from __future__ import annotations

import click

from .. import __version__
from .._registry import DEFAULT_URL
from . import changing, demo, moving, reading, rekey, reviews, serve, worker
from .common import _MAY_CREATE_THE_STORE, _Env, _examples, _Group

__all__ = ["cli", "main"]


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


# In the order --help lists them (the group lists commands as added): reading first.
for _command in (
    reading.ls_command,
    reading.show_command,
    reading.replay_command,
    reading.inspect_command,
    reviews.reviews_command,
    reviews.approve_command,
    reviews.deny_command,
    reviews.resume_command,
    changing.fork_command,
    changing.rm_command,
    changing.archive_command,
    changing.clear_command,
    moving.export_command,
    moving.import_command,
    moving.copy_command,
    moving.migrate_command,
    demo.demo_command,
    serve.serve_command,
    worker.worker_command,
    rekey.rekey_command,
):
    cli.add_command(_command)
del _command
