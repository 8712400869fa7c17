"""Helpers for the CDC integration tests and the fixture capture: Postgres as the app role, throwaway
Debezium connectors (own name, slot and topic prefix; removed with their slot and topics afterwards),
throwaway Cassandra keyspaces (the tables of cql/ under another name, with their own writer role; dropped
afterwards), Debezium-shaped change messages built from rows, Kafka consumption, and the environment that
points `spark_streaming.py` (tests/stream_process.py) at all of those instead of the pipeline's own.

Nothing here touches the pipeline's own namespaces (topics `binance.binance.*`, keyspace `binance_test`,
checkpoint .local/checkpoints): a stream left running by `make demo` writes those, and the tests must
neither see its writes nor disturb it.

Throwaway connector names are unique per run because Connect keeps a deleted connector's source offsets:
re-registering the same name would resume there and skip the snapshot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from binance_cdc import datasets
from binance_cdc.kafka_client import client_conf as kafka_conf
from binance_cdc.settings import PROJECT_ROOT, CassandraSettings, Credentials, Secret
from binance_cdc.stream.sink import Message
from connectors import register

log = logging.getLogger(__name__)

CQL_DIR = PROJECT_ROOT / "cql"


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


def delete_heartbeats(settings, slot: str) -> None:
    """The heartbeat rows a throwaway connector wrote (keyed by its slot; the pipeline's stay). As the
    superuser over the socket: the roles the tests hold may not delete them, by design."""
    import psycopg2

    from stack.postgres import admin_dsn

    with psycopg2.connect(admin_dsn(settings, settings.postgres.database)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM cdc_heartbeat.beats WHERE slot_name = %s", (slot,))
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


def produce_all(settings, messages) -> None:
    """Each message's key and value to its topic, in list order (one producer, one flush)."""
    from confluent_kafka import Producer

    producer = Producer(kafka_conf(settings.kafka))
    for m in messages:
        producer.produce(m.topic, key=m.key, value=m.value)
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not deliver all of {len(messages)} messages")


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
def throwaway_connector(settings, schemas: bool = False, label: str = "test",
                        snapshot_symbols: str | None = None, overrides: dict | None = None,
                        suffix: str | None = None) -> Iterator[dict]:
    """A second connector (snapshot initial) with its own slot and topic prefix; removed afterwards with
    its slot and topics. Yields {"name", "slot", "prefix", "topics"}.

    `snapshot_symbols` (a LIKE pattern such as 'TAB12CD%') limits the snapshot to those symbols' rows
    (Debezium's snapshot.select.statement.overrides): whatever else the shared `binance` tables hold (a
    demo's or a benchmark's rows) is then not read again by every test run. `overrides`: further
    properties (a scratch publication, a short heartbeat interval); `suffix` fixes the random part of the
    names when a test must know the slot's name before the connector exists."""
    suffix = suffix or random_suffix()
    info = {"name": f"binance-{label}-{suffix}", "slot": f"{label}_slot_{suffix}",
            "prefix": f"{label}{suffix}"}
    info["topics"] = topics_for(info["prefix"])
    overrides = {**(overrides or {}), "slot.name": info["slot"], "topic.prefix": info["prefix"]}
    if snapshot_symbols is not None:
        if not re.fullmatch(r"[A-Z0-9%_]+", snapshot_symbols):
            raise ValueError(f"snapshot_symbols {snapshot_symbols!r}: letters, digits, % and _ only")
        tables = [f"binance.{d.name}" for d in datasets.DATASETS.values()]
        overrides["snapshot.select.statement.overrides"] = ",".join(tables)
        for table in tables:
            overrides[f"snapshot.select.statement.overrides.{table}"] = \
                f"SELECT * FROM {table} WHERE symbol LIKE '{snapshot_symbols}'"
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
        delete_heartbeats(settings, info["slot"])


@dataclasses.dataclass(frozen=True)
class Keyspace:
    """A throwaway keyspace with the pipeline's tables and a writer role holding SELECT + MODIFY on it only."""

    name: str
    cassandra: CassandraSettings  # the stack's settings with this keyspace
    writer: Credentials

    def stream_env(self) -> dict[str, str]:
        """What spark_streaming.py needs to write here instead of the pipeline's keyspace."""
        return {"CASSANDRA_KEYSPACE": self.name, "CASSANDRA_APP_USER": self.writer.user,
                "CASSANDRA_APP_PASSWORD": self.writer.password.reveal()}


@contextmanager
def throwaway_keyspace(settings, label: str = "it") -> Iterator[Keyspace]:
    """cql/ applied under the name `<label>_<random>` (cassandra_conn substitutes the keyspace), and a
    login role with the production writer's rights on it; both dropped afterwards. The pipeline's writer
    role is left alone: `stack up` keeps its grants to exactly SELECT + MODIFY on binance_test, and a test
    of those grants may run at the same time."""
    from binance_cdc.cassandra_conn import apply_cql_dir, session_scope

    name = f"{label}_{random_suffix()}"
    keyspace = Keyspace(name, dataclasses.replace(settings.cassandra, keyspace=name),
                        Credentials(f"{name}_writer", Secret(secrets.token_urlsafe(24))))
    with session_scope(settings.cassandra, settings.cassandra_admin, timeout=60) as admin:
        try:
            apply_cql_dir(admin, CQL_DIR, keyspace.cassandra)
            admin.execute(f"CREATE ROLE {keyspace.writer.user} WITH LOGIN = true AND SUPERUSER = false "
                          "AND PASSWORD = %s", (keyspace.writer.password.reveal(),))
            admin.execute(f"GRANT SELECT ON KEYSPACE {name} TO {keyspace.writer.user}")
            admin.execute(f"GRANT MODIFY ON KEYSPACE {name} TO {keyspace.writer.user}")
            log.info("keyspace %s created with role %s", name, keyspace.writer.user)
            yield keyspace
        finally:
            admin.execute(f"DROP KEYSPACE IF EXISTS {name}")
            admin.execute(f"DROP ROLE IF EXISTS {keyspace.writer.user}")
            log.info("keyspace %s and role %s dropped", name, keyspace.writer.user)


def stream_env(keyspace: Keyspace, topic_prefix: str, checkpoint: Path, **extra: str) -> dict[str, str]:
    """spark_streaming.py reading `<topic_prefix>.binance.*` into `keyspace`, with its own checkpoint."""
    return {**keyspace.stream_env(), "TOPIC_PREFIX": topic_prefix, "SPARK_CHECKPOINT_DIR": str(checkpoint),
            "SPARK_TRIGGER_SECONDS": "1", "SPARK_STARTING_OFFSETS": "earliest", **extra}


def create_topics(settings, topics: list[str], partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_conf(settings.kafka))
    for topic, future in admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                              for t in topics]).items():
        future.result(30)
        log.info("topic %s created", topic)


