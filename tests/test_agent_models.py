"""Models: ScriptedModel, and the OpenAI adapter against a real local chat-completions server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tether.agent.models import (
    OPTIONS,
    AsyncOpenAIChatModel,
    AsyncScriptedModel,
    OpenAIChatModel,
    ScriptedModel,
    build_payload,
    parse_reply,
)
from tether.agent.tools import tool
from tether.agent.types import ModelReply, ModelRequest, ToolCall, ToolSpec
from tether.errors import ConfigurationError, ModelError


def _request(*texts: str, **options: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": t} for t in texts], options=options)


# --- ScriptedModel -------------------------------------------------------------------------------


def test_scripted_replies_in_order_then_a_clear_error() -> None:
    model = ScriptedModel(
        [
            "hello",
            ModelReply(text="with usage", usage={"total_tokens": 3}),
            ScriptedModel.call("lookup", order="A1"),
            [ScriptedModel.call("a"), ScriptedModel.call("b", x=1)],
            ScriptedModel.reply("both", ScriptedModel.call("c")),
        ]
    )
    assert model.remaining == 5
    assert model(_request("1")) == ModelReply(text="hello")
    assert model(_request("2")).usage == {"total_tokens": 3}
    assert model(_request("3")) == ModelReply(
        tool_calls=[ToolCall("call_1", "lookup", {"order": "A1"})]
    )
    assert model(_request("4")).tool_calls == [
        ToolCall("call_2", "a", {}),
        ToolCall("call_3", "b", {"x": 1}),
    ]
    last = model(_request("5"))
    assert last.text == "both"
    assert last.tool_calls == [ToolCall("call_4", "c", {})]
    assert model.remaining == 0
    with pytest.raises(
        ModelError, match="has no reply left: it was given 5 replies and this is call 6"
    ):
        model(_request("6"))
    assert [r.messages[0]["content"] for r in model.requests] == ["1", "2", "3", "4", "5", "6"]


def test_a_lone_string_is_one_reply() -> None:
    model = ScriptedModel("only")
    assert model(_request()).text == "only"
    with pytest.raises(ModelError, match="Add more replies"):
        model(_request())


def test_ids_are_deterministic_per_instance_and_explicit_ids_are_kept() -> None:
    def script() -> list[Any]:
        return [ScriptedModel.call("t"), ScriptedModel.call("t", "mine"), ScriptedModel.call("t")]

    first, second = ScriptedModel(script()), ScriptedModel(script())
    ids = [[m(_request()).tool_calls[0].id for _ in range(3)] for m in (first, second)]
    assert ids == [["call_1", "mine", "call_2"]] * 2


def test_ids_continue_after_the_history_so_a_resumed_turn_never_reuses_one() -> None:
    # a fresh instance (e.g. in the process that resumes the session) sees call_1..call_7
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [ToolCall("call_7", "t", {}).to_message()],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "ok"},
        {"role": "tool", "tool_call_id": "call_x", "content": "not numbered"},
    ]
    model = ScriptedModel([ScriptedModel.call("t")])
    assert model(ModelRequest(messages=history)).tool_calls[0].id == "call_8"


def test_a_function_of_the_request() -> None:
    def brain(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if last["role"] == "tool":
            return f"the tool said {last['content']}"
        return ScriptedModel.call("echo", text=last["content"])

    model = ScriptedModel(brain)
    assert model.remaining is None
    reply = model(_request("hi"))
    assert reply.tool_calls == [ToolCall("call_1", "echo", {"text": "hi"})]
    after = ModelRequest(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [reply.tool_calls[0].to_message()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "hi"},
        ]
    )
    assert model(after).text == "the tool said hi"
    assert len(model.requests) == 2


def test_an_exception_in_the_script_is_raised_there() -> None:
    model = ScriptedModel(["one", ModelError("the server is down", status=503), "three"])
    assert model(_request()).text == "one"
    with pytest.raises(ModelError, match="the server is down") as info:
        model(_request())
    assert info.value.status == 503
    assert model(_request()).text == "three"


@pytest.mark.parametrize("bad", [[42], [[]], [["not a call"]], [None]])
def test_bad_script_items_are_refused_up_front(bad: list[Any]) -> None:
    with pytest.raises(TypeError, match="a scripted reply must be"):
        ScriptedModel(bad)


def test_a_function_returning_a_bad_reply_is_refused() -> None:
    with pytest.raises(TypeError, match="a scripted reply must be"):
        ScriptedModel(lambda request: 42)(_request())


async def test_async_scripted_model_with_an_async_function() -> None:
    async def brain(request: ModelRequest) -> Any:
        return ScriptedModel.call("t") if len(request.messages) == 1 else "done"

    model = AsyncScriptedModel(brain)
    first = await model(_request("a"))
    assert first.tool_calls[0].id == "call_1"
    assert (await model(_request("a", "b"))).text == "done"
    replies = AsyncScriptedModel(["x"])
    assert (await replies(_request())).text == "x"
    with pytest.raises(ModelError, match="AsyncScriptedModel has no reply left"):
        await replies(_request())


def test_scripted_model_is_thread_safe() -> None:
    model = ScriptedModel([ScriptedModel.call("t") for _ in range(200)])
    ids: list[str] = []

    def worker() -> None:
        for _ in range(50):
            ids.append(model(_request()).tool_calls[0].id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == sorted(f"call_{n}" for n in range(1, 201))


# --- the wire format (pure) ----------------------------------------------------------------------


def test_build_payload_shapes_the_request() -> None:
    request = ModelRequest(
        messages=[
            {"role": "user", "content": "hi", "seq": 1, "timestamp": "2026-01-01T00:00:00Z"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "t", "arguments": {"a": 1}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "t", "content": {"ok": True}},
        ],
        tools=[ToolSpec("t", "a tool", {"type": "object", "properties": {}})],
        options={
            "model": "m1",
            "system_prompt": "be brief",
            "temperature": 0.2,
            "seed": 7,
            "tool_choice": "auto",
            "cwd": "/tmp",
        },
    )
    body = build_payload(request, "default", {"top_k": 5, "temperature": 1.0})
    assert body["model"] == "m1"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "t", "arguments": '{"a":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "t", "content": '{"ok":true}'},
    ]
    assert body["tools"] == [request.tools[0].to_openai()]
    assert body["temperature"] == 0.2  # the session's option wins over extra
    assert body["top_k"] == 5
    assert body["seed"] == 7
    assert body["tool_choice"] == "auto"
    assert "cwd" not in body
    assert "system_prompt" not in body
    json.dumps(body)


def test_build_payload_without_tools_and_with_a_system_message() -> None:
    request = ModelRequest(
        messages=[
            {"role": "system", "content": "mine"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "tool_calls": []},
        ],
        options={"system_prompt": "ignored", "tool_choice": "auto", "parallel_tool_calls": False},
    )
    body = build_payload(request, "default")
    assert body["model"] == "default"
    assert body["messages"] == [
        {"role": "system", "content": "mine"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},  # an empty tool_calls is refused by the API
    ]
    # the API refuses tool_choice without tools, so it is left out
    assert set(body) == {"model", "messages"}
    assert "temperature" in OPTIONS


def test_build_payload_needs_a_model() -> None:
    with pytest.raises(ModelError, match="no model name: set the session's 'model' option"):
        build_payload(_request("hi"))


def test_parse_reply_variants() -> None:
    reply = parse_reply(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                        "tool_calls": [
                            {"type": "function", "function": {"name": "t", "arguments": ""}},
                            {"id": "x", "function": {"name": "u", "arguments": {"k": 1}}},
                        ],
                    }
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": "many"},
        }
    )
    assert reply.text == "ab"
    assert reply.tool_calls[0].name == "t"
    assert reply.tool_calls[0].arguments == {}
    assert reply.tool_calls[0].id.startswith("call_")  # generated when the server sends none
    assert reply.tool_calls[1] == ToolCall("x", "u", {"k": 1})
    assert reply.usage == {"prompt_tokens": 4}
    assert parse_reply({"choices": [{"message": {"content": "hi"}}]}).usage is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"choices": []}, "no choices[0].message"),
        ({"error": {"message": "bad"}}, "'error'"),
        ([1, 2], "no choices[0].message"),
        ({"choices": [{"message": "text"}]}, "no choices[0].message"),
        ({"choices": [{"message": {"tool_calls": [{"id": "1"}]}}]}, "malformed tool call"),
        (
            {
                "choices": [
                    {"message": {"tool_calls": [{"function": {"name": "t", "arguments": "{oops"}}]}}
                ]
            },
            "called tool 't' with arguments that are not a JSON object: {oops",
        ),
        (
            {
                "choices": [
                    {"message": {"tool_calls": [{"function": {"name": "t", "arguments": "[1]"}}]}}
                ]
            },
            "called tool 't'",
        ),
    ],
)
def test_parse_reply_refuses_unexpected_shapes(data: Any, needle: str) -> None:
    with pytest.raises(ModelError) as info:
        parse_reply(data)
    assert needle in str(info.value)


# --- a real local chat-completions server --------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict/list: sent as JSON; bytes: sent as is; None: a text reply "ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 speaking the chat-completions wire format."""

    answers: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)


