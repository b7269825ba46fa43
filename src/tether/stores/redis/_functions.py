"""What Redis's replies say about tether's function library (no I/O): see
``_scripts.Library`` and ``_calls_async._AsyncScriptCalls._call_script``."""

from __future__ import annotations


def missing(exc: Exception) -> bool:
    """FCALL of a function the server does not have (never loaded, or lost: restart without
    persistence, FUNCTION FLUSH / DELETE): nothing ran."""
    return "Function not found" in str(exc)


def unsupported(exc: Exception) -> bool:
    """A server without functions (Redis 6.2: unknown command), or a user whose ACL refuses
    FCALL or FUNCTION LOAD: nothing ran, and EVALSHA is the way."""
    text = str(exc)
    return "unknown command" in text or text.startswith("NOPERM") or "no permissions" in text


def already_loaded(exc: Exception) -> bool:
    """FUNCTION LOAD of a library another process loaded first: the same text (its name is
    its hash), so it is there."""
    return "already exists" in str(exc)