# --- Debezium-shaped change messages (the plain JSON layout of our connectors) -------------------------

EPOCH_MS = 1_775_001_600_000  # 2026-04-01T00:00:00Z: source commit times are this + the LSN, in ms


def json_value(value):
    if isinstance(value, Decimal):
        return str(value)  # decimal.handling.mode=string
    if isinstance(value, datetime):  # timestamptz as io.debezium.time.ZonedTimestamp
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def change_message(dataset: datasets.Dataset, op: str, row: dict, lsn: int, prefix: str = "binance",
                   offset: int = 0) -> Message:
    """A Debezium change event for `row` as the connector writes it (plain JSON, REPLICA IDENTITY FULL):
    c/r/u carry the row as `after`, d as `before`; source.lsn is `lsn`."""
    image = {c.name: json_value(row[c.name]) for c in dataset.columns}
    envelope = {
        "before": image if op in ("u", "d") else None,
        "after": None if op == "d" else image,
        "source": {"version": "3.4.3.Final", "connector": "postgresql", "name": prefix, "db": "binance",
                   "schema": "binance", "table": dataset.name, "snapshot": "true" if op == "r" else "false",
                   "ts_ms": EPOCH_MS + lsn, "txId": 1000 + lsn, "lsn": lsn, "xmin": None},
        "transaction": None, "op": op, "ts_ms": EPOCH_MS + lsn + 7,
    }
    key = {k: json_value(row[k]) for k in dataset.primary_key}
    return Message(f"{prefix}.{dataset.topic_suffix}", 0, offset, json.dumps(key).encode(),
                   json.dumps(envelope).encode())


def tombstone_message(message: Message) -> Message:
    return Message(message.topic, message.partition, message.offset + 1, message.key, None)


def non_key_decimal(dataset) -> str:
    return next(c.name for c in dataset.columns if c.kind == "decimal" and c.name not in dataset.primary_key)