def text_reply(text: str, **usage: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }
    if usage:
        body["usage"] = usage
    return body


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            fake.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            answer = fake.answers.pop(0) if fake.answers else Answer()
            if answer.delay:
                time.sleep(answer.delay)
            payload = answer.body if answer.body is not None else text_reply("ok")
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (the timeout test): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.server = httpd
    # a short poll interval: shutdown() waits for the next poll
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Each adapter test runs against both classes through one small runner.
Runner = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    """run(model_kwargs, request) -> ModelReply, through OpenAIChatModel or AsyncOpenAIChatModel."""
    import asyncio

    def sync_run(kwargs: dict[str, Any], req: ModelRequest) -> ModelReply:
        with OpenAIChatModel(**kwargs) as model:
            return model(req)

    def async_run(kwargs: dict[str, Any], req: ModelRequest) -> ModelReply:
        async def go() -> ModelReply:
            async with AsyncOpenAIChatModel(**kwargs) as model:
                return await model(req)

        return asyncio.run(go())

    return sync_run if request.param == "sync" else async_run


def test_text_reply_and_usage(fake: FakeServer, run: Runner) -> None:
    fake.answer(
        Answer(body=text_reply("Hello!", prompt_tokens=5, completion_tokens=2, total_tokens=7))
    )
    reply = run({"model": "gpt-test", "base_url": fake.base_url}, _request("hi", temperature=0))
    assert reply == ModelReply(
        text="Hello!", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    )
    (seen,) = fake.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
    }


