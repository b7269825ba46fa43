"""What an integration raises when the framework it adapts is not installed."""

from __future__ import annotations


def missing_extra(module: str, needs: str, extra: str, exc: ImportError) -> ImportError:
    """The error ``tether.integrations.<module>`` raises when importing ``needs`` failed with
    ``exc``: what is missing and the pip extra that installs it."""
    return ImportError(
        f"tether.integrations.{module} needs {needs} ({exc}): pip install 'tether[{extra}]'"
    )
