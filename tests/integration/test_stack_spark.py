"""A local SparkSession from build_session() reads Kafka and writes Cassandra with only the local jars.

One unique JSON message goes to a fresh topic (confluent-kafka); Spark reads it with the batch Kafka source,
writes it through the spark-cassandra-connector as the application role into a table the admin created in
the pipeline keyspace, and the Python driver reads back the exact values (a decimal keeps every digit and
its scale). Needs Kafka and Cassandra up (`make up`); the test waits for `python -m stack status kafka`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import stack.kafka
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.settings import PROJECT_ROOT
from binance_cdc.spark_session import build_session, local_jars

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
    yield name, row_id
    admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture
def cassandra_table(settings):
    table = f"it_spark_{uuid.uuid4().hex[:12]}"
    admin_login = {"user": settings.cassandra_admin_user, "password": settings.secret("cassandra_admin_password")}
    with session_scope(settings, **admin_login) as admin:
        admin.execute(f"CREATE TABLE {settings.cassandra_keyspace}.{table} (id text PRIMARY KEY, symbol text, "
                      f"price decimal, qty bigint, event_time timestamp)")
        yield table
        admin.execute(f"DROP TABLE IF EXISTS {settings.cassandra_keyspace}.{table}")


@pytest.fixture(scope="module")
def spark(settings):
    session = build_session(settings, "it-stack-spark", master="local[2]",
                            extra_conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def test_session_uses_only_local_jars_in_utc(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.jars").split(",") == local_jars()
    assert conf.get("spark.jars.packages", None) is None
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"


def test_kafka_message_reaches_cassandra_with_exact_values(spark, settings, topic_with_one_message,
                                                          cassandra_table):
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    topic, row_id = topic_with_one_message
    schema = StructType([StructField("id", StringType()), StructField("symbol", StringType()),
                         StructField("price", StringType()), StructField("qty", LongType()),
                         StructField("event_time", StringType())])
    raw = (spark.read.format("kafka")
           .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
           .option("subscribe", topic)
           .option("startingOffsets", "earliest")
           .option("endingOffsets", "latest")
           .load())
    rows = (raw.select(F.from_json(F.col("value").cast("string"), schema).alias("j")).select("j.*")
            .withColumn("event_time", F.to_timestamp("event_time")))
    # price stays a string: the connector parses it straight into Cassandra's BigDecimal, keeping the scale.
    assert rows.count() == 1
    (rows.write.format("org.apache.spark.sql.cassandra")
     .options(keyspace=settings.cassandra_keyspace, table=cassandra_table)
     .mode("append").save())

    with session_scope(settings) as app:
        got = app.execute(f"SELECT id, symbol, price, qty, event_time FROM {settings.cassandra_keyspace}."
                          f"{cassandra_table}").all()
    assert len(got) == 1
    row = got[0]
    assert (row.id, row.symbol, row.qty) == (row_id, "BTCUSDT", QTY)
    assert row.price == Decimal(PRICE)
    assert str(row.price) == PRICE
    # The driver returns timestamps as naive UTC datetimes.
    assert row.event_time.replace(tzinfo=timezone.utc) == EVENT_TIME
