"""Tools: Python callables a model may call, each with a JSON schema and a rerun policy.

``@tool`` wraps a function in a :class:`Tool`. Its JSON schema is derived from the signature
(:func:`schema_from_signature`), its description from the docstring, and it declares what
running it again means (:class:`~tether.agent.types.Rerun`), which decides what resume may do
after a crash. Arguments coming from a model are checked against the schema before the function
runs, so a confused model gets a :class:`ToolArgumentError` it can be told about instead of a
``TypeError`` from deep inside the tool.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, overload

from .. import _json
from ..errors import InvalidRequest, InvalidSessionData
from .types import Rerun, ToolSpec

__all__ = ["Tool", "ToolArgumentError", "schema_from_signature", "tool", "tools_by_name"]

# What OpenAI-compatible servers accept as a function name.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Raises|Yields?|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolArgumentError(InvalidRequest):
    """A model called a tool with arguments its schema does not allow; the tool did not run.

    The engine reports it to the model as the tool's result so the model can call again.
    """

    def __init__(self, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = problem
        super().__init__(
            f"invalid arguments for tool {tool!r}: {problem}. The tool did not run; call it "
            "again with arguments that match its parameters schema."
        )


@dataclass(frozen=True, eq=False)  # identity equality: hashable, usable in sets and as keys
class Tool:
    """A callable the model may call, with what the model is told about it and its policies.

    Calling the ``Tool`` object itself calls ``fn`` unchanged, so a decorated function stays
    usable as a function. The engine uses :meth:`call` / :meth:`acall`, which check the
    model's arguments first.
    """

    fn: Callable[..., Any]
    name: str
    description: str
    parameters: dict[str, Any]
    """A JSON schema of type ``object`` for the keyword arguments."""
    rerun: Rerun = Rerun.ONCE
    """Safe default: a tool that says nothing about itself must never run twice."""
    requires_approval: bool = False
    approval_ttl: float | None = None
    """Seconds a pending approval stays valid (``None``: until answered)."""
    _enums: dict[str, type[enum.Enum]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ (only here, before anyone holds it);
        # a str is accepted so that Tool(..., rerun="pure") works like @tool(rerun="pure")
        object.__setattr__(self, "rerun", _rerun(self.rerun, self.name))
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidRequest(
                f"tool name {self.name!r} is not valid: use 1-64 characters from "
                "[A-Za-z0-9_-] (pass name= to @tool)"
            )
        if self.approval_ttl is not None and not self.approval_ttl > 0:
            raise InvalidRequest(
                f"tool {self.name!r}: approval_ttl={self.approval_ttl!r} must be a positive "
                "number of seconds, or None for no time limit"
            )
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise InvalidRequest(
                f"tool {self.name!r}: parameters must be a JSON schema dict with "
                '"type": "object" (leave it out to derive it from the signature)'
            )
        object.__setattr__(self, "_enums", _enum_parameters(self.fn))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def spec(self) -> ToolSpec:
        """What the model is told about this tool."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    @property
    def is_async(self) -> bool:
        return _is_coroutine_function(self.fn)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments checked against the schema (and Enum values converted), or raise.

        Checks required and unknown names, and the ``type`` / ``enum`` / ``anyOf`` / ``items``
        keywords of each value; other schema keywords are left to the tool.
        """
        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(
                self.name, f"arguments must be a JSON object, got {type(arguments).__name__}"
            )
        schema = self.parameters
        properties: Mapping[str, Any] = schema.get("properties") or {}
        missing = [name for name in schema.get("required", ()) if name not in arguments]
        if missing:
            raise ToolArgumentError(self.name, f"missing required {_names(missing)}")
        if schema.get("additionalProperties") is False:
            unknown = [name for name in arguments if name not in properties]
            if unknown:
                known = ", ".join(properties) or "none"
                raise ToolArgumentError(self.name, f"unknown {_names(unknown)} (known: {known})")
        checked = dict(arguments)
        for name, value in checked.items():
            if name in properties:
                problem = _check(value, properties[name], name)
                if problem:
                    raise ToolArgumentError(self.name, problem)
            if name in self._enums and value is not None:
                try:
                    checked[name] = self._enums[name](value)
                except ValueError:
                    choices = [member.value for member in self._enums[name]]
                    raise ToolArgumentError(
                        self.name, f"argument {name!r} must be one of {choices!r}, got {value!r}"
                    ) from None
        return checked

    def call(self, arguments: Mapping[str, Any]) -> Any:
        """Check ``arguments`` and run the tool (sync runtime)."""
        if self.is_async:
            raise TypeError(
                f"tool {self.name!r} is async (a coroutine function): run it with the async "
                "runtime (await tool.acall(...) / AsyncAgent), or make it a plain function"
            )
        result = self.fn(**self.validate(arguments))
        if inspect.isawaitable(result):
            # a plain function that returned a coroutine: refuse rather than leak it unawaited
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError(
                f"tool {self.name!r} returned an awaitable: run it with the async runtime "
                "(await tool.acall(...))"
            )
        return result

    async def acall(self, arguments: Mapping[str, Any]) -> Any:
        """Check ``arguments`` and run the tool; coroutine functions are awaited.

        Plain functions run inline on the event loop (as the turn waits for them anyway); wrap a
        slow blocking tool in ``asyncio.to_thread`` yourself if the loop must stay free.
        """
        result = self.fn(**self.validate(arguments))
        if inspect.isawaitable(result):
            result = await result
        return result


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    rerun: Rerun | str = Rerun.ONCE,
    requires_approval: bool = False,
    approval_ttl: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    rerun: Rerun | str = Rerun.ONCE,
    requires_approval: bool = False,
    approval_ttl: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function: ``@tool`` or ``@tool(rerun="pure", ...)``.

    ``name`` defaults to the function's name, ``description`` to the first paragraph of its
    docstring, ``parameters`` to :func:`schema_from_signature`.
    """

    def wrap(func: Callable[..., Any]) -> Tool:
        if isinstance(func, Tool):
            func = func.fn
        tool_name = name or str(getattr(func, "__name__", type(func).__name__))
        return Tool(
            fn=func,
            name=tool_name,
            description=_summary(func) if description is None else description,
            parameters=dict(parameters) if parameters is not None else schema_from_signature(func),
            rerun=_rerun(rerun, tool_name),
            requires_approval=requires_approval,
            approval_ttl=approval_ttl,
        )

    return wrap if fn is None else wrap(fn)


