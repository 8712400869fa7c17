"""A local SparkSession from build_session() reads Kafka with only the local jars, in UTC.

One unique JSON message goes to a fresh topic (confluent-kafka); Spark reads it with the batch Kafka source
and hands the sink exactly the bytes that were produced (a decimal keeps every digit and its scale).
Needs Kafka up (`make up`); the test waits for `python -m stack status kafka`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import stack.kafka
from binance_cdc.settings import PROJECT_ROOT
from binance_cdc.stream.spark_session import build_session, local_jars

pytestmark = pytest.mark.timeout(600)

PRICE = "2820413769.36626970"
QTY = 9007199254740993  # 2**53 + 1: lost by any float on the way
EVENT_TIME = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def kafka_config(settings):
    deadline = time.monotonic() + 300
    while True:
        result = subprocess.run([sys.executable, "-m", "stack", "status", "kafka"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True)
        if result.returncode == 0:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"kafka not up after 300s: {result.stdout}{result.stderr}")
        time.sleep(5)
    return stack.kafka.admin_config(settings)


@pytest.fixture
def topic_with_one_message(kafka_config):
    name = f"it-spark-{uuid.uuid4().hex}"
    admin = AdminClient(kafka_config)
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)
    row_id = uuid.uuid4().hex
    value = (f'{{"id": "{row_id}", "symbol": "BTCUSDT", "price": "{PRICE}", "qty": {QTY}, '
             f'"event_time": "{EVENT_TIME.isoformat().replace("+00:00", "Z")}"}}')
    delivered = []
    producer = Producer({**kafka_config, "acks": "all"})
    producer.produce(name, key=row_id.encode(), value=value.encode(),
                     on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0 and delivered == [None], delivered
    yield name, row_id, value.encode()
    admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture(scope="module")
def spark():
    session = build_session("it-stack-spark", master="local[2]", extra_conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def test_session_uses_only_local_jars_in_utc(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.jars").split(",") == local_jars()
    assert not any("cassandra" in jar for jar in local_jars())  # the sink writes with cassandra-driver
    assert conf.get("spark.jars.packages", None) is None
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"


def test_kafka_source_delivers_the_message_bytes_unchanged(spark, settings, topic_with_one_message):
    topic, row_id, value = topic_with_one_message
    raw = (spark.read.format("kafka")
           .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
           .option("subscribe", topic)
           .option("startingOffsets", "earliest")
           .option("endingOffsets", "latest")
           .load())
    rows = raw.select("topic", "partition", "offset", "key", "value").collect()
    assert len(rows) == 1
    row = rows[0]
    assert (row.topic, row.partition, row.offset) == (topic, 0, 0)
    assert bytes(row.key) == row_id.encode()
    # The sink decodes these bytes itself: any re-encoding on the way would change digits or scale.
    assert bytes(row.value) == value
    assert PRICE.encode() in bytes(row.value) and str(QTY).encode() in bytes(row.value)
