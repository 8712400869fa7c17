"""The streaming job's body: Kafka source -> foreachBatch -> Cassandra sink on the executors.

spark_streaming.py is its thin command line. `run(settings, once, master)` builds the session (local jars,
UTC), ships this package to the executors as a zip, starts one query over the five topics and waits for
it; each micro-batch decodes and writes on the executors (binance_cdc.stream.sink.write_partition), then
logs its counts per topic. Needs settings groups kafka, cassandra, cassandra_writer and spark.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import zipfile
from pathlib import Path

from binance_cdc.kafka_client import topics
from binance_cdc.settings import PROJECT_ROOT, Settings
from binance_cdc.stream.sink import COUNTERS, SinkTarget, summarize, write_partition

log = logging.getLogger("spark_streaming")  # the job's log lines keep the script's name

APP_NAME = "binance-cdc-stream"
SETTINGS_GROUPS = ("kafka", "cassandra", "cassandra_writer", "spark")
KAFKA_COLUMNS = ("topic", "partition", "offset", "key", "value")
DRIVER_CONF = {"spark.driver.memory": "768m", "spark.sql.streaming.metricsEnabled": "true"}
STOP_GRACE_SECONDS = 120


def kafka_options(settings: Settings) -> dict[str, str]:
    """Options of the Kafka source. Holds the SASL secret when set: never log them."""
    options = {
        "kafka.bootstrap.servers": settings.kafka.bootstrap_servers,
        "subscribe": ",".join(topics(settings.kafka)),
        "startingOffsets": settings.spark.starting_offsets,
        "maxOffsetsPerTrigger": str(settings.spark.max_offsets_per_trigger),
        "failOnDataLoss": "true",
    }
    if settings.kafka.security_protocol == "SASL_SSL":
        user = settings.kafka.sasl_username
        password = settings.kafka.sasl_password.reveal()
        if not user or not password:
            raise ValueError("KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        quote = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731 - JAAS string literal
        options.update({
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": "PLAIN",
            "kafka.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
                                      f'username="{quote(user)}" password="{quote(password)}";',
        })
    return options


def sink_target(settings: Settings) -> SinkTarget:
    """What the executors need to reach Cassandra, one typed value shipped inside the task closure."""
    return SinkTarget(settings.cassandra, settings.cassandra_writer)


def checkpoint_location(settings: Settings) -> str:
    raw = settings.spark.checkpoint_dir
    if "://" in raw:
        return raw
    path = Path(raw)
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def package_zip(directory: Path, package: Path = PROJECT_ROOT / "binance_cdc") -> Path:
    """The whole binance_cdc package, subpackages included, as a zip for sc.addPyFile: executors import
    the same code as the driver, never a checkout they may not have."""
    target = directory / "binance_cdc.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for source in sorted(package.rglob("*.py")):
            arcname = Path(package.name) / source.relative_to(package)
            # stream/ and extract/ have no __init__.py (namespace packages). zipimport finds a namespace
            # package only through an explicit directory entry, which zf.write(file) does not make: without
            # them executors failed with "No module named 'binance_cdc.stream'" when no checkout was there.
            for parent in reversed(arcname.parents[:-1]):
                if f"{parent}/" not in zf.NameToInfo:
                    zf.writestr(zipfile.ZipInfo(f"{parent}/"), b"")
            zf.write(source, str(arcname))
    return target


def format_counts(counter) -> str:
    return " ".join(f"{name}={counter.get(name, 0)}" for name in COUNTERS)


def make_batch_writer(target: SinkTarget):
    def write_batch(df, batch_id: int) -> None:
        rows = df.select(*KAFKA_COLUMNS).rdd
        stats = rows.mapPartitions(lambda part: write_partition(part, target)).collect()
        totals = summarize(stats)
        processed = sum(sum(c.values()) for c in totals.values())
        for topic in sorted(totals):
            log.info("batch %d %s: %s", batch_id, topic, format_counts(totals[topic]))
        log.info("batch %d: processed %d messages, %d dead letters", batch_id, processed,
                 sum(c.get("dead_letter", 0) for c in totals.values()))

    return write_batch


def progress_listener():
    from pyspark.sql.streaming import StreamingQueryListener

    class LagListener(StreamingQueryListener):
        """Logs each batch's input and the Kafka lag (max offsets behind latest over the topics)."""

        def onQueryStarted(self, event) -> None:
            log.info("query %s started (run %s)", event.name, event.runId)

        def onQueryProgress(self, event) -> None:
            p = event.progress
            for source in p.sources:
                metrics = source.metrics or {}
                log.info("batch %d progress: %d input rows, %.1f rows/s, lag maxOffsetsBehindLatest=%s "
                         "avgOffsetsBehindLatest=%s", p.batchId, p.numInputRows, p.processedRowsPerSecond or 0.0,
                         metrics.get("maxOffsetsBehindLatest", "n/a"), metrics.get("avgOffsetsBehindLatest", "n/a"))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            if event.exception:
                log.error("query terminated with an exception: %s", event.exception)
            else:
                log.info("query terminated")

    return LagListener()


