"""Stage 3: Debezium change events (Kafka) -> Cassandra keyspace `binance_test`, with Spark Structured Streaming.

One streaming query reads the five topics `<TOPIC_PREFIX>.binance.<table>` and, in each micro-batch, decodes
and writes on the executors (binance_cdc.stream.debezium + binance_cdc.stream.sink): upserts and deletes carry
`USING TIMESTAMP <source LSN>`, so the later Postgres change always wins and replays are harmless;
tombstones are skipped and counted; messages that cannot be decoded or written go to `dead_letters` (no single
message stops the stream; see binance_cdc.stream.sink). Offsets live in the durable
checkpoint SPARK_CHECKPOINT_DIR: a restart resumes where the last committed batch ended.
Each batch logs its counts per topic (rows by op, tombstones, dead letters) and the Kafka lag
(maxOffsetsBehindLatest). A failed query is logged and the job exits with status 1.
Cassandra unreachable (a restart): writes are retried with backoff and the batch is run again, for up to
STREAM_OUTAGE_LIMIT_S (default 120 s); a longer outage ends the job with one ERROR line naming the cause.
Cassandra refusing the login (a wrong CASSANDRA_APP_USER or CASSANDRA_APP_PASSWORD) is not retried: one ERROR
line names the two variables and the job exits 2, like any other configuration error.
A second job on the same (local) checkpoint is refused: the running one holds <checkpoint>/stream.lock.
The job does not restart itself: run it under a supervisor (systemd Restart=on-failure, a Kubernetes
restartPolicy, spark-submit --supervise in standalone/Mesos cluster mode, YARN's max attempts), which
restarts it from its checkpoint.

Run card
--------
Local stack (`make up`; settings from .env), master local[2]:

    .venv/bin/python spark_streaming.py                  # runs until Ctrl-C / SIGTERM (graceful stop)
    .venv/bin/python spark_streaming.py --once           # everything available now, then exit
    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit spark_streaming.py --log-level DEBUG

spark-submit needs no --jars: the Kafka source's jars (.local/lib/spark, from `make setup`) reach the
executors through spark.jars and the already running driver JVM through its class loader (see
binance_cdc.stream.spark_session); a --jars that brings them anyway is harmless.

Cluster, Confluent Cloud and a remote Cassandra (executors need `pip install cassandra-driver==3.30.1`
and Python 3.11; the job ships its own binance_cdc package to them as a zip, so they need no checkout;
tests/integration/test_spark_submit.py runs it on a local standalone master and worker):

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
import sys

from binance_cdc.settings import script_settings
from binance_cdc.stream.job import EXIT_CONFIG, SETTINGS_GROUPS, run
from binance_cdc.stream.spark_session import launched_by_spark_submit

log = logging.getLogger("spark_streaming")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kafka (Debezium) -> Cassandra streaming job")
    parser.add_argument("--once", action="store_true", help="process what is available now, then exit")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--master", default=None, help="Spark master when not given by spark-submit "
                                                       "(default local[2,3]: two cores, 3 attempts per task)")
    args = parser.parse_args(argv)
    settings = script_settings(*SETTINGS_GROUPS, level=args.log_level)
    if settings is None:
        return EXIT_CONFIG
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not launched_by_spark_submit():
        # Local Python workers must run this interpreter (its venv has cassandra-driver), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return run(settings, args.once, args.master)


if __name__ == "__main__":
    sys.exit(main())
