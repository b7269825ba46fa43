"""Parsing store URLs and their options, and hiding their secrets (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from .errors import ConfigurationError

__all__ = ["as_bool", "as_choice", "as_float", "parse_store_url", "redact", "scrub"]

Converter = Callable[[str], Any]

# --- secrets: every message or log line that quotes a URL goes through redact() --------------

HIDDEN = "***"

# An option whose name contains one of these holds a secret (password=, sslpassword=, passwd=,
# passfile=, client_secret=, token=, api_key=, sslkey=, auth=, sig=...). Hiding a harmless one
# (a key file's path) costs nothing; showing a secret cannot be undone.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|sig", re.IGNORECASE)
# scheme://authority: the authority ends at the first / ? or #, as urlsplit and the drivers
# read it; its userinfo is everything before the last @, and the password follows the first :
_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#\s]*)")
# user:password@host with no scheme:// (a mistyped URL): the same secret, as a driver would read it
_BARE_USERINFO = re.compile(r"(?P<lead>^|[\s'\"(])(?P<user>[^\s:/@'\"]*):(?P<pw>[^\s/@'\"]+)@")
# A URL's query string (?a=1&b=2, or ;-separated), up to a space or a quote: the options whose
# names look secret are hidden. Only in a URL: "KEY=VALUE" in a sentence is no secret.
_QUERY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*:)(?P<rest>[^\s'\"<>?]*\?[^\s'\"<>]*)")
_QUERY_PAIR = re.compile(r"(?P<lead>^|[?&;])(?P<name>[^=&;?#]+)(?P<eq>=)(?P<value>[^&;#]*)")
# A libpq key=value connection string (host=db password='x y'): its password keywords.
_LIBPQ_PAIR = re.compile(
    r"(?P<lead>^|\s)(?P<name>password|sslpassword)(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^\s'\"]*)"
)


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(unquote_plus(name)))


def _hide_password(match: re.Match[str]) -> str:
    userinfo, at, host = match["authority"].rpartition("@")
    if not at or ":" not in userinfo:
        return match.group(0)
    user = userinfo.partition(":")[0]
    return f"{match['scheme']}{user}:{HIDDEN}@{host}"


def _hide_value(match: re.Match[str]) -> str:
    if not _is_secret_name(match["name"]) or not match["value"]:
        return match.group(0)
    return f"{match['lead']}{match['name']}{match['eq']}{HIDDEN}"


def redact(text: str) -> str:
    """``text`` (a store URL, a libpq ``key=value`` string, or a message quoting either) with
    every password and password-like option value replaced by ``***``.

    ``redis://:pw@h/0`` -> ``redis://:***@h/0``; ``postgresql://u@h/db?password=pw`` ->
    ``postgresql://u@h/db?password=***``; ``host=h password=pw`` -> ``host=h password=***``.
    The user, host, port, database and other options stay, so the message still says which
    store it is about.
    """
    text = _AUTHORITY.sub(_hide_password, text)
    text = _BARE_USERINFO.sub(lambda m: f"{m['lead']}{m['user']}:{HIDDEN}@", text)
    text = _QUERY.sub(lambda m: m["scheme"] + _QUERY_PAIR.sub(_hide_value, m["rest"]), text)
    return _LIBPQ_PAIR.sub(_hide_value, text)


def secrets_of(url: str) -> list[str]:
    """The secret values a URL (or libpq string) holds, as written and decoded."""
    found: list[str] = []
    for match in _AUTHORITY.finditer(url):
        userinfo, at, _ = match["authority"].rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    found.extend(match["pw"] for match in _BARE_USERINFO.finditer(url))
    pairs = [p for m in _QUERY.finditer(url) for p in _QUERY_PAIR.finditer(m["rest"])]
    for match in [*pairs, *_LIBPQ_PAIR.finditer(url)]:
        if _is_secret_name(match["name"]) and match["value"]:
            found.append(match["value"].strip("'"))
    decoded = [unquote_plus(value) for value in found] + [unquote(value) for value in found]
    return sorted({value for value in found + decoded if value}, key=len, reverse=True)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` without the secrets of ``urls``, however it quotes them.

    For messages that come from somewhere else (a driver's exception, a log record): they may
    quote the URL, or only its password (decoded), where :func:`redact` cannot see a name.
    """
    text = redact(text)
    for url in urls:
        if not url:
            continue
        for secret in secrets_of(url):
            text = text.replace(secret, HIDDEN)
    return text


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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here, not in a driver)
    except ValueError as exc:
        raise ConfigurationError(f"{redact(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme != scheme:
        raise ConfigurationError(f"expected a {scheme}:// URL, got {redact(url)!r}")
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(
            f"cannot parse the options of {redact(url)!r}: {scrub(str(exc), url)}"
        ) from exc
    for name, text in pairs:
        if name not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ConfigurationError(
                f"unknown option {name!r} in {redact(url)!r}; valid options for {scheme}: {valid}"
            )
        try:
            options[name] = allowed[name](text)
        except ValueError as exc:
            raise ConfigurationError(
                f"option {name} in {redact(url)!r}: {scrub(str(exc), url)}"
            ) from exc
    return parts.netloc, unquote(parts.path), options
