"""Helpers for tests/integration/test_spark_submit.py: a Spark standalone master + one worker from the pyspark
install (every listener on 127.0.0.1), a throwaway Cassandra keyspace, throwaway topics, Debezium-shaped
events, and the process bookkeeping to stop what spark-submit started.

Nothing here touches the shared pipeline's names: keyspace, topics and checkpoints carry a random suffix and
are removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from binance_cdc import datasets
from binance_cdc.settings import PROJECT_ROOT

SPARK_CLASS = PROJECT_ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "pyspark" / "bin" / "spark-class"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
README = PROJECT_ROOT / "README.md"
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "debezium" / "plain_latest_prices.json"
# The README writes the cluster's address as a placeholder (spark://host:7077); the test's master replaces it.
MASTER_URL = re.compile(r"spark://[^\s\"']+")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env() -> dict[str, str]:
    """The environment of every Spark process the tests start: loopback only, no checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME", "PYSPARK_SUBMIT_ARGS")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"  # driver, master, worker and executors bind to loopback only
    return env


# --- README --------------------------------------------------------------------------------------------------

SUBMIT = re.compile(r"(^|[\s/])spark-submit\s")
INLINE_CODE = re.compile(r"`([^`]+)`")


def readme_spark_submit_lines(text: str | None = None) -> list[str]:
    """Every command of README.md that runs spark-submit, exactly as written: lines of fenced code blocks
    (backslash continuations joined) and inline code spans in the prose (the cluster bullet is one)."""
    text = README.read_text() if text is None else text
    lines, in_block, pending = [], False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            lines.extend(span for span in INLINE_CODE.findall(raw) if SUBMIT.search(span))
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if SUBMIT.search(line):
            lines.append(line)
    return lines


def is_cluster_line(line: str) -> bool:
    return bool(MASTER_URL.search(line))


def runs_forever(line: str) -> bool:
    return "--once" not in shlex.split(line, comments=True)


# --- processes -----------------------------------------------------------------------------------------------

def session_pids(sid: int) -> list[int]:
    """Processes of one session (start_new_session=True): spark-submit's JVM and the Python driver under it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # fields after "(comm)": state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def python_driver_pid(sid: int) -> int | None:
    """The Python driver spark-submit runs: it handles SIGTERM gracefully (a SIGTERM to the JVM would not)."""
    for pid in session_pids(sid):
        args = cmdline(pid)
        if args and "python" in Path(args[0]).name and any(a.endswith("spark_streaming.py") for a in args):
            return pid
    return None


def listeners(pids: set[int]) -> set[str]:
    """Local addresses (host:port) the given processes listen on (TCP), from `ss`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            found.add(line.split()[3])
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::ffff:127.0.0.1", "::1") or host.startswith("127.")


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL, to the process group (session) of a Popen started with start_new_session."""
    if proc.poll() is not None and not session_pids(proc.pid):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not session_pids(proc.pid):
                return
            time.sleep(0.3)


def wait_for_log(path: Path, pattern: str, proc: subprocess.Popen, timeout: float, what: str) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before /{pattern}/:\n{text[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{what}: no /{pattern}/ after {timeout:.0f}s:\n{path.read_text(errors='replace')[-3000:]}")


class StandaloneCluster:
    """A Spark standalone master and one worker (1 core, 1 GiB) from the pyspark install, on 127.0.0.1 with
    random free ports. The worker runs in `root/worker-cwd` with no PYTHONPATH, so its executors can only
    import binance_cdc from what the job ships to them; executor files land in `root/work`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "worker-cwd"
        self.work_dir = root / "work"
        self.procs: list[subprocess.Popen] = []
        self.url = ""

    def _start(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        env = base_env()
        env["SPARK_DAEMON_MEMORY"] = "256m"  # master and worker daemons stay small beside the shared stack
        env["SPARK_LOCAL_DIRS"] = str(self.root / "local")  # executors' scratch space goes with the tmp dir
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(SPARK_CLASS), *args], cwd=self.cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc, log

    def start(self, timeout: float = 90) -> "StandaloneCluster":
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        master, master_log = self._start("master", [
            "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
            "--webui-port", str(free_port())])
        wait_for_log(master_log, r"I have been elected leader", master, timeout, "spark master")
        self.url = f"spark://127.0.0.1:{port}"
        worker, worker_log = self._start("worker", [
            "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1", "--cores", "1",
            "--memory", "1g", "--webui-port", str(free_port()), "--work-dir", str(self.work_dir)])
        wait_for_log(worker_log, r"Successfully registered with master", worker, timeout, "spark worker")
        return self

    def stop(self) -> None:
        """Stop worker then master; drop the executors' files (shipped jars and zip), keep the two logs."""
        for proc in reversed(self.procs):  # the worker first: it kills its executors on the way out
            stop_group(proc)
        for path in (self.work_dir, self.root / "local", self.cwd):
            shutil.rmtree(path, ignore_errors=True)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --- Kafka and Cassandra -------------------------------------------------------------------------------------

