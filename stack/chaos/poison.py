"""Poison messages through the live stream: each must become one dead letter with its reason while the
stream goes on writing the load's changes.

The poisons are variants of a real change event the connector produced on the recent_trades topic (so
they carry a real key and LSN): a 5 MiB value (gzip-compressed, as Kafka accepts it), a 5,000-digit
decimal, non-JSON, non-UTF-8, empty, a wrong type, an unknown op, an integer in a timestamptz field and a
JSON number in a decimal field (the same cases as tests/integration/test_stream_poison.py, which proves
them on a throwaway stream). `send()` produces them and returns their offsets; `dead_letters()` reads back
what the stream recorded for those offsets.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from binance_cdc.kafka_client import client_conf

log = logging.getLogger("chaos.poison")

BIG = 5 << 20  # 5 MiB


@dataclass
class Poison:
    kind: str
    value: bytes
    reason: str  # what the dead letter's error must say
    offset: int | None = None
    error: str | None = None  # the dead letter's error, once read back


def latest_change(settings, topic: str) -> tuple[bytes, dict]:
    """The key and decoded value of the newest insert event on `topic` (partition 0)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_conf(settings.kafka), "group.id": "chaos-poison", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, max(low, high - 200))])
        found = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                if found:
                    break
                continue
            if msg.error() or not msg.value():
                continue
            doc = json.loads(msg.value())
            if doc.get("op") == "c":
                found = (msg.key(), doc)
            if msg.offset() >= high - 1:
                break
        if found is None:
            raise RuntimeError(f"no insert event found on {topic}")
        return found
    finally:
        consumer.close()


def poisons(doc: dict) -> list[Poison]:
    def variant(**after) -> bytes:
        changed = json.loads(json.dumps(doc))
        changed["after"].update(after)
        return json.dumps(changed).encode()

    price = doc["after"]["price"]
    as_number = json.dumps(doc).replace(f'"price": "{price}"', f'"price": {price}')
    return [
        Poison("5 MiB value (gzip)", variant(symbol="S" * BIG), "exceeds the 1048576-byte bound of one write"),
        Poison("5000-digit decimal", variant(price="9" * 5000), "decimal of 5000 digits"),
        Poison("non-JSON", b"this is not JSON", "malformed JSON in value"),
        Poison("non-UTF-8", b"\xff\xfe\xfd", "'utf-8' codec can't decode"),
        Poison("empty", b"", "malformed JSON in value"),
        Poison("wrong type", variant(is_buyer_maker=1), "expected true/false"),
        Poison("unknown op", json.dumps({**doc, "op": "x"}).encode(), "unknown op 'x'"),
        Poison("integer in timestamptz", variant(trade_time=1775001601123), "in a time column"),
        Poison("JSON number in decimal", as_number.encode(), "in a decimal column"),
    ]


def send(settings, topic: str) -> list[Poison]:
    from confluent_kafka import Producer

    key, doc = latest_change(settings, topic)
    batch = poisons(doc)
    producer = Producer({**client_conf(settings.kafka), "compression.type": "gzip", "message.max.bytes": 2 * BIG,
                         "enable.idempotence": True})

    def delivered(poison: Poison):
        def callback(err, msg) -> None:
            if err is None:
                poison.offset = msg.offset()
        return callback

    for poison in batch:
        producer.produce(topic, key=key, value=poison.value, on_delivery=delivered(poison))
    if producer.flush(60) != 0 or any(p.offset is None for p in batch):
        raise RuntimeError(f"could not deliver the poison messages to {topic}")
    log.info("poison: %d messages at offsets %s of %s", len(batch), [p.offset for p in batch], topic)
    return batch


def dead_letters(settings, session, topic: str, batch: list[Poison], timeout: float = 180.0) -> list[Poison]:
    """Fills each poison's `error` from the dead letter at its offset, waiting for the stream to get there."""
    deadline = time.monotonic() + timeout
    wanted = {p.offset: p for p in batch}
    while True:
        today = datetime.now(timezone.utc).date()
        for day in (today, today - timedelta(days=1)):
            for offset, error in session.execute(
                    f"SELECT kafka_offset, error FROM {settings.cassandra.keyspace}.dead_letters "
                    "WHERE topic = %s AND received_date = %s AND partition = 0", (topic, day)):
                if offset in wanted:
                    wanted[offset].error = error
        if all(p.error for p in batch) or time.monotonic() > deadline:
            return batch
        time.sleep(2)
