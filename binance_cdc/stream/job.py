"""The streaming job's body: Kafka source -> foreachBatch -> Cassandra sink on the executors.

spark_streaming.py is its thin command line. `run(settings, once, master)` builds the session (local jars,
UTC), ships this package to the executors as a zip, starts one query over the five topics and waits for
it; each micro-batch decodes and writes on the executors (binance_cdc.stream.sink.write_arrow), then
logs its counts per topic. Needs settings groups kafka, cassandra, cassandra_writer and spark.

Outages: a batch whose writes failed because Cassandra was unreachable is run again with backoff
(`ride_out`), so a Cassandra restart of up to STREAM_OUTAGE_LIMIT_S is ridden out without the job
exiting; past it the job logs one line naming the cause and exits 1 (binance_cdc/stream/retry.py). A
refused login is no outage: the job logs in once before Spark starts, and a refusal then or in any batch
ends it at once with one line naming the role's variables and exit status 2, that of a configuration error
(settings.script_settings). Only
one job runs per local checkpoint: a second one is refused before Spark starts (checkpoint_lock.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from binance_cdc.kafka_client import topics
from binance_cdc.settings import PROJECT_ROOT, Settings
from binance_cdc import change_log
from binance_cdc.stream import checkpoint_lock
from binance_cdc.stream.retry import LoginRefused, Outage, StreamOutage, as_login_refused, executor_window, \
    first_line, is_auth_failure, is_sink_outage, is_transient
from binance_cdc.stream.sink import (
    COUNTERS, LOGIN_GROUP, STATS_SCHEMA, Message, SinkTarget, connect_as, end_offsets, summarize, write_arrow,
    write_messages,
)

log = logging.getLogger("spark_streaming")  # the job's log lines keep the script's name

APP_NAME = "binance-cdc-stream"
SETTINGS_GROUPS = ("kafka", "cassandra", LOGIN_GROUP, "spark")
EXIT_FAILED = 1  # the query failed, or Cassandra stayed unreachable past STREAM_OUTAGE_LIMIT_S
EXIT_CONFIG = 2  # a setting is missing or invalid, or Cassandra refused the login
KAFKA_COLUMNS = ("topic", "partition", "offset", "key", "value")
DRIVER_CONF = {"spark.driver.memory": "768m", "spark.sql.streaming.metricsEnabled": "true"}
STOP_GRACE_SECONDS = 120


def kafka_options(settings: Settings) -> dict[str, str]:
    """Options of the Kafka source. Holds the SASL secret when set: never log them.

    A broker restart needs no option of ours: the driver's offset lookups (Kafka Admin) wait up to
    default.api.timeout.ms (60 s) for the broker and are tried fetchOffset.numRetries (3) times, and an
    executor's fetch waits up to spark.network.timeout (120 s) for its records; the consumers reconnect
    on their own (reconnect.backoff.max.ms 1 s). Spark's defaults thus ride out a restart of a minute."""
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
            "kafka.ssl.endpoint.identification.algorithm": "https",
            "kafka.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
                                      f'username="{quote(user)}" password="{quote(password)}";',
        })
        if settings.kafka.ssl_ca_file:
            # The Java client reads a PEM bundle as a trust store of type PEM (KIP-651); it must exist at
            # this path on the driver and on every executor.
            options.update({"kafka.ssl.truststore.type": "PEM",
                            "kafka.ssl.truststore.location": settings.kafka.ssl_ca_file})
    return options


def sink_target(settings: Settings) -> SinkTarget:
    """What the executors need to reach Cassandra, one typed value shipped inside the task closure."""
    return SinkTarget(settings.cassandra, settings.group(LOGIN_GROUP),
                      window_s=executor_window(settings.spark.outage_limit_s), kafka=settings.kafka)


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


