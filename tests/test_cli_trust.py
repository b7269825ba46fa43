"""What the ``tether`` command may print: never a password, never a byte of session data that
acts on the terminal, never a store it was not asked to create; and what a new user runs.

Sessions are written with the library (the data an end user could send an agent); the command
is run through click's CliRunner, or as a real process where the installed script matters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tether
from tether._urls import redact
from tether.agent import Agent, ModelReply, ScriptedModel, ToolCall, tool
from tether.cli import cli

from .conftest import drop_postgres_schema, require_server, with_options

SECRET = "hunter2-s3cret"
# anything a terminal would act on: C0/C1 controls but the newline, DEL, bidi, invisible marks
RAW_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
CLEAR_SCREEN = "\x1b[2J\x1b[H"
RETITLE = "\x1b]0;pwned\x07"
HIDDEN = "\x1b[8m"
RLO = "\u202e"


def invoke(url: str | None, *args: str, env: dict[str, str | None] | None = None) -> Result:
    store = ["--store", url] if url is not None else []
    return CliRunner().invoke(cli, [*store, *args], env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def one_error_line(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@tool(rerun="once", requires_approval=True, approval_ttl=3600)
def refund(order_id: str, note: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


HOSTILE: dict[str, Any] = {
    "owner": f"ada{RETITLE}",
    "agent": f"support{RLO}",
    "metadata": {f"channel{CLEAR_SCREEN}": f"web{HIDDEN}", "note": "a\rfake"},
    "state": {"order": f"A1001{CLEAR_SCREEN}"},
    "options": {"model": f"gpt{RLO}4", "system_prompt": "Be brief.\x9b2J"},
    "message": f"Hi {CLEAR_SCREEN}{RETITLE}\nline two{HIDDEN}approve everything\u2066",
    "arguments": {"order_id": f"A1{RLO}001", "note": f"ok{HIDDEN}steal\x08\x08\x08"},
}


def seed_hostile(url: str) -> str:
    """A session whose every field an end user could have written is hostile; its turn waits
    for approval of a tool call with hostile arguments. Returns the review id."""
    with tether.Sessions(url) as sessions:
        sessions.create(
            "support",
            session_id="evil-1",
            owner=HOSTILE["owner"],
            metadata=HOSTILE["metadata"],
            state=HOSTILE["state"],
            options=HOSTILE["options"],
        )
        sessions.store.commit("evil-1", 1, changes={"agent": HOSTILE["agent"]})
        model = ScriptedModel(
            [
                ModelReply(
                    tool_calls=[ToolCall(id="c1", name="refund", arguments=HOSTILE["arguments"])]
                )
            ]
        )
        agent = Agent(sessions, llm=model, tools=[refund])
        stopped = agent.run("evil-1", HOSTILE["message"])
        assert stopped.status == "waiting"
        [review] = agent.pending_reviews()
        return review.id


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    return f"file:{tmp_path / 'sessions'}"


# --- hostile session data ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", "--all", "--limit", "1"],
        ["show", "evil-1"],
        ["replay", "evil-1"],
        ["inspect", "evil-1"],
        ["reviews"],
        ["reviews", "--session", "evil-1"],
    ],
)
def test_session_data_never_reaches_the_terminal_raw(url: str, args: list[str]) -> None:
    seed_hostile(url)
    out = ok(invoke(url, *args))
    assert not RAW_UNSAFE.findall(out), RAW_UNSAFE.findall(out)
    assert "\\x1b" in out or "\\u202e" in out  # shown, escaped: the operator sees it is there


def test_what_is_neutralized_is_shown_escaped(url: str) -> None:
    seed_hostile(url)
    shown = ok(invoke(url, "show", "evil-1"))
    assert "ada\\x1b]0;pwned\\x07" in shown  # the owner
    assert "support\\u202e" in shown  # the agent
    assert "\\u001b[2J" in shown or "\\x1b[2J" in shown  # state and metadata (JSON sections)
    inspected = ok(invoke(url, "inspect", "evil-1"))
    # a message's own line break cannot start a line that looks like tether's
    assert "Hi \\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\nline two\\x1b[8mapprove everything\\u2066" in (
        inspected
    )
    reviews = ok(invoke(url, "reviews"))
    assert "A1\\u202e001" in reviews  # the tool call awaiting approval, its arguments visible
    assert "ok\\u001b[8msteal\\b\\b\\b" in reviews  # JSON-escaped by the arguments' JSON


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "--json"],
        ["show", "evil-1", "--json"],
        ["replay", "evil-1", "--json"],
        ["inspect", "evil-1", "--json"],
        ["reviews", "--json"],
    ],
)
def test_json_output_is_escaped_and_exact(url: str, args: list[str]) -> None:
    review_id = seed_hostile(url)
    out = ok(invoke(url, *args))
    assert not RAW_UNSAFE.findall(out)
    data = json.loads(out)
    if args[0] == "ls":
        assert data["sessions"][0]["owner"] == HOSTILE["owner"]  # the data, not a cleaned copy
        assert data["sessions"][0]["agent"] == HOSTILE["agent"]
    if args[0] == "show":
        assert data["state"]["order"] == HOSTILE["state"]["order"]
        assert data["metadata"] == HOSTILE["metadata"]
        assert data["options"] == HOSTILE["options"]
    if args[0] == "reviews":
        assert data[0]["id"] == review_id
        assert data[0]["arguments"] == HOSTILE["arguments"]


def _altered_review(tmp_path: Path, tool_name: str) -> tuple[str, str]:
    """A store holding evil-1 as an export file from elsewhere may carry it: its stored review
    names ``tool_name`` (an import writes a session exactly, runtime block included).
    Returns the store's URL and the review id."""
    origin = f"sqlite:///{tmp_path / 'origin.db'}"
    review_id = seed_hostile(origin)
    dump = tmp_path / "evil.jsonl"
    ok(invoke(origin, "export", "evil-1", "-o", str(dump)))
    line = json.loads(dump.read_text())
    [review] = line["session"]["state"]["_tether"]["reviews"]
    review["tool"] = tool_name
    dump.write_text(json.dumps(line) + "\n")
    url = f"sqlite:///{tmp_path / 'altered.db'}"
    ok(invoke(url, "import", str(dump)))
    return url, review_id


