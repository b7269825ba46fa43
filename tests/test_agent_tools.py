"""Tools: schema derivation from signatures, the @tool decorator, argument checks, sync/async."""

from __future__ import annotations

import enum
import gc
import json
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Optional

import pytest

from tether.agent.tools import (
    Tool,
    ToolArgumentError,
    schema_from_signature,
    tool,
    tools_by_name,
)
from tether.agent.types import Rerun, ToolSpec
from tether.errors import InvalidRequest, TetherError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(int, enum.Enum):
    LOW = 1
    HIGH = 2


class Custom:
    pass


def _param(annotation: Any, **default: Any) -> dict[str, Any]:
    """The schema of the single parameter ``x`` annotated with ``annotation``."""

    def fn(x):
        return x

    fn.__annotations__ = {"x": annotation}
    if default:
        fn.__defaults__ = (default["default"],)
    schema = schema_from_signature(fn)
    json.dumps(schema)  # plain JSON, always
    return dict(schema["properties"]["x"])


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (Any, {}),
        (list, {"type": "array"}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (Sequence[int], {"type": "array", "items": {"type": "integer"}}),
        (
            list[list[int]],
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        ),
        (set[str], {"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (dict, {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (
            dict[str, list[bool]],
            {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "boolean"}},
            },
        ),
        (Optional[int], {"type": ["integer", "null"]}),  # noqa: UP045
        (str | None, {"type": ["string", "null"]}),
        (int | str, {"type": ["integer", "string"]}),
        (
            list[int] | None,
            {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
        ),
        (Any | None, {}),
        (Literal["a", "b"], {"enum": ["a", "b"], "type": "string"}),
        (Literal[1, "a"], {"enum": [1, "a"]}),
        (Color, {"enum": ["red", "blue"], "type": "string"}),
        (Level, {"enum": [1, 2], "type": "integer"}),
        (Color | None, {"anyOf": [{"enum": ["red", "blue"], "type": "string"}, {"type": "null"}]}),
    ],
)
def test_schema_of_each_type_form(annotation: Any, expected: dict[str, Any]) -> None:
    assert _param(annotation) == expected


def test_string_annotations_resolve() -> None:
    # this module uses `from __future__ import annotations`: every hint below is a string
    def find(order: str, limit: int | None = None, tags: list[str] = []) -> str:  # noqa: B006
        return order

    assert find.__annotations__["order"] == "str"
    assert schema_from_signature(find) == {
        "type": "object",
        "properties": {
            "order": {"type": "string"},
            "limit": {"type": ["integer", "null"], "default": None},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        },
        "required": ["order"],
        "additionalProperties": False,
    }


def test_defaults_make_params_optional_and_are_recorded_when_json() -> None:
    def fn(
        a: int,
        b: str = "x",
        c: Color = Color.BLUE,
        d: tuple[int, int] = (1, 2),
        e: Any = Custom(),  # noqa: B008
        f: Level = Level.HIGH,
        g: list[Color] = [Color.RED, Color.BLUE],  # noqa: B006
        h: Color | None = None,
        i: dict[str, Level] = {"min": Level.LOW},  # noqa: B006
    ) -> None:
        pass

    schema = schema_from_signature(fn)
    assert schema["required"] == ["a"]
    props = schema["properties"]
    assert props["b"]["default"] == "x"
    assert props["c"]["default"] == "blue"  # the value, not the member
    assert props["d"]["default"] == [1, 2]
    assert "default" not in props["e"]  # not JSON: still optional, just not advertised
    # an Enum default is advertised as the value the model sends, wherever it is
    assert props["f"]["default"] == 2
    assert type(props["f"]["default"]) is int
    assert props["g"]["default"] == ["red", "blue"]
    assert props["h"]["default"] is None
    assert props["i"]["default"] == {"min": 1}
    json.dumps(schema)


def test_unannotated_parameter_accepts_anything() -> None:
    def fn(x, y=2):
        return x

    assert schema_from_signature(fn)["properties"] == {"x": {}, "y": {"default": 2}}


def test_docstring_descriptions() -> None:
    def lookup(order: str, verbose: bool = False, region: str = "eu") -> str:
        """Look an order up.

        It asks the order service, which is slow.

        Args:
            order: The order number,
                e.g. A1001.
            verbose (bool): Whether to include
                the line items.

        Returns:
            the order as text
        """
        return order

    t = tool(lookup)
    assert t.description == "Look an order up."
    props = t.parameters["properties"]
    assert props["order"]["description"] == "The order number, e.g. A1001."
    assert props["verbose"]["description"] == "Whether to include the line items."
    assert "description" not in props["region"]