class ProgressRecorder:
    """Driver side: after a micro-batch succeeded, records it in `stream_progress` (with the Kafka offsets
    it reached), which tells the bridge that every mark of that batch is written."""

    def __init__(self, target: SinkTarget) -> None:
        self.target = target
        self._session = None
        self._insert = None
        self._offsets: dict[str, dict[str, int]] | None = None  # read from the table before the first record

    def record(self, batch: change_log.BatchRef, offsets: dict) -> None:
        """`offsets`: {topic: {partition: next offset}} this batch reached; merged into what earlier
        batches (of this or an earlier run of the query) reached, so the row covers every partition."""
        self.connect()
        if self._offsets is None:
            earlier = self._session.execute(f"SELECT end_offsets FROM {self._table()} WHERE stream_id = %s",
                                            (batch.stream_id,)).one()
            self._offsets = json.loads(earlier[0]) if earlier and earlier[0] else {}
        for topic, ends in offsets.items():
            known = self._offsets.setdefault(topic, {})
            for partition, end in ends.items():
                known[partition] = max(known.get(partition, 0), end)
        self._session.execute(self._insert, (batch.stream_id, batch.batch_id, datetime.now(timezone.utc),
                                             json.dumps(self._offsets, sort_keys=True)))

    def connect(self) -> None:
        """Open the session and prepare the insert, once (run() calls it before Spark starts, so a refused
        login ends the job there; record() after a close)."""
        if self._session is None:
            session = connect_as(self.target)
            cols = tuple(change_log.STREAM_PROGRESS_COLUMNS)
            try:
                self._insert = session.prepare(
                    f"INSERT INTO {self._table()} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
            except Exception:
                session.cluster.shutdown()
                raise
            self._session = session  # only with its statement: a half-open recorder would never prepare it

    def _table(self) -> str:
        return f"{self.target.cassandra.keyspace}.{change_log.STREAM_PROGRESS}"

    def close(self) -> None:
        self._offsets = None  # read again with the next session, as a new run would
        if self._session is not None:
            try:
                self._session.cluster.shutdown()
            except Exception as exc:  # noqa: BLE001 - closing a broken session; a new one follows
                log.debug("progress: shutdown failed: %s", exc)
            self._session = None


class StreamIdentity:
    """The query's id, kept in the checkpoint (so it survives restarts and changes with a new checkpoint).
    Known once start() returned, which the first micro-batch may not wait for on its own."""

    def __init__(self) -> None:
        self._id: uuid.UUID | None = None
        self._known = threading.Event()

    def set(self, query_id: str) -> None:
        self._id = uuid.UUID(query_id)
        self._known.set()

    def get(self, timeout: float = 60) -> uuid.UUID:
        if not self._known.wait(timeout):
            raise RuntimeError("the streaming query's id is unknown: start() has not returned")
        assert self._id is not None
        return self._id


class Fatal:
    """The outage or refused login that ended the stream, kept on the driver so run() logs it as one line
    instead of the Python and Java stack traces Spark wraps around a failed foreachBatch."""

    def __init__(self) -> None:
        self.outage: StreamOutage | None = None
        self.refused: LoginRefused | None = None
        # Set on SIGTERM/SIGINT: an outage's retries end at once instead of holding the stop for minutes.
        self.stop = threading.Event()


def ride_out(call, outage: Outage, fatal: Fatal, what: str, sleep=time.sleep,
             cleanup=lambda: None):
    """call() until it succeeds; a failure caused by Cassandra being unreachable (an executor's
    SinkUnavailable inside a failed Spark job, or a transient driver error) is retried after a backoff,
    within the outage limit; past it, StreamOutage (kept in `fatal`) ends the query. A refused login (on
    the driver or in an executor) ends it at once as LoginRefused, also kept. Other failures are raised at
    once. `cleanup` runs after each such failure (drops a broken session)."""
    while True:
        began = outage.clock()
        try:
            return call()
        except Exception as exc:
            if is_auth_failure(exc):
                fatal.refused = as_login_refused(exc)
                raise fatal.refused from None
            if not is_sink_outage(exc):
                raise
            cleanup()
            try:
                if fatal.stop.is_set():
                    raise StreamOutage(f"stop requested while Cassandra was unreachable ({outage.elapsed():.0f}s); "
                                       f"last error: {first_line(exc)}; the batch is replayed at the next start")
                delay = outage.next_delay(exc if is_transient(exc) else _SinkFailure(exc), since=began)
            except StreamOutage as end:
                fatal.outage = end
                raise
            log.warning("%s: Cassandra unreachable; retry %d in %.1fs (outage %.0fs of the %.0fs limit, "
                        "STREAM_OUTAGE_LIMIT_S)", what, outage.attempts, delay, outage.elapsed(), outage.limit_s)
            sleep(delay)


class _SinkFailure(Exception):
    """A failed Spark job reduced to the executor's last error (the job's text is a long traceback):
    what follows "last error: " on the SinkUnavailable line, e.g. "NoHostAvailable: ('Unable to ...')"."""

    bare = True  # first_line() shows the message alone

    def __init__(self, job_error: BaseException) -> None:
        text = str(job_error)
        at = text.rfind("SinkUnavailable: ")
        line = text[at:].splitlines()[0] if at >= 0 else first_line(job_error)
        cause = line.rfind("last error: ")
        super().__init__(line[cause + len("last error: "):] if cause >= 0 else line)


def _bytes(value) -> bytes | None:
    return None if value is None else bytes(value)


def make_batch_writer(target: SinkTarget, progress: ProgressRecorder, identity: StreamIdentity,
                      outage_limit_s: float, fatal: Fatal, driver_max_rows: int = 0):
    def write_batch(df, batch_id: int) -> None:
        batch = change_log.BatchRef(identity.get(), batch_id)
        rows = df.select(*KAFKA_COLUMNS)

        def write() -> tuple[str, list[tuple[str, str, int]]]:
            """(who wrote the batch, its stats)."""
            # A job through the Python workers costs ~0.3 s however few rows it carries: most of a small
            # micro-batch's time. So a batch of at most driver_max_rows is fetched and written right here
            # (the same write_messages the executors run); a larger one is spread over the executors, whose
            # Python workers get the Kafka rows as Arrow batches (mapInArrow; no pickled Row per message).
            if driver_max_rows:
                head = rows.limit(driver_max_rows + 1).collect()
                if len(head) <= driver_max_rows:
                    return "the driver", write_messages(
                        [Message(t, p, o, _bytes(k), _bytes(v)) for t, p, o, k, v in head], target, batch)
            return "executors", [tuple(r) for r in rows.mapInArrow(lambda part: write_arrow(part, target, batch),
                                                                   STATS_SCHEMA).collect()]
        # One outage budget per batch: the data writes (executors) and the progress record (driver)
        # share it. Re-running a batch's writes is harmless: each carries its LSN as write timestamp.
        outage = Outage("Cassandra", outage_limit_s)
        began = time.monotonic()
        where, stats = ride_out(write, outage, fatal, f"batch {batch_id}")
        written = time.monotonic()
        ride_out(lambda: progress.record(batch, end_offsets(stats)), outage, fatal, f"batch {batch_id} progress",
                 cleanup=progress.close)
        recorded = time.monotonic()
        if outage.attempts:
            log.info("batch %d: written after %d retries (Cassandra was unreachable for %.0fs)", batch_id,
                     outage.attempts, outage.elapsed())
        totals = summarize(stats)
        processed = sum(sum(c.values()) for c in totals.values())
        for topic in sorted(totals):
            log.info("batch %d %s: %s", batch_id, topic, format_counts(totals[topic]))
        log.info("batch %d: processed %d messages, %d dead letters; written by %s in %.3fs, progress recorded in "
                 "%.3fs", batch_id, processed, sum(c.get("dead_letter", 0) for c in totals.values()), where,
                 written - began, recorded - written)

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
                # durationMs splits the batch's time: latestOffset (asking Kafka), walCommit/commitOffsets
                # (checkpoint files), addBatch (our foreachBatch), triggerExecution (all of it).
                log.info("batch %d progress: %d input rows, %.1f rows/s, lag maxOffsetsBehindLatest=%s "
                         "avgOffsetsBehindLatest=%s, ms %s", p.batchId, p.numInputRows,
                         p.processedRowsPerSecond or 0.0, metrics.get("maxOffsetsBehindLatest", "n/a"),
                         metrics.get("avgOffsetsBehindLatest", "n/a"),
                         " ".join(f"{k}={v}" for k, v in sorted((p.durationMs or {}).items())))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            # The cause is logged once, as one line, by run(); Spark logs the full trace already.
            log.info("query terminated%s", " with an exception" if event.exception else "")

    return LagListener()


def start_query(spark, settings: Settings, once: bool, progress: ProgressRecorder, fatal: Fatal):
    identity = StreamIdentity()
    reader = spark.readStream.format("kafka")
    for key, value in kafka_options(settings).items():
        reader = reader.option(key, value)
    writer = (reader.load().writeStream.queryName(APP_NAME)
              .option("checkpointLocation", checkpoint_location(settings))
              .foreachBatch(make_batch_writer(sink_target(settings), progress, identity, settings.spark.outage_limit_s,
                                              fatal, settings.spark.driver_max_rows)))
    writer = writer.trigger(availableNow=True) if once else \
        writer.trigger(processingTime=f"{settings.spark.trigger_seconds} seconds")
    query = writer.start()
    identity.set(query.id)
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


def login_refused_at_start(progress: ProgressRecorder) -> LoginRefused | None:
    """Open the progress recorder's session before Spark starts: a wrong password then ends the job in a
    second, whether or not a batch would ever come (an idle topic never writes). Cassandra being
    unreachable is not decided here: the batches ride that out (ride_out), so the job starts anyway."""
    try:
        progress.connect()
    except LoginRefused as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - an outage at start: the batches retry it within their limit
        log.warning("Cassandra not reachable at start (%s); starting anyway: each batch rides out an outage "
                    "of up to STREAM_OUTAGE_LIMIT_S", first_line(exc))
    return None


def run(settings: Settings, once: bool, master: str | None) -> int:
    from binance_cdc.stream.spark_session import build_session  # noqa: needs pyspark, kept local to run()

    try:
        # Held until this process ends (the kernel releases it even on kill -9); before Spark starts.
        lock = checkpoint_lock.acquire(checkpoint_location(settings))
    except checkpoint_lock.CheckpointInUse as exc:
        log.error("refusing to start: %s", exc)
        return EXIT_FAILED
    progress = ProgressRecorder(sink_target(settings))
    refused = login_refused_at_start(progress)
    if refused is not None:
        log.error("refusing to start, a configuration error: %s", refused)
        if lock is not None:
            lock.close()
        return EXIT_CONFIG
    fatal = Fatal()
    stop = fatal.stop
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    spark = build_session(APP_NAME, master=master, extra_conf=DRIVER_CONF)
    spark.sparkContext.setLogLevel("WARN")
    quiet_kafka_consumer_warning(spark)
    spark.streams.addListener(progress_listener())
    status = 0
    with tempfile.TemporaryDirectory(prefix="binance_cdc_job_") as tmp:
        spark.sparkContext.addPyFile(str(package_zip(Path(tmp))))
        query = start_query(spark, settings, once, progress, fatal)
        try:
            if once:
                query.awaitTermination()
            else:
                wait(query, stop)
            failure = query.exception()
        except Exception as exc:  # StreamingQueryException from awaitTermination
            failure = exc
        if fatal.refused is not None:
            log.error("stream stopped, a configuration error: %s", fatal.refused)
            status = EXIT_CONFIG
        elif fatal.outage is not None:
            log.error("stream stopped (%s): %s; start it again once Cassandra is back (it resumes from its "
                      "checkpoint)", "on request" if stop.is_set() else
                      f"STREAM_OUTAGE_LIMIT_S={settings.spark.outage_limit_s:g}", fatal.outage)
            status = EXIT_FAILED
        elif failure is not None:
            log.error("streaming query failed: %s", failure)
            status = EXIT_FAILED
        else:
            log.info("streaming query stopped cleanly")
        progress.close()
        try:
            spark.stop()
        except Exception as exc:  # the JVM may already be gone (killed with the process group)
            log.warning("spark: stop failed: %s", exc)
    if lock is not None:
        lock.close()
    return status


