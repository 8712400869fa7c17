"""Start, find and stop the stack's background processes (pid files under .local/run)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from stack.paths import LOGS, RUN

log = logging.getLogger(__name__)


def pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def read_pid(name: str) -> int | None:
    path = pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return False


def spawn(name: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start argv detached from this process, stdout/stderr appended to .local/logs/<name>.log."""
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    pid_file(name).write_text(str(proc.pid))
    log.info("%s: started pid %d (log %s)", name, proc.pid, LOGS / f"{name}.log")
    return proc.pid


def stop(name: str, timeout: float = 60.0) -> None:
    pid = read_pid(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return
    log.info("%s: stopping pid %d", name, pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        log.warning("%s: still running after %.0fs, killing", name, timeout)
        os.kill(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(what: str, check: Callable[[], bool], timeout: float, log_name: str | None = None,
               interval: float = 0.5) -> None:
    """Poll check() until true; on timeout raise with the service log's last lines."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # readiness probes fail in many ways while a service boots
            last_error = exc
        if log_name and read_pid(log_name) is None and pid_file(log_name).exists():
            break
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s (last error: {last_error})\n" + tail(log_name))


def tail(name: str | None, lines: int = 30) -> str:
    if not name:
        return ""
    path = LOGS / f"{name}.log"
    if not path.exists():
        return f"(no log at {path})"
    content = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(content)} lines of {path} ---\n" + "\n".join(content)


def java_heap_opts(heap: str) -> list[str]:
    return [f"-Xms{heap}", f"-Xmx{heap}"]