def test_description_stops_at_a_section_and_defaults_to_empty() -> None:
    def a(x: int) -> int:
        """Double x.
        Args:
            x: the number
        """
        return 2 * x

    def b(x: int) -> int:
        return x

    assert tool(a).description == "Double x."
    assert tool(a).parameters["properties"]["x"]["description"] == "the number"
    assert tool(b).description == ""


@pytest.mark.parametrize(
    ("annotation", "needle"),
    [
        (Custom, "Custom"),
        (bytes, "bytes"),
        (dict[int, str], "keys are strings"),
        (list[Custom], "Custom"),
        (Optional[Custom], "Custom"),  # noqa: UP045
    ],
)
def test_unsupported_annotations_name_the_parameter(annotation: Any, needle: str) -> None:
    with pytest.raises(TypeError) as info:
        _param(annotation)
    assert "parameter 'x'" in str(info.value)
    assert needle in str(info.value)


def test_var_args_and_positional_only_are_refused() -> None:
    def star(*items: int) -> None:
        pass

    def kw(**options: int) -> None:
        pass

    def pos(x: int, /) -> None:
        pass

    with pytest.raises(TypeError, match=r"parameter 'items'.*\*args or \*\*kwargs"):
        schema_from_signature(star)
    with pytest.raises(TypeError, match=r"parameter 'options'.*\*args or \*\*kwargs"):
        schema_from_signature(kw)
    with pytest.raises(TypeError, match="positional-only"):
        schema_from_signature(pos)


def test_unresolvable_string_annotation_says_so() -> None:
    def fn(x: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(TypeError, match="cannot be resolved"):
        schema_from_signature(fn)


# --- the decorator -------------------------------------------------------------------------------


def test_bare_decorator_uses_safe_defaults() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    assert isinstance(add, Tool)
    assert add.name == "add"
    assert add.description == "Add two numbers."
    assert add.rerun is Rerun.ONCE  # never silently run twice unless declared
    assert add.requires_approval is False
    assert add.approval_ttl is None
    assert add(2, 3) == 5  # still a function
    assert add.spec() == ToolSpec("add", "Add two numbers.", add.parameters)
    assert add.spec().to_openai()["function"]["parameters"]["required"] == ["a", "b"]
    assert {add: 1}[add] == 1  # hashable (by identity), though it holds a dict


def test_decorator_with_arguments() -> None:
    @tool(name="refund_order", description="Refund it.", rerun="idempotent")
    def refund(order: str) -> str:
        """Ignored."""
        return order

    @tool(rerun=Rerun.PURE, requires_approval=True, approval_ttl=30.5)
    def send(to: str) -> None:
        pass

    assert (refund.name, refund.description, refund.rerun) == (
        "refund_order",
        "Refund it.",
        Rerun.IDEMPOTENT,
    )
    assert send.rerun is Rerun.PURE
    assert send.requires_approval is True
    assert send.approval_ttl == 30.5


def test_explicit_parameters_replace_the_derived_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    @tool(parameters=schema)
    def search(**kwargs: Any) -> Any:  # **kwargs is fine when the schema is given
        return kwargs

    assert search.parameters == schema
    assert search.call({"q": "x", "extra": 1}) == {"q": "x", "extra": 1}  # no additionalProperties
    with pytest.raises(ToolArgumentError, match="missing required argument 'q'"):
        search.call({})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rerun": "twice"}, "'pure', 'idempotent', 'once'"),
        ({"approval_ttl": 0}, "positive number of seconds"),
        ({"approval_ttl": -5}, "positive number of seconds"),
        ({"name": "has space"}, "[A-Za-z0-9_-]"),
        ({"parameters": {"type": "array"}}, '"type": "object"'),
    ],
)
def test_bad_tool_definitions_are_refused(kwargs: dict[str, Any], needle: str) -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(InvalidRequest) as info:
        tool(**kwargs)(fn)
    assert needle in str(info.value)


def test_lambda_needs_a_name() -> None:
    with pytest.raises(InvalidRequest, match="name="):
        tool(lambda: 1)
    assert tool(name="one")(lambda: 1).call({}) == 1


def test_tool_constructed_directly_coerces_rerun() -> None:
    t = Tool(
        fn=len,
        name="size",
        description="",
        parameters={"type": "object"},
        rerun="pure",  # type: ignore[arg-type]
    )
    assert t.rerun is Rerun.PURE


# --- argument checks -----------------------------------------------------------------------------


