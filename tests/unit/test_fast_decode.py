"""The fast path (binance_cdc/stream/fast_decode.py) against the reference decoder: on every recorded event and
on a few thousand malformed or unusual ones, `plan(fast=True)` and `plan(fast=False)` must give the same bytes
on the wire (the fast path's serialized values against the Cassandra driver's own serializers applied to the
reference's typed values, as bind() does), the same keys, the same dead letters with the same reasons and the
same counts. No services needed."""

from __future__ import annotations

import copy
import json
import random
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from cassandra import cqltypes

from binance_cdc import datasets
from binance_cdc.stream import fast_decode
from binance_cdc.stream.sink import Message, plan, upsert_columns

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"
WRITTEN = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)


def recorded(variant: str, table: str) -> list[Message]:
    recs = json.loads((FIXTURES / f"{variant}_{table}.json").read_text())
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return [Message(r["topic"], r["partition"], r["offset"], enc(r["key"]), enc(r["value"])) for r in recs]


# The driver's serializer per CQL kind: what BoundStatement.bind() applies to each value.
WIRE = {"text": cqltypes.UTF8Type, "decimal": cqltypes.DecimalType, "timestamp": cqltypes.DateType,
        "bigint": cqltypes.LongType, "int": cqltypes.Int32Type, "boolean": cqltypes.BooleanType,
        "date": cqltypes.SimpleDateType}
PROTOCOL = 4


