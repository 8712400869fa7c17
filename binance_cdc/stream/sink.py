"""Write decoded Debezium changes to Cassandra: idempotent, ordered by the WAL position, nothing dropped.

Every statement carries `USING TIMESTAMP <source.lsn>`: for each cell the change with the later LSN wins,
whatever order the writes arrive in, so replayed micro-batches, restarts and duplicate deliveries can
neither resurrect an old value nor add a row. c/r/u upsert the whole row from `after`; d deletes the key
computed from `before` (bucket included). Tombstones (null values) are counted and skipped. A message
that cannot be decoded, or whose values Cassandra cannot hold exactly (a timestamp finer than a
millisecond), becomes a row of `dead_letters` with the raw bytes and the reason.
Consequence of LSN timestamps: when Postgres is re-initialised (LSNs start low again) the Cassandra
tables must be truncated as well.

`plan()` is pure (messages -> writes, dead letters, counts); `CassandraSink` prepares the statements once
and executes writes as UNLOGGED batches of one partition each (bounded size) with bounded concurrency;
writes that fail because Cassandra is unreachable are resent with backoff for a short window, then the task
fails with SinkUnavailable and the driver retries the batch (binance_cdc/stream/retry.py).
`write_partition()` is what spark_streaming.py runs on each executor (needs cassandra-driver there); after
a batch's writes it marks the partitions they touched in `changed_partitions` for the bridge
(binance_cdc/change_log.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from binance_cdc import change_log, datasets
from binance_cdc.settings import CassandraSettings, Credentials
from binance_cdc.stream.debezium import Change, DecodeError, Tombstone, decode
from binance_cdc.stream.retry import (
    EXECUTOR_WINDOW_MAX_S, Outage, SinkUnavailable, first_line, is_transient, retry,
)

log = logging.getLogger(__name__)

DEAD_LETTER_TABLE = "dead_letters"
DEAD_LETTER_COLUMNS = {
    "topic": "text", "received_date": "date", "partition": "int", "kafka_offset": "bigint",
    "kafka_key": "blob", "payload": "blob", "error": "text", "received_at": "timestamp",
}
DEAD_LETTER_KEY = ("topic", "received_date", "partition", "kafka_offset")
MAX_BATCH_STATEMENTS = 50  # one partition per batch; small enough to stay under batch_size_warn
DEFAULT_CONCURRENCY = 16
COUNTERS = ("c", "r", "u", "d", "tombstone", "dead_letter")


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Write:
    table: str
    delete: bool
    partition_key: tuple
    params: tuple  # bind values in statement order, the LSN timestamp included
    topic: str
    offset: int
    clustering_key: tuple = ()


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    error: str


@dataclass
class Plan:
    writes: list[Write]
    dead_letters: list[DeadLetter]
    counts: dict[str, Counter]  # topic -> Counter of COUNTERS

    def touched(self) -> dict[tuple[str, tuple], list[tuple]]:
        """{(table, partition key): clustering keys written there}, each key once, in first-write order."""
        out: dict[tuple[str, tuple], dict[tuple, None]] = {}
        for w in self.writes:
            out.setdefault((w.table, w.partition_key), {})[w.clustering_key] = None
        return {where: list(keys) for where, keys in out.items()}


def millis(moment: datetime) -> datetime:
    """Cassandra timestamps hold milliseconds: refuse anything finer rather than truncate it silently."""
    if moment.microsecond % 1000:
        raise ValueError(f"{moment.isoformat()} has sub-millisecond precision, which Cassandra timestamp "
                         "cannot hold")
    return moment


def upsert_columns(dataset: datasets.Dataset) -> tuple[str, ...]:
    return tuple(dataset.cql_columns)


def key_columns(dataset: datasets.Dataset) -> tuple[str, ...]:
    return dataset.cql_partition_key + dataset.cql_clustering_key


def to_write(change: Change, written_at: datetime, offset: int) -> Write:
    d = change.dataset
    for col in d.columns:
        if col.kind == "timestamp" and change.row[col.name] is not None:
            try:
                millis(change.row[col.name])
            except ValueError as exc:
                raise DecodeError(f"{change.topic}: {col.name}: {exc}") from None
    key = change.cql_key()
    partition_key = tuple(key[c] for c in d.cql_partition_key)
    clustering_key = tuple(key[c] for c in d.cql_clustering_key)
    if change.is_delete:
        params = (change.lsn, *(key[c] for c in key_columns(d)))
    else:
        row = change.cql_row(written_at)
        params = (*(row[c] for c in upsert_columns(d)), change.lsn)
    return Write(d.name, change.is_delete, partition_key, params, change.topic, offset, clustering_key)


def plan(messages: Iterable[Message], written_at: datetime | None = None) -> Plan:
    """Decode messages into writes; failures become dead letters. Pure apart from the clock default."""
    written_at = written_at or now_millis()
    writes: list[Write] = []
    dead: list[DeadLetter] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    for msg in messages:
        try:
            result = decode(msg.topic, msg.key, msg.value)
            if isinstance(result, Tombstone):
                counts[msg.topic]["tombstone"] += 1
                continue
            writes.append(to_write(result, written_at, msg.offset))
            counts[msg.topic][result.op] += 1
        except DecodeError as exc:
            dead.append(DeadLetter(msg, str(exc)))
            counts[msg.topic]["dead_letter"] += 1
    return Plan(writes, dead, dict(counts))


def now_millis() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def batches_by_partition(writes: list[Write], limit: int = MAX_BATCH_STATEMENTS) -> list[list[Write]]:
    """Writes grouped per (table, partition key), cut into chunks of at most `limit` statements."""
    groups: dict[tuple, list[Write]] = defaultdict(list)
    for w in writes:
        groups[(w.table, w.partition_key)].append(w)
    return [group[i:i + limit] for group in groups.values() for i in range(0, len(group), limit)]


class CassandraSink:
    """Prepared statements of one keyspace; `apply(plan)` executes a plan's writes and dead letters."""

    def __init__(self, session, keyspace: str, concurrency: int = DEFAULT_CONCURRENCY,
                 window_s: float = EXECUTOR_WINDOW_MAX_S) -> None:
        self.session = session
        self.keyspace = keyspace
        self.concurrency = concurrency
        self.window_s = window_s
        self.upserts = {}
        self.deletes = {}
        for d in datasets.DATASETS.values():
            cols = upsert_columns(d)
            self.upserts[d.name] = session.prepare(
                f"INSERT INTO {keyspace}.{d.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))}) USING TIMESTAMP ?")
            where = " AND ".join(f"{c} = ?" for c in key_columns(d))
            self.deletes[d.name] = session.prepare(
                f"DELETE FROM {keyspace}.{d.name} USING TIMESTAMP ? WHERE {where}")
        cols = tuple(DEAD_LETTER_COLUMNS)
        self.dead_letter = session.prepare(
            f"INSERT INTO {keyspace}.{DEAD_LETTER_TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        cols = tuple(change_log.CHANGED_PARTITIONS_COLUMNS)
        self.mark = session.prepare(
            f"INSERT INTO {keyspace}.{change_log.CHANGED_PARTITIONS} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})")

    def statement(self, w: Write):
        return (self.deletes if w.delete else self.upserts)[w.table].bind(w.params)

    def apply(self, p: Plan, batch: change_log.BatchRef | None = None) -> None:
        """Write the plan; then, with `batch`, mark every partition it touched for the bridge. Marks come
        only after the data writes succeeded: a mark the bridge reads always finds the data there."""
        from cassandra.query import BatchStatement, BatchType

        requests = []
        for chunk in batches_by_partition(p.writes):
            if len(chunk) == 1:
                requests.append((self.statement(chunk[0]), None))
                continue
            grouped = BatchStatement(batch_type=BatchType.UNLOGGED)
            for w in chunk:
                grouped.add(self.statement(w))
            requests.append((grouped, None))
        received = now_millis()
        for dl in p.dead_letters:
            m = dl.message
            requests.append((self.dead_letter.bind((
                m.topic, received.date(), m.partition, m.offset, m.key, m.value, dl.error, received)), None))
        self.execute(requests)
        if batch is not None and p.writes:
            self.execute([(self.mark.bind(params), None) for params in change_log.mark_rows(batch, p.touched())])

    def execute(self, requests: list) -> None:
        """Every request, concurrently; those that failed transiently (Cassandra restarting, a connection
        dropped) are sent again with backoff for `window_s`, then SinkUnavailable fails the task (Spark
        retries it, then the driver retries the batch). Repeating a write is harmless: each carries its LSN
        as write timestamp, the dead letters and marks their own full key. A failure retrying cannot fix
        (InvalidRequest, Unauthorized) is raised at once."""
        from cassandra.concurrent import execute_concurrent

        outage = Outage("Cassandra", self.window_s, give_up=SinkUnavailable)
        while requests:
            results = execute_concurrent(self.session, requests, concurrency=self.concurrency,
                                         raise_on_first_error=False)
            failed = [(req, res) for req, (ok, res) in zip(requests, results) if not ok]
            if not failed:
                return
            error = next((res for _, res in failed if not is_transient(res)), failed[0][1])
            if not is_transient(error):
                raise error
            delay = outage.next_delay(error)  # SinkUnavailable once the window has passed
            log.warning("Cassandra: %d of %d writes failed (%s); retry %d in %.1fs (%.0fs of a %.0fs window)",
                        len(failed), len(requests), first_line(error), outage.attempts, delay, outage.elapsed(),
                        self.window_s)
            time.sleep(delay)
            requests = [req for req, _ in failed]


# --- executor side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SinkTarget:
    """Everything an executor needs to reach Cassandra: shipped as is inside the task closure."""

    cassandra: CassandraSettings
    login: Credentials
    concurrency: int = DEFAULT_CONCURRENCY
    window_s: float = EXECUTOR_WINDOW_MAX_S  # how long an executor retries failed writes (retry.py)


_SINKS: dict[SinkTarget, CassandraSink] = {}
_SINKS_LOCK = threading.Lock()


def sink_for(target: SinkTarget) -> CassandraSink:
    """One session + prepared statements per Python worker process, reused across micro-batches. A worker
    that starts while Cassandra is down retries connecting for the window, then fails with SinkUnavailable."""
    with _SINKS_LOCK:
        sink = _SINKS.get(target)
        if sink is None:
            from binance_cdc.cassandra_conn import connect

            def open_sink() -> CassandraSink:
                session = connect(target.cassandra, target.login)
                try:
                    return CassandraSink(session, target.cassandra.keyspace, target.concurrency, target.window_s)
                except Exception:
                    session.cluster.shutdown()
                    raise

            sink = _SINKS[target] = retry(open_sink, Outage("Cassandra", target.window_s, give_up=SinkUnavailable),
                                          on_retry=lambda o, exc, delay: log.warning(
                                              "Cassandra: connect failed (%s); retry %d in %.1fs",
                                              first_line(exc), o.attempts, delay))
    return sink


def drop_sink(target: SinkTarget) -> None:
    """Forget this worker's session after it gave up, so the task's next attempt connects afresh rather
    than waiting on the old session's reconnection schedule."""
    with _SINKS_LOCK:
        sink = _SINKS.pop(target, None)
    if sink is not None:
        try:
            sink.session.cluster.shutdown()
        except Exception as exc:  # noqa: BLE001 - already broken; the new session is what matters
            log.debug("Cassandra: shutdown of the old session failed: %s", exc)


OFFSET_STAT = "end_offset"  # (topic, "end_offset:<partition>", next offset to read) among the stats


def write_partition(rows: Iterable[Any], target: SinkTarget,
                    batch: change_log.BatchRef | None = None) -> Iterator[tuple[str, str, int]]:
    """mapPartitions body: Kafka rows (topic, partition, offset, key, value) -> (topic, counter, n) stats,
    plus the offset after the last message per Kafka partition (for the driver's progress record)."""
    messages = [Message(r[0], r[1], r[2], None if r[3] is None else bytes(r[3]),
                        None if r[4] is None else bytes(r[4])) for r in rows]
    if not messages:
        return iter(())
    p = plan(messages)
    try:
        sink_for(target).apply(p, batch)
    except SinkUnavailable:
        drop_sink(target)
        raise
    for dl in p.dead_letters:
        log.warning("dead letter %s[%d]@%d: %s", dl.message.topic, dl.message.partition, dl.message.offset,
                    dl.error)
    ends: dict[tuple[str, int], int] = {}
    for m in messages:
        ends[(m.topic, m.partition)] = max(ends.get((m.topic, m.partition), 0), m.offset + 1)
    stats = [(topic, name, n) for topic, counter in p.counts.items() for name, n in counter.items()]
    stats += [(topic, f"{OFFSET_STAT}:{partition}", end) for (topic, partition), end in ends.items()]
    return iter(stats)


def summarize(stats: Iterable[tuple[str, str, int]]) -> dict[str, Counter]:
    """Counts per topic (offset stats left out; see end_offsets)."""
    totals: dict[str, Counter] = defaultdict(Counter)
    for topic, name, n in stats:
        if not name.startswith(OFFSET_STAT):
            totals[topic][name] += n
    return dict(totals)


def end_offsets(stats: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """{topic: {partition: next offset}} reached by a micro-batch, from the executors' stats."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for topic, name, n in stats:
        if name.startswith(OFFSET_STAT):
            partition = name.split(":", 1)[1]
            out[topic][partition] = max(out[topic].get(partition, 0), n)
    return dict(out)
