"""`spark_streaming.py` as a subprocess: the one wrapper the CDC integration tests and bench/cdc.py share.

The job runs in its own session (process group: the Python driver, its py4j JVM and the PySpark workers)
with the environment it is given on top of ours, so a caller points it at its own topic prefix, checkpoint
and keyspace (TOPIC_PREFIX, SPARK_CHECKPOINT_DIR, CASSANDRA_KEYSPACE, ...) without touching .env.
Its output goes to one log file, truncated when the wrapper is made and appended to by every start, so a
restarted job's log holds both runs. `stop()` sends SIGTERM to the driver only (it lets the running batch
finish, stops the query, then its JVM) and kills the whole group only when that does not end it in time,
or when something of the group outlives the driver.

    job = StreamProcess({"TOPIC_PREFIX": "it1234", "SPARK_CHECKPOINT_DIR": "/tmp/x/checkpoint"}, log_path)
    job.start(); job.wait_started(); ...; assert job.stop() == 0
    StreamProcess(env, log_path, once=True).run()   # --once: returns the log, raises on a non-zero exit
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping

from binance_cdc.settings import PROJECT_ROOT

PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
JOB = PROJECT_ROOT / "spark_streaming.py"
QUERY_STARTED = re.compile(r" spark_streaming: query \S* ?started ", re.MULTILINE)


class StreamProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path, once: bool = False,
                 master: str | None = None) -> None:
        self.env = {**os.environ, **env}
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        self.argv = [str(PYTHON), str(JOB)] + (["--master", master] if master else []) + \
            (["--once"] if once else [])
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"spark_streaming.py already running (pid {self.proc.pid})")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=PROJECT_ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"spark_streaming.py exited with {self.proc.returncode}; log tail:\n{self.tail()}")

    def wait_started(self, timeout: float = 180) -> None:
        """Until the job logs that its query started (JVM up, topics subscribed)."""
        deadline = time.monotonic() + timeout
        while not QUERY_STARTED.search(self.text()):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"spark_streaming.py: no 'query started' after {timeout}s; tail:\n{self.tail()}")
            time.sleep(0.5)

    def wait_exit(self, timeout: float) -> int:
        """The exit status; on a timeout the job is stopped and TimeoutError raised."""
        assert self.proc is not None, "not started"
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"spark_streaming.py still running after {timeout}s; tail:\n{self.tail()}") from None
        finally:
            self._kill_group()

    def run(self, timeout: float = 600) -> str:
        """Start, wait for the exit (meant for once=True); the log, or RuntimeError on a non-zero exit."""
        self.start()
        code = self.wait_exit(timeout)
        if code != 0:
            raise RuntimeError(f"spark_streaming.py exited {code}:\n{self.tail(80)}")
        return self.text()

    def stop(self, timeout: float = 150) -> int:
        """SIGTERM to the driver; SIGKILL to the group if it is not gone within `timeout`. The exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(30)
        self._kill_group()
        return self.proc.returncode

    def _kill_group(self) -> None:
        """Nothing of the job's session may outlive it (a JVM or a PySpark worker left behind)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
