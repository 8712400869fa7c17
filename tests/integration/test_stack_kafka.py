"""The local Kafka broker (stack/kafka.py) stores and serves a record: produce one unique message to a fresh
topic with confluent-kafka and read exactly it back. Needs `make up` (or `python -m stack up kafka`)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import stack.kafka

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kafka_config(settings):
    stack.kafka.wait_ready(settings, timeout=60)
    return stack.kafka.admin_config(settings)


@pytest.fixture
def fresh_topic(kafka_config):
    admin = AdminClient(kafka_config)
    name = f"it-stack-kafka-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def test_broker_answers_for_its_own_cluster(settings, kafka_config):
    metadata = AdminClient(kafka_config).list_topics(timeout=10)
    assert metadata.cluster_id == stack.kafka.cluster_id()
    assert [b.port for b in metadata.brokers.values()] == [stack.kafka.listener_address(settings)[1]]


def test_produced_message_is_consumed_unchanged(kafka_config, fresh_topic):
    key = uuid.uuid4().hex.encode()
    payload = f'{{"symbol": "BTCUSDT", "price": "67012.34000000", "probe": "{uuid.uuid4()}"}}'.encode()
    delivered = []
    producer = Producer({**kafka_config, "acks": "all", "enable.idempotence": True})
    producer.produce(fresh_topic, key=key, value=payload, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(30) == 0
    assert delivered and delivered[0][0] is None, delivered

    consumer = Consumer({**kafka_config, "group.id": f"it-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([fresh_topic])
    received = []
    try:
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            received.append(msg)
    finally:
        consumer.close()

    assert len(received) == 1, f"no message on {fresh_topic} within 60s"
    assert (received[0].key(), received[0].value()) == (key, payload)
    assert (received[0].partition(), received[0].offset()) == (0, 0)


def test_bootstrap_creates_the_five_debezium_topics(settings):
    """The stream subscribes to all five topics and fails while one is missing (a table no change has
    touched yet, e.g. right after `make up` on a fresh stack): `make up` creates them."""
    import os

    from binance_cdc.kafka_client import topics
    from binance_cdc.settings import load_settings

    prefix = f"itbootstrap{uuid.uuid4().hex[:8]}"
    moved = load_settings(env={**os.environ, "TOPIC_PREFIX": prefix})
    names = topics(moved.kafka)
    admin = AdminClient(stack.kafka.admin_config(settings))
    try:
        stack.kafka.bootstrap(moved)
        existing = admin.list_topics(timeout=10).topics
        assert all(name in existing and len(existing[name].partitions) == 1 for name in names), names
        assert stack.kafka.ensure_topics(moved, names) == []  # idempotent
    finally:
        present = [n for n in names if n in admin.list_topics(timeout=10).topics]
        for future in (admin.delete_topics(present).values() if present else ()):
            future.result(timeout=30)
