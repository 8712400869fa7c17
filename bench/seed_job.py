"""The original project's streaming job pattern, rebuilt as the baseline of the drain bench (bench/seed_drain.py).

What is kept from the original (facts from /work/shared/reference/original_project_findings.md and its
spark_streaming.py): one Structured Streaming query per topic; `from_json` of the value with a hand-written
envelope schema per table (before/after structs, `source` and `transaction` as EMPTY structs, op, ts_ms);
times as LongType and decimals as DoubleType; only `op == 'c'` with a non-null `after` kept; the `after` fields
flattened beside source/transaction cast to string, op and ts_ms; each micro-batch appended to Cassandra with the
spark-cassandra-connector (`df.write.format("org.apache.spark.sql.cassandra")`) in foreachBatch; the queries
awaited one after another. The five hand-written schemas follow the original's type rules applied to OUR column
names (the events are ours), so whatever does not fit them becomes NULL, as it did there.

What had to change, and why:
- Trigger availableNow and a checkpoint per query (a temp dir the bench gives): the original ran forever
  with no checkpoint, but the bench needs the job to end once drained, and availableNow requires one.
- maxOffsetsPerTrigger as our drain uses (the original had none): one batch of the whole backlog would
  leave no steady rate to measure.
- foreachBatch gets (df, batch_id): the original's one-argument function fails on its first batch in PySpark.
- No 15 s sleep between query starts, local jars instead of `spark.jars.packages` (Scala 2.13 builds there,
  which pyspark cannot load), and our Kafka/Cassandra settings instead of hard-coded ones.
- One log line per finished micro-batch (from a StreamingQueryListener, so the job does no extra work for it):
  `batch N: processed R messages, ...` under the logger `seed_job.<table>`, timed like ours.

Needs: jars in .local/lib/spark (`make setup`) and .local/lib/seed (`make .local/lib/seed/.installed`), the
settings groups kafka (TOPIC_PREFIX picks the topics), cassandra and cassandra_writer, and a keyspace holding
the tables of `table_cql()` where the writer role may MODIFY (bench/seed_drain.py makes and drops one).
Run: `.venv/bin/python -m bench.seed_job --keyspace K --checkpoint DIR [--max-offsets N] [--master local[2,3]]`;
exit 0 when every query drained, 1 when one failed, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from binance_cdc.settings import PROJECT_ROOT, Settings, script_settings

log = logging.getLogger("seed_job")

SETTINGS_GROUPS = ("kafka", "cassandra", "cassandra_writer")
SEED_LIB = PROJECT_ROOT / ".local" / "lib" / "seed"
SPARK_LIB = PROJECT_ROOT / ".local" / "lib" / "spark"
IVY_DIR = PROJECT_ROOT / ".local" / "spark-ivy"
# Two cores and 3 attempts per task: with one attempt (plain local[2]) a single Cassandra write timeout on
# the busy shared machine failed the whole query (seen at load average 12); retries make the baseline stronger.
DEFAULT_MASTER = "local[2,3]"
DRIVER_MEMORY = "768m"  # what our job's driver gets, so both drain with the same resources

# The `after` fields, hand-written the way the original wrote them: decimals DOUBLE, times BIGINT (epoch
# numbers), ids BIGINT. Debezium (decimal.handling.mode=string, timestamptz as ISO text) sends strings for
# both, which do not fit: from_json then gives NULL for those fields and keeps the rest of the row.
AFTER_FIELDS: dict[str, str] = {
    "recent_trades": "symbol STRING, trade_id BIGINT, price DOUBLE, qty DOUBLE, quote_qty DOUBLE, "
                     "trade_time BIGINT, is_buyer_maker BOOLEAN, is_best_match BOOLEAN",
    "order_book": "symbol STRING, last_update_id BIGINT, side STRING, price DOUBLE, quantity DOUBLE, level INT, "
                  "captured_at BIGINT",
    "klines": "symbol STRING, interval STRING, open_time BIGINT, open_price DOUBLE, high_price DOUBLE, "
              "low_price DOUBLE, close_price DOUBLE, volume DOUBLE, close_time BIGINT, quote_volume DOUBLE, "
              "num_trades BIGINT, taker_buy_base_volume DOUBLE, taker_buy_quote_volume DOUBLE, is_closed BOOLEAN",
    "daily_ticker": "symbol STRING, close_time BIGINT, open_time BIGINT, price_change DOUBLE, "
                    "price_change_percent DOUBLE, weighted_avg_price DOUBLE, prev_close_price DOUBLE, "
                    "last_price DOUBLE, last_qty DOUBLE, bid_price DOUBLE, bid_qty DOUBLE, ask_price DOUBLE, "
                    "ask_qty DOUBLE, open_price DOUBLE, high_price DOUBLE, low_price DOUBLE, volume DOUBLE, "
                    "quote_volume DOUBLE, first_trade_id BIGINT, last_trade_id BIGINT, trade_count BIGINT",
    "latest_prices": "symbol STRING, price DOUBLE, observed_at BIGINT",
}
# The original kept no Cassandra DDL; its tables held the after fields plus these four. Primary keys here are
# our natural keys (first column the partition), the only choice that keeps every distinct event.
META_COLUMNS = (("source", "text"), ("op", "text"), ("ts_ms", "bigint"), ("transaction", "text"))
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "recent_trades": ("symbol", "trade_id"),
    "order_book": ("symbol", "last_update_id", "side", "price"),
    "klines": ("symbol", "interval", "open_time"),
    "daily_ticker": ("symbol", "close_time"),
    "latest_prices": ("symbol",),
}
CQL_TYPES = {"STRING": "text", "BIGINT": "bigint", "INT": "int", "DOUBLE": "double", "BOOLEAN": "boolean"}


def after_fields(table: str) -> list[tuple[str, str]]:
    """(name, Spark SQL type) of a table's hand-written `after` struct."""
    return [tuple(field.strip().split(" ")) for field in AFTER_FIELDS[table].split(",")]  # type: ignore[misc]


