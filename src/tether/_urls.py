"""Parsing store URLs and their options, and hiding their secrets (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from .errors import ConfigurationError

__all__ = [
    "FILE_OPTIONS",
    "KV_MEMORY_OPTIONS",
    "MEMORY_OPTIONS",
    "NATS_OPTIONS",
    "SQLITE_OPTIONS",
    "Option",
    "StoreOptions",
    "StoreURL",
    "as_bool",
    "as_choice",
    "as_float",
    "as_positive_float",
    "as_size",
    "parse_store_url",
    "redact",
    "scrub",
]

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


def as_positive_float(text: str) -> float:
    value = as_float(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a number of seconds > 0")
    return value


def as_size(text: str) -> int:
    """An integer >= 0 (a count or a size)."""
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must be an integer >= 0")
    return value


# --- each store's options, declared once ------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of a store: its name in a URL query and in a configuration section, how its
    text is parsed (raises ValueError or ConfigurationError), its default, and what it does."""

    name: str
    parse: Converter
    default: Any
    doc: str


class StoreOptions(Mapping[str, Converter]):
    """A store's options, declared once: read by its ``from_url`` (through
    :func:`parse_store_url`) and by :func:`tether.store_from_config`, so an option is accepted
    in both or in neither. As a mapping it is ``name -> parser``.

    ``passthrough`` names the options tether does not read but hands to the driver unchanged
    (PostgreSQL's libpq parameters), described by ``passthrough_doc``.
    """

    def __init__(
        self,
        *options: Option,
        passthrough: Callable[[], Iterable[str]] | None = None,
        passthrough_doc: str = "",
    ) -> None:
        self.options = {option.name: option for option in options}
        self._passthrough = passthrough
        self.passthrough_doc = passthrough_doc

    def __getitem__(self, name: str) -> Converter:
        return self.options[name].parse

    def __iter__(self) -> Iterator[str]:
        return iter(self.options)

    def __len__(self) -> int:
        return len(self.options)

    def passes(self, name: str) -> bool:
        """Whether ``name`` is a driver's option handed on unchanged."""
        return self._passthrough is not None and name in self._passthrough()

    def defaults(self) -> dict[str, Any]:
        return {name: option.default for name, option in self.options.items()}

    def describe(self) -> str:
        """One line per option: ``name`` (default): what it does."""
        return "\n".join(
            f"{name} (default {option.default!r}): {option.doc}"
            for name, option in self.options.items()
        )


@dataclass(frozen=True, repr=False)
class StoreURL:
    """A store URL taken apart by :func:`parse_store_url`. Its repr and str never show a
    secret; unpacks as ``netloc, path, options``."""

    url: str
    scheme: str
    netloc: str
    path: str
    options: dict[str, Any]
    passed: list[tuple[str, str]]
    """The driver's options (``StoreOptions.passthrough``), in order, as written."""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.netloc, self.path, self.options))

    @overload
    def __getitem__(self, index: Literal[0, 1]) -> str: ...
    @overload
    def __getitem__(self, index: Literal[2]) -> dict[str, Any]: ...
    def __getitem__(self, index: int) -> str | dict[str, Any]:
        return (self.netloc, self.path, self.options)[index]

    def __repr__(self) -> str:
        return f"StoreURL({redact(self.url)!r})"

    __str__ = __repr__


MEMORY_OPTIONS = StoreOptions()
FILE_OPTIONS = StoreOptions(
    Option("lock_timeout", as_float, 10.0, "seconds to wait for a session's lock file"),
    Option("fsync", as_bool, True, "fsync every write (false: faster, not crash-safe)"),
)
SQLITE_OPTIONS = StoreOptions(
    Option("synchronous", as_choice("normal", "full"), "normal", "SQLite's synchronous pragma"),
    Option("timeout", as_float, 30.0, "seconds to wait for a database lock"),
)
KV_MEMORY_OPTIONS = StoreOptions(
    Option("chunk_items", int, 32, "history items per stored chunk"),
    Option("max_value_size", int, 1048576, "the largest value the dict backend holds (bytes)"),
)
NATS_OPTIONS = StoreOptions(
    Option("chunk_items", int, 32, "history items per stored chunk"),
    Option("create", as_bool, True, "create the key-value bucket if it does not exist"),
    Option("connect_timeout", as_float, 2.0, "seconds to connect before StoreUnavailable"),
    Option("timeout", as_float, 5.0, "seconds a request may take before StoreUnavailable"),
)


def parse_store_url(
    url: str, scheme: str | tuple[str, ...], allowed: Mapping[str, Converter]
) -> StoreURL:
    """Split ``url`` into (netloc, path, options), checking every option name and value.

    ``scheme`` is the scheme (or the schemes) the store takes; ``allowed`` its options (a
    :class:`StoreOptions`, or any ``name -> parser`` mapping). Every error is a
    :class:`ConfigurationError` that quotes the URL without its secrets.
    """
    schemes = (scheme,) if isinstance(scheme, str) else scheme
    if not isinstance(url, str):
        raise ConfigurationError(f"a {schemes[0]} store URL is a str, not {type(url)}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here, not in a driver)
    except ValueError as exc:
        raise ConfigurationError(f"{redact(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        wanted = " or ".join(f"{name}://" for name in schemes)
        raise ConfigurationError(f"expected a {wanted} URL, got {redact(url)!r}")
    options: dict[str, Any] = {}
    passed: list[tuple[str, str]] = []
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(
            f"cannot parse the options of {redact(url)!r}: {scrub(str(exc), url)}"
        ) from exc
    for name, text in pairs:
        if name in allowed:
            if name in options:
                raise ConfigurationError(f"option {name} is given twice in {redact(url)!r}")
            try:
                options[name] = allowed[name](text)
            except (ValueError, ConfigurationError) as exc:
                raise ConfigurationError(
                    f"option {name} in {redact(url)!r}: {scrub(str(exc), url)}"
                ) from exc
        elif isinstance(allowed, StoreOptions) and allowed.passes(name):
            passed.append((name, text))
        else:
            raise ConfigurationError(unknown_option(name, url, parts.scheme, allowed))
    return StoreURL(url, parts.scheme, parts.netloc, unquote(parts.path), options, passed)


def unknown_option(name: str, url: str, scheme: str, allowed: Mapping[str, Converter]) -> str:
    """The message for an option ``allowed`` does not know (the URL quoted redacted)."""
    valid = ", ".join(sorted(allowed)) or "none"
    message = f"unknown option {name!r} in {redact(url)!r}; valid options for {scheme}: {valid}"
    if isinstance(allowed, StoreOptions) and allowed.passthrough_doc:
        message += f", and {allowed.passthrough_doc}"
    return message