def tools_by_name(tools: Iterable[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """Index tools by name; plain callables are wrapped with :func:`tool`'s defaults."""
    found: dict[str, Tool] = {}
    for item in tools:
        wrapped = item if isinstance(item, Tool) else tool(item)
        if wrapped.name in found:
            raise InvalidRequest(
                f"two tools are named {wrapped.name!r}; tool names must be unique: rename one "
                "(@tool(name=...))"
            )
        found[wrapped.name] = wrapped
    return found


# --- schema derivation ---------------------------------------------------------------------------

_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    None: {"type": "null"},
    type(None): {"type": "null"},
    Any: {},
}
_SUPPORTED = (
    "str, int, float, bool, None, Any, list[X], tuple[X, ...], set[X], dict[str, X], X | None, "
    "unions, Literal[...] and Enum subclasses"
)


def schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema (plain JSON) of ``fn``'s keyword arguments, from its type hints.

    A parameter with a default is optional (its ``default`` recorded when it is JSON); one
    without an annotation accepts anything. Descriptions come from a Google-style ``Args:``
    section of the docstring. Raises ``TypeError`` for ``*args`` / ``**kwargs``, positional-only
    parameters and annotations JSON schema cannot describe.
    """
    hints = _hints(fn)
    described = _arg_descriptions(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        where = f"parameter {param.name!r} of {_label(fn)}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(
                f"{where}: a tool cannot take *args or **kwargs (the model needs named "
                "parameters): list each parameter explicitly"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{where} is positional-only; tools are called with keyword arguments")
        schema = _schema(hints.get(param.name, Any), where)
        if param.name in described:
            schema["description"] = described[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            # a default that is not JSON still applies; it is just not advertised
            with contextlib.suppress(InvalidSessionData):
                schema["default"] = _json.loads(_json.dumps(_as_sent(param.default)))
        properties[param.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _as_sent(default: Any) -> Any:
    """A default as the model would send it: an Enum member as its value (also inside lists,
    tuples and dict values), as the schema's ``enum`` lists it. The JSON encoder rightly refuses
    members, so the conversion is the schema's, here, not the encoder's."""
    if isinstance(default, enum.Enum):
        return _as_sent(default.value)
    if isinstance(default, (list, tuple)):
        return [_as_sent(item) for item in default]
    if isinstance(default, Mapping):
        return {key: _as_sent(value) for key, value in default.items()}
    return default


def _schema(annotation: Any, where: str) -> dict[str, Any]:
    if annotation in _SIMPLE:
        return dict(_SIMPLE[annotation])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union or origin is types.UnionType:
        return _union([_schema(arg, where) for arg in args])
    if origin is Literal:
        return _enum(list(args), where)
    if _is_enum(annotation):
        return _enum(list(annotation), where)
    base = origin or annotation  # typing.List and list[int] both have the origin list
    if base in (list, tuple, set, frozenset, Sequence):
        schema: dict[str, Any] = {"type": "array"}
        if base in (set, frozenset):
            schema["uniqueItems"] = True
        if base is tuple and args and args[-1] is not Ellipsis:  # a fixed-length tuple
            items = [_schema(arg, where) for arg in args]
            return {**schema, "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        if args:
            schema["items"] = _schema(args[0], where)
        return schema
    if base in (dict, Mapping):
        if args and args[0] is not str:
            raise TypeError(f"{where}: JSON object keys are strings; annotate it dict[str, ...]")
        schema = {"type": "object"}
        if args:
            schema["additionalProperties"] = _schema(args[1], where)
        return schema
    raise TypeError(
        f"{where}: annotation {annotation!r} cannot be described as JSON schema. Use {_SUPPORTED}, "
        "or pass parameters= to @tool with your own schema"
    )


def _union(options: list[dict[str, Any]]) -> dict[str, Any]:
    if any(option == {} for option in options):
        return {}  # anything | X is anything
    # a union of bare types reads best as a type list: {"type": ["string", "null"]}
    if all(set(option) == {"type"} and isinstance(option["type"], str) for option in options):
        return {"type": list(dict.fromkeys(option["type"] for option in options))}
    return {"anyOf": options}


def _enum(values: list[Any], where: str) -> dict[str, Any]:
    plain = [value.value if isinstance(value, enum.Enum) else value for value in values]
    kinds = set()
    for value in plain:
        kind = _json_type(value)
        if kind is None or kind in ("array", "object"):
            raise TypeError(f"{where}: choice {value!r} is not a JSON string, number, bool or null")
        kinds.add(kind)
    schema: dict[str, Any] = {"enum": plain}
    if len(kinds) == 1:
        schema["type"] = kinds.pop()
    return schema


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn if inspect.isroutine(fn) else type(fn).__call__
    try:
        return typing.get_type_hints(target)
    except Exception as exc:  # a NameError from a string annotation, mostly
        raise TypeError(
            f"the type hints of {_label(fn)} cannot be resolved ({exc}): import the names its "
            "annotations use at module level"
        ) from exc


def _enum_parameters(fn: Callable[..., Any]) -> dict[str, type[enum.Enum]]:
    """Parameters annotated with an Enum (or Enum | None): the model sends values, not members."""
    try:
        hints = _hints(fn)
    except TypeError:
        return {}
    found = {}
    for name, hint in hints.items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
        candidates = [a for a in args if a is not type(None)] if args else [hint]
        if len(candidates) == 1 and _is_enum(candidates[0]):
            found[name] = candidates[0]
    return found


# --- argument checks -----------------------------------------------------------------------------


# bool before int: True is an int to Python, not to JSON schema
_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    ((list, tuple), "array"),
    (Mapping, "object"),
    (type(None), "null"),
)


def _json_type(value: object) -> str | None:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), None)


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """Why ``value`` does not match the subset of JSON schema tools use, or None if it does."""
    if not isinstance(schema, Mapping):
        return None
    options = schema.get("anyOf") or ()
    problems = [_check(value, option, path) for option in options]
    kind = _json_type(value)
    if problems and all(problems):
        # report against the form of the value's own type: "items must be integer" beats
        # "matches no form" when the value is a list of the wrong items
        near = [p for o, p in zip(options, problems, strict=True) if kind in _kinds(o)]
        if near:
            return near[0]
        forms = dict.fromkeys(k for o in options for k in _kinds(o) or ["another form"])
        return f"argument '{path}' must be {' or '.join(forms)}, got {_show(value)}"
    allowed = _kinds(schema)
    if allowed and not (kind in allowed or (kind == "integer" and "number" in allowed)):
        return f"argument '{path}' must be {' or '.join(allowed)}, got {_show(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"argument '{path}' must be one of {schema['enum']!r}, got {_show(value)}"
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            problem = _check(item, schema["items"], f"{path}[{index}]")
            if problem:
                return problem
    if isinstance(value, Mapping) and isinstance(schema.get("additionalProperties"), Mapping):
        for key, item in value.items():
            problem = _check(item, schema["additionalProperties"], f"{path}.{key}")
            if problem:
                return problem
    return None


def _kinds(schema: object) -> list[str]:
    kinds = schema.get("type") if isinstance(schema, Mapping) else None
    return [kinds] if isinstance(kinds, str) else [k for k in kinds or () if isinstance(k, str)]


def _show(value: object) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{_json_type(value) or type(value).__name__} {text}"


# --- docstrings ----------------------------------------------------------------------------------


def _summary(fn: Callable[..., Any]) -> str:
    """The docstring's first paragraph, on one line, up to any ``Args:``-like section."""
    doc = inspect.getdoc(fn) if inspect.isroutine(fn) else None
    lines: list[str] = []
    for line in (doc or "").strip().splitlines():
        if not line.strip() or _SECTION.match(line.strip()):
            break
        lines.append(line.strip())
    return " ".join(lines)


def _arg_descriptions(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Args:`` section (continuation lines joined)."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None
    )
    if start is None:
        return found
    header = len(lines[start]) - len(lines[start].lstrip())
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= header:
            break  # the next section
        if entry_indent is None:
            entry_indent = indent
        match = _ARG_LINE.match(line.strip())
        if indent == entry_indent and match:
            current = match.group(1)
            found[current] = match.group(2).strip()
        elif current is not None and indent > entry_indent:
            found[current] = f"{found[current]} {line.strip()}".strip()
    return {name: text for name, text in found.items() if text}


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _names(names: list[str]) -> str:
    noun = "argument" if len(names) == 1 else "arguments"
    return f"{noun} {', '.join(repr(n) for n in names)}"


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _is_enum(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, enum.Enum)


def _rerun(value: Rerun | str, tool_name: str) -> Rerun:
    try:
        return Rerun(value)
    except ValueError:
        choices = ", ".join(repr(r.value) for r in Rerun)
        raise InvalidRequest(
            f"tool {tool_name!r}: rerun={value!r} is not a rerun policy; use one of {choices}"
        ) from None