def table_cql(keyspace: str, table: str) -> str:
    columns = [(name, CQL_TYPES[kind]) for name, kind in after_fields(table)] + list(META_COLUMNS)
    key = PRIMARY_KEYS[table]
    body = ", ".join(f'"{name}" {kind}' for name, kind in columns)
    clustering = "".join(f', "{name}"' for name in key[1:])
    return f'CREATE TABLE {keyspace}.{table} ({body}, PRIMARY KEY (("{key[0]}"){clustering}))'


def envelope_schema(table: str):
    """The Debezium envelope as the original declared it: `source` and `transaction` are structs with no
    fields, so everything in them is dropped and they come out as "{}" (or NULL) when cast to string."""
    from pyspark.sql.types import BooleanType, DoubleType, IntegerType, LongType, StringType, StructField, \
        StructType

    spark_types = {"STRING": StringType(), "BIGINT": LongType(), "INT": IntegerType(), "DOUBLE": DoubleType(),
                   "BOOLEAN": BooleanType()}
    row = StructType([StructField(name, spark_types[kind]) for name, kind in after_fields(table)])
    return StructType([
        StructField("before", row), StructField("after", row),
        StructField("source", StructType(), True), StructField("op", StringType()),
        StructField("ts_ms", LongType()), StructField("transaction", StructType(), True),
    ])