@contextmanager
def throwaway_topics(settings, prefix: str) -> Iterator[list[str]]:
    """The five topics of a fresh TOPIC_PREFIX, one partition each; deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from binance_cdc.kafka_client import client_conf

    names = [f"{prefix}.{d.topic_suffix}" for d in datasets.DATASETS.values()]
    admin = AdminClient(client_conf(settings.kafka))
    try:
        for future in admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1)
                                           for n in names]).values():
            future.result(timeout=30)
        yield names
    finally:
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [n for n in names if n in existing]
        if doomed:
            for future in admin.delete_topics(doomed, operation_timeout=30).values():
                future.result()


@contextmanager
def throwaway_keyspace(settings, name: str) -> Iterator[str]:
    """cql/ applied to keyspace `name` as the admin role, SELECT and MODIFY granted to the writer; dropped
    afterwards (its grants go with it)."""
    from cassandra.metadata import protect_name

    from binance_cdc.cassandra_conn import apply_cql_dir, session_scope

    target = replace(settings.cassandra, keyspace=name)
    with session_scope(settings.cassandra, settings.cassandra_admin, timeout=60) as session:
        try:
            apply_cql_dir(session, PROJECT_ROOT / "cql", target)
            for permission in ("SELECT", "MODIFY"):
                session.execute(f"GRANT {permission} ON KEYSPACE {protect_name(name)} "
                                f"TO {protect_name(settings.cassandra_writer.user)}")
            yield name
        finally:
            session.execute(f"DROP KEYSPACE IF EXISTS {protect_name(name)}")


def latest_prices(session, keyspace: str, symbols: list[str]) -> dict[str, str]:
    """symbol -> price (exact text) of the rows present in the throwaway keyspace."""
    from cassandra.metadata import protect_name
    from cassandra.query import ValueSequence

    rows = session.execute(f"SELECT symbol, price FROM {protect_name(keyspace)}.latest_prices WHERE symbol IN %s",
                           (ValueSequence(symbols),))
    return {r.symbol: str(r.price) for r in rows}


# --- Debezium-shaped events ----------------------------------------------------------------------------------

def _template() -> dict:
    """The recorded snapshot read of latest_prices (a real Debezium 3.4 envelope) as the shape to vary."""
    return json.loads(json.loads(FIXTURE.read_text())[0]["value"])


def envelope(op: str, symbol: str, lsn: int, price: str | None = None, before_price: str | None = None) -> dict:
    doc = _template()
    image = lambda p: {"symbol": symbol, "price": p, "observed_at": "2026-04-01T00:00:01.123000Z"}  # noqa: E731
    doc["op"] = op
    doc["after"] = None if op == "d" else image(price)
    doc["before"] = image(before_price) if before_price is not None else None
    doc["source"].update({"lsn": lsn, "snapshot": "last" if op == "r" else "false",
                          "sequence": json.dumps([str(lsn), str(lsn)])})
    return doc


def one_change_of_each_op(tag: str) -> tuple[list[tuple[bytes, bytes | None]], dict[str, str | None]]:
    """Messages (key, value) for latest_prices with one snapshot read, insert, update and delete, and what
    Cassandra must hold afterwards (symbol -> price, None = no row)."""
    sym = {op: f"T{tag}{op.upper()}USDT" for op in ("r", "c", "u", "d")}
    lsn = 50_000_000
    events = [
        envelope("r", sym["r"], lsn + 1, "67012.34000000"),
        envelope("c", sym["c"], lsn + 2, "0.00001000"),
        envelope("c", sym["u"], lsn + 3, "1.25000000"),
        envelope("u", sym["u"], lsn + 4, "2820413769.36626970", before_price="1.25000000"),
        envelope("c", sym["d"], lsn + 5, "42.00000100"),
        envelope("d", sym["d"], lsn + 6, before_price="42.00000100"),
    ]
    messages = [(json.dumps({"symbol": e["after"]["symbol"] if e["after"] else e["before"]["symbol"]}).encode(),
                 json.dumps(e).encode()) for e in events]
    messages.append((json.dumps({"symbol": sym["d"]}).encode(), None))  # the delete's tombstone
    expected = {sym["r"]: "67012.34000000", sym["c"]: "0.00001000", sym["u"]: "2820413769.36626970",
                sym["d"]: None}
    return messages, expected


def produce_all(settings, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
    from confluent_kafka import Producer

    from binance_cdc.kafka_client import client_conf

    errors: list = []
    producer = Producer({**client_conf(settings.kafka), "acks": "all", "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0 and errors == [None] * len(messages), errors