def test_tool_call_reply_and_tools_sent_in_openai_format(fake: FakeServer, run: Runner) -> None:
    @tool
    def lookup(order: str) -> str:
        """Find an order."""
        return order

    fake.answer(
        Answer(
            body={
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_abc",
                                    "type": "function",
                                    "function": {
                                        "name": "lookup",
                                        "arguments": '{"order": "A1001"}',
                                    },
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ]
            }
        )
    )
    request = ModelRequest(
        messages=[{"role": "user", "content": "where is A1001?"}],
        tools=[lookup.spec()],
        options={"model": "m", "tool_choice": "auto"},
    )
    reply = run({"base_url": fake.base_url}, request)
    assert reply.text is None
    assert reply.tool_calls == [ToolCall("call_abc", "lookup", {"order": "A1001"})]
    assert reply.usage is None
    body = fake.seen[0].body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Find an order.",
                "parameters": {
                    "type": "object",
                    "properties": {"order": {"type": "string"}},
                    "required": ["order"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assert body["tool_choice"] == "auto"


def test_authorization_header_only_with_a_key(
    fake: FakeServer, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    run({"model": "m", "base_url": fake.base_url, "api_key": "sk-test"}, _request("a"))
    run({"model": "m", "base_url": fake.base_url}, _request("b"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    run({"model": "m", "base_url": fake.base_url}, _request("c"))
    run({"model": "m", "base_url": fake.base_url, "api_key": ""}, _request("d"))  # explicit: none
    auth = [seen.headers.get("authorization") for seen in fake.seen]
    assert auth == ["Bearer sk-test", None, "Bearer sk-env", None]


def test_system_prompt_prepended_and_model_overridden(fake: FakeServer, run: Runner) -> None:
    request = _request("hi", model="from-options", system_prompt="You are terse.", cwd="/x")
    run({"model": "from-constructor", "base_url": fake.base_url + "/"}, request)
    body = fake.seen[0].body
    assert body["model"] == "from-options"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert "cwd" not in body
    assert "system_prompt" not in body


def test_no_model_anywhere_fails_before_any_request(fake: FakeServer, run: Runner) -> None:
    with pytest.raises(ModelError, match="no model name"):
        run({"base_url": fake.base_url}, _request("hi"))
    assert fake.seen == []


def test_extra_body_fields(fake: FakeServer, run: Runner) -> None:
    run({"model": "m", "base_url": fake.base_url, "extra": {"top_k": 40}}, _request("hi"))
    assert fake.seen[0].body["top_k"] == 40
    with pytest.raises(ConfigurationError, match="extra= cannot set model, stream"):
        OpenAIChatModel(extra={"stream": True, "model": "x"})


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "check the model name and the options"),
        (401, "check the API key"),
        (403, "not allowed"),
        (404, "check base_url"),
        (429, "rate limited"),
        (500, "the model server failed: retry later"),
        (503, "the model server failed: retry later"),
        (418, "check the request"),
    ],
)
def test_http_errors_become_model_errors(
    fake: FakeServer, run: Runner, status: int, hint: str
) -> None:
    fake.answer(Answer(status=status, body={"error": {"message": f"nope {status}", "type": "x"}}))
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": fake.base_url, "max_retries": 0}, _request("hi"))
    assert info.value.status == status
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert f"nope {status}" in message  # the server's own message, not the whole JSON
    assert hint in message
    assert fake.base_url in message


def test_a_redirect_is_an_error_naming_the_target(fake: FakeServer, run: Runner) -> None:
    fake.answer(Answer(status=301, body=b"", headers={"Location": "https://elsewhere/v1"}))
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": fake.base_url, "max_retries": 0}, _request("hi"))
    assert info.value.status == 301
    assert "redirects to https://elsewhere/v1: fix base_url" in str(info.value)


def test_http_error_with_a_non_json_body_shows_an_excerpt(fake: FakeServer, run: Runner) -> None:
    fake.answer(Answer(status=502, body=b"<html>" + b"bad gateway " * 100 + b"</html>"))
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": fake.base_url, "max_retries": 0}, _request("hi"))
    assert info.value.status == 502
    assert "<html>bad gateway" in str(info.value)
    assert len(str(info.value)) < 600  # an excerpt, not the whole page


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"this is not json", "not JSON"),
        (b'{"choices": [', "not JSON"),
        ({"object": "list", "data": []}, "no choices[0].message"),
        (
            {
                "choices": [
                    {
                        "message": {
                            "tool_calls": [{"id": "1", "function": {"name": "t", "arguments": "{"}}]
                        }
                    }
                ]
            },
            "called tool 't' with arguments that are not a JSON object",
        ),
    ],
)
def test_malformed_replies_become_model_errors(
    fake: FakeServer, run: Runner, body: Any, needle: str
) -> None:
    fake.answer(Answer(body=body))
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": fake.base_url, "max_retries": 0}, _request("hi"))
    assert needle in str(info.value)