def wire(kind: str, value):
    """The bytes bind() sends, or what it would raise (the sink then dead-letters the row: bind_all)."""
    try:
        return None if value is None else WIRE[kind].serialize(value, PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        return f"refused by the driver: {type(exc).__name__}"


def normalized(write) -> tuple:
    """A write as the bytes its statement sends: the fast path's as they are, the reference's as bind() would
    serialize them."""
    d = datasets.get(write.table)
    kinds = d.cql_columns
    if write.serialized:
        assert len(write.params) == len(kinds) + 1
        values = tuple(write.params)
    elif write.delete:
        values = (wire("bigint", write.params[0]), *write.params[1:])
    else:
        values = (*(wire(kinds[c], v) for c, v in zip(upsert_columns(d), write.params[:-1])),
                  wire("bigint", write.params[-1]))
    return (write.table, write.delete, write.partition_key, write.clustering_key, write.topic, write.offset,
            write.op, values)


def assert_same(messages: list[Message]) -> int:
    """Both paths agree on `messages`; returns how many writes the fast path made itself."""
    fast, reference = plan(messages, WRITTEN), plan(messages, WRITTEN, fast=False)
    assert [normalized(w) for w in fast.writes] == [normalized(w) for w in reference.writes]
    assert [(d.message, d.error) for d in fast.dead_letters] == \
        [(d.message, d.error) for d in reference.dead_letters]
    assert fast.counts == reference.counts
    assert fast.touched() == reference.touched()
    return sum(w.serialized for w in fast.writes)


@pytest.mark.parametrize("table", list(datasets.DATASETS))
def test_recorded_events_give_the_same_rows_and_the_fast_path_takes_every_plain_upsert(table):
    plain = recorded("plain", table)
    upserts = sum(1 for m in plain if m.value and json.loads(m.value)["op"] in "cru")
    assert assert_same(plain) == upserts > 0
    assert assert_same(recorded("schema", table)) == 0  # the wrapper always takes the reference path


def upsert_docs() -> list[tuple[Message, dict]]:
    out = []
    for table in datasets.DATASETS:
        for m in recorded("plain", table):
            if m.value and json.loads(m.value)["op"] in "cru":
                out.append((m, json.loads(m.value)))
    return out


def variant(message: Message, doc: dict, offset: int) -> Message:
    return Message(message.topic, message.partition, offset, message.key, json.dumps(doc).encode())


ODD_VALUES = [
    None, "", " 1", "1e5", "1E-8", "+1", "-0.0", "007.50", "1.2.3", "NaN", "Infinity", "1" * 40, "1" * 41,
    "1" * 40 + "." + "2" * 40, "0." + "0" * 39 + "1", 1.5, 0, -1, 2 ** 31, 2 ** 63, -(2 ** 63) - 1, True, False,
    [1], {"a": 1}, "x" * 1000, "x" * 1001, "é", "BTC\u0000", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.1Z",
    "2026-01-01T00:00:00.123Z", "2026-01-01T00:00:00.123000Z", "2026-01-01T00:00:00.1234Z",
    "2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+01:00",
    "2026-01-01 00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:59:60Z",
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-01-01T00:00:00",
    "2026-1-01T00:00:00Z", "１２３", "2026-01-01",
]
ENVELOPE_EDITS = [
    ("op", "x"), ("op", "d"), ("op", None), ("op", "t"), ("after", None), ("after", []), ("source", None),
    ("source.lsn", -1), ("source.lsn", 1.0), ("source.lsn", True), ("source.lsn", 2 ** 63), ("source.lsn", "5"),
    ("source.ts_ms", None), ("source.ts_ms", -1), ("source.ts_ms", 253_402_300_800_000), ("source.txId", "12"),
    ("source.txId", None), ("source.txId", -3), ("ts_ms", None), ("ts_ms", 1.5), ("ts_ms", -5),
    ("payload", {}), ("schema", None), ("transaction", {"id": "1:2", "total_order": 1}),
]


def edited(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    parts = path.split(".")
    target = doc
    for p in parts[:-1]:
        target = target[p]
    if value is None and parts[-1] in ("ts_ms",) and target is doc:
        target.pop(parts[-1])
    else:
        target[parts[-1]] = value
    return doc


def test_every_odd_value_in_every_column_gives_the_same_result():
    messages, fast_taken = [], 0
    for message, doc in upsert_docs():
        for column in doc["after"]:
            for value in ODD_VALUES:
                messages.append(variant(message, edited(doc, f"after.{column}", value), len(messages)))
    fast_taken = assert_same(messages)
    assert fast_taken > 0  # some odd values are fine (a null in a nullable column, other valid times...)


def test_envelope_edits_missing_and_extra_columns_give_the_same_result():
    messages = []
    for message, doc in upsert_docs():
        for path, value in ENVELOPE_EDITS:
            messages.append(variant(message, edited(doc, path, value), len(messages)))
        column = next(iter(doc["after"]))
        missing = copy.deepcopy(doc)
        del missing["after"][column]
        extra = copy.deepcopy(doc)
        extra["after"]["surprise"] = 1
        messages += [variant(message, missing, len(messages)), variant(message, extra, len(messages) + 1)]
    assert_same(messages)


def test_malformed_bytes_give_the_same_dead_letters():
    message, doc = upsert_docs()[0]
    text = json.dumps(doc)
    duplicate = text.replace('"op": ', '"op": "x", "op": ', 1)
    raws = [b"", b"null", b"[]", b"{", b"\xff\xfe", text.encode()[:-1], text.encode("utf-16"),
            ("\ufeff" + text).encode(), duplicate.encode(), text.replace('"op"', '"op"  ').encode(),
            b"[" * 5000, text.encode() + b" x", text.replace("true", "tru").encode()]
    messages = [Message(message.topic, 0, i, message.key, raw) for i, raw in enumerate(raws)]
    messages.append(Message("elsewhere.unknown.topic", 0, 99, None, text.encode()))
    messages.append(Message(message.topic, 0, 100, message.key, None))
    assert_same(messages)


def test_random_combinations_give_the_same_result():
    rng = random.Random(20261202)
    docs = upsert_docs()
    messages = []
    for i in range(1500):
        message, doc = rng.choice(docs)
        doc = copy.deepcopy(doc)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.7 and isinstance(doc.get("after"), dict) and doc["after"]:
                doc = edited(doc, f"after.{rng.choice(list(doc['after']))}", rng.choice(ODD_VALUES))
            else:
                try:
                    doc = edited(doc, *rng.choice(ENVELOPE_EDITS))
                except (KeyError, TypeError):
                    pass
        messages.append(variant(message, doc, i))
    assert_same(messages)


def test_sub_millisecond_and_offset_times_leave_the_fast_path():
    assert fast_decode.zoned_ms("2026-01-01T00:00:00.123Z")[0] == 1767225600123
    assert fast_decode.zoned_ms("2026-01-01T00:00:00.123400Z") is None
    assert fast_decode.zoned_ms("2026-01-01T00:00:00+00:00") is None
    assert fast_decode.zoned_ms("2026-02-29T00:00:00Z") is None  # 2026 is no leap year


def test_a_fast_path_bug_costs_speed_not_rows(monkeypatch):
    message, _ = upsert_docs()[0]

    def broken(self, value, written_ms):
        raise KeyError("a bug")
    monkeypatch.setattr(fast_decode.FastDecoder, "upsert", broken)
    p = plan([message], WRITTEN)
    assert len(p.writes) == 1 and not p.writes[0].serialized and not p.dead_letters
