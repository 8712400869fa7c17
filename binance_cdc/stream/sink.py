"""Write decoded Debezium changes to Cassandra: idempotent, ordered by the WAL position, nothing dropped.

Every statement carries `USING TIMESTAMP <source.lsn>`: for each cell the change with the later LSN wins,
whatever order the writes arrive in, so replayed micro-batches, restarts and duplicate deliveries can
neither resurrect an old value nor add a row. c/r/u upsert the whole row from `after`; d deletes the key
computed from `before` (bucket included). Tombstones (null values) are counted and skipped. t (TRUNCATE)
deletes every partition of the table `USING TIMESTAMP <truncate LSN>` (see "Truncates" below). A message
that cannot be decoded, or whose values Cassandra cannot hold exactly (a timestamp finer than a
millisecond), or that cannot be written (a decimal of more digits than the Cassandra driver converts, a
scale beyond int32, a row larger than MAX_WRITE_BYTES, anything the driver refuses to bind), becomes a row
of `dead_letters` with the raw bytes and the reason: no single message can stop the stream (issue 9).
A dead letter must itself be writable whatever the message held (our Cassandra refuses a request over
4 MiB: "CQL Message of size ... exceeds allowed maximum of 4194304 bytes", and its commitlog_segment_size
of 8 MiB caps a mutation at 4 MiB as well): key and payload are stored
whole up to DEAD_LETTER_MAX_KEY / DEAD_LETTER_MAX_PAYLOAD bytes and cut there beyond, always with their
full size and sha256 (kafka_key_size/_sha256, payload_size/_sha256), so a cut payload can be fetched again
from Kafka by (topic, partition, kafka_offset) while retention lasts and checked against the digest; the
reason is cut to MAX_ERROR_CHARS.
Consequence of LSN timestamps: when Postgres is re-initialised (LSNs start low again) the Cassandra
tables must be truncated as well.

Truncates: a partition deletion at timestamp T shadows every cell written with a timestamp <= T and none
written later, so a truncate at LSN T removes exactly the rows Postgres had before it, in whatever order a
replay brings the writes. Postgres orders the rest: TRUNCATE holds an ACCESS EXCLUSIVE lock, so every row
change of the table before it has a lower LSN and every one after it a higher one. The partitions to delete
are those Cassandra holds (SELECT DISTINCT on the partition key), read after every write of the micro-batch
task is done, plus those the task wrote (belt and braces); several truncates of one table in a task become
one, at the highest LSN. The bridge learns of it from a truncate mark (binance_cdc/change_log.py) and copies
that table whole. Assumption, enforced: the table's topic has ONE partition. Debezium's truncate event has
no key, and Kafka orders messages only within a partition: with several, a change with a lower LSN in
another partition could be written after the enumeration into a partition that did not exist then, and
outlive the truncate. A truncate read from a topic of more partitions (asked of Kafka when one arrives,
which is rare) is refused as a dead letter whose reason says so; the local broker creates topics with one
partition (stack/kafka.py num.partitions=1). Spark reads one Kafka partition in one task per micro-batch
as long as the Kafka source has no minPartitions / maxRecordsPerPartition (job.kafka_options sets neither;
a test checks): split, a truncate's task could enumerate before a sibling task wrote earlier rows.

`plan()` is pure (messages -> writes, dead letters, counts); `CassandraSink` prepares the statements once
and executes writes as UNLOGGED batches of one partition each (bounded size) with bounded concurrency;
writes that fail because Cassandra is unreachable are resent with backoff for a short window, then the task
fails with SinkUnavailable and the driver retries the batch (binance_cdc/stream/retry.py).
`write_arrow()` is what spark_streaming.py runs on each executor (needs cassandra-driver, orjson and pyarrow
there); after
a batch's writes it marks the partitions they touched in `changed_partitions` for the bridge
(binance_cdc/change_log.py).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Iterator, NamedTuple

from binance_cdc import change_log, datasets
from binance_cdc.settings import CassandraSettings, Credentials, KafkaSettings
from binance_cdc.stream.debezium import Change, DecodeError, Tombstone, Truncate, decode
from binance_cdc.stream.fast_decode import decoder_for
from binance_cdc.values import to_epoch_ms
from binance_cdc.stream.retry import (
    EXECUTOR_WINDOW_MAX_S, Outage, SinkUnavailable, first_line, is_transient, log_in, retry,
)

log = logging.getLogger(__name__)

DEAD_LETTER_TABLE = "dead_letters"
DEAD_LETTER_COLUMNS = {
    "topic": "text", "received_date": "date", "partition": "int", "kafka_offset": "bigint",
    "kafka_key": "blob", "payload": "blob", "error": "text", "received_at": "timestamp",
    "kafka_key_size": "bigint", "kafka_key_sha256": "text", "payload_size": "bigint", "payload_sha256": "text",
}
DEAD_LETTER_KEY = ("topic", "received_date", "partition", "kafka_offset")
# A batch of one partition is one mutation: Cassandra applies it like a single write and checks
# batch_size_warn/fail_threshold only for batches spanning several partitions. Larger batches spread
# Cassandra's per-request cost over more rows; MAX_BATCH_BYTES bounds them.
MAX_BATCH_STATEMENTS = 1000
# Cassandra refuses a request over its native transport message limit (4 MiB on our stack, whose
# commitlog_segment_size of 8 MiB also caps a mutation at 4 MiB; a cluster may allow less). Every request
# stays well below:
MAX_WRITE_BYTES = 1 << 20  # one row's bound values; a larger row becomes a dead letter
MAX_BATCH_BYTES = 1 << 20  # a batch's bound values (estimated); a batch is cut before it grows beyond
DEAD_LETTER_MAX_PAYLOAD = 1 << 20  # bytes of the value kept in a dead letter; the rest is cut
DEAD_LETTER_MAX_KEY = 64 << 10  # bytes of the key kept in a dead letter
MAX_ERROR_CHARS = 2000
# Cassandra decimal scale is a signed 32-bit int (the driver packs it with struct "i").
CQL_SCALE_RANGE = (-(2 ** 31), 2 ** 31 - 1)
DEFAULT_CONCURRENCY = 16
LOGIN_GROUP = "cassandra_writer"  # the settings group of the role the stream writes as
COUNTERS = ("c", "r", "u", "d", "tombstone", "dead_letter", "t")  # t last: log lines keep their old prefix


class Message(NamedTuple):  # a NamedTuple: a million of them are made per drain, cheaply
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Write(NamedTuple):
    table: str
    delete: bool
    partition_key: tuple
    params: tuple  # bind values in statement order, the LSN timestamp included
    topic: str
    offset: int
    clustering_key: tuple = ()
    size: int = 0  # estimated bytes of the bound values (batches are cut by it)
    message: Message | None = None  # the source message, for a dead letter if the driver refuses the row
    op: str = ""  # c, r, u or d
    serialized: bool = False  # params are already in the protocol's encoding (the fast path, fast_decode.py)


@dataclass(frozen=True)
class TableTruncate:
    """The truncate(s) of one table in a plan: applied once, at the highest LSN (which shadows all the others
    would)."""

    table: str
    topic: str
    lsn: int
    messages: tuple[Message, ...] = ()  # every truncate message of the table, for dead letters if refused


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    error: str

    def params(self, received: datetime) -> tuple:
        """Bind values in DEAD_LETTER_COLUMNS order: bounded whatever the message held (see module doc)."""
        m = self.message
        key, key_size, key_sha = _kept(m.key, DEAD_LETTER_MAX_KEY)
        payload, payload_size, payload_sha = _kept(m.value, DEAD_LETTER_MAX_PAYLOAD)
        error = self.error
        cut: list[str] = []
        if key_size is not None and key_size > len(key):
            cut.append(f"key cut to {len(key)} of {key_size} bytes")
        if payload_size is not None and payload_size > len(payload):
            cut.append(f"payload cut to {len(payload)} of {payload_size} bytes (sha256 {payload_sha}; "
                       f"the whole message is topic {m.topic} partition {m.partition} offset {m.offset})")
        if cut:
            error = f"{error} [{'; '.join(cut)}]"
        return (m.topic, received.date(), m.partition, m.offset, key, payload, bounded_error(error), received,
                key_size, key_sha, payload_size, payload_sha)


def _kept(data: bytes | None, limit: int) -> tuple[bytes | None, int | None, str | None]:
    """(the first `limit` bytes, full size, sha256 hex of the whole), or Nones for a null."""
    if data is None:
        return None, None, None
    return data[:limit], len(data), hashlib.sha256(data).hexdigest()


def bounded_error(text: str) -> str:
    """A reason Cassandra can store: at most MAX_ERROR_CHARS, valid UTF-8 (lone surrogates escaped)."""
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS - 40]}... ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Plan:
    writes: list[Write]
    dead_letters: list[DeadLetter]
    counts: dict[str, Counter]  # topic -> Counter of COUNTERS
    truncates: dict[str, TableTruncate] = field(default_factory=dict)  # table -> its truncate

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


def cql_decimal(value: Decimal) -> Decimal:
    """A decimal the Cassandra driver can write and read back: its int conversions (str of the unscaled
    digits) stop at Python's int_max_str_digits (4300 by default; Postgres numeric holds up to 147,455
    digits), and the scale must fit a signed 32-bit int."""
    sign, digits, exponent = value.as_tuple()
    limit = sys.get_int_max_str_digits()
    if limit and len(digits) > limit:
        raise ValueError(f"decimal of {len(digits)} digits: the Cassandra driver converts at most {limit} "
                         "(Python's int_max_str_digits)")
    if not CQL_SCALE_RANGE[0] <= -exponent <= CQL_SCALE_RANGE[1]:
        raise ValueError(f"decimal scale {-exponent} does not fit Cassandra decimal's 32-bit scale")
    return value


def estimated_size(params: tuple) -> int:
    """Bytes of the bound values, a little more than the driver serializes (text as UTF-8, a decimal's
    digits packed about two per byte): what decides whether a row or a batch fits a request."""
    total = 0
    for v in params:
        if isinstance(v, str):
            total += len(v.encode("utf-8", "surrogatepass")) + 4
        elif isinstance(v, (bytes, bytearray)):
            total += len(v) + 4
        elif isinstance(v, Decimal):
            total += len(v.as_tuple().digits) // 2 + 12
        else:
            total += 12
    return total


def to_write(change: Change, written_at: datetime, offset: int, message: Message | None = None) -> Write:
    d = change.dataset
    for col in d.columns:
        value = change.row[col.name]
        if value is None:
            continue
        try:
            if col.kind == "timestamp":
                millis(value)
            elif col.kind == "decimal":
                cql_decimal(value)
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
    size = estimated_size(params)
    if size > MAX_WRITE_BYTES:
        raise DecodeError(f"{change.topic}: row of about {size} bytes exceeds the {MAX_WRITE_BYTES}-byte bound "
                          "of one write (Cassandra refuses requests over 4 MiB)")
    return Write(d.name, change.is_delete, partition_key, params, change.topic, offset, clustering_key,
                 size, message, change.op)


def plan(messages: Iterable[Message], written_at: datetime | None = None, fast: bool = True) -> Plan:
    """Decode messages into writes; failures become dead letters. Pure apart from the clock default.
    `fast`: the common upsert takes fast_decode's path (same rows, see its doc); False: the reference only."""
    written_at = written_at or now_millis()
    written_ms = to_epoch_ms(written_at)
    writes: list[Write] = []
    dead: list[DeadLetter] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    truncates: dict[str, TableTruncate] = {}
    for msg in messages:
        if fast and msg.value is not None:
            decoder = decoder_for(msg.topic)
            try:
                row = decoder.upsert(msg.value, written_ms) if decoder is not None else None
            except Exception:  # noqa: BLE001 - a fast-path bug costs speed, never a row: the reference decides
                log.exception("fast path failed on %s[%d]@%d; the reference decoder takes it", msg.topic,
                              msg.partition, msg.offset)
                row = None
            if row is not None and row.size <= MAX_WRITE_BYTES:
                writes.append(Write(decoder.dataset.name, False, row.partition_key, row.values, msg.topic,
                                    msg.offset, row.clustering_key, row.size, msg, row.op, True))
                counts[msg.topic][row.op] += 1
                continue
        try:
            result = decode(msg.topic, msg.key, msg.value)
            if isinstance(result, Tombstone):
                counts[msg.topic]["tombstone"] += 1
                continue
            if isinstance(result, Truncate):
                held = truncates.get(result.dataset.name)
                truncates[result.dataset.name] = TableTruncate(
                    result.dataset.name, msg.topic, max(result.lsn, held.lsn if held else result.lsn),
                    (*(held.messages if held else ()), msg))
                counts[msg.topic]["t"] += 1
                continue
            writes.append(to_write(result, written_at, msg.offset, msg))
            counts[msg.topic][result.op] += 1
        except DecodeError as exc:
            dead.append(DeadLetter(msg, bounded_error(str(exc))))
            counts[msg.topic]["dead_letter"] += 1
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the stream on one message either
            log.exception("unexpected error decoding %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            dead.append(DeadLetter(msg, bounded_error(f"{msg.topic}: unexpected {type(exc).__name__} while "
                                                      f"decoding: {exc}")))
            counts[msg.topic]["dead_letter"] += 1
    return Plan(writes, dead, dict(counts), truncates)


