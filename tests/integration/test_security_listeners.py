"""Every listener of the local stack is on loopback: the services, the simulator and a running streaming job
(its driver JVM, the Spark UI, the PySpark workers), read from /proc (tests/integration/listeners.py).

The services are found by their pid files (Postgres: postmaster.pid), each with its child processes. The
stream is `spark_streaming.py` without --once, as `make demo` runs it, on throwaway topics, a temp
checkpoint and a throwaway keyspace; it is stopped by SIGTERM afterwards and must exit 0. Sockets of
other programs on this machine are not the stack's and are not looked at.
"""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from binance_cdc.settings import PROJECT_ROOT
from stack import postgres as stack_postgres
from stack import process
from stack.__main__ import SERVICE_MODULES
from tests.stream_process import StreamProcess

import cdc_helpers as h
from listeners import descendants, is_loopback, listeners

pytestmark = pytest.mark.timeout(600)

PYTHON = str(PROJECT_ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_pid(name: str) -> int | None:
    return stack_postgres._postmaster_pid() if name == "postgres" else process.read_pid(name)


def test_every_service_listens_on_loopback_only():
    roots = {name: service_pid(name) for name in SERVICE_MODULES}
    assert all(roots.values()), f"a service is not running: {roots}"
    seen = {name: set().union(*listeners(descendants({pid})).values()) for name, pid in roots.items()}
    assert all(seen.values()), f"a service listens nowhere (wrong pid?): {seen}"
    assert {name: [a for a in addresses if not is_loopback(a)] for name, addresses in seen.items()} == \
        {name: [] for name in roots}, seen


def test_the_simulator_listens_on_loopback_only():
    port = free_port()
    sim = subprocess.Popen([PYTHON, "-m", "simulator", "--port", str(port), "--symbols", "2", "--no-warm"],
                           cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        h.wait_for(lambda: listeners({sim.pid}), 60, "simulator listening", poll=0.3)
        addresses = listeners({sim.pid})[sim.pid]
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(30)
    assert addresses == {f"tcp 127.0.0.1:{port}"}


@pytest.fixture
def running_stream(settings, tmp_path):
    prefix = f"itlisten{h.random_suffix()}"
    topics = h.topics_for(prefix)
    with h.throwaway_keyspace(settings, label="itlisten") as keyspace:
        h.create_topics(settings, topics)
        job = StreamProcess(h.stream_env(keyspace, prefix, tmp_path / "checkpoint"), tmp_path / "job.log")
        try:
            job.start()
            job.wait_started(300)
            yield job
        finally:
            code = job.stop()
            h.delete_topics(settings, topics)
        assert code == 0, job.tail(60)


def test_a_running_stream_listens_on_loopback_only(running_stream):
    job = running_stream
    seen = listeners(descendants({job.pid}))
    addresses = set().union(*seen.values())
    # The driver JVM listens at least for py4j and its RPC; nothing of it may face the network.
    assert len(addresses) >= 2, (seen, job.tail())
    assert [a for a in addresses if not is_loopback(a)] == [], seen
    # Which of them is the Spark UI (on by default when the job runs under plain python): it answers HTTP.
    ui = [a for a in addresses if a.startswith("tcp") and spark_ui_at(a)]
    assert len(ui) <= 1 and all(is_loopback(a) for a in ui), (ui, seen)


def spark_ui_at(address: str) -> bool:
    import requests

    host_port = address.split(" ", 1)[1].replace("[::ffff:127.0.0.1]", "127.0.0.1")
    try:
        return "Spark" in requests.get(f"http://{host_port}/", timeout=3).text
    except requests.RequestException:
        return False