@pytest.mark.parametrize("answer", [["approve"], ["deny", "--reason", "no receipt"]])
def test_approve_and_deny_never_echo_a_review_raw(answer: list[str], tmp_path: Path) -> None:
    url, review_id = _altered_review(tmp_path, f"refund{CLEAR_SCREEN}{RLO}")
    out = ok(invoke(url, answer[0], review_id, *answer[1:], "--by", f"ada{RETITLE}"))
    assert not RAW_UNSAFE.findall(out), RAW_UNSAFE.findall(out)
    assert "refund\\x1b[2J\\x1b[H\\u202e" in out  # the tool, shown escaped
    assert "by ada\\x1b]0;pwned\\x07" in out  # who answered, as stored


def test_a_resumed_reply_never_reaches_the_terminal_raw(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt can steer the model's reply; resume prints it with its line breaks, and
    nothing else a terminal acts on."""
    from .test_cli import _ChatServer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with tether.Sessions(sqlite_url) as sessions:
        sessions.create(session_id="job-7", options={"model": "m"})
        stopped = Agent(sessions).run("job-7", HOSTILE["message"], checkpoint="after_prompt")
        assert stopped.status == "hibernated"
    server = _ChatServer(f"Done.{CLEAR_SCREEN}{RETITLE}\nsecond line{RLO}\rerror: fake{HIDDEN}")
    server.thread.start()
    try:
        out = ok(invoke(sqlite_url, "resume", "job-7", "--model-url", server.url))
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)
    assert not RAW_UNSAFE.findall(out), RAW_UNSAFE.findall(out)
    assert out.splitlines() == [
        "Done.\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07",
        "second line\\u202e\\rerror: fake\\x1b[8m",
    ]


def test_transfer_reports_never_reach_the_terminal_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """differs: and not verified: lines quote the stores (a lease owner, a reason): escaped."""
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    seed_hostile(source)
    assert invoke(None, "copy", "--from", source, "--to", target).exit_code == 0
    with tether.open_store(target) as store:  # changed in the target, claimed there now
        version = store.load("evil-1", last=0).version
        store.commit("evil-1", version, changes={"metadata": {"in": "target"}})
        store.claim("evil-1", f"worker{RLO}{CLEAR_SCREEN}", 60)
    with tether.open_store(source) as store:  # and further on in the source
        store.commit("evil-1", version, changes={"metadata": {"in": "source"}})
        store.commit("evil-1", version + 1, changes={"metadata": {"in": "source, again"}})
    claimed = invoke(None, "copy", "--from", source, "--to", target, "--replace")
    assert claimed.exit_code == 3, claimed.output
    assert f"differs: evil-1: version {version + 1} in the target, {version + 2} in the " in (
        claimed.stderr
    )
    assert "worker\\u202e\\x1b[2J" in claimed.stderr
    assert not RAW_UNSAFE.findall(claimed.output)

    # whatever a reason quotes (here raw escapes), it is shown escaped
    from tether.cli import transfer

    monkeypatch.setattr(transfer, "_refusal", lambda *a, **k: f"held by {CLEAR_SCREEN}{RLO}")
    dump = tmp_path / "evil.jsonl"
    ok(invoke(source, "export", "evil-1", "-o", str(dump)))
    imported = invoke(target, "import", str(dump))
    assert imported.exit_code == 3
    assert "differs: evil-1: held by \\x1b[2J\\x1b[H\\u202e\n" in imported.stderr
    assert not RAW_UNSAFE.findall(imported.output)

    monkeypatch.setattr(transfer, "verify", lambda *a: {"evil-1": f"digest {HIDDEN}{RLO}"})
    fresh = f"sqlite:///{tmp_path / 'c.db'}"
    unverified = invoke(None, "copy", "--from", source, "--to", fresh)
    assert unverified.exit_code == 1
    lines = unverified.stderr.splitlines()
    assert lines[0] == "not verified: evil-1: digest \\x1b[8m\\u202e"
    assert "the target does not match what was copied for 1 session (named above)" in lines[1]
    assert not RAW_UNSAFE.findall(unverified.output)


def test_an_error_quoting_store_data_is_neutralized(sqlite_url: str) -> None:
    seed_hostile(sqlite_url)
    with tether.open_store(sqlite_url) as store:
        lease = store.claim("evil-1", f"worker{RLO}", 60)
        line = one_error_line(invoke(sqlite_url, "clear", "evil-1", "--yes"))
        store.release(lease)
    assert "worker" in line
    assert not RAW_UNSAFE.findall(line)


def test_an_error_message_never_drives_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a store or driver puts in its message (here: raw escapes) prints escaped."""

    def refuse(cls: Any, url: str, create: bool) -> Any:
        raise tether.StoreError(f"the server said: {CLEAR_SCREEN}{RETITLE}{RLO}gone")

    monkeypatch.setattr(tether._registry, "_open", refuse)
    line = one_error_line(invoke(f"sqlite:///{tmp_path / 'x.db'}", "ls"))
    assert not RAW_UNSAFE.findall(line)
    assert "the server said: \\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\u202egone" in line


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


# --- JSON times, words -------------------------------------------------------------------------


def _times(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [t for k, v in data.items() for t in _times(v)] + [
            v
            for k, v in data.items()
            if (k in ("at", "timestamp") or k.endswith("_at")) and isinstance(v, str)
        ]
    if isinstance(data, list):
        return [t for v in data for t in _times(v)]
    return []


def test_every_json_time_is_utc_with_a_z(url: str) -> None:
    seed_hostile(url)
    seen = []
    for args in (
        ["ls", "--json"],
        ["show", "evil-1", "--json"],
        ["replay", "evil-1", "--json"],
        ["inspect", "evil-1", "--json"],
        ["reviews", "--json"],
    ):
        times = _times(json.loads(ok(invoke(url, *args))))
        assert times, args
        seen += times
    assert all(t.endswith("Z") and "+00:00" not in t for t in seen), seen


def test_inspect_json_is_the_replay(url: str) -> None:
    seed_hostile(url)
    assert json.loads(ok(invoke(url, "inspect", "evil-1", "--json"))) == json.loads(
        ok(invoke(url, "replay", "evil-1", "--json"))
    )


def test_one_item_is_one_item(sqlite_url: str, tmp_path: Path) -> None:
    with tether.Sessions(sqlite_url) as sessions:
        sessions.create(session_id="one", history=[{"role": "user", "content": "hi"}])
    assert "last 1 of 1 item\n" in ok(invoke(sqlite_url, "show", "one"))
    dump = tmp_path / "one.jsonl"
    assert ok(invoke(sqlite_url, "export", "one", "-o", str(dump))).strip() == (
        f"exported 1 session to {dump}"
    )
    copied = ok(invoke(None, "copy", "--from", sqlite_url, "--to", f"file:{tmp_path / 'f'}"))
    assert "verified: the target holds 1 session exactly as in the source" in copied
    migrated = ok(invoke(None, "migrate", sqlite_url))
    assert "0 of 1 session upgraded" in migrated
    assert ok(invoke(sqlite_url, "clear", "one", "--yes")).strip() == "cleared one: 1 item removed"
    with tether.Sessions(sqlite_url) as sessions:
        sessions.create(session_id="two", history=[{"role": "user", "content": "hi"}])
    asked = CliRunner().invoke(cli, ["--store", sqlite_url, "rm", "two"])
    assert "Delete session two (1 item): refusing without --yes" in asked.output
    archived = ok(invoke(sqlite_url, "archive", "--inactive-days", "1"))
    assert archived.strip() == "archived 0 sessions not updated for 1 day"
    archived = ok(invoke(sqlite_url, "archive", "--inactive-days", "0"))
    assert archived.strip() == "archived 2 sessions not updated for 0 days"


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store",
    [
        f"ftp://u:{SECRET}@host/x",
        f"u:{SECRET}@host",
        f"redis://:{SECRET}@127.0.0.1:6379/0?bogus=1",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"postgresql://u:{SECRET}@127.0.0.1/db?bogus=1",
        f"postgresql://u@127.0.0.1/db?password={SECRET}&bogus=1",
        f"sqlite:///x.db?token={SECRET}",
    ],
)
@pytest.mark.parametrize("how", ["option", "env"])
def test_no_error_line_echoes_a_password(
    store: str, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if how == "option":
        result = invoke(store, "ls")
    else:
        result = invoke(None, "ls", env={"TETHER_URL": store})
    line = one_error_line(result)
    assert SECRET not in result.output
    assert "***" in line


def test_a_message_that_quotes_only_the_decoded_password_is_scrubbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a driver's message says, the password of the URL in use is not printed."""
    monkeypatch.chdir(tmp_path)

    def boom(url: str, **_: Any) -> Any:
        raise RuntimeError(f"driver: cannot log in with {SECRET}!")

    monkeypatch.setattr(tether._registry, "_open", lambda cls, url, create: boom(url))
    line = one_error_line(invoke(f"redis://:{SECRET}%21@127.0.0.1:6379/0", "ls"))
    assert SECRET not in line
    assert "cannot log in with ***" in line


def test_a_missing_postgres_database_is_one_line_at_once() -> None:
    base = require_server("postgres")
    host = base.split("@", 1)[1].split("/", 1)[0]
    url = f"postgresql://postgres:{SECRET}@{host}/tether_missing_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    line = one_error_line(invoke(url, "ls"))  # one line: no pool log lines on stderr
    assert time.monotonic() - started < 3
    assert "does not exist" in line
    assert "refused the connection" in line
    assert "busy" not in line
    assert SECRET not in line


# --- reading never creates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["show", "x"],
        ["replay", "x"],
        ["inspect", "x"],
        ["reviews"],
        ["export", "--all", "-o", "-"],
        ["approve", "x/rv_000000000000"],
        ["rm", "x", "--yes"],
        ["clear", "x", "--yes"],
        ["fork", "x"],
        ["archive", "x"],
    ],
)
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_commands_on_a_mistyped_path_create_nothing(
    args: list[str], kind: str, tmp_path: Path
) -> None:
    where = tmp_path / "typo" / ("app.db" if kind == "sqlite" else "sessions")
    url = f"sqlite:///{where}" if kind == "sqlite" else f"file:{where}"
    line = one_error_line(invoke(url, *args))
    assert str(where) in line
    assert "nothing was created" in line
    assert not (tmp_path / "typo").exists()


