"""A worker cut off past its lease: its turn is taken over and its late writes are refused.

Two ways to cut a worker off mid-turn, both on Redis:

* a **network partition**: the worker runs in its own network namespace and reaches Redis over a
  virtual link (a veth pair and a forwarding proxy, since the server listens on loopback); the
  link is cut for longer than the lease ttl, then restored. Needs root (``ip netns``); skipped
  with the reason otherwise.
* a **pause**: the worker process is stopped with SIGSTOP past its lease ttl, then continued.

Either way a second worker takes the session over (a new claim, a larger fence), resumes the
turn from its last committed step and finishes it; the first worker's writes after the cut are
refused (``LeaseLost``) and the session's fences never go down.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import tether
from tether.agent import Agent, ModelReply, ModelRequest, ScriptedModel
from tether.worker import Worker
from tether.worker_turns import submit

from .conftest import require_module, wipe_redis_namespace, with_options

ROOT = Path(__file__).resolve().parent.parent
TTL = 1.5
SLOW = "TETHER_PARTITION_SLOW"


def _answer(request: ModelRequest) -> ModelReply | str:
    delay = float(os.environ.get(SLOW, "0"))
    time.sleep(delay)  # the cut lands while this model call is in flight
    return f"answer after {delay}s"


def make_agent(store: tether.Store) -> Agent:
    """The factory both workers load; $TETHER_PARTITION_SLOW slows the first one's model."""
    return Agent(store, llm=ScriptedModel(_answer), lease_ttl=TTL)


def start_worker(url: str, prefix: list[str], slow: float, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, SLOW: str(slow), "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "tether", "worker", "--store", url,
             "--agent", "tests.test_workers_partition:make_agent", "--poll-interval", "0.1"],
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def take_over_and_check(store: tether.Store, url: str, first: subprocess.Popen[bytes]) -> None:
    """With the first worker cut off mid-model-call: a second one finishes the turn."""
    header = store.load("p1", last=0)
    cut_fence = header.lease_fence
    time.sleep(TTL + 0.5)  # past the ttl: the lease is free to take
    second = Worker(url, make_agent, poll_interval=0.05)
    second.run(until_idle=True)
    assert second.stats.turns_finished == 1
    finished = store.load("p1")
    assert finished.status.value == "finished"
    assert finished.lease_fence == cut_fence + 1  # a new claim took it over


def check_refused(
    store: tether.Store, first: subprocess.Popen[bytes], log: Path, *, may_fail: bool = False
) -> None:
    version = store.load("p1", last=0).version
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    # its late write was refused: the lease was lost (or, with may_fail, while the link was
    # still down the write never reached the server and failed); nothing of it was stored
    report = log.read_text()
    assert "1 lease(s) lost" in report or (may_fail and "1 failed" in report), report
    print(log.read_text().strip().splitlines()[-1])  # what the cut-off worker reports
    session = store.load("p1")
    assert session.version == version  # nothing written after the takeover
    answers = [i["content"] for i in session.history if i["role"] == "assistant"]
    assert answers == ["answer after 0.0s"]  # the second worker's, only
    fences = [i["fence"] for i in session.history]
    assert fences == sorted(fences)


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[tuple[str, tether.Store]]:
    require_module("redis", "redis")
    namespace = f"t{uuid.uuid4().hex}"
    url = with_options(redis_url, namespace=namespace)
    with tether.open_store(url) as store:
        yield url, store
    wipe_redis_namespace(redis_url, namespace)


def _running_under(store: tether.Store, pid: int) -> bool:
    header = store.load("p1", last=0)
    owner = header.lease_owner or ""
    return header.status.value == "running" and f":{pid}/" in owner


@pytest.mark.slow
def test_paused_worker_is_taken_over_and_its_late_write_refused(redis_store, tmp_path):
    url, store = redis_store
    submit(store, "p1", "hello")
    log = tmp_path / "first.log"
    first = start_worker(url, [], slow=TTL * 3, log=log)
    try:
        wait_for(lambda: _running_under(store, first.pid), 60, "the first worker's claim")
        first.send_signal(signal.SIGSTOP)  # paused mid model call: no renewal, no writes
        take_over_and_check(store, url, first)
        first.send_signal(signal.SIGCONT)  # its model call returns; its commit is refused
        time.sleep(TTL * 2)
        check_refused(store, first, log)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.wait()


# --- the network partition ------------------------------------------------------------------------


class Forwarder:
    """TCP from ``listen`` to ``target``: the namespace's way to a server on loopback."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while not self.closed:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)

    def close(self) -> None:
        self.closed = True
        self.server.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """(namespace, host-side address, host-side link) joined by a veth pair."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("network namespaces need root and iproute2 (ip netns)")
    tag = uuid.uuid4().hex[:6]
    name, host_if, ns_if = f"tether-{tag}", f"vt{tag}a", f"vt{tag}b"
    octet = int(tag[:2], 16) % 200 + 20
    host_ip, ns_ip = f"10.{octet}.77.1", f"10.{octet}.77.2"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _ip("netns", "exec", name, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, host_ip, host_if
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", name)


@pytest.mark.slow
def test_partitioned_worker_is_taken_over_and_its_late_write_refused(redis_store, netns, tmp_path):
    url, store = redis_store
    name, host_ip, host_if = netns
    parts = urlsplit(url)
    forwarder = Forwarder((host_ip, 0), (parts.hostname or "127.0.0.1", parts.port or 6379))
    inside = url.replace(parts.netloc, f"{host_ip}:{forwarder.port}", 1)
    submit(store, "p1", "hello")
    log = tmp_path / "first.log"
    first = start_worker(inside, ["ip", "netns", "exec", name], slow=TTL * 3, log=log)
    try:
        wait_for(lambda: _running_under(store, first.pid), 60, "the partitioned worker's claim")
        _ip("link", "set", host_if, "down")  # the cut: renewals and writes cannot pass
        take_over_and_check(store, url, first)
        _ip("link", "set", host_if, "up")  # healed: the late commit reaches the server
        time.sleep(TTL * 3)
        check_refused(store, first, log, may_fail=True)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        forwarder.close()
