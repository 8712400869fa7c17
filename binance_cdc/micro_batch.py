"""One micro-batch of Debezium messages -> Cassandra: the fast path in the JVM, the Python sink for the rest.

NOT WIRED into spark_streaming.py yet: measured on the local stack it drained no faster than the Python
path (~10k rows/s) and each micro-batch spent seconds building and planning the routing expressions, so
CDC latency got worse (see the commit message). Kept, tested, for the next iteration.

`make_batch_writer(conf, keyspace)` returns the foreachBatch function of spark_streaming.py. Per batch it
1. routes the Kafka rows (binance_cdc.fast_path.route) and persists the result, so Kafka is read once;
2. counts messages by topic, route and op (one small Spark job; it also fills the cache);
3. writes each dataset's fast rows with the spark-cassandra-connector, `writetime` = the LSN column, so the
   write is `INSERT ... USING TIMESTAMP <source.lsn>` exactly like the Python sink's;
4. only when the batch has other messages (deletes, tombstones, anything unusual), runs the Python sink
   (binance_cdc.cassandra_sink.write_partition) on just those: it decodes them exactly, deletes with
   `USING TIMESTAMP <lsn>`, counts tombstones and writes dead letters;
5. logs the counts per topic (rows by op, tombstones, dead letters, fast and fallback) and the batch total.
Both paths stamp every cell with the LSN, so their order within a batch does not matter.

cdc_written_at of fast rows is the driver's clock (milliseconds) read just before that dataset's write job
starts; the Python sink reads it per task, before decoding. Needs pyspark with the connector on the classpath
(binance_cdc.spark_session.build_session configures its connection as the application role).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from typing import Iterable

from binance_cdc import datasets, fast_path
from binance_cdc.cassandra_sink import COUNTERS, now_millis, summarize, write_partition

log = logging.getLogger("spark_streaming")  # the job's logger: its lines are the job's batch log

KAFKA_COLUMNS = ("topic", "partition", "offset", "key", "value")
ROUTE_COUNTERS = ("fast", "fallback")
CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
# Connector batches: rows of one Cassandra partition, kept under Cassandra's 5 KiB batch_size_warn_threshold.
WRITE_OPTIONS = {
    "spark.cassandra.output.batch.grouping.key": "partition",
    "spark.cassandra.output.batch.size.bytes": "4096",
    "spark.cassandra.output.concurrent.writes": "16",
}


def tally(route_counts: Iterable[tuple[str, str | None, bool, str | None, int]]) -> tuple[dict, dict]:
    """(topic, dataset, fast, op, n) rows -> ({topic: Counter of fast ops + fast/fallback}, {dataset: fast n})."""
    per_topic: dict[str, Counter] = defaultdict(Counter)
    fast_by_dataset: Counter = Counter()
    for topic, dataset, fast, op, n in route_counts:
        if fast:
            per_topic[topic][op] += n
            per_topic[topic]["fast"] += n
            fast_by_dataset[dataset] += n
        else:
            per_topic[topic]["fallback"] += n
    return dict(per_topic), dict(fast_by_dataset)


def merge(per_topic: dict[str, Counter], fallback: dict[str, Counter]) -> dict[str, Counter]:
    """Fast counts plus the Python sink's counts (c/r/u/d/tombstone/dead_letter) of the fallback rows."""
    merged: dict[str, Counter] = defaultdict(Counter)
    for source in (per_topic, fallback):
        for topic, counter in source.items():
            merged[topic].update(counter)
    return dict(merged)


def format_counts(counter: Counter) -> str:
    return " ".join(f"{name}={counter.get(name, 0)}" for name in COUNTERS + ROUTE_COUNTERS)


def write_fast(routed, dataset: datasets.Dataset, keyspace: str) -> None:
    rows = fast_path.fast_rows(routed, dataset, now_millis())
    (rows.write.format(CASSANDRA_FORMAT)
     .options(keyspace=keyspace, table=dataset.name, writetime=fast_path.WRITETIME_COLUMN, **WRITE_OPTIONS)
     .mode("append").save())


def write_fallback(routed, conf: dict) -> dict[str, Counter]:
    rows = fast_path.fallback_rows(routed).rdd
    return summarize(rows.mapPartitions(lambda part: write_partition(part, conf)).collect())


def make_batch_writer(conf: dict, keyspace: str):
    """conf: what the Python sink needs on the executors (spark_streaming.sink_conf)."""

    def write_batch(df, batch_id: int) -> None:
        from pyspark import StorageLevel

        started = time.monotonic()
        zone = df.sparkSession.conf.get("spark.sql.session.timeZone")
        if zone != "UTC":  # fast_path reads times and buckets dates in the session time zone
            raise ValueError(f"spark.sql.session.timeZone is {zone!r}; the CDC fast path needs UTC")
        routed = fast_path.route(df.select(*KAFKA_COLUMNS)).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows = routed.groupBy("topic", "dataset", "fast", "op").count().collect()
            per_topic, fast_by_dataset = tally(tuple(r) for r in rows)
            routed_at = time.monotonic()
            for name in sorted(fast_by_dataset):
                write_fast(routed, datasets.get(name), keyspace)
            written_at = time.monotonic()
            fallback_n = sum(c["fallback"] for c in per_topic.values())
            fallback = write_fallback(routed, conf) if fallback_n else {}
        finally:
            routed.unpersist()
        ended = time.monotonic()
        totals = merge(per_topic, fallback)
        processed = sum(c["fast"] + c["fallback"] for c in totals.values())
        for topic in sorted(totals):
            log.info("batch %d %s: %s", batch_id, topic, format_counts(totals[topic]))
        log.info("batch %d: processed %d messages, %d dead letters (%d fast, %d fallback) in %.2f s (read+route "
                 "%.2f s, fast writes %.2f s, fallback %.2f s)", batch_id, processed,
                 sum(c["dead_letter"] for c in totals.values()), processed - fallback_n, fallback_n,
                 ended - started, routed_at - started, written_at - routed_at, ended - written_at)

    return write_batch
