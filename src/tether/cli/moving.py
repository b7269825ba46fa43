"""The commands that move sessions between stores: ``tether export``, ``import``, ``copy`` and
``migrate``. What they do to sessions (digests, refusals, verification) is in ``transfer``;
here are the options, the progress bars and what is reported."""

from __future__ import annotations

import click

from ..errors import TetherError
from . import render
from .common import INCOMPLETE, CliError, _echo, _Env, _examples, _progress, _usage, pass_env


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


@click.command(
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
    from . import transfer

    if bool(session_ids) == everything:
        _usage("give session ids or --all (not both)")
    store = env.sessions.store if decrypt else transfer.raw_side(env.sessions.store)
    ids = list(transfer.all_ids(store)) if everything else list(session_ids)
    bar, task = _progress("exporting", len(ids))
    to_stdout = output == "-"
    with bar, click.open_file("-", "wb") if to_stdout else transfer.private_output(output) as out:
        outcome = transfer.export(store, ids, out, lambda _: bar.advance(task), listed=everything)
    summary = f"exported {render.count(len(outcome.copied), 'session')} to {output}"
    if outcome.newer:
        summary += f"; {len(outcome.newer)} skipped (newer schema)"
    _finish(summary, {}, outcome.newer, err=to_stdout)


@click.command(
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
    from . import transfer

    _check_force(replace, force)
    with open(path, "rb") as handle:
        total = sum(1 for line in handle if line.strip())
    bar, task = _progress("importing", total)
    outcome = transfer.Outcome()
    try:
        with bar, open(path, "rb") as handle:
            transfer.import_lines(
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


@click.command(
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
    from .._registry import open_store
    from . import transfer

    _check_force(replace, force)
    with open_store(source_url) as source, open_store(target_url) as target:
        total = sum(1 for _ in transfer.all_ids(source))
        bar, task = _progress("copying", total)
        with bar:
            outcome = transfer.copy(
                source, target, lambda _: bar.advance(task), replace=replace, force=force
            )
        problems = transfer.verify(target, outcome)
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


@click.command(
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
    from .._registry import open_store
    from ..schema import schema
    from . import transfer

    with open_store(url or env.url) as store:  # opening applies the store's own migrations
        total = sum(1 for _ in transfer.all_ids(store))
        bar, task = _progress("migrating", total)
        with bar:
            result = transfer.migrate(store, lambda _: bar.advance(task))
    summary = (
        f"store schema up to date; {result.upgraded} of {render.count(result.seen, 'session')} "
        "upgraded to "
        f"session schema version {schema.current}"
    )
    if result.newer:
        summary += f"; {len(result.newer)} skipped (newer schema)"
    _finish(summary, {}, result.newer, err=False)
