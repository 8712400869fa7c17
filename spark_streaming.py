"""Stage 3: Debezium change events (Kafka) -> Cassandra keyspace `binance_test`, with Spark Structured Streaming.

One streaming query reads the five topics `<TOPIC_PREFIX>.binance.<table>` and, in each micro-batch, decodes
and writes on the executors (binance_cdc.debezium + binance_cdc.cassandra_sink): upserts and deletes carry
`USING TIMESTAMP <source LSN>`, so the later Postgres change always wins and replays are harmless;
tombstones are skipped and counted; undecodable messages go to `dead_letters`. Offsets live in the durable
checkpoint SPARK_CHECKPOINT_DIR: a restart resumes where the last committed batch ended.
Each batch logs its counts per topic (rows by op, tombstones, dead letters) and the Kafka lag
(maxOffsetsBehindLatest). A failed query is logged and the job exits with status 1.

Run card
--------
Local stack (`make up`; settings from .env), master local[2]:

    .venv/bin/python spark_streaming.py                  # runs until Ctrl-C / SIGTERM (graceful stop)
    .venv/bin/python spark_streaming.py --once           # everything available now, then exit
    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit spark_streaming.py --log-level DEBUG

Cluster, Confluent Cloud and a remote Cassandra (executors need `pip install cassandra-driver==3.30.1`
and Python 3.11; the job ships its own binance_cdc package to them as a zip; the two connector jars
come from .local/lib/spark through spark.jars):

    KAFKA_BOOTSTRAP_SERVERS=pkc-xxxx.region.provider.confluent.cloud:9092 KAFKA_SECURITY_PROTOCOL=SASL_SSL \\
    KAFKA_SASL_USERNAME=<api key> KAFKA_SASL_PASSWORD=<api secret> \\
    CASSANDRA_HOSTS=10.0.0.5,10.0.0.6 CASSANDRA_LOCAL_DC=dc1 CASSANDRA_APP_PASSWORD=<...> \\
    SPARK_CHECKPOINT_DIR=hdfs:///checkpoints/binance \\
    PYSPARK_PYTHON=python3.11 .venv/bin/spark-submit --master spark://spark-master:7077 --conf spark.executor.memory=2g \\
        spark_streaming.py

Settings (env or .env, see .env.example): groups kafka, cassandra and spark.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from binance_cdc import datasets
from binance_cdc.cassandra_sink import COUNTERS, summarize, write_partition
from binance_cdc.settings import PROJECT_ROOT, load_dotenv_file, load_settings
from binance_cdc.spark_session import launched_by_spark_submit

log = logging.getLogger("spark_streaming")

APP_NAME = "binance-cdc-stream"
SETTINGS_GROUPS = ("kafka", "cassandra", "spark")
KAFKA_COLUMNS = ("topic", "partition", "offset", "key", "value")
DRIVER_CONF = {"spark.driver.memory": "768m", "spark.sql.streaming.metricsEnabled": "true"}
STOP_GRACE_SECONDS = 120


def topics(settings) -> list[str]:
    return [f"{settings.topic_prefix}.{d.topic_suffix}" for d in datasets.DATASETS.values()]


def kafka_options(settings) -> dict[str, str]:
    """Options of the Kafka source. Holds the SASL secret when set: never log them."""
    options = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": ",".join(topics(settings)),
        "startingOffsets": settings.spark_starting_offsets,
        "maxOffsetsPerTrigger": str(settings.spark_max_offsets_per_trigger),
        "failOnDataLoss": "true",
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        user = settings.kafka_sasl_username
        password = settings.secret("kafka_sasl_password")
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


def sink_conf(settings) -> dict:
    """What the executors need to reach Cassandra (shipped inside the task closure)."""
    return {"hosts": list(settings.cassandra_hosts), "port": settings.cassandra_port,
            "local_dc": settings.cassandra_local_dc, "user": settings.cassandra_app_user,
            "password": settings.secret("cassandra_app_password"), "keyspace": settings.cassandra_keyspace}


def checkpoint_location(settings) -> str:
    raw = settings.spark_checkpoint_dir
    if "://" in raw:
        return raw
    path = Path(raw)
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def package_zip(directory: Path) -> Path:
    """binance_cdc as a zip for sc.addPyFile, so executors import the same code as the driver."""
    target = directory / "binance_cdc.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for source in sorted((PROJECT_ROOT / "binance_cdc").glob("*.py")):
            zf.write(source, f"binance_cdc/{source.name}")
    return target


def format_counts(counter) -> str:
    return " ".join(f"{name}={counter.get(name, 0)}" for name in COUNTERS)


def make_batch_writer(conf: dict):
    def write_batch(df, batch_id: int) -> None:
        rows = df.select(*KAFKA_COLUMNS).rdd
        stats = rows.mapPartitions(lambda part: write_partition(part, conf)).collect()
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


def start_query(spark, settings, once: bool):
    reader = spark.readStream.format("kafka")
    for key, value in kafka_options(settings).items():
        reader = reader.option(key, value)
    writer = (reader.load().writeStream.queryName(APP_NAME)
              .option("checkpointLocation", checkpoint_location(settings))
              .foreachBatch(make_batch_writer(sink_conf(settings))))
    writer = writer.trigger(availableNow=True) if once else \
        writer.trigger(processingTime=f"{settings.spark_trigger_seconds} seconds")
    query = writer.start()
    log.info("streaming %d topics (%s) from %s to keyspace %s; checkpoint %s; %s", len(topics(settings)),
             ",".join(topics(settings)), settings.kafka_bootstrap_servers, settings.cassandra_keyspace,
             checkpoint_location(settings), "once (availableNow)" if once else
             f"trigger every {settings.spark_trigger_seconds}s")
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


def run(settings, once: bool, master: str | None) -> int:
    from binance_cdc.spark_session import build_session  # noqa: needs pyspark, kept local to run()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    spark = build_session(settings, APP_NAME, master=master, extra_conf=DRIVER_CONF)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kafka (Debezium) -> Cassandra streaming job")
    parser.add_argument("--once", action="store_true", help="process what is available now, then exit")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--master", default=None, help="Spark master when not given by spark-submit "
                                                       "(default local[2,3]: two cores, 3 attempts per task)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    load_dotenv_file()
    settings = load_settings(*SETTINGS_GROUPS)
    if not launched_by_spark_submit():
        # Local Python workers must run this interpreter (its venv has cassandra-driver), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return run(settings, args.once, args.master)


if __name__ == "__main__":
    sys.exit(main())
