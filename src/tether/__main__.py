"""``python -m tether`` and the ``tether`` console script.

The command line needs the ``cli`` extra (click and rich), which ``pip install tether`` does not
install. Nothing here imports either before checking that both are there, so without them
``tether`` names the extra to install instead of dying with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["main"]

_CLI_PACKAGES = ("click", "rich")


def _missing_message(missing: str) -> str:
    return (
        f"error: the tether command needs the 'cli' extra ({missing} is not installed). "
        "Install it with: pip install 'tether[cli]'\n"
    )


def main() -> None:
    """Run the ``tether`` command, or say which extra it needs."""
    for name in _CLI_PACKAGES:
        if importlib.util.find_spec(name) is None:
            sys.stderr.write(_missing_message(name))
            raise SystemExit(1)
    try:
        from .cli import main as cli_main
    except ModuleNotFoundError as exc:  # present, but broken or partly installed
        root = (exc.name or "").partition(".")[0]
        if root not in _CLI_PACKAGES:
            raise
        sys.stderr.write(_missing_message(root))
        raise SystemExit(1) from None
    cli_main()


if __name__ == "__main__":
    main()
