"""What an integration raises when the framework it adapts is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def missing_extra(module: str, needs: str, extra: str, exc: ImportError) -> ImportError:
    """The error ``tether.integrations.<module>`` raises when importing ``needs`` failed with
    ``exc``: what is missing and the pip extra that installs it."""
    return ImportError(
        f"tether.integrations.{module} needs {needs} ({exc}): pip install 'tether[{extra}]'"
    )


@contextmanager
def requires_extra(module: str, needs: str, extra: str) -> Iterator[None]:
    """Around an integration's imports of its framework: an ImportError becomes
    :func:`missing_extra`'s."""
    try:
        yield
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise missing_extra(module, needs, extra, exc) from exc
