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

from binance_cdc import change_log, datasets
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


def recorded_messages() -> list:
    import json
    from pathlib import Path

    from binance_cdc.stream.sink import Message

    out = []
    for path in sorted((Path(__file__).resolve().parent.parent / "fixtures" / "debezium").glob("[ps]*_*.json")):
        for r in json.loads(path.read_text()):
            enc = lambda s: None if s is None else s.encode()  # noqa: E731
            out.append(Message(r["topic"], r["partition"], r["offset"], enc(r["key"]), enc(r["value"])))
    return out


def stored_rows(session, keyspace: str, messages) -> dict:
    """Every column of every row in the touched partitions, exactly (decimal scale kept), with the write
    time Cassandra holds for each row (the LSN the write carried)."""
    state = {}
    for table, rows in h.cassandra_state(session, keyspace, messages).items():
        d = datasets.get(table)
        where = " AND ".join(f"{c} = %s" for c in (*d.cql_partition_key, *d.cql_clustering_key))
        for key in rows:
            names = (*d.cql_partition_key, *d.cql_clustering_key)
            typed = change_log.decode_key(d, names, [str(v) for v in key])
            columns = ", ".join(d.cql_columns)
            row = session.execute(f"SELECT {columns}, writetime(cdc_op) AS wt FROM {keyspace}.{table} "
                                  f"WHERE {where}", typed).one()._asdict()
            state[(table, key)] = {c: h.comparable(v) for c, v in row.items()}
    return state


def test_fast_and_reference_paths_store_identical_rows_and_write_times(settings, sink, session, keyspace):
    """Both decoders (binance_cdc/stream/fast_decode.py and the reference), written to two keyspaces: every
    column (cdc_written_at included: one plan clock) and every row's write time are the same."""
    messages = h.change_history(h.random_suffix().upper()) + recorded_messages()
    fast = plan(messages, WRITTEN)
    assert sum(w.serialized for w in fast.writes) > len(messages) // 3  # the fast path did take most upserts
    sink.apply(fast)
    with h.throwaway_keyspace(settings, label="itref") as other, \
            session_scope(other.cassandra, other.writer) as other_session:
        CassandraSink(other_session, other.name).apply(plan(messages, WRITTEN, fast=False))
        reference_rows = stored_rows(other_session, other.name, messages)
    fast_rows = stored_rows(session, keyspace.name, messages)
    assert fast_rows == reference_rows and len(fast_rows) >= 10


def test_a_row_cassandra_refuses_is_a_dead_letter_and_its_batch_neighbours_are_written(sink, session, keyspace):
    """A clustering key over Cassandra's 64 KiB limit passes every check before the server (Postgres text
    holds it), and the server refuses the whole single-partition batch it is in (InvalidRequest). The batch
    is sent again row by row: the neighbours are written, the refused row becomes a dead letter."""
    d = datasets.ORDER_BOOK
    symbol = f"T{h.random_suffix().upper()}RUSDT"
    rows = [h.sample_row(d, symbol, 0), h.sample_row(d, symbol, 2)]
    huge = {**h.sample_row(d, symbol, 4), "side": "x" * 70_000}
    messages = [h.change_message(d, "c", r, 5_000 + i, offset=i) for i, r in enumerate([rows[0], huge, rows[1]])]
    p = plan(messages, WRITTEN)
    assert len({w.partition_key for w in p.writes}) == 1 and not p.dead_letters  # one batch of three
    sink.apply(p)
    assert [dl.message.offset for dl in p.dead_letters] == [1]
    assert "Cassandra refused the write" in p.dead_letters[0].error
    assert dict(p.counts[messages[0].topic]) == {"c": 2, "dead_letter": 1}
    stored = h.cassandra_state(session, keyspace.name, [messages[0], messages[2]])[d.name]
    assert len(stored) == 2 and {r["side"] for r in stored.values()} == {"bid"}
