"""What every ``tether`` command shares: one-line errors, parameter types, the store it opens.

Bad input is one ``error: ...`` line on stderr and exit status 2 (usage) or 1 (the store or the
session said no), never a traceback: :class:`_Group` turns every error into one of those.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NoReturn

import click

from .._registry import DEFAULT_URL, open_store
from .._urls import redact, scrub
from ..agent import Agent
from ..errors import TetherError
from ..models import SessionStatus
from ..sessions_sync import Sessions
from . import render

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
            # Sessions closes only a store it opened itself; this one the command opened (a
            # PostgreSQL pool left open would be torn down by the garbage collector, late)
            self._sessions.store.close()


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
