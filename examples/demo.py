"""tether's main job, shown on the embedded SQLite default: a session that outlives processes.

Each step runs in its own OS process, so nothing survives between them but the store:

1. a process creates a support session and records the first turn;
2. a second process loads it from disk and continues the conversation;
3. two workers hold the same version; one commits, the other's stale write is refused with a
   conflict (nothing lost), and it reloads and retries;
4. the sessions are listed, newest first.

Run it with ``make demo`` (or ``python examples/demo.py [--store URL]``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import tether

OWNER = "demo-customer"


def say(text: str) -> None:
    print(f"  [process {os.getpid()}] {text}", flush=True)


def step_create(store: tether.Store) -> str:
    session = store.create(
        tether.Session(
            owner=OWNER,
            agent="support",
            options={"model": "scripted", "system_prompt": "You are a helpful support agent."},
            metadata={"channel": "web"},
            history=[
                {"role": "user", "content": "Hi, where is my order A1001?"},
                {
                    "role": "assistant",
                    "content": "Order A1001 shipped yesterday; it arrives Friday.",
                },
            ],
            state={"order": "A1001"},
        )
    )
    say(f"created session {session.id} (version {session.version}, {session.history_len} items)")
    return session.id


def step_continue(store: tether.Store, session_id: str) -> None:
    session = store.load(session_id)
    say(f"loaded {session_id} from disk: version {session.version}, {session.history_len} items")
    say(f"  last said: {session.history[-1]['content']!r}")
    version = store.commit(
        session_id,
        session.version,
        append=[
            {"role": "user", "content": "Can I change the delivery address?"},
            {"role": "assistant", "content": "Yes: I have updated it to the address on file."},
        ],
        changes={"state": {**session.state, "address_changed": True}},
    )
    say(f"continued the conversation: now version {version}")


def step_race(store: tether.Store, session_id: str, script: str, url: str | None) -> None:
    mine = store.load(session_id, last=0)  # header only: a worker needs just the version
    say(f"worker A holds version {mine.version}; worker B commits first, in another process")
    run_step(script, url, "rival", session_id)
    try:
        store.commit(session_id, mine.version, append=[{"role": "user", "content": "stale"}])
        raise SystemExit("BUG: a stale write was accepted")
    except tether.ConflictError as conflict:
        say(
            f"worker A's stale write was refused: expected version {conflict.expected_version}, "
            f"the store holds {conflict.actual_version}; nothing was written"
        )
    fresh = store.load(session_id, after=mine.last_seq)  # only what A has not seen
    say(f"worker A reloads the {len(fresh.history)} new item(s) and retries")
    version = store.commit(
        session_id, fresh.version, append=[{"role": "user", "content": "Thanks, that's all!"}]
    )
    say(f"worker A's retry committed: version {version}")


def step_rival(store: tether.Store, session_id: str) -> None:
    session = store.load(session_id, last=0)
    version = store.commit(
        session_id,
        session.version,
        append=[{"role": "assistant", "content": "Is there anything else I can help with?"}],
        changes={"status": "waiting"},
    )
    say(f"worker B committed version {version}")


def step_list(store: tether.Store, session_id: str) -> None:
    page = store.list(owner=OWNER, limit=5)
    say(f"sessions of {OWNER!r}, newest first:")
    for header in page.sessions:
        marker = "  <- this run" if header.id == session_id else ""
        say(
            f"  {header.id}  v{header.version:<3} {header.status.value:<8} "
            f"{header.history_len:>2} items  updated {header.updated_at:%H:%M:%S.%f}{marker}"
        )
    full = store.load(session_id)
    say("the conversation as stored:")
    for item in full.history:
        say(f"  #{item['seq']} {item['role']:>9}: {item['content']}")


def run_step(script: str, url: str | None, *args: str) -> str:
    command = [sys.executable, script, *args]
    if url:
        command += ["--store", url]
    result = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: step {args[0]!r} failed (exit code {result.returncode})")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("session_id", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument(
        "--store",
        help="store URL (default: $TETHER_URL, else sqlite:///.tether/sessions.db)",
    )
    args = parser.parse_args()
    script = os.path.abspath(__file__)

    if args.step is None:  # the orchestrator: every step below is a fresh OS process
        where = args.store or os.environ.get("TETHER_URL") or tether.DEFAULT_URL
        if where.startswith("memory:"):
            parser.exit(
                2,
                "demo: every step runs in a new process and a memory:// store does not outlive "
                "its process; use a sqlite:// or file: URL\n",
            )
        print(f"tether demo on {where}\n")
        print("1. a process creates a session")
        out = run_step(script, args.store, "create")
        session_id = out.rsplit("created session ", 1)[1].split()[0]
        print("\n2. a new process continues it")
        run_step(script, args.store, "continue", session_id)
        print("\n3. two workers, one version: the stale write is refused")
        run_step(script, args.store, "race", session_id)
        print("\n4. listing")
        run_step(script, args.store, "list", session_id)
        print("\nEvery step ran in its own process; only the store carried the session.")
        return

    try:
        run_in_this_process(args.step, args.session_id, args.store, script)
    except tether.TetherError as error:  # one clear line, not a traceback
        raise SystemExit(f"demo: {error}") from None


def run_in_this_process(step: str, session_id: str, url: str | None, script: str) -> None:
    with tether.open_store(url) as store:
        if step == "create":
            step_create(store)
        elif step == "continue":
            step_continue(store, session_id)
        elif step == "race":
            step_race(store, session_id, script, url)
        elif step == "rival":
            step_rival(store, session_id)
        elif step == "list":
            step_list(store, session_id)
        else:
            raise SystemExit(f"demo: unknown step {step!r}")


if __name__ == "__main__":
    main()
