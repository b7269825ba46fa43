"""Private files for the embedded stores: created 0600 / 0700, never through a planted link.

Sessions hold conversations and lease tokens (a token lets its holder write), so the file store
and the SQLite store create what they write readable by their own user only. A mode given to
``open`` / ``mkdir`` is narrowed by the umask but never widened, so 0600 and 0700 stay private
whatever the umask. Existing files and directories keep the mode their owner gave them.

Opening never follows a symbolic link (``O_NOFOLLOW``): a link planted in the store directory
would otherwise make a write land on any file the application can write. It never blocks on a
FIFO or a device either (``O_NONBLOCK``, then ``fstat`` must show a regular file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

__all__ = ["FILE_MODE", "DIR_MODE", "NotRegularFile", "make_private_dirs", "open_regular"]

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# What open(O_NOFOLLOW) reports for a symbolic link: ELOOP on Linux and macOS, EMLINK on BSDs.
_LINK_ERRORS = (errno.ELOOP, errno.EMLINK)


class NotRegularFile(OSError):
    """A path tether would read or write is a symbolic link, a FIFO, a device or a directory.

    An ``OSError``, like the errors of the ``open`` it stands for: each store turns it into
    the tether error that fits where it happened (``CorruptSession`` for a session's header or
    log, ``StoreError`` otherwise), so the error tree stays the one in ``tether.errors``.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        self.path = str(path)
        self.kind = kind
        super().__init__(
            f"{self.path!r} is {kind}, not a regular file; tether never follows links or opens "
            "special files where it keeps sessions (something other than tether put it "
            "there). Remove it, check who can write to that directory, and retry."
        )


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags)`` for a regular file only; a file it creates is 0600.

    Raises :class:`NotRegularFile` for a symbolic link (never followed), a FIFO or a device
    (never waited on: opened non-blocking, then checked), or a directory; ``OSError`` for the
    rest (``FileNotFoundError`` when it is missing and ``flags`` do not create it).
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno in _LINK_ERRORS:
            raise NotRegularFile(path, "a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise NotRegularFile(path, "a directory") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, _kind(mode))
        if _NONBLOCK:  # reads and writes of the regular file may block as usual
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """Create ``path`` and its missing parents as 0700 directories; existing ones are kept."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        # made meanwhile by another process: keep it
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