@tool
def book(
    room: str,
    nights: int = 1,
    color: Color = Color.RED,
    guests: list[str] | None = None,
    notes: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {"room": room, "nights": nights, "color": color, "guests": guests, "notes": notes}


def test_valid_arguments_run_the_tool_and_convert_enums() -> None:
    assert book.call({"room": "12", "color": "blue", "guests": ["ada"]}) == {
        "room": "12",
        "nights": 1,
        "color": Color.BLUE,
        "guests": ["ada"],
        "notes": None,
    }


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({}, "missing required argument 'room'"),
        ({"room": "1", "floor": 2, "wing": "b"}, "unknown arguments 'floor', 'wing' (known: room,"),
        ({"room": 12}, "argument 'room' must be string, got integer 12"),
        ({"room": "1", "nights": "2"}, "argument 'nights' must be integer, got string '2'"),
        ({"room": "1", "nights": True}, "argument 'nights' must be integer, got boolean"),
        ({"room": "1", "color": "green"}, "must be one of ['red', 'blue']"),
        ({"room": "1", "guests": ["a", 2]}, "argument 'guests[1]' must be string"),
        ({"room": "1", "guests": "ada"}, "argument 'guests' must be array or null"),
        ({"room": "1", "notes": {"a": "x"}}, "argument 'notes.a' must be integer"),
    ],
)
def test_invalid_arguments_raise_tool_argument_error(
    arguments: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ToolArgumentError) as info:
        book.call(arguments)
    assert needle in str(info.value)
    assert info.value.tool == "book"
    assert "The tool did not run" in str(info.value)
    # the engine catches it as an InvalidRequest (and so a TetherError / ValueError)
    assert isinstance(info.value, InvalidRequest)
    assert isinstance(info.value, TetherError)
    assert isinstance(info.value, ValueError)


def test_arguments_must_be_a_mapping() -> None:
    with pytest.raises(ToolArgumentError, match="must be a JSON object, got list"):
        book.call(["12"])  # type: ignore[arg-type]


def test_numbers_accept_integers_and_null_is_checked() -> None:
    @tool
    def scale(factor: float, offset: float | None = None) -> float:
        return factor + (offset or 0)

    assert scale.call({"factor": 2}) == 2
    assert scale.call({"factor": 1.5, "offset": None}) == 1.5
    with pytest.raises(ToolArgumentError, match="must be number, got null"):
        scale.call({"factor": None})


# --- sync and async ------------------------------------------------------------------------------


async def test_acall_awaits_coroutine_functions_and_runs_plain_ones() -> None:
    @tool(rerun="pure")
    async def fetch(url: str) -> str:
        return f"<{url}>"

    assert fetch.is_async
    assert not book.is_async
    assert await fetch.acall({"url": "x"}) == "<x>"
    assert (await book.acall({"room": "9"}))["room"] == "9"
    with pytest.raises(ToolArgumentError):
        await fetch.acall({"url": 1})


def test_sync_call_of_an_async_tool_is_refused() -> None:
    @tool
    async def fetch(url: str) -> str:
        return url

    with pytest.raises(TypeError, match=r"is async \(a coroutine function\).*async runtime"):
        fetch.call({"url": "x"})


def test_sync_call_of_a_function_returning_a_coroutine_is_refused() -> None:
    async def inner() -> int:
        return 1

    @tool
    def sneaky() -> Any:
        return inner()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="returned an awaitable"):
            sneaky.call({})
        gc.collect()
    # it was closed, not leaked: no "coroutine ... was never awaited"
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_async_callable_object() -> None:
    class Fetcher:
        async def __call__(self, url: str) -> str:
            return url.upper()

    t = tool(name="fetcher")(Fetcher())
    assert t.is_async
    assert t.parameters["properties"] == {"url": {"type": "string"}}
    assert await t.acall({"url": "a"}) == "A"


def test_tool_exceptions_propagate_unchanged() -> None:
    @tool
    def boom() -> None:
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        boom.call({})


# --- tools_by_name -------------------------------------------------------------------------------


def test_tools_by_name_accepts_tools_and_plain_callables() -> None:
    def weather(city: str) -> str:
        """Today's weather."""
        return "sunny"

    found = tools_by_name([book, weather])
    assert list(found) == ["book", "weather"]
    assert found["book"] is book
    assert found["weather"].rerun is Rerun.ONCE
    assert found["weather"].description == "Today's weather."
    assert found["weather"].call({"city": "Oslo"}) == "sunny"
    assert tools_by_name([]) == {}


def test_tools_by_name_refuses_duplicates() -> None:
    def book(x: int) -> int:  # same name as the module-level tool
        return x

    with pytest.raises(InvalidRequest, match="two tools are named 'book'"):
        tools_by_name([globals()["book"], book])
