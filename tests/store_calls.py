"""Counting a store's calls, for the tests that pin how many of them a turn makes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def count_calls(store: object, names: Iterable[str]) -> Counter[str]:
    """Count the calls made to ``store``'s methods ``names`` from now on (each is wrapped on the
    instance). An async method's wrapper returns its coroutine: the caller awaits it as before."""
    counts: Counter[str] = Counter()
    for name in names:
        method = getattr(store, name)

        def counted(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            counts[_name] += 1
            return _method(*args, **kw)

        setattr(store, name, counted)
    return counts