def test_server_not_listening_fails_fast(run: Runner) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": base_url, "timeout": 10, "max_retries": 0}, _request("hi"))
    assert time.monotonic() - started < 5
    assert info.value.status is None
    assert f"cannot reach the model server at {base_url}" in str(info.value)
    assert "ConnectError" in str(info.value)


def test_timeout_becomes_a_model_error(fake: FakeServer, run: Runner) -> None:
    fake.answer(Answer(delay=1.5))
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        run(
            {"model": "m", "base_url": fake.base_url, "timeout": 0.2, "max_retries": 0},
            _request("hi"),
        )
    assert time.monotonic() - started < 1.4
    assert info.value.status is None
    assert "did not answer within 0.2s" in str(info.value)
    assert fake.base_url in str(info.value)


def test_invalid_base_url_is_a_model_error(run: Runner) -> None:
    with pytest.raises(ModelError, match="cannot reach the model server"):
        run({"model": "m", "base_url": "nope://what"}, _request("hi"))


# --- retries -------------------------------------------------------------------------------------


def _fast(fake: FakeServer, **more: Any) -> dict[str, Any]:
    return {"model": "m", "base_url": fake.base_url, "backoff": 0.01, "max_backoff": 0.05, **more}


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_transient_http_failures_are_retried(fake: FakeServer, run: Runner, status: int) -> None:
    fake.answer(Answer(status=status, body={"error": {"message": "busy"}}), Answer(status=status))
    fake.answer(Answer(body=text_reply("finally")))
    assert run(_fast(fake), _request("hi")).text == "finally"
    assert len(fake.seen) == 3
    assert all(seen.body == fake.seen[0].body for seen in fake.seen)