def start_query(spark, settings: Settings, once: bool):
    reader = spark.readStream.format("kafka")
    for key, value in kafka_options(settings).items():
        reader = reader.option(key, value)
    writer = (reader.load().writeStream.queryName(APP_NAME)
              .option("checkpointLocation", checkpoint_location(settings))
              .foreachBatch(make_batch_writer(sink_target(settings))))
    writer = writer.trigger(availableNow=True) if once else \
        writer.trigger(processingTime=f"{settings.spark.trigger_seconds} seconds")
    query = writer.start()
    log.info("streaming %d topics (%s) from %s to keyspace %s; checkpoint %s; %s", len(topics(settings.kafka)),
             ",".join(topics(settings.kafka)), settings.kafka.bootstrap_servers, settings.cassandra.keyspace,
             checkpoint_location(settings), "once (availableNow)" if once else
             f"trigger every {settings.spark.trigger_seconds}s")
    return query


def wait(query, stop: threading.Event) -> None:
    """Until the query ends; on a stop request, let the running batch finish, then stop the query."""
    while query.isActive:
        if stop.is_set():
            log.info("stop requested: waiting for the running batch, then stopping the query")
            for _ in range(STOP_GRACE_SECONDS * 2):
                if not query.status.get("isTriggerActive"):
                    break
                query.awaitTermination(0.5)
            query.stop()
            return
        query.awaitTermination(1)


def quiet_kafka_consumer_warning(spark) -> None:
    """Spark logs "KafkaDataConsumer is not running in UninterruptibleThread" for every partition of every
    batch read through foreachBatch + RDD; it is about task interruption only, and floods the log."""
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.kafka010.consumer.KafkaDataConsumer", jvm.org.apache.logging.log4j.Level.ERROR)


def run(settings: Settings, once: bool, master: str | None) -> int:
    from binance_cdc.stream.spark_session import build_session  # noqa: needs pyspark, kept local to run()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    spark = build_session(APP_NAME, master=master, extra_conf=DRIVER_CONF)
    spark.sparkContext.setLogLevel("WARN")
    quiet_kafka_consumer_warning(spark)
    spark.streams.addListener(progress_listener())
    status = 0
    with tempfile.TemporaryDirectory(prefix="binance_cdc_job_") as tmp:
        spark.sparkContext.addPyFile(str(package_zip(Path(tmp))))
        query = start_query(spark, settings, once)
        try:
            if once:
                query.awaitTermination()
            else:
                wait(query, stop)
            failure = query.exception()
        except Exception as exc:  # StreamingQueryException from awaitTermination
            failure = exc
        if failure is not None:
            log.error("streaming query failed: %s", failure)
            status = 1
        else:
            log.info("streaming query stopped cleanly")
        try:
            spark.stop()
        except Exception as exc:  # the JVM may already be gone (killed with the process group)
            log.warning("spark: stop failed: %s", exc)
    return status


