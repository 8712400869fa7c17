"""The sink's central promise, against the real Cassandra: whatever order changes arrive in, and however
often, the rows end up as the change with the latest LSN says (binance_cdc.stream.sink: every write
carries `USING TIMESTAMP <source.lsn>`).

Changes are Debezium-shaped messages built from rows (cdc_helpers.change_history: per dataset one key
created, updated twice, deleted and created again, two keys created and deleted), turned into Plans by
`sink.plan()` and written by `CassandraSink(session, keyspace).apply(plan)` as the stream's writer would,
into a throwaway keyspace made from cql/ with its own writer role (dropped afterwards). After every
`apply`, the rows of every touched partition are read back and compared with `cdc_helpers.latest_state`
of the messages applied so far: the highest LSN per key wins, a delete removes the key. Compared are the
source columns, the bucket and the change metadata (op, LSN, commit and event times, transaction id);
not cdc_written_at, the sink's own clock, which a replay may refresh.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.stream.debezium import decode
from binance_cdc.stream.sink import CassandraSink, plan

import cdc_helpers as h

DATASETS = list(datasets.DATASETS.values())
WRITTEN = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def keyspace(settings):
    with h.throwaway_keyspace(settings, label="itsink") as ks:
        yield ks


@pytest.fixture(scope="module")
def session(keyspace):
    with session_scope(keyspace.cassandra, keyspace.writer) as s:  # the writer's rights, as in the stream
        yield s


@pytest.fixture(scope="module")
def sink(session, keyspace):
    return CassandraSink(session, keyspace.name)


class Applier:
    """Applies chunks of messages as plans and checks the rows after each against the latest LSN."""

    def __init__(self, sink, session, keyspace) -> None:
        self.sink, self.session, self.keyspace = sink, session, keyspace
        self.applied: list = []
        self.written_at = WRITTEN

    def apply(self, chunk: list, what: str) -> None:
        p = plan(chunk, self.written_at)
        assert not p.dead_letters, p.dead_letters
        self.sink.apply(p)
        self.applied += chunk
        self.written_at += timedelta(seconds=1)  # a replay is a new plan, written later
        expected = h.latest_state(self.applied)
        actual = h.cassandra_state(self.session, self.keyspace.name, self.applied)
        for d in DATASETS:
            assert actual[d.name] == expected[d.name], f"{what}: {d.name} differs from the latest LSN"

    def rows(self, dataset) -> dict:
        return h.cassandra_state(self.session, self.keyspace.name, self.applied)[dataset.name]


def by_op(messages, *ops_at) -> list:
    """The messages (and their tombstones) whose (op, LSN modulo 1000) are in `ops_at`."""
    picked = []
    for m in messages:
        if m.value is None:
            if picked and picked[-1].key == m.key and picked[-1].topic == m.topic:
                picked.append(m)
            continue
        change = decode(m.topic, m.key, m.value)
        if (change.op, change.lsn % 1000) in ops_at:
            picked.append(m)
    return picked


def test_the_issue_sequence_older_change_replay_and_a_delete_before_its_insert(sink, session, keyspace):
    messages = h.change_history(h.random_suffix().upper())
    run = Applier(sink, session, keyspace)
    run.apply(by_op(messages, ("c", 100), ("u", 200), ("c", 300)), "a plan")
    first_rows = {d.name: run.rows(d) for d in DATASETS}
    for d in DATASETS:
        assert sorted(r["cdc_op"] for r in first_rows[d.name].values()) == ["c", "u"], d.name
        (a,) = [r for r in first_rows[d.name].values() if r["cdc_op"] == "u"]
        assert a[h.non_key_decimal(d)] == "200.0000020" and a["cdc_source_lsn"] % 1000 == 200
    run.apply(by_op(messages, ("u", 120)), "an older change to the same key")
    assert {d.name: run.rows(d) for d in DATASETS} == first_rows  # the LSN 200 values stayed
    run.apply(by_op(messages, ("c", 100), ("u", 200), ("c", 300)), "the same batch again")
    assert {d.name: run.rows(d) for d in DATASETS} == first_rows
    run.apply(by_op(messages, ("d", 550)), "a delete before the insert it follows")
    run.apply(by_op(messages, ("c", 500)), "the insert the delete follows")
    run.apply(by_op(messages, ("c", 700)), "a re-insert before the delete it follows")
    run.apply(by_op(messages, ("d", 600)), "the delete the re-insert follows")
    run.apply(by_op(messages, ("d", 400)), "the last delete")
    for d in DATASETS:  # A holds its LSN 700 values, B and C are gone
        (a,) = run.rows(d).values()
        assert a[h.non_key_decimal(d)] == "700.00000700" and a["cdc_op"] == "c" and a["cdc_source_lsn"] % 1000 == 700


def chunks(messages: list, order: str) -> list[list]:
    if order == "lsn, one plan":
        return [messages]
    if order == "lsn, one at a time":
        return [[m] for m in messages]
    if order == "reverse, one plan":
        return [messages[::-1]]
    if order == "reverse, one at a time":
        return [[m] for m in messages[::-1]]
    rng = random.Random(order)  # "shuffled N" / "twice N": reproducible per name
    pool = messages + messages if order.startswith("twice") else list(messages)
    rng.shuffle(pool)
    out = []
    while pool:
        size = rng.randint(1, 12)
        out.append(pool[:size])
        pool = pool[size:]
    return out


ORDERS = ["lsn, one plan", "lsn, one at a time", "reverse, one plan", "reverse, one at a time",
          "shuffled 1", "shuffled 2", "shuffled 3", "twice 1", "twice 2"]


@pytest.mark.parametrize("order", ORDERS)
def test_every_arrival_order_ends_at_the_latest_lsn(sink, session, keyspace, order):
    messages = h.change_history(h.random_suffix().upper())
    run = Applier(sink, session, keyspace)
    for n, chunk in enumerate(chunks(messages, order)):
        run.apply(chunk, f"{order}: chunk {n} of {len(chunk)} messages")
    final = h.latest_state(messages)
    assert all(len(final[d.name]) == 1 for d in DATASETS)  # only A is left, at LSN ...700
    assert h.cassandra_state(session, keyspace.name, messages) == final
