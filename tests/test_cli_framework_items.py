"""The CLI shows a framework's items readably: a function call as a call, not a JSON blob."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import tether
from tether.cli import cli

ITEMS = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "refund A1"}]},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "check it"}]},
    {"type": "function_call", "call_id": "c1", "name": "refund", "arguments": '{"order": "A1"}'},
    {"type": "function_call_output", "call_id": "c1", "output": "refunded\x1b[31m red"},
    {"type": "mcp_list_tools", "server_label": "shop"},
]


def _run(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_show_replay_and_inspect_render_framework_items(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with tether.open_store(url) as store:
        store.create(tether.Session(id="fw", history=ITEMS))
    shown = _run(url, "show", "fw")
    assert "refund A1" in shown
    assert 'refund({"order":"A1"})' in shown.replace(" ", "")
    assert "refund -> refunded" in shown
    assert "check it" in shown
    assert "mcp_list_tools" in shown
    assert "\x1b" not in shown  # the output's escape is neutralised, never sent to the terminal
    for command in ("replay", "inspect"):
        text = _run(url, command, "fw")
        assert "tool_call" in text, command
        assert 'refund({"order":"A1"})' in text.replace(" ", ""), command
        assert "refund -> refunded" in text, command
        assert "reasoning" in text, command
        assert "check it" in text, command
        assert "\x1b" not in text, command
