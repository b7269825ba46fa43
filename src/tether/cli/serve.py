"""``tether serve``: the web inspector (tether.web) on a local port, with uvicorn.

Registered on the ``tether`` group by tether.cli. Needs ``pip install 'tether[cli,web]'``.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from typing import Any

import click

from .._urls import redact
from .common import CliError, _Env, _usage

__all__ = ["serve_command"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int, token: str) -> str:
    """The address to open: the token in its query string, as Jupyter prints it."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


@click.command(
    "serve",
    epilog="\b\nExamples:\n"
    "  tether serve\n"
    "  tether --store sqlite:////srv/app/sessions.db serve --read-only\n"
    "  tether serve --store postgresql://db/app --port 9000\n"
    '  tether serve --host 0.0.0.0 --token "$(openssl rand -hex 24)"\n\n'
    "Every request needs the access token: it is made at start (or given with --token) and "
    "printed in the address to open; the browser then keeps it in an HttpOnly cookie. A host "
    "other than this machine (127.0.0.1, ::1, localhost) refuses to start without an explicit "
    "--token, since the inspector shows private conversations and can approve real actions.",
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    help="The store to inspect (default: the one tether --store names, else $TETHER_URL, "
    "else the SQLite default).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; anything but loopback needs --token.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="The port."
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Hide and refuse every write (answers, fork, archive, delete).",
)
@click.option(
    "--token",
    metavar="T",
    envvar="TETHER_INSPECTOR_TOKEN",
    show_envvar=True,
    help="The access token (default: a random one, printed with the address).",
)
@click.pass_obj
def serve_command(
    env: _Env, *, url: str | None, host: str, port: int, read_only: bool, token: str | None
) -> None:
    """Open a web inspector and review desk on this store, in a browser.

    Lists and filters sessions, shows a session's conversation, tool calls, state and
    reviews (its newest page first, paging back, live as items are committed), answers
    reviews, forks, archives and deletes; a JSON API under /api/ answers with the --json
    shapes of ls, show, replay and reviews. Ctrl-C stops it.
    """
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:
        raise CliError(
            f"tether serve needs the web extra: pip install 'tether[web]' ({exc})"
        ) from None
    if token is not None and len(token) < 16:
        _usage("--token must be at least 16 characters (e.g. $(openssl rand -hex 24))")
    if not is_loopback(host) and token is None:
        _usage(
            f"--host {host} lets other machines connect: refusing to start without an explicit "
            "--token (or $TETHER_INSPECTOR_TOKEN); the inspector shows private conversations "
            "and can approve actions"
        )
    store_url = url or env.url
    # open it once here, as a reader: a mistyped SQLite path or a server that does not answer
    # is one error line now, not a broken page later
    from .._registry import open_store

    open_store(store_url, create=False).close()
    chosen = token if token is not None else secrets.token_urlsafe(24)
    app = create_app(store_url, token=chosen, read_only=read_only)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    where = redact(store_url or "") or env.where
    mode = " (read-only)" if read_only else ""
    _announce(server, f"tether inspector on {where}{mode}", host, token=chosen, port=port)
    server.run()


def _announce(server: Any, title: str, host: str, *, token: str, port: int) -> None:
    """Print the address once uvicorn listens (the port is the real one with --port 0)."""
    started = server.startup

    async def startup(sockets: Any = None) -> None:
        await started(sockets=sockets)
        bound = port
        for srv in getattr(server, "servers", []):
            for sock in getattr(srv, "sockets", []):
                bound = sock.getsockname()[1]
                break
        click.echo(title)
        click.echo(f"open: {url_for(host, bound, token)}")
        click.echo("Ctrl-C stops it.")
        sys.stdout.flush()

    server.startup = startup
