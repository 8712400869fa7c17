"""The faults of the chaos suite: `kill -9` of one process of this checkout's stack, and the recovery a user
makes (README): `make up` for a service (here its second half, `python -m stack up`, without `make setup`),
the demo's way to start the stream (`stack.demo.ensure_stream_running`) when `make status` says it is dead.

A process is killed only when its command line names this checkout (PROJECT), so the suite can never hit
another stack on the same machine, whatever a stale pid file says.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stack import process
from stack.paths import PROJECT

log = logging.getLogger("chaos.faults")

STREAM = "spark_streaming"


@dataclass(frozen=True)
class Fault:
    name: str  # as the report shows it
    pid_name: str  # pid file under .local/run, or "postgres" (its postmaster.pid)


FAULTS = (
    Fault("Kafka Connect", "connect"),
    Fault("Kafka broker", "kafka"),
    Fault("streaming job", STREAM),
    Fault("Cassandra", "cassandra"),
    Fault("Postgres", "postgres"),
)


def pid_of(fault: Fault) -> int | None:
    if fault.pid_name == "postgres":
        from stack import postgres

        return postgres._postmaster_pid()
    return process.read_pid(fault.pid_name)


def ours(pid: int) -> bool:
    """The process's command line names this checkout (its data dir, jars, config or script)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    return str(PROJECT) + "/" in cmdline


def kill9(fault: Fault) -> int:
    """SIGKILL the fault's process; its pid. Refuses a process that is not this checkout's."""
    pid = pid_of(fault)
    if pid is None:
        raise RuntimeError(f"{fault.name}: not running, nothing to kill")
    if not ours(pid):
        raise RuntimeError(f"{fault.name}: pid {pid} does not belong to {PROJECT}; refusing to kill it")
    log.warning("kill -9 %s (pid %d)", fault.name, pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def stack_up() -> subprocess.CompletedProcess:
    """What `make up` does once `make setup` has nothing left to do."""
    return subprocess.run([sys.executable, "-m", "stack", "up"], cwd=PROJECT, capture_output=True, text=True,
                          timeout=600)


def stack_status() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stack", "status"], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)


def stream_alive() -> bool:
    return process.read_pid(STREAM) is not None


def ensure_stream(settings) -> bool:
    """Start the stream the way `make demo` does when none runs; True when it had to be started."""
    from stack import demo

    if process.read_pid(STREAM) is not None:
        return False
    log.warning("the streaming job is not running: starting it as make demo does")
    demo.ensure_stream_running(settings)
    return True


def recover(settings, timeout: float = 300.0) -> tuple[float | None, list[str], str]:
    """The user's recovery, repeated until `make status` exits 0: (seconds it took, the steps taken,
    the last status output). Seconds are None when status never became healthy within `timeout`."""
    began = time.monotonic()
    steps: list[str] = []
    last = ""
    up_done = False
    while time.monotonic() - began < timeout:
        if not up_done:
            done = stack_up()
            steps.append(f"make up (exit {done.returncode})")
            up_done = done.returncode == 0
            if not up_done:
                log.warning("stack up failed:\n%s", done.stderr[-2000:])
                time.sleep(3)
                continue
        if ensure_stream(settings):
            steps.append("stream started (make demo's way)")
        status = stack_status()
        last = status.stdout
        if status.returncode == 0:
            return time.monotonic() - began, steps, last
        if any(line.split()[:2] in (["kafka", "DOWN"], ["connect", "DOWN"], ["postgres", "DOWN"],
                                    ["cassandra", "DOWN"]) for line in last.splitlines()):
            up_done = False  # a service went down again (or never came up): make up once more
        time.sleep(2)
    return None, steps, last