def change_history(tag: str, prefix: str = "binance") -> list[Message]:
    """For every dataset, in LSN order, the changes of three keys (symbols unique to `tag`):
    A is created, updated twice, deleted and created again with other values; B is created and deleted;
    C is created and deleted too (the reverse-order case for a key nothing else was written to).
    Deletes are followed by their tombstone, as Debezium sends them."""
    messages = []
    for i, d in enumerate(datasets.DATASETS.values()):
        col = non_key_decimal(d)
        a = sample_row(d, f"T{tag}AUSDT", 0)
        b = sample_row(d, f"T{tag}BUSDT", 1)
        c = sample_row(d, f"T{tag}CUSDT", 2)
        a120, a200, a700 = ({**a, col: Decimal(v)} for v in ("120.00000120", "200.0000020", "700.00000700"))
        lsn = 1_000 * (i + 1)
        for op, row, at in (("c", a, 100), ("u", a120, 120), ("u", a200, 200), ("c", b, 300), ("d", b, 400),
                            ("c", c, 500), ("d", c, 550), ("d", a200, 600), ("c", a700, 700)):
            m = change_message(d, op, row, lsn + at, prefix, offset=len(messages))
            messages.append(m)
            if op == "d":
                messages.append(tombstone_message(m))
    return messages


# --- what the latest LSN says, and what Cassandra holds --------------------------------------------

def comparable(value):
    """Exact text of a value: decimals keep their scale, times are UTC ISO strings, dates ISO strings
    (cassandra-driver reads a CQL date as cassandra.util.Date)."""
    if type(value).__module__ == "cassandra.util" and type(value).__name__ == "Date":
        value = value.date()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):  # date
        return value.isoformat()
    return value


def _state_columns(dataset: datasets.Dataset) -> list[str]:
    # cdc_written_at is the sink's clock, not part of the change: a replay may legitimately refresh it.
    return [c for c in dataset.cql_columns if c != "cdc_written_at"]


def _cql_key_tuple(dataset: datasets.Dataset, row: dict) -> tuple:
    return tuple(comparable(row[c]) for c in (*dataset.cql_partition_key, *dataset.cql_clustering_key))


def latest_state(messages) -> dict[str, dict[tuple, dict]]:
    """table -> {Cassandra primary key: row} as the change with the highest LSN per key says (a delete
    removes the key); tombstones and undecodable messages change nothing. The reference for the sink."""
    from binance_cdc.stream.debezium import Change, DecodeError, decode

    latest: dict[tuple, Change] = {}
    for m in messages:
        try:
            change = decode(m.topic, m.key, m.value)
        except DecodeError:
            continue
        if not isinstance(change, Change):
            continue
        slot = (change.dataset.name, _cql_key_tuple(change.dataset, change.cql_key()))
        held = latest.get(slot)
        if held is not None and held.lsn == change.lsn and held.is_delete != change.is_delete:
            raise ValueError(f"{slot}: a delete and an upsert at the same LSN {change.lsn}: no order")
        if held is None or change.lsn > held.lsn:
            latest[slot] = change
    state: dict[str, dict[tuple, dict]] = {d: {} for d in datasets.DATASETS}
    for (table, key), change in latest.items():
        if not change.is_delete:
            row = change.cql_row(datetime.now(timezone.utc))
            state[table][key] = {c: comparable(row[c]) for c in _state_columns(change.dataset)}
    return state


def cassandra_state(session, keyspace: str, messages) -> dict[str, dict[tuple, dict]]:
    """table -> {primary key: row} of every Cassandra partition the messages touch, read back."""
    from binance_cdc.stream.debezium import Change, DecodeError, decode

    partitions: dict[str, set[tuple]] = {d: set() for d in datasets.DATASETS}
    for m in messages:
        try:
            change = decode(m.topic, m.key, m.value)
        except DecodeError:
            continue
        if isinstance(change, Change):
            key = change.cql_key()
            partitions[change.dataset.name].add(tuple(key[c] for c in change.dataset.cql_partition_key))
    state: dict[str, dict[tuple, dict]] = {d: {} for d in datasets.DATASETS}
    for table, keys in partitions.items():
        d = datasets.get(table)
        where = " AND ".join(f"{c} = %s" for c in d.cql_partition_key)
        for key in keys:
            for row in session.execute(f"SELECT * FROM {keyspace}.{table} WHERE {where}", key):
                r = row._asdict()
                state[table][_cql_key_tuple(d, r)] = {c: comparable(r[c]) for c in _state_columns(d)}
    return state


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
