"""When to retry a model call and how long to wait: the adapters' retry policy, no I/O."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

__all__ = ["MAX_RETRY_AFTER", "backoff_delay", "retry_after", "retryable_status"]

_RETRY_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the backoff is used."""


def retryable_status(status: int) -> bool:
    """Transient HTTP failures, as the OpenAI SDK counts them: timeout, conflict, 429, 5xx."""
    return status in _RETRY_STATUSES or status >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` in seconds or
    as an HTTP date), or None if it said nothing usable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            seconds = float(lowered["retry-after-ms"]) / 1000
        elif "retry-after" in lowered:
            text = lowered["retry-after"].strip()
            try:
                seconds = float(text)
            except ValueError:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - time.time()
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) and seconds <= MAX_RETRY_AFTER else None


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with jitter: ``initial * 2**attempt`` capped, less up to 25%."""
    return float(min(cap, initial * 2**attempt) * (1 - 0.25 * random.random()))
