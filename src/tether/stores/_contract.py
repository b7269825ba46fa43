"""How the store contract's classes work, shared by :class:`~tether.AsyncStore` and
:class:`~tether.Store`: the table of public and protected methods, what marks a protected
method required, and the class machinery (``__init_subclass__``, ``__new__``) that lets a store
implement either the protected methods or, as stores written before them do, the public ones.

No I/O and nothing async, so one module serves both sides; the contract itself (the public
methods checking their arguments once) is in ``base_async.py`` (``base_sync.py`` generated).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["PROTECTED_METHODS"]

_F = TypeVar("_F", bound=Callable[..., Any])

PROTECTED_METHODS = {
    "create": "_create",
    "load": "_load",
    "commit": "_commit",
    "replace_history": "_replace_history",
    "append": "_append",
    "replace_tail": "_replace_tail",
    "items_by_key": "_items_by_key",
    "list": "_list_page",
    "delete": "_delete",
    "exists": "_exists",
    "claim": "_claim",
    "renew": "_renew",
    "release": "_release",
}
"""Each public method of the contract and the protected method it calls with checked values."""


def _required(method: _F) -> _F:
    """Abstract at run time (ABCMeta refuses a store without it, unless ``__init_subclass__``
    marked it implemented) but not to a type checker, which cannot see that marking: a store
    that overrides the public methods instead type-checks as instantiable, as it is."""
    setattr(method, "__isabstractmethod__", True)  # noqa: B010 - a Callable has no such attribute to mypy
    return method


def _public_only(public: str, protected: str) -> Callable[..., Any]:
    """What stands for ``protected`` on a store that overrides ``public`` instead: that store
    never reaches it through the base class, so it only says what happened if called."""

    def overridden(self: object, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} overrides {public}() and has no {protected}(): call {public}()"
        )

    overridden.__name__ = overridden.__qualname__ = protected
    return overridden


def _stamps_own_commits(cls: type) -> bool:
    """Whether ``cls``'s own ``_commit_stamped`` (or ``commit_stamped``) makes the commit its
    ``commit`` makes: it is defined in a class at or below every class that defines ``commit``
    or ``_commit``. A subclass that changes ``commit`` (an audit, a wrapper) and not the
    stamped one would otherwise be bypassed by callers of ``commit_stamped``."""

    def definer(*names: str) -> type | None:
        for klass in cls.__mro__:
            if _StoreMachinery in klass.__bases__:  # AsyncStore / Store: the contract's own
                return None
            if any(name in klass.__dict__ for name in names):
                return klass
        return None

    stamper = definer("_commit_stamped", "commit_stamped")
    if stamper is None:
        return False
    committers = (definer("commit"), definer("_commit"))
    # "klass in stamper.__mro__", not issubclass: inside __init_subclass__ ABCMeta's subclass
    # cache is not ready for the class being made, and issubclass can answer True wrongly
    return all(klass is None or klass in stamper.__mro__ for klass in committers)


class _StoreMachinery(ABC):  # noqa: B024 - its abstract methods are marked by _required
    """The base of :class:`~tether.AsyncStore` and :class:`~tether.Store` (their direct
    subclass): it checks each store class as it is made, and refuses to instantiate one that
    implements neither side of a pair, naming both."""

    _stamps_commits: bool = False
    """Whether :meth:`commit_stamped` calls this store's ``_commit_stamped`` (set per class by
    ``__init_subclass__``); otherwise it reports the version :meth:`commit` returns."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Runs inside type.__new__, before ABCMeta computes the abstract set: a store that
        # overrides a public method (one written before the protected methods existed, or a
        # wrapper delegating whole calls) has that method's protected twin marked implemented,
        # so only a store that implements neither is refused at instantiation.
        super().__init_subclass__(**kwargs)
        if _StoreMachinery in cls.__bases__:  # AsyncStore / Store themselves: the contract
            return
        for public, protected in PROTECTED_METHODS.items():
            if public in cls.__dict__ and getattr(
                getattr(cls, protected, None), "__isabstractmethod__", False
            ):
                setattr(cls, protected, _public_only(public, protected))
        cls._stamps_commits = _stamps_own_commits(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # ABCMeta's own refusal names only the protected methods; this one says both ways out.
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            public = {protected: name for name, protected in PROTECTED_METHODS.items()}
            names = ", ".join(
                f"{public[name]}() / {name}()" if name in public else f"{name}()"
                for name in missing
            )
            raise TypeError(
                f"cannot instantiate {cls.__name__}: it implements neither the public nor the "
                f"protected method of {names}; a store implements the protected methods "
                "(see docs/stores.md, 'The whole contract yourself')"
            )
        return super().__new__(cls)
