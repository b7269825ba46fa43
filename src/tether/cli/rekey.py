"""``tether rekey``: move every session of an encrypted store to its current key.

Also encrypts a store written in clear (``--encrypt``) and, only when asked, decrypts one
(``--decrypt``). Each session is read whole from the store beneath the encryption and written
back with ``restore(..., expected_version=)``: the same session, the same version, seqs, keys
and commit times, only its ciphertexts new. A commit that lands in between makes that write a
:class:`~tether.errors.ConflictError`; the session is read again and retried, so a concurrent
writer is never overwritten. A session claimed by a runner right now is left for a later run
(a restore writes a session unclaimed). Sessions already under the current key are skipped,
so an interrupted run resumes where it stopped. At the end every session is checked again: the
command fails if any still names another key (or, with ``--decrypt``, any ciphertext).

Registered on the ``tether`` group by tether.cli.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConflictError, SessionNotFound, TetherError, UnsupportedSchemaVersion
from ..models import Session, StoredItem
from ..stores.abilities import Restores, missing
from ..stores.base import Store
from .common import INCOMPLETE, CliError, _echo, _Env, _progress

if TYPE_CHECKING:
    from ..encryption_codec import Codec

__all__ = ["Rekey", "check", "rekey", "rekey_command", "usage"]

TRIES = 20
"""Reads and write-backs of one session before rekey gives up on it for this run (each retry
follows a commit that landed in between: a busy session)."""


@dataclass
class Rekey:
    """What a rekey pass did, session ids by outcome."""

    rewritten: list[str] = field(default_factory=list)
    done_already: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    newer: list[str] = field(default_factory=list)
    conflicts_retried: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.rewritten)} rewritten, {len(self.done_already)} already done, "
            f"{len(self.claimed)} claimed (left for a later run), {len(self.busy)} busy "
            f"(left for a later run), {len(self.newer)} newer schema (untouched); "
            f"{self.conflicts_retried} concurrent commits retried"
        )


def _encrypted(store: Store) -> tuple[Store, Codec]:
    inner: Store | None = getattr(store, "inner", None)
    codec: Codec | None = getattr(store, "codec", None)
    if inner is None or codec is None:
        raise click.UsageError(
            "rekey needs the store's keys: add ?encryption_keys_env=NAME to the store URL "
            "(NAME: the environment variable holding kid:base64key,... with the current key "
            "first); see docs/encryption.md"
        )
    return inner, codec


def usage(raw: Session) -> set[str | None]:
    """The key ids a stored session's values name (None: a value in clear)."""
    from ..encryption_sessions import stored_key_ids

    return stored_key_ids(raw)


def _in_clear(codec: Codec, raw: Session, *, lenient: bool) -> Session:
    """The session in clear; ``lenient``: values already in clear are taken as they are (a
    store being encrypted). Ciphertexts are always verified."""
    from ..encryption_codec import is_envelope
    from ..encryption_sessions import rebuilt

    sid = raw.id

    def field_value(name: str, value: dict[str, Any]) -> dict[str, Any]:
        if lenient and not is_envelope(value):
            return value
        return codec.open_field(sid, name, value)

    items = [
        StoredItem(
            entry.seq,
            entry.timestamp,
            entry.key,
            entry.item
            if lenient and not is_envelope(entry.item)
            else codec.open_item(sid, entry.seq, entry.key, entry.item),
        )
        for entry in raw.items
    ]
    return rebuilt(raw, field_value("state", raw.state), field_value("options", raw.options), items)


def _done(used: set[str | None], codec: Codec, decrypt: bool) -> bool:
    return used == {None} if decrypt else used == {codec.keyring.current}


def _one(
    inner: Store, codec: Codec, session_id: str, *, encrypt: bool, decrypt: bool, out: Rekey
) -> None:
    from ..encryption_sessions import seal_session

    restore: Callable[..., None] = inner.restore  # type: ignore[attr-defined]
    for _ in range(TRIES):
        raw = inner.load(session_id)
        used = usage(raw)
        if _done(used, codec, decrypt):
            out.done_already.append(session_id)
            return
        until = raw.lease_expires_at
        if until is not None and until > datetime.now(timezone.utc):
            out.claimed.append(session_id)
            return
        plain = _in_clear(codec, raw, lenient=encrypt or decrypt)
        new = plain if decrypt else seal_session(codec, plain)
        try:
            restore(new, replace=True, expected_version=raw.version)
        except ConflictError:
            out.conflicts_retried += 1
            continue  # a commit landed since the read: read it again
        out.rewritten.append(session_id)
        return
    out.busy.append(session_id)