def refuse_truncates(p: Plan, partitions_of) -> None:
    """Move the truncates of topics with other than one partition (`partitions_of(topic)`) to the dead
    letters, loudly: see "Truncates" in the module doc. `p` is updated in place."""
    for table, t in list(p.truncates.items()):
        n = partitions_of(t.topic)
        if n == 1:
            continue
        del p.truncates[table]
        counts = p.counts.setdefault(t.topic, Counter())
        for m in t.messages:
            p.dead_letters.append(DeadLetter(m, bounded_error(
                f"{t.topic}: TRUNCATE of {table} refused: the topic has {n} partitions, and a truncate event "
                "(no key) keeps its order with the table's row changes only in a single-partition topic; "
                f"Cassandra still holds the rows Postgres truncated: make the topic single-partition and "
                "re-sync the table")))
            counts["t"] -= 1
            counts["dead_letter"] += 1
        log.error("TRUNCATE of %s at LSN %d refused (topic %s has %s partitions): dead-lettered", table, t.lsn,
                  t.topic, n)


def now_millis() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def batches_by_partition(writes: list[Write], limit: int = MAX_BATCH_STATEMENTS,
                         max_bytes: int = MAX_BATCH_BYTES) -> list[list[Write]]:
    """Writes grouped per (table, partition key), cut into chunks of at most `limit` statements and (unless
    one write alone is larger) `max_bytes` estimated bytes."""
    groups: dict[tuple, list[Write]] = defaultdict(list)
    for w in writes:
        groups[(w.table, w.partition_key)].append(w)
    chunks: list[list[Write]] = []
    for group in groups.values():
        chunk: list[Write] = []
        size = 0
        for w in group:
            if chunk and (len(chunk) >= limit or size + w.size > max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(w)
            size += w.size
        chunks.append(chunk)
    return chunks


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
        self.partition_deletes = {}
        self.partitions = {}
        for d in datasets.DATASETS.values():
            cols = upsert_columns(d)
            self.upserts[d.name] = session.prepare(
                f"INSERT INTO {keyspace}.{d.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))}) USING TIMESTAMP ?")
            where = " AND ".join(f"{c} = ?" for c in key_columns(d))
            self.deletes[d.name] = session.prepare(
                f"DELETE FROM {keyspace}.{d.name} USING TIMESTAMP ? WHERE {where}")
            where = " AND ".join(f"{c} = ?" for c in d.cql_partition_key)
            self.partition_deletes[d.name] = session.prepare(
                f"DELETE FROM {keyspace}.{d.name} USING TIMESTAMP ? WHERE {where}")
            self.partitions[d.name] = session.prepare(
                f"SELECT DISTINCT {', '.join(d.cql_partition_key)} FROM {keyspace}.{d.name}")
        cols = tuple(DEAD_LETTER_COLUMNS)
        self.dead_letter = session.prepare(
            f"INSERT INTO {keyspace}.{DEAD_LETTER_TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        cols = tuple(change_log.CHANGED_PARTITIONS_COLUMNS)
        self.mark = session.prepare(
            f"INSERT INTO {keyspace}.{change_log.CHANGED_PARTITIONS} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})")

    def statement(self, w: Write):
        if w.serialized:
            # The driver's bind() would check and convert each value again (~6 us a row): a fast-path row
            # carries the very bytes bind() makes of the reference decoder's values (fast_decode.py).
            from cassandra.query import BoundStatement

            bound = BoundStatement(self.upserts[w.table])
            bound.raw_values = w.params
            bound.values = list(w.params)
            return bound
        prepared = self.deletes if w.delete else self.upserts
        return prepared[w.table].bind(w.params)

    def bind_all(self, p: Plan) -> list[tuple[Write, Any]]:
        """(write, bound statement) for each write the driver accepts; a write it refuses to serialize (the
        driver converts values at bind time), or whose serialized values exceed MAX_WRITE_BYTES, leaves the
        plan and becomes a dead letter (the plan's counts follow). A net under plan()'s own checks."""
        bound: list[tuple[Write, Any]] = []
        kept: list[Write] = []
        for w in p.writes:
            if w.serialized:  # already bytes, bounded by plan(): added to its batch by apply()
                kept.append(w)
                bound.append((w, None))
                continue
            try:
                statement = self.statement(w)
                size = sum(len(v) for v in statement.values if isinstance(v, (bytes, bytearray)))
                if size > MAX_WRITE_BYTES:
                    raise ValueError(f"row of {size} bytes exceeds the {MAX_WRITE_BYTES}-byte bound of one write")
            except Exception as exc:  # noqa: BLE001 - one unwritable row must not fail the whole task
                if w.message is None:
                    raise
                p.dead_letters.append(DeadLetter(w.message, bounded_error(
                    f"{w.topic}: the Cassandra driver cannot write this row: {type(exc).__name__}: {exc}")))
                counts = p.counts.setdefault(w.topic, Counter())
                counts[w.op] -= 1
                counts["dead_letter"] += 1
                continue
            kept.append(w)
            bound.append((w, statement))
        p.writes[:] = kept
        return bound

    def apply(self, p: Plan, batch: change_log.BatchRef | None = None) -> None:
        """Write the plan; then, with `batch`, mark every partition it touched for the bridge. Marks come
        only after the data writes succeeded: a mark the bridge reads always finds the data there. Rows the
        driver refuses become dead letters first (bind_all), and so do rows Cassandra refuses
        (`refused`): `p` is updated in place."""
        from cassandra.query import BatchStatement, BatchType

        statements = {id(w): statement for w, statement in self.bind_all(p) if statement is not None}
        requests, carried = [], []
        for chunk in batches_by_partition(p.writes):
            if len(chunk) == 1:
                requests.append((statements.get(id(chunk[0])) or self.statement(chunk[0]), None))
                carried.append(chunk)
                continue
            grouped = BatchStatement(batch_type=BatchType.UNLOGGED)
            for w in chunk:
                statement = statements.get(id(w))
                if statement is not None:
                    grouped.add(statement)
                elif not len(grouped):  # a BoundStatement first: it gives the batch its routing key
                    grouped.add(self.statement(w))
                else:
                    # Its bytes straight into the batch: add() wants a BoundStatement, whose making costs more
                    # than the rest of the row's path (~10 us). The driver's own list of (prepared?, id, values).
                    grouped._add_statement_and_params(True, self.upserts[w.table].query_id, w.params)
            requests.append((grouped, None))
            carried.append(chunk)
        refused = self.execute(requests)
        for request, _ in requests:
            if isinstance(request, BatchStatement):
                # The driver's finished ResponseFutures are cyclic garbage that keep their batch's statement
                # list: 2 tuples a row for the cyclic collector to walk once it is back on (~1.5 us a row).
                # The list is the BatchMessage's too: emptied in place, refcounting frees the rows now.
                request.clear()
        if refused:
            self.refused(p, [w for i in sorted(refused) for w in carried[i]])
        received = now_millis()
        dead_letters = [(self.dead_letter.bind(dl.params(received)), None) for dl in p.dead_letters]
        self.execute(dead_letters, refusable=False)
        for t in p.truncates.values():  # only now: every write before the truncate is in Cassandra
            self.truncate(t, p)
        if batch is not None and (p.writes or p.truncates):
            truncated = {table: t.lsn for table, t in p.truncates.items()}
            self.execute([(self.mark.bind(params), None)
                          for params in change_log.mark_rows(batch, p.touched(), truncated)], refusable=False)

    def truncate(self, t: TableTruncate, p: Plan) -> None:
        """Delete every partition of the table Cassandra holds, and every one the plan wrote, at the
        truncate's LSN: older rows are shadowed, newer ones stay (see the module doc)."""
        held = retry(lambda: [_plain_key(row) for row in self.session.execute(self.partitions[t.table])],
                     Outage("Cassandra", self.window_s, give_up=SinkUnavailable))
        doomed = dict.fromkeys([*held, *(w.partition_key for w in p.writes if w.table == t.table)])
        statement = self.partition_deletes[t.table]
        self.execute([(statement.bind((t.lsn, *key)), None) for key in doomed], refusable=False)
        log.info("TRUNCATE of %s at LSN %d: %d partition(s) deleted with that write timestamp", t.table, t.lsn,
                 len(doomed))

    def refused(self, p: Plan, writes: list[Write]) -> None:
        """Writes of requests Cassandra refused as invalid (InvalidRequest: a key over 64 KiB, say), sent
        again one by one, a fast-path row through the reference decoder; each one refused again leaves the
        plan as a dead letter with Cassandra's reason. The others are written."""
        for w in writes:
            again = w
            if w.serialized and w.message is not None:
                retyped = plan([w.message], fast=False)
                again = retyped.writes[0] if retyped.writes else None
                if again is None:  # the reference dead-letters what the fast path accepted: its reason wins
                    self._drop(p, w, retyped.dead_letters[0].error)
                    continue
            try:
                statement = self.statement(again)
            except Exception as exc:  # noqa: BLE001 - the driver refuses the typed row: a dead letter
                self._drop(p, w, f"{w.topic}: the Cassandra driver cannot write this row: "
                                 f"{type(exc).__name__}: {exc}")
                continue
            refusal = self.execute([(statement, None)]).get(0)
            if refusal is not None:
                self._drop(p, w, f"{w.topic}: Cassandra refused the write: {first_line(refusal, 400)}")

    def _drop(self, p: Plan, w: Write, reason: str) -> None:
        if w.message is None:
            raise RuntimeError(f"{w.topic}@{w.offset}: refused without its source message: {reason}")
        p.writes.remove(w)
        p.dead_letters.append(DeadLetter(w.message, bounded_error(reason)))
        counts = p.counts.setdefault(w.topic, Counter())
        counts[w.op] -= 1
        counts["dead_letter"] += 1

    def execute(self, requests: list, refusable: bool = True) -> dict[int, Exception]:
        """Every request, concurrently; those that failed transiently (Cassandra restarting, a connection
        dropped) are sent again with backoff for `window_s`, then SinkUnavailable fails the task (Spark
        retries it, then the driver retries the batch). Repeating a write is harmless: each carries its LSN
        as write timestamp, the dead letters and marks their own full key. Returns {index: error} of the
        requests Cassandra refused as invalid (InvalidRequest) when `refusable`; any other failure retrying cannot
        fix (Unauthorized, a refused dead letter or mark) is raised at once."""
        from cassandra import InvalidRequest
        from cassandra.concurrent import execute_concurrent

        outage = Outage("Cassandra", self.window_s, give_up=SinkUnavailable)
        pending = list(range(len(requests)))
        refused: dict[int, Exception] = {}
        while pending:
            results = execute_concurrent(self.session, [requests[i] for i in pending],
                                         concurrency=self.concurrency, raise_on_first_error=False)
            failed = []
            for i, (ok, res) in zip(pending, results):
                if ok:
                    continue
                if refusable and isinstance(res, InvalidRequest):
                    refused[i] = res
                elif not is_transient(res):
                    raise res
                else:
                    failed.append((i, res))
            if not failed:
                return refused
            error = failed[0][1]
            delay = outage.next_delay(error)  # SinkUnavailable once the window has passed
            log.warning("Cassandra: %d of %d writes failed (%s); retry %d in %.1fs (%.0fs of a %.0fs window)",
                        len(failed), len(pending), first_line(error), outage.attempts, delay, outage.elapsed(),
                        self.window_s)
            time.sleep(delay)
            pending = [i for i, _ in failed]
        return refused


def _plain_key(row) -> tuple:
    """A partition key read back, with the driver's cassandra.util.Date as datetime.date (so it equals the
    key of a write)."""
    return tuple(v.date() if type(v).__name__ == "Date" and type(v).__module__ == "cassandra.util" else v
                 for v in row)


# --- executor side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SinkTarget:
    """Everything an executor needs to reach Cassandra: shipped as is inside the task closure."""

    cassandra: CassandraSettings
    login: Credentials
    concurrency: int = DEFAULT_CONCURRENCY
    window_s: float = EXECUTOR_WINDOW_MAX_S  # how long an executor retries failed writes (retry.py)
    kafka: KafkaSettings | None = None  # asked how many partitions a truncated table's topic has; None: no check
    login_group: str = LOGIN_GROUP  # the settings group of `login`: a refused login names its variables


def connect_as(target: SinkTarget):
    """A session as the target's role. A refused login raises LoginRefused naming the role's variables: a
    wrong password is a configuration error, not an outage, so no retry loop waits for it."""
    from binance_cdc.cassandra_conn import connect

    return log_in(lambda: connect(target.cassandra, target.login), "Cassandra", target.login_group, target.login.user)


_SINKS: dict[SinkTarget, CassandraSink] = {}
_SINKS_LOCK = threading.Lock()


def sink_for(target: SinkTarget) -> CassandraSink:
    """One session + prepared statements per Python worker process, reused across micro-batches. A worker
    that starts while Cassandra is down retries connecting for the window, then fails with SinkUnavailable;
    a refused login fails at once with LoginRefused."""
    with _SINKS_LOCK:
        sink = _SINKS.get(target)
        if sink is None:
            def open_sink() -> CassandraSink:
                session = connect_as(target)
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


STATS_SCHEMA = "topic string, name string, n long"  # what write_arrow yields, as a Spark DDL schema


def write_arrow(batches: Iterable[Any], target: SinkTarget,
                batch: change_log.BatchRef | None = None) -> Iterator[Any]:
    """mapInArrow body: Arrow record batches of Kafka rows (topic, partition, offset, key, value) -> one record
    batch of (topic, counter, n) stats, plus the offset after the last message per Kafka partition (for the
    driver's progress record). Arrow hands the columns over in bulk: no pickled Row per message."""
    import pyarrow as pa

    drop_jars_from_import_path()
    with cyclic_gc_paused():
        stats = write_messages(arrow_messages(batches), target, batch)
    if stats:
        topics, names, counts = zip(*stats)
        yield pa.RecordBatch.from_arrays([pa.array(topics, pa.string()), pa.array(names, pa.string()),
                                          pa.array(counts, pa.int64())], names=["topic", "name", "n"])


def drop_jars_from_import_path() -> None:
    """Take the .jar files off this Python worker's import path. Spark puts its spark-core jar there (5,221
    entries, no Python module) and PySpark's worker calls importlib.invalidate_caches() before every task,
    which on Python 3.11 makes each zip importer re-read its archive's directory at once: ~60 ms of a worker's
    CPU per task for that jar alone (py-spy: 4% of a drain's Python time; more of a small micro-batch's).
    Nothing is ever imported from a jar; the zips (pyspark.zip, our package) stay."""
    jars = [entry for entry in sys.path if entry.endswith(".jar")]
    if not jars:
        return
    sys.path[:] = [entry for entry in sys.path if entry not in jars]
    for key in [k for k in sys.path_importer_cache if any(k == j or k.startswith(j + "/") for j in jars)]:
        del sys.path_importer_cache[key]


def arrow_messages(batches: Iterable[Any]) -> list[Message]:
    """The Messages of Arrow record batches of Kafka rows (topic, partition, offset, key, value)."""
    messages: list[Message] = []
    for b in batches:
        messages.extend(map(Message, *(b.column(i).to_pylist() for i in range(5))))
    return messages


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """A task's messages read, planned and written without Python's cyclic collector: the ~10 objects a
    message makes (tuples, bytes, a dict) hold no cycles and are freed by reference counting, but each
    allocation burst of 100k messages triggered full collections that walked every live one (10 us a message
    in plan() alone, measured). Nested uses keep it off; the outermost turns it back on.
    The block must drop what it made before it ends (keep it in a callee's locals, as write_arrow does, and
    see apply's batches): the first collection after it walks every container made inside and still alive.
    A 100k-message task left 200k tuples for it, 140-200 ms of collection a task (now ~1-8 ms)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_messages(messages: list[Message], target: SinkTarget,
                   batch: change_log.BatchRef | None = None) -> list[tuple[str, str, int]]:
    """Plan and write one task's messages; (topic, counter, n) stats and end offsets for the driver."""
    if not messages:
        return []
    with cyclic_gc_paused():
        p = plan(messages)
        if p.truncates and target.kafka is not None:
            from binance_cdc.kafka_client import partition_count

            refuse_truncates(p, lambda topic: partition_count(target.kafka, topic))
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
    return stats


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
