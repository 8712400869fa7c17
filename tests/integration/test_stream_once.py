"""`spark_streaming.py --once` against the real Kafka and Cassandra: it processes everything already in its
topics, in as many micro-batches as SPARK_MAX_OFFSETS_PER_TRIGGER needs, writes the rows the latest LSN
says, dead-letters what it cannot decode, and exits 0; a second `--once` from the same checkpoint finds
nothing new and writes nothing again.

The job runs as a subprocess (tests/stream_process.py) on a throwaway topic prefix (five topics created
here and deleted afterwards), a fresh checkpoint under a tmp dir and a throwaway keyspace made from cql/
with its own writer role, so neither the pipeline's own stream nor its keyspace is involved. The messages
are Debezium-shaped change events built from rows (cdc_helpers.change_history), produced in reverse LSN
order per topic, with their tombstones and one malformed message.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.stream.sink import DEAD_LETTER_TABLE, Message
from tests.stream_process import StreamProcess

import cdc_helpers as h

pytestmark = pytest.mark.timeout(900)

MAX_OFFSETS = 10  # per trigger: the backlog below needs several micro-batches
BATCH_DONE = re.compile(r"batch (\d+): processed (\d+) messages, (\d+) dead letters")


@pytest.fixture(scope="module")
def backlog(settings, tmp_path_factory):
    """The throwaway namespace with its topics filled; yields (keyspace, prefix, messages, tmp dir)."""
    prefix = f"itonce{h.random_suffix()}"
    topics = h.topics_for(prefix)
    history = h.change_history(h.random_suffix().upper(), prefix)
    by_topic: dict[str, list[Message]] = {}
    for m in history:
        by_topic.setdefault(m.topic, []).append(m)
    messages = [m for t in topics for m in reversed(by_topic[t])]  # newest change first on every topic
    bad_topic = f"{prefix}.{datasets.LATEST_PRICES.topic_suffix}"
    messages.append(Message(bad_topic, 0, 0, b'{"symbol":"BROKEN"}', b'{"op": "c", "after": {"symbol"'))
    with h.throwaway_keyspace(settings, label="itonce") as keyspace:
        h.create_topics(settings, topics)
        try:
            h.produce_all(settings, messages)
            yield keyspace, prefix, messages, tmp_path_factory.mktemp("once")
        finally:
            h.delete_topics(settings, topics)


def run_once(backlog, log_name: str) -> list[tuple[int, int, int]]:
    keyspace, prefix, _, tmp = backlog
    env = h.stream_env(keyspace, prefix, tmp / "checkpoint", SPARK_MAX_OFFSETS_PER_TRIGGER=str(MAX_OFFSETS))
    text = StreamProcess(env, tmp / log_name, once=True).run(timeout=600)  # raises on a non-zero exit
    assert "streaming query stopped cleanly" in text
    return [tuple(map(int, m)) for m in BATCH_DONE.findall(text)]


@pytest.fixture(scope="module")
def first_run(backlog):
    return run_once(backlog, "first.log")


def test_once_drains_the_topics_writes_the_latest_rows_and_exits_0(backlog, first_run):
    keyspace, prefix, messages, _ = backlog
    batches = first_run
    assert sum(n for _, n, _ in batches) == len(messages)  # every message processed exactly once
    # several micro-batches within the rate limit, not one big one (slack: rounding per topic partition)
    assert len([b for b in batches if b[1]]) >= 2 and max(n for _, n, _ in batches) <= MAX_OFFSETS + 5
    assert sum(dead for _, _, dead in batches) == 1
    with session_scope(keyspace.cassandra, keyspace.writer) as session:
        expected = h.latest_state(messages)
        assert all(len(expected[d]) == 1 for d in datasets.DATASETS)
        assert h.cassandra_state(session, keyspace.name, messages) == expected
        bad_topic = f"{prefix}.{datasets.LATEST_PRICES.topic_suffix}"
        today = datetime.now(timezone.utc).date()
        dead = [r for day in (today, today - timedelta(days=1)) for r in session.execute(
            f"SELECT * FROM {keyspace.name}.{DEAD_LETTER_TABLE} WHERE topic = %s AND received_date = %s",
            (bad_topic, day))]
        assert [(r.kafka_key, r.partition) for r in dead] == [(b'{"symbol":"BROKEN"}', 0)]
        assert "malformed JSON in value" in dead[0].error


def test_a_second_once_from_the_same_checkpoint_processes_nothing(backlog, first_run):
    keyspace, _, messages, _ = backlog
    with session_scope(keyspace.cassandra, keyspace.writer) as session:
        before = session.execute(f"SELECT symbol, cdc_written_at FROM {keyspace.name}.latest_prices").all()
        assert len(before) == 1
        batches = run_once(backlog, "second.log")
        assert sum(n for _, n, _ in batches) == 0, batches
        after = session.execute(f"SELECT symbol, cdc_written_at FROM {keyspace.name}.latest_prices").all()
    assert after == before  # not written again: cdc_written_at would have moved
