"""Reading Cassandra for the bridge and for reconcile, with the read-only role.

- `read_progress`: every streaming query's last finished micro-batch (`stream_progress`).
- `read_marks`: the keys the stream marked as written between two micro-batches (`changed_partitions`),
  grouped per table and partition, and the tables it truncated (`Marks`).
- `read_rows`: exactly those rows, by partition with the clustering keys in IN lists of at most
  IN_CHUNK keys, many requests in flight; a row that is gone (deleted) is simply not returned.
- `scan_table`: every row of a table, split into token ranges read in parallel threads, page by page
  (what `--full` and reconcile use).
Rows are plain tuples in `Dataset.cql_columns` order (tuple_factory: the driver's compiled decoding,
no named tuples). Typed (reconcile): timestamps come back naive in UTC, decimals as exact Decimals. As text
(the bridge): Cassandra renders every value, which the bridge hands to COPY as it is.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from binance_cdc import change_log
from binance_cdc.datasets import DATASETS, Dataset

log = logging.getLogger(__name__)

IN_CHUNK = 100
CONCURRENCY = 32
TOKEN_SPLITS = 32
SCAN_THREADS = 3
MIN_TOKEN, MAX_TOKEN = -(2 ** 63), 2 ** 63 - 1


@dataclass(frozen=True)
class Progress:
    stream_id: uuid.UUID
    last_batch_id: int
    batch_completed_at: datetime
    end_offsets: str | None


def read_progress(session, keyspace: str) -> dict[uuid.UUID, Progress]:
    rows = session.execute(
        f"SELECT stream_id, last_batch_id, batch_completed_at, end_offsets FROM {keyspace}.{change_log.STREAM_PROGRESS}")
    return {r[0]: Progress(r[0], r[1], _utc(r[2]), r[3]) for r in rows}


@dataclass
class Marks:
    """What batches marked: {table: {partition key: {clustering keys}}}, and the tables they truncated."""

    partitions: dict[str, dict[tuple, set[tuple]]]
    truncated: set[str]


def read_marks(session, keyspace: str, stream_id: uuid.UUID, after_batch: int, upto_batch: int,
               page_size: int) -> Marks:
    """The marks of batches after_batch+1 .. upto_batch."""
    statement = session.prepare(
        f"SELECT table_name, partition_key, clustering_keys FROM {keyspace}.{change_log.CHANGED_PARTITIONS} "
        "WHERE stream_id = ? AND batch_bucket = ? AND batch_id > ? AND batch_id <= ?")
    statement.fetch_size = page_size
    out: dict[str, dict[tuple, set[tuple]]] = defaultdict(lambda: defaultdict(set))
    truncated: set[str] = set()
    for bucket in change_log.buckets_between(after_batch, upto_batch):
        for table, partition_text, keys_text in session.execute(statement, (stream_id, bucket, after_batch, upto_batch)):
            dataset = DATASETS.get(table)
            if dataset is None:
                log.warning("changed_partitions names unknown table %r: ignored", table)
                continue
            if partition_text == change_log.TRUNCATE_MARK:
                truncated.add(table)
                continue
            partition = change_log.decode_partition_key(dataset, partition_text)
            out[table][partition].update(change_log.decode_clustering_keys(dataset, keys_text))
    return Marks({t: dict(p) for t, p in out.items()}, truncated)


def select_columns(dataset: Dataset, as_text: bool = False) -> str:
    """The columns in Dataset.cql_columns order; `as_text`: every non-text column rendered by Cassandra
    itself (CAST(... AS text): decimals as Java's exact BigDecimal text, times ISO-8601 UTC), so Python
    only passes strings on instead of building a Decimal and a datetime per value."""
    if not as_text:
        return ", ".join(dataset.cql_columns)
    return ", ".join(c if k == "text" else f"CAST({c} AS text)" for c, k in dataset.cql_columns.items())


def read_rows(session, keyspace: str, dataset: Dataset, marked: dict[tuple, set[tuple]],
              page_size: int, as_text: bool = False) -> Iterator[list[tuple]]:
    """The current rows at the marked keys, one list per request (absent keys: deleted since)."""
    from cassandra.concurrent import execute_concurrent_with_args

    where = " AND ".join(f"{c} = ?" for c in dataset.cql_partition_key)
    clustering = dataset.cql_clustering_key
    if clustering:
        where += f" AND ({', '.join(clustering)}) IN ?" if len(clustering) > 1 else f" AND {clustering[0]} IN ?"
    statement = session.prepare(f"SELECT {select_columns(dataset, as_text)} FROM {keyspace}.{dataset.name} "
                                f"WHERE {where}")
    statement.fetch_size = page_size
    args = []
    for partition, keys in marked.items():
        if not clustering:
            args.append(partition)
            continue
        ordered = sorted(keys)
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start:start + IN_CHUNK]
            values = [k[0] for k in chunk] if len(clustering) == 1 else [tuple(k) for k in chunk]
            args.append((*partition, values))
    for ok, result in execute_concurrent_with_args(session, statement, args, concurrency=CONCURRENCY,
                                                   results_generator=True, raise_on_first_error=True):
        yield list(result)


def token_ranges(splits: int = TOKEN_SPLITS) -> list[tuple[int, int]]:
    """(start, end] ranges covering the Murmur3 ring; the first starts at the minimum token inclusive."""
    step = (MAX_TOKEN - MIN_TOKEN) // splits
    bounds = [MIN_TOKEN + i * step for i in range(splits)] + [MAX_TOKEN]
    return list(zip(bounds[:-1], bounds[1:]))


def scan_table(session, keyspace: str, dataset: Dataset, page_size: int, threads: int = SCAN_THREADS,
               splits: int = TOKEN_SPLITS, as_text: bool = False) -> Iterator[list[tuple]]:
    """Every row of the table, as pages, read by `threads` threads over token ranges."""
    pk = ", ".join(dataset.cql_partition_key)
    first = session.prepare(f"SELECT {select_columns(dataset, as_text)} FROM {keyspace}.{dataset.name} "
                            f"WHERE token({pk}) >= ? AND token({pk}) <= ?")
    rest = session.prepare(f"SELECT {select_columns(dataset, as_text)} FROM {keyspace}.{dataset.name} "
                           f"WHERE token({pk}) > ? AND token({pk}) <= ?")
    for s in (first, rest):
        s.fetch_size = page_size
    ranges = token_ranges(splits)
    pages: queue.Queue = queue.Queue(maxsize=threads * 4)
    todo: queue.Queue = queue.Queue()
    for i, r in enumerate(ranges):
        todo.put((first if i == 0 else rest, r))
    done = object()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                try:
                    statement, (low, high) = todo.get_nowait()
                except queue.Empty:
                    return
                result = session.execute(statement, (low, high))
                while True:
                    page = list(result.current_rows)
                    if page:
                        pages.put(page)
                    if not result.has_more_pages:
                        break
                    result.fetch_next_page()
        except BaseException as exc:  # re-raised in the consumer, which owns the error
            failures.append(exc)
        finally:
            pages.put(done)

    workers = [threading.Thread(target=worker, name=f"scan-{dataset.name}-{i}", daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    finished = 0
    while finished < len(workers):
        item = pages.get()
        if item is done:
            finished += 1
            continue
        yield item
    if failures:
        raise failures[0]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def reader_session(cassandra, login, timeout: float = 30.0):
    """A session as the read-only role, rows as tuples."""
    from cassandra.query import tuple_factory

    from binance_cdc.cassandra_conn import connect

    return connect(cassandra, login, timeout=timeout, row_factory=tuple_factory)