def rekey(
    store: Store,
    progress: Callable[[str], None],
    *,
    encrypt: bool = False,
    decrypt: bool = False,
) -> Rekey:
    """Rewrite every session of an encrypted ``store`` under its current key (``decrypt``: in
    clear; ``encrypt``: sessions in clear are encrypted too, instead of refused with
    :class:`~tether.errors.PlaintextFound`)."""
    from .transfer import all_ids

    inner, codec = _encrypted(store)
    if not isinstance(inner, Restores):
        raise click.UsageError(
            f"{missing(inner, Restores)}; without it the store cannot be rekeyed"
        )
    out = Rekey()
    for session_id in list(all_ids(inner)):
        try:
            _one(inner, codec, session_id, encrypt=encrypt, decrypt=decrypt, out=out)
        except SessionNotFound:
            pass  # deleted or expired meanwhile: nothing to rewrite
        except UnsupportedSchemaVersion:
            out.newer.append(session_id)
        progress(session_id)
    return out


NEWER = "stored by a newer tether"
"""What :func:`check` counts a session under that this tether cannot read (a newer schema)."""


def check(store: Store, progress: Callable[[str], None]) -> dict[str, int]:
    """Key id (``"clear"`` for values in clear) -> how many sessions use it; reads only.
    A session this tether cannot read is counted under :data:`NEWER`."""
    from .transfer import all_ids

    inner, _ = _encrypted(store)
    counts: dict[str, int] = {}
    for session_id in list(all_ids(inner)):
        try:
            used = usage(inner.load(session_id))
        except SessionNotFound:
            continue
        except UnsupportedSchemaVersion:  # unread, so not known to be under the current key
            used = {NEWER}
        for kid in used:
            name = "clear" if kid is None else kid
            counts[name] = counts.get(name, 0) + 1
        progress(session_id)
    return counts


@click.command(
    "rekey",
    epilog="\b\nExamples:\n"
    "  tether rekey --store 'sqlite:///app.db?encryption_keys_env=TETHER_KEYS'\n"
    "  tether rekey --encrypt --store 'postgresql://db/app?encryption_keys_env=TETHER_KEYS'\n"
    "  tether rekey --check --store 'sqlite:///app.db?encryption_keys_env=TETHER_KEYS'\n\n"
    "TETHER_KEYS (any name the URL gives) holds the keyring: kid:base64key entries, "
    "comma-separated, the current key first, e.g. 2026-06:<new key>,2025-12:<old key>. Once "
    "a rekey ends with every session under the current key, the old key can be dropped "
    "from the keyring.",
)
@click.option(
    "--store",
    "url",
    metavar="URL",
    help="The encrypted store, its keys named in the URL (?encryption_keys_env=NAME); default: "
    "the one tether --store names, else $TETHER_URL.",
)
@click.option(
    "--encrypt",
    is_flag=True,
    help="Also encrypt sessions stored in clear (a store written before encryption was on). "
    "Without it a session in clear stops the command.",
)
@click.option(
    "--decrypt",
    is_flag=True,
    help="Write every session back in clear (turning encryption off). Explicit on purpose.",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Write nothing: count the sessions under each key id and fail if any is not under "
    "the current key (with --decrypt: if any is encrypted).",
)
@click.pass_obj
def rekey_command(
    env: _Env, url: str | None, encrypt: bool, decrypt: bool, check_only: bool
) -> None:
    """Re-encrypt every session to the current key, then verify.

    At the end every session is read again: the command fails (exit status 3) while any
    still uses another key.

    Resumable (sessions already under the current key are skipped) and safe beside running
    writers: each session is written back only at the version it was read at, retried after
    a concurrent commit; a session claimed by a runner is left for a later run (exit status 3).
    """
    from .._registry import open_store

    if encrypt and decrypt:
        raise click.UsageError("--encrypt and --decrypt are opposites: pass one of them")
    try:
        store = open_store(url or env.url, create=False)
    except TetherError as exc:
        raise CliError(str(exc)) from None
    with store:
        total = sum(1 for _ in _transfer_ids(store))
        try:
            if not check_only:
                bar, task = _progress("rekeying", total)
                with bar:
                    done = rekey(
                        store, lambda _: bar.advance(task), encrypt=encrypt, decrypt=decrypt
                    )
                _echo(f"rekey: {done.summary()}")
            bar, task = _progress("checking", total)
            with bar:
                counts = check(store, lambda _: bar.advance(task))
        except TetherError as exc:
            raise CliError(f"{exc} -- stopped; run the command again to continue") from None
        _, codec = _encrypted(store)
    want = "clear" if decrypt else codec.keyring.current
    shown = ", ".join(f"{kid}: {n}" for kid, n in sorted(counts.items())) or "no sessions"
    others = {kid: n for kid, n in counts.items() if kid != want}
    if others:
        _echo(
            f"check: sessions by key id: {shown}; {sum(others.values())} still use "
            f"{', '.join(sorted(others))}, not {want!r}. Do not retire those keys yet: run "
            "tether rekey again (claimed and busy sessions are retried).",
            err=True,
        )
        raise click.exceptions.Exit(INCOMPLETE)
    _echo(f"check: every session uses {want!r} ({shown})")


def _transfer_ids(store: Store) -> Any:
    from .transfer import all_ids

    inner, _ = _encrypted(store)
    return all_ids(inner)
