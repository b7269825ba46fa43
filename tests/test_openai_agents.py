"""TetherSession (tether.integrations.openai_agents): what the SDK's own suite does not cover.

Two processes on one session, a run killed between two batches, and an approval answered in
another process than the one that asked and the one that resumes. The SDK's suite itself runs
on tether in ``make openai-agents-tests`` (see docs/integrations/openai_agents.md).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import require_module

require_module("agents", "openai-agents")

from agents import Runner  # noqa: E402

import tether  # noqa: E402
from tether.agent import Agent as TetherAgent  # noqa: E402
from tether.errors import AlreadyRunning  # noqa: E402
from tether.integrations.openai_agents import TetherSession  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))
from openai_agents_approval import REFUNDS, ScriptedModel, ask, resume, support_agent  # noqa: E402

ENV = {
    **os.environ,
    "PYTHONPATH": f"{ROOT / 'examples'}{os.pathsep}{ROOT / 'src'}",
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
}


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_output(code: str, *args: str) -> str:
    out, err = start_child(code, *args).communicate(timeout=60)
    assert not err.strip() or "Traceback" not in err, err
    return out


HOLD = """
import asyncio, sys
from tether.integrations.openai_agents import TetherSession

async def main():
    ttl = float(sys.argv[2])
    async with TetherSession("chat 1", sys.argv[1], exclusive=True, lease_ttl=ttl) as s:
        await s.add_items([{"role": "user", "content": "first batch"}])
        print("holding", flush=True)
        if sys.argv[3] == "kill":
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)  # killed between two batches
        await asyncio.sleep(float(sys.argv[4]))
        await s.add_items([{"role": "user", "content": "second batch"}])

asyncio.run(main())
"""


@pytest.mark.heavy
async def test_a_second_run_on_a_session_another_process_runs_fails_at_once(tmp_path):
    url = f"sqlite:///{tmp_path}/agents.db"
    holder = start_child(HOLD, url, "0.6", "hold", "2.0")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    calls: list[object] = []

    class CountingModel(ScriptedModel):
        async def get_response(self, *args, **kwargs):
            calls.append(args)
            return await super().get_response(*args, **kwargs)

    agent = support_agent().clone(model=CountingModel())
    async with TetherSession("chat 1", url, exclusive=True) as second:
        started = time.monotonic()
        with pytest.raises(AlreadyRunning, match="openai-agents@"):
            await Runner.run(agent, "me too", session=second)
        assert time.monotonic() - started < 1.0  # at once, not after the holder's lease
    assert calls == []  # refused before any model call: nothing interleaved
    # The holder's lease (0.6 s) was renewed through its 2 s run: its second batch landed.
    _, err = holder.communicate(timeout=30)
    assert holder.returncode == 0, err
    items = await TetherSession("chat 1", url).get_items()
    assert [dict(i)["content"] for i in items] == ["first batch", "second batch"]


@pytest.mark.heavy
async def test_a_run_killed_between_batches_keeps_the_first_and_frees_the_session(tmp_path):
    url = f"sqlite:///{tmp_path}/agents.db"
    killed = start_child(HOLD, url, "1.0", "kill", "0")
    killed.communicate(timeout=60)
    assert killed.returncode == -9
    session = TetherSession("chat 1", url, exclusive=True)
    with pytest.raises(AlreadyRunning):  # the dead runner's lease still runs...
        await session.get_items()
    time.sleep(1.1)  # ...for at most its ttl: it was never renewed again
    assert await session.get_items() == [{"role": "user", "content": "first batch"}]
    await session.add_items([{"role": "user", "content": "next run"}])
    await session.close()
    assert len(await TetherSession("chat 1", url).get_items()) == 2


ASK = """
import asyncio, sys
from openai_agents_approval import ask
reviews = asyncio.run(ask(sys.argv[1], "ticket 42"))
print(reviews[0].id)
"""

RESUME = """
import asyncio, sys
import openai_agents_approval as example
print(asyncio.run(example.resume(sys.argv[1], "ticket 42")))
print(example.REFUNDS)
"""


@pytest.mark.heavy
def test_an_approval_asked_in_one_process_is_answered_and_resumed_in_others(tmp_path):
    url = f"sqlite:///{tmp_path}/agents.db"
    review_id = child_output(ASK, url).strip()
    with tether.open_store(url) as store:
        header = store.load(tether.ids.encode_external_id("ticket 42"), last=0)
        assert header.status == "waiting"
        pending = TetherAgent(store).pending_reviews()
        assert [r.id for r in pending] == [review_id]
        assert pending[0].tool == "refund"
        assert dict(pending[0].arguments) == {"order": "A1001"}
        TetherAgent(store).approve(review_id, by="ada")
    out = child_output(RESUME, url).splitlines()
    assert out == ["Done: refunded A1001", "['A1001']"]  # the tool ran once, in that process
    with tether.open_store(url) as store:
        assert TetherAgent(store).pending_reviews() == []
        loaded = store.load(tether.ids.encode_external_id("ticket 42"))
        assert loaded.status == "finished"
        kinds = [e.item.get("type", e.item.get("role")) for e in loaded.items]
        # tether's audit event of the approval is in the history, never in what the SDK reads
        assert kinds == ["user", "function_call", "tether", "function_call_output", "message"]
    seen = asyncio.run(TetherSession("ticket 42", url).get_items())
    assert [dict(i).get("type", dict(i).get("role")) for i in seen] == [
        "user",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert "_tether" not in loaded.state  # the saved run state was discarded


async def test_a_denial_reaches_the_model_as_the_rejection_message(tmp_path):
    url = f"sqlite:///{tmp_path}/agents.db"
    reviews = await ask(url, "ticket 42")
    with tether.open_store(url) as store:
        TetherAgent(store).deny(reviews[0].id, "not without a receipt", by="ada")
    before = list(REFUNDS)
    assert await resume(url, "ticket 42") == "Done: not without a receipt"
    assert before == REFUNDS  # the tool never ran


@pytest.mark.heavy
def test_the_example_runs_offline(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "openai_agents_approval.py")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "Done: refunded A1001"
