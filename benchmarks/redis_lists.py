"""Whole-history chat turns on Redis: tether's Redis store beside plain Redis lists.

Run ``.bench-venv/bin/python benchmarks/redis_lists.py [--quick] [--json OUT.json]`` (needs
langchain-community for its ``RedisChatMessageHistory``; without it that row is left out). One
turn reads the whole history and appends a user message (~200 bytes) and an assistant message
(~800 bytes), on a session pre-filled (untimed) with n messages:

- ``tether``: ``store.load(id)`` then ``store.commit(id, version, append=[...])``, one
  ``RedisStore`` (the sync store, as the other two are sync);
- ``langchain RedisChatMessageHistory``: ``.messages`` then ``add_messages([...])``;
- ``raw redis-py``: ``LRANGE`` + ``json.loads`` of every item, then one ``RPUSH`` of the two.

Systems take turns in blocks of :data:`BLOCK` turns, in rotating order; a row's median is the
median of its blocks' medians (see ``frameworks_agents.BLOCK``). Only ratios from one run mean
anything on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # .bench-venv lacks it

from chat_turn import interleave
from server_turns import REDIS_URL

import tether

USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}
LENGTHS = (10, 100, 1000)
BLOCK = 5

Turn = Callable[[int], None]
"""(turn number) -> None: one timed turn on the system's session for that turn."""


def tether_system(sessions: int, n: int, namespace: str) -> tuple[Turn, Callable[[], None]]:
    store = tether.open_store(f"{REDIS_URL}?namespace={namespace}")
    ids = [store.create(tether.Session(history=[USER] * n)).id for _ in range(sessions)]

    def turn(r: int) -> None:
        loaded = store.load(ids[r % sessions])
        store.commit(loaded.id, loaded.version, append=[USER, ASSISTANT])

    def close() -> None:
        for session_id in ids:
            store.delete(session_id)
        store.close()

    return turn, close


def langchain_system(sessions: int, n: int, prefix: str) -> tuple[Turn, Callable[[], None]]:
    from langchain_community.chat_message_histories import (  # type: ignore[import-not-found, unused-ignore]
        RedisChatMessageHistory,
    )
    from langchain_core.messages import (  # type: ignore[import-not-found, unused-ignore]
        AIMessage,
        HumanMessage,
    )

    histories = [
        RedisChatMessageHistory(f"s{i}", url=REDIS_URL, key_prefix=prefix) for i in range(sessions)
    ]
    for history in histories:
        history.add_messages([HumanMessage(content=USER["content"]) for _ in range(n)])

    def turn(r: int) -> None:
        history = histories[r % sessions]
        _ = history.messages
        history.add_messages(
            [HumanMessage(content=USER["content"]), AIMessage(content=ASSISTANT["content"])]
        )

    def close() -> None:
        for history in histories:
            history.clear()

    return turn, close


def raw_system(sessions: int, n: int, prefix: str) -> tuple[Turn, Callable[[], None]]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [f"{prefix}{i}" for i in range(sessions)]
    payload = json.dumps(USER), json.dumps(ASSISTANT)
    for key in keys:
        client.rpush(key, *([payload[0]] * n))

    def turn(r: int) -> None:
        key = keys[r % sessions]
        [json.loads(item) for item in client.lrange(key, 0, -1)]
        client.rpush(key, *payload)

    def close() -> None:
        client.delete(*keys)
        client.close()

    return turn, close


def block_median(samples_ns: list[int]) -> float:
    """The median of the blocks' medians, in µs (samples in the order taken)."""
    medians = [
        statistics.median(samples_ns[i : i + BLOCK]) for i in range(0, len(samples_ns), BLOCK)
    ]
    return statistics.median(medians) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    reps = 20 if args.quick else 200
    sessions = 5
    tag = uuid.uuid4().hex[:8]
    makers: dict[str, Callable[[int, int, str], tuple[Turn, Callable[[], None]]]] = {
        "tether": tether_system,
        "raw redis-py": raw_system,
    }
    try:
        import langchain_community  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        print("note: langchain-community is not installed here: its row is left out")
    else:
        makers["langchain RedisChatMessageHistory"] = langchain_system
    rows: list[dict[str, Any]] = []
    for n in LENGTHS:
        made = [
            make(sessions, n, f"bench-lists-{tag}-{n}-{i}:")
            for i, make in enumerate(makers.values())
        ]
        turns = [turn for turn, _ in made]
        try:
            for turn in turns:
                turn(0)  # warm: connections, scripts

            def timed(i: int, r: int, turns: list[Turn] = turns) -> None:
                turns[i](r)

            samples = interleave(len(made), reps, timed, block=BLOCK)
        finally:
            for _, close in made:
                close()
        figures = {name: block_median(ns) for name, ns in zip(makers, samples, strict=True)}
        base = figures["tether"]
        print(
            f"n={n:>5}: "
            + ", ".join(
                f"{name} {us:,.0f} µs (tether {base / us:.2f}x of it)"
                for name, us in figures.items()
            )
        )
        rows += [{"n": n, "system": name, "median_us": us} for name, us in figures.items()]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"block": BLOCK, "reps": reps, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
