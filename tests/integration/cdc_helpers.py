"""Helpers for the CDC integration tests and the fixture capture: Postgres as the app role, throwaway
Debezium connectors (own name, slot and topic prefix; removed with their slot and topics afterwards),
Kafka consumption, and the streaming job as a subprocess.

Throwaway connector names are unique per run because Connect keeps a deleted connector's source offsets:
re-registering the same name would resume there and skip the snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from binance_cdc import datasets
from binance_cdc.settings import PROJECT_ROOT
from binance_cdc.kafka_client import client_conf as kafka_conf
from connectors import register

log = logging.getLogger(__name__)

PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"


def random_suffix() -> str:
    return secrets.token_hex(4)


def pg_connect(settings, replication: bool = False):
    from binance_cdc.postgres_conn import connect

    login = settings.replication if replication else settings.postgres_app
    return connect(settings.postgres, login, "test_cdc", autocommit=True)


def pg_execute(settings, sql: str, params=None) -> None:
    conn = pg_connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


_DECIMALS = ("2820413769.36626970", "67012.34000000", "0.00001000", "-1.250", "12345678901234567890.123456789")


def sample_row(dataset: datasets.Dataset, symbol: str, n: int = 0) -> dict:
    """A valid row of any dataset, built from its column kinds; `n` varies keys and values. Decimals keep
    trailing zeros and exceed double precision; times have milliseconds, like Binance's (and Cassandra's)."""
    base = datetime(2026, 3, 31, 23, 59, 59, 123000, tzinfo=timezone.utc)
    row: dict = {}
    for i, col in enumerate(dataset.columns):
        if col.name == "symbol":
            row[col.name] = symbol
        elif col.name == "side":
            row[col.name] = ("bid", "ask")[n % 2]
        elif col.kind == "text":
            row[col.name] = datasets.KLINE_INTERVAL
        elif col.kind == "decimal":
            row[col.name] = Decimal(_DECIMALS[(i + n) % len(_DECIMALS)])
        elif col.kind == "timestamp":
            row[col.name] = base + timedelta(minutes=30 * n, seconds=i)
        elif col.kind == "bigint":
            row[col.name] = 9_000_000_000 + 1000 * n + i
        elif col.kind == "int":
            row[col.name] = n + 1
        elif col.kind == "boolean":
            row[col.name] = n % 2 == 0
        else:
            raise ValueError(f"{dataset.name}.{col.name}: no sample for kind {col.kind}")
    return row


def key_of(dataset: datasets.Dataset, row: dict) -> dict:
    return {k: row[k] for k in dataset.primary_key}


def insert_row(settings, dataset: datasets.Dataset, row: dict) -> None:
    cols = dataset.column_names
    pg_execute(settings, f"INSERT INTO binance.{dataset.name} ({', '.join(cols)}) VALUES "
                         f"({', '.join(['%s'] * len(cols))})", [row[c] for c in cols])


def update_row(settings, dataset: datasets.Dataset, key: dict, changes: dict) -> None:
    sets = ", ".join(f"{c} = %s" for c in changes)
    where = " AND ".join(f"{c} = %s" for c in key)
    pg_execute(settings, f"UPDATE binance.{dataset.name} SET {sets} WHERE {where}",
               [*changes.values(), *key.values()])


def delete_rows(settings, dataset: datasets.Dataset, key: dict) -> None:
    where = " AND ".join(f"{c} = %s" for c in key)
    pg_execute(settings, f"DELETE FROM binance.{dataset.name} WHERE {where}", list(key.values()))


def drop_slot(settings, slot: str, timeout: float = 60) -> None:
    """Drop a replication slot as the replication role, once its walsender has let go of it."""
    deadline = time.monotonic() + timeout
    conn = pg_connect(settings, replication=True)
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                if row is None:
                    return
                if not row[0]:
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    log.info("slot %s dropped", slot)
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"slot {slot} still active after {timeout}s")
                time.sleep(0.5)
    finally:
        conn.close()


def topics_for(prefix: str) -> list[str]:
    return [f"{prefix}.{d.topic_suffix}" for d in datasets.DATASETS.values()]


def delete_topics(settings, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_conf(settings.kafka))
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for topic, future in admin.delete_topics(doomed, operation_timeout=30).items():
            future.result()
            log.info("topic %s deleted", topic)


def produce(settings, topic: str, key: bytes | None, value: bytes | None) -> None:
    from confluent_kafka import Producer

    producer = Producer(kafka_conf(settings.kafka))
    producer.produce(topic, key=key, value=value)
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not deliver a message to {topic}")


def consume(settings, topics: list[str], until, timeout: float = 90, idle: float = 5) -> list[dict]:
    """Read topics from the beginning until `until(records)` is true and no record came for `idle` s."""
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer({**kafka_conf(settings.kafka), "group.id": f"capture-{random_suffix()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "allow.auto.create.topics": False})
    consumer.subscribe(topics)
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if until(records) and time.monotonic() - last > idle:
                    return records
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise RuntimeError(f"kafka error: {msg.error()}")
            last = time.monotonic()
            records.append({
                "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "key": None if msg.key() is None else msg.key().decode("utf-8"),
                "value": None if msg.value() is None else msg.value().decode("utf-8"),
            })
    finally:
        consumer.close()
    raise TimeoutError(f"only {len(records)} records on {topics} after {timeout}s")


@contextmanager
def throwaway_connector(settings, schemas: bool = False, label: str = "test") -> Iterator[dict]:
    """A second connector (snapshot initial) with its own slot and topic prefix; removed afterwards with
    its slot and topics. Yields {"name", "slot", "prefix", "topics"}."""
    suffix = random_suffix()
    info = {"name": f"binance-{label}-{suffix}", "slot": f"{label}_slot_{suffix}",
            "prefix": f"{label}{suffix}"}
    info["topics"] = topics_for(info["prefix"])
    overrides = {"slot.name": info["slot"], "topic.prefix": info["prefix"]}
    if schemas:
        overrides.update({"key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true"})
    connector = register.render_local(settings, overrides, name=info["name"])
    url = settings.connect.url
    try:
        register.register(url, connector)
        yield info
    finally:
        register.delete(url, info["name"])
        drop_slot(settings, info["slot"])
        delete_topics(settings, info["topics"] + [f"__debezium-heartbeat.{info['prefix']}"])


class StreamJob:
    """`python spark_streaming.py` as a subprocess with its own checkpoint and topic prefix."""

    def __init__(self, checkpoint: Path, log_path: Path, topic_prefix: str | None = None,
                 extra_env: dict | None = None) -> None:
        self.env = {**os.environ, "SPARK_CHECKPOINT_DIR": str(checkpoint), "SPARK_TRIGGER_SECONDS": "1",
                    "SPARK_STARTING_OFFSETS": "earliest", **(extra_env or {})}
        if topic_prefix:
            self.env["TOPIC_PREFIX"] = topic_prefix
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def run_once(self, timeout: float = 300) -> str:
        """`--once`: process what is there, exit; returns the log, raises on a non-zero exit."""
        with open(self.log_path, "ab") as out:
            done = subprocess.run([str(PYTHON), "spark_streaming.py", "--once"], cwd=PROJECT_ROOT,
                                  env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        text = self.log_path.read_text()
        if done.returncode != 0:
            raise RuntimeError(f"spark_streaming.py --once exited {done.returncode}:\n{text[-5000:]}")
        return text

    def start(self) -> None:
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(PYTHON), "spark_streaming.py"], cwd=PROJECT_ROOT, env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the Python driver only (it lets the running batch finish, stops the query, then its
        JVM); SIGKILL of the whole process group if it hangs. A SIGTERM to the group would kill the JVM
        under the driver mid-batch."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def wait_for(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {last!r})")


def dump(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover - keeps `python -m` from importing it by mistake
    sys.exit("import this module; see tests/integration/test_cdc.py")
