"""Issue 9, findings 2 and 3, on the live stream: poison messages go through `spark_streaming.py --once`, and
the job still exits 0, dead-letters each one with its reason, writes the valid change that follows them,
and writes nothing else.

Before the fix a 5 MiB value (produced with gzip, which Kafka accepts) failed the dead-letter write
("CQL Message of size ... exceeds allowed maximum of 4194304 bytes") and a 5,000-digit decimal failed the
driver ("Exceeds the limit (4300 digits)"): the task failed its attempts and the job exited 1, again on
every restart. An integer in a timestamptz field was read as microseconds and a JSON number in a decimal
column taken as exact, both written as rows.

Same isolation as tests/integration/test_stream_once.py: a throwaway topic prefix (five topics, deleted
afterwards), a fresh checkpoint in a tmp dir, a throwaway keyspace made from cql/ with its own writer role.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.kafka_client import client_conf as kafka_conf
from binance_cdc.stream.sink import DEAD_LETTER_MAX_PAYLOAD, DEAD_LETTER_TABLE, Message
from tests.stream_process import StreamProcess

import cdc_helpers as h

pytestmark = pytest.mark.timeout(600)

DATASET = datasets.RECENT_TRADES
BIG = 5 << 20  # 5 MiB


def poison_and_valid(prefix: str, tag: str) -> tuple[list[tuple[str, bytes, bytes, str]], Message]:
    """[(kind, key, value, what the reason must say)] for every poison, and the valid change sent after them."""
    row = h.sample_row(DATASET, f"T{tag}USDT")
    valid = h.change_message(DATASET, "c", row, lsn=5_000, prefix=prefix)
    doc = json.loads(valid.value)

    def variant(**after) -> bytes:
        changed = json.loads(valid.value)
        changed["after"].update(after)
        return json.dumps(changed).encode()

    as_number = json.dumps(doc).replace(f'"price": "{doc["after"]["price"]}"', f'"price": {doc["after"]["price"]}')
    assert as_number != json.dumps(doc)
    poisons = [
        ("5 MiB value", variant(symbol="S" * BIG), "exceeds the 1048576-byte bound of one write"),
        ("5000-digit decimal", variant(price="9" * 5000), "decimal of 5000 digits: the Cassandra driver converts"),
        ("non-JSON", b"this is not JSON", "malformed JSON in value"),
        ("non-UTF-8", b"\xff\xfe\xfd", "malformed JSON in value: 'utf-8' codec can't decode"),
        ("empty", b"", "malformed JSON in value: Expecting value"),
        ("wrong type", variant(is_buyer_maker=1), "after.is_buyer_maker (boolean): expected true/false"),
        ("unknown op", json.dumps({**doc, "op": "x"}).encode(), "unknown op 'x'"),
        ("integer in timestamptz", variant(trade_time=1775001601123), "in a time column without a schema"),
        ("JSON number in decimal", as_number.encode(), "in a decimal column: the connector sends decimals as strings"),
    ]
    return [(kind, valid.key, value, reason) for kind, value, reason in poisons], valid


def produce_gzip(settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """In order, gzip-compressed: the 5 MiB value reaches the broker as a small batch, as in the issue."""
    from confluent_kafka import Producer

    producer = Producer({**kafka_conf(settings.kafka), "compression.type": "gzip",
                         "message.max.bytes": 2 * BIG, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not deliver {len(records)} messages to {topic}")


def test_poison_messages_become_dead_letters_and_the_stream_goes_on(settings, tmp_path):
    prefix = f"itpoison{h.random_suffix()}"
    topics = h.topics_for(prefix)
    topic = f"{prefix}.{DATASET.topic_suffix}"
    poisons, valid = poison_and_valid(prefix, h.random_suffix().upper())
    with h.throwaway_keyspace(settings, label="itpoison") as keyspace:
        h.create_topics(settings, topics)
        try:
            produce_gzip(settings, topic, [(key, value) for _, key, value, _ in poisons] + [(valid.key, valid.value)])
            env = h.stream_env(keyspace, prefix, tmp_path / "checkpoint")
            text = StreamProcess(env, tmp_path / "poison.log", once=True).run(timeout=400)  # raises unless exit 0
        finally:
            h.delete_topics(settings, topics)
        assert "streaming query stopped cleanly" in text
        assert "Exceeds the limit" not in text and "exceeds allowed maximum" not in text

        with session_scope(keyspace.cassandra, keyspace.writer) as session:
            today = datetime.now(timezone.utc).date()
            dead = {r.kafka_offset: r for day in (today, today - timedelta(days=1)) for r in session.execute(
                f"SELECT * FROM {keyspace.name}.{DEAD_LETTER_TABLE} WHERE topic = %s AND received_date = %s",
                (topic, day))}
            assert sorted(dead) == list(range(len(poisons))), "one dead letter per poison, nothing more"
            for offset, (kind, key, value, reason) in enumerate(poisons):
                letter = dead[offset]
                assert reason in letter.error, (kind, letter.error)
                assert letter.kafka_key == key and letter.payload_size == len(value), kind
                assert letter.payload_sha256 == hashlib.sha256(value).hexdigest(), kind
                if len(value) > DEAD_LETTER_MAX_PAYLOAD:
                    assert letter.payload == value[:DEAD_LETTER_MAX_PAYLOAD], kind
                    assert f"payload cut to {DEAD_LETTER_MAX_PAYLOAD} of {len(value)} bytes" in letter.error
                else:
                    assert letter.payload == value, kind

            # The valid change arrived, and it is the only row the stream wrote anywhere.
            assert h.cassandra_state(session, keyspace.name, [valid]) == h.latest_state([valid])
            for d in datasets.DATASETS.values():
                rows = session.execute(f"SELECT * FROM {keyspace.name}.{d.name}").all()
                assert len(rows) == (1 if d is DATASET else 0), (d.name, rows)
            other = session.execute(f"SELECT topic FROM {keyspace.name}.{DEAD_LETTER_TABLE}").all()
            assert {r.topic for r in other} == {topic}