def test_retries_give_up_after_max_retries(fake: FakeServer, run: Runner) -> None:
    fake.answer(*[Answer(status=500) for _ in range(5)])
    with pytest.raises(ModelError, match="HTTP 500") as info:
        run(_fast(fake, max_retries=3), _request("hi"))
    assert len(fake.seen) == 4
    assert (info.value.status, info.value.kind) == (500, "failed")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_failures_are_not_retried(fake: FakeServer, run: Runner, status: int) -> None:
    fake.answer(Answer(status=status), Answer(body=text_reply("never")))
    with pytest.raises(ModelError):
        run(_fast(fake), _request("hi"))
    assert len(fake.seen) == 1


def test_retry_after_is_honoured(
    fake: FakeServer, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The adapters' waits are recorded, not slept: the test checks which wait was chosen
    # without spending it (nor timing it on a busy machine).
    from tether.agent import _openai_chat

    waits: list[float] = []

    async def async_sleep(wait: float) -> None:
        waits.append(wait)

    monkeypatch.setattr(_openai_chat, "time", SimpleNamespace(sleep=waits.append))
    monkeypatch.setattr(_openai_chat, "asyncio", SimpleNamespace(sleep=async_sleep))
    fake.answer(Answer(status=429, headers={"Retry-After": "1"}), Answer(body=text_reply("ok")))
    assert run(_fast(fake), _request("hi")).text == "ok"
    assert waits == [1]  # Retry-After's second, not the 0.01 s backoff


def test_the_default_backoff_grows_with_jitter() -> None:
    from tether.agent.models import backoff_delay

    delays = [backoff_delay(n, 0.5, 8.0) for n in range(6) for _ in range(20)]
    for n in range(6):
        mine = delays[n * 20 : (n + 1) * 20]
        top = min(8.0, 0.5 * 2**n)
        assert all(0.75 * top <= d <= top for d in mine)
        assert len(set(mine)) > 1  # jittered
    assert OpenAIChatModel("m").max_retries == 2  # the OpenAI SDK's default


def test_retry_after_forms() -> None:
    from email.utils import format_datetime

    from tether.agent.models import retry_after

    assert retry_after({"Retry-After": "3"}) == 3
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after({"Retry-After": soon}) or 0) <= 30
    assert retry_after({"Retry-After": "3600"}) is None  # too long: the backoff decides
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_connection_failures_are_retried_then_reported(run: Runner) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelError, match="cannot reach") as info:
        run({"model": "m", "base_url": base_url, "backoff": 0.01}, _request("hi"))
    assert info.value.kind == "could not reach the server"


@pytest.mark.parametrize("bad", [{"max_retries": -1}, {"max_retries": 1.5}, {"backoff": -1}])
def test_retry_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        OpenAIChatModel("m", **bad)


def test_credentials_in_base_url_never_reach_an_error(fake: FakeServer, run: Runner) -> None:
    port = fake.base_url.split(":")[2].split("/")[0]
    base_url = f"http://user:hunter2@127.0.0.1:{port}/v1?api_key=sk-secret"
    fake.answer(Answer(status=500, body=b"internal: key sk-secret rejected"))
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": base_url, "max_retries": 0}, _request("hi"))
    assert "hunter2" not in str(info.value)
    assert "api_key=***" in str(info.value)
    dead = f"http://user:hunter2@127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelError) as info:
        run({"model": "m", "base_url": dead, "max_retries": 0}, _request("hi"))
    assert "hunter2" not in str(info.value)


# --- client ownership ----------------------------------------------------------------------------


def test_an_injected_client_is_used_and_not_closed(fake: FakeServer) -> None:
    with httpx.Client(headers={"X-Trace": "t1"}) as client:
        with OpenAIChatModel("m", base_url=fake.base_url, client=client) as model:
            assert model(_request("hi")).text == "ok"
        assert not client.is_closed
        assert fake.seen[0].headers["x-trace"] == "t1"
    own = OpenAIChatModel("m", base_url=fake.base_url)
    own.close()
    assert own.client.is_closed


async def test_async_adapter_reuses_its_client_and_closes_it(fake: FakeServer) -> None:
    fake.answer(Answer(body=text_reply("one")), Answer(body=text_reply("two")))
    async with AsyncOpenAIChatModel("m", base_url=fake.base_url, api_key="k") as model:
        assert (await model(_request("a"))).text == "one"
        assert (await model(_request("b"))).text == "two"
        client = model.client
    assert client.is_closed
    async with httpx.AsyncClient() as injected:
        await AsyncOpenAIChatModel("m", base_url=fake.base_url, client=injected).aclose()
        assert not injected.is_closed
