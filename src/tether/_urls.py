"""Parsing store URLs and their options (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["as_bool", "as_choice", "as_float", "parse_store_url"]

Converter = Callable[[str], Any]


def as_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def as_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"{text!r} must be a number >= 0")
    return value


def as_choice(*choices: str) -> Converter:
    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text.lower()

    return convert


def parse_store_url(
    url: str, scheme: str, allowed: Mapping[str, Converter]
) -> tuple[str, str, dict[str, Any]]:
    """Split ``url`` into (netloc, path, options), checking every option name and value."""
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise ConfigurationError(f"expected a {scheme}:// URL, got {url!r}")
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse the options of {url!r}: {exc}") from exc
    for name, text in pairs:
        if name not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ConfigurationError(
                f"unknown option {name!r} in {url!r}; valid options for {scheme}: {valid}"
            )
        try:
            options[name] = allowed[name](text)
        except ValueError as exc:
            raise ConfigurationError(f"option {name} in {url!r}: {exc}") from exc
    return parts.netloc, unquote(parts.path), options