def local_jars(folder: Path) -> list[str]:
    jars = sorted(str(p.resolve()) for p in folder.glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {folder}: run `make setup` and `make .local/lib/seed/.installed`")
    return jars


def build_session(settings: Settings, master: str):
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # read by the JVM about to start: loopback only
    IVY_DIR.mkdir(parents=True, exist_ok=True)
    login = settings.cassandra_writer
    conf = {
        "spark.master": master,
        "spark.app.name": "seed-job-pattern",
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.jars": ",".join(local_jars(SPARK_LIB) + local_jars(SEED_LIB)),
        "spark.jars.ivy": str(IVY_DIR),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.cassandra.connection.host": ",".join(settings.cassandra.hosts),
        "spark.cassandra.connection.port": str(settings.cassandra.port),
        "spark.cassandra.connection.localDC": settings.cassandra.local_dc,
        "spark.cassandra.auth.username": login.user,
        "spark.cassandra.auth.password": login.password.reveal(),
    }
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def batch_logger():
    """A listener logging each finished micro-batch of every query, in the drain bench's format."""
    from pyspark.sql.streaming import StreamingQueryListener

    class BatchLog(StreamingQueryListener):
        def onQueryStarted(self, event) -> None:
            logging.getLogger(f"seed_job.{event.name}").info("query %s started (id %s)", event.name, event.id)

        def onQueryProgress(self, event) -> None:
            p = event.progress
            logging.getLogger(f"seed_job.{p.name}").info(
                "batch %d: processed %d messages, 0 dead letters (the pattern keeps none); %d ms", p.batchId,
                p.numInputRows, p.durationMs.get("triggerExecution", 0))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            if event.exception:
                log.error("query %s failed: %s", event.id, event.exception.splitlines()[0])

    return BatchLog()


def start_query(spark, settings: Settings, table: str, keyspace: str, checkpoint: Path, max_offsets: int):
    from pyspark.sql.functions import col, from_json

    topic = f"{settings.kafka.topic_prefix}.binance.{table}"
    raw = (spark.readStream.format("kafka")
           .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
           .option("subscribe", topic)
           .option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", str(max_offsets))
           .load())
    parsed = (raw.selectExpr("CAST(value AS STRING) AS value")
              .select(from_json(col("value"), envelope_schema(table)).alias("data"))
              .filter(col("data.op") == "c")
              .filter(col("data.after").isNotNull()))
    flat = parsed.select(
        *[col(f"data.after.{name}").alias(name) for name, _ in after_fields(table)],
        col("data.source").cast("string").alias("source"),
        col("data.op").alias("op"),
        col("data.ts_ms").alias("ts_ms"),
        col("data.transaction").cast("string").alias("transaction"),
    )

    def write(df, batch_id: int) -> None:
        df.write.format("org.apache.spark.sql.cassandra").mode("append") \
            .options(table=table, keyspace=keyspace).save()

    return (flat.writeStream.queryName(table).foreachBatch(write).outputMode("update")
            .option("checkpointLocation", str(checkpoint / table))
            .trigger(availableNow=True).start())


def run(settings: Settings, keyspace: str, checkpoint: Path, max_offsets: int, master: str) -> int:
    spark = build_session(settings, master)
    spark.streams.addListener(batch_logger())
    queries = [start_query(spark, settings, table, keyspace, checkpoint, max_offsets) for table in AFTER_FIELDS]
    failed = 0
    for query in queries:  # one after another, as the original awaited them
        try:
            query.awaitTermination()
        except Exception as exc:  # py4j/StreamingQueryException: say which query, keep awaiting the rest
            failed += 1
            log.error("query %s failed: %s", query.name, str(exc).splitlines()[0])
    spark.stop()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the original project's job pattern, drained once (bench baseline)")
    parser.add_argument("--keyspace", required=True)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a fresh directory, one query each")
    parser.add_argument("--max-offsets", type=int, default=200_000)
    parser.add_argument("--master", default=DEFAULT_MASTER)
    args = parser.parse_args(argv)
    settings = script_settings(*SETTINGS_GROUPS)
    if settings is None:
        return 2
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return run(settings, args.keyspace, args.checkpoint, args.max_offsets, args.master)


if __name__ == "__main__":
    sys.exit(main())