def test_a_tilde_path_is_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    line = one_error_line(invoke("sqlite:///~/app.db", "ls"))
    assert str(home / "app.db") in line
    assert not (work / "~").exists()
    with tether.Sessions("sqlite:///~/app.db") as sessions:
        sessions.create(session_id="at-home")
    assert "at-home" in ok(invoke("sqlite:///~/app.db", "ls"))
    assert not (work / "~").exists()


def test_an_empty_store_is_named_redacted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    tether.open_store(url).close()
    assert ok(invoke(url, "ls")).strip() == f"no sessions in {url}"
    assert ok(invoke(url, "reviews")).strip() == f"no pending reviews in {url}"


def test_no_reviews_names_the_store_it_read_redacted() -> None:
    base = require_server("postgres")
    schema = f"tether_tcli_{uuid.uuid4().hex[:16]}"
    # the test server trusts local connections: any password is accepted, and must not show
    url = with_options(base.replace("://postgres@", f"://postgres:{SECRET}@"), schema=schema)
    assert SECRET in url
    try:
        with tether.Sessions(url) as sessions:
            sessions.create(session_id="quiet")
        where = redact(url)
        assert SECRET not in where
        assert "***" in where
        assert ok(invoke(url, "reviews")).strip() == f"no pending reviews in {where}"
        assert ok(invoke(url, "reviews", "--session", "quiet")).strip() == (
            f"no pending reviews of session quiet in {where}"
        )
    finally:
        drop_postgres_schema(base, schema)


def test_the_next_page_hint_keeps_store_and_filters(sqlite_url: str) -> None:
    with tether.Sessions(sqlite_url) as sessions:
        for n in range(3):
            sessions.create(
                "support", session_id=f"s{n}", owner="ada o'neil", metadata={"channel": "web"}
            )
    out = ok(
        invoke(sqlite_url, "ls", "--owner", "ada o'neil", "--meta", "channel=web", "--limit", "2")
    )
    hint = out.splitlines()[-1]
    import shlex

    args = shlex.split(hint.removeprefix("more: "))
    assert args[:4] == ["tether", "--store", sqlite_url, "ls"]
    assert "--owner=ada o'neil" in args
    assert "--meta=channel=web" in args
    page = ok(CliRunner().invoke(cli, args[1:]))
    assert [line.split()[0] for line in page.splitlines()[1:]] == ["s0"]
    # from $TETHER_URL: the hint runs in the same environment, without --store
    out = ok(invoke(None, "ls", "--limit", "2", env={"TETHER_URL": sqlite_url}))
    assert out.splitlines()[-1].startswith("more: tether ls --limit=2 --cursor ")


# --- a new user: no extras, python -m tether ------------------------------------------------------


def _without(tmp_path: Path, package: str) -> dict[str, str]:
    """An environment in which ``import <package>`` fails, as when it is not installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / f"{package}.py").write_text(
        f"raise ModuleNotFoundError('No module named {package}', name={package!r})\n"
    )
    return {**os.environ, "PYTHONPATH": str(shadow)}


def test_the_console_script_is_the_import_free_entry_point() -> None:
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "tether"]
    assert script.value == "tether.__main__:main"


@pytest.mark.parametrize("package", ["click", "rich"])
@pytest.mark.parametrize("how", ["script", "module"])
def test_without_the_cli_extra_tether_names_it(package: str, how: str, tmp_path: Path) -> None:
    command = (
        [str(Path(sys.executable).parent / "tether"), "ls"]
        if how == "script"
        else [sys.executable, "-m", "tether", "ls"]
    )
    done = subprocess.run(
        command, env=_without(tmp_path, package), capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"error: the tether command needs the 'cli' extra ({package} is not installed). "
        "Install it with: pip install 'tether[cli]'"
    )


def test_without_click_importable_at_all(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['click'] = None; sys.argv = ['tether', '--version']; "
        "import runpy; runpy.run_module('tether', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "pip install 'tether[cli]'" in done.stderr


def test_python_dash_m_tether_runs_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tether", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tether {tether.__version__}"
