"""The fast path of the decoder: the one event shape our connectors send, straight to a Cassandra JSON insert.

Almost every message is a create, snapshot read or update in the plain JSON layout (no schema wrapper) with
decimals as plain decimal strings, times as ZonedTimestamp text ending in `Z` with at most millisecond
precision, and short ASCII text. For such a message `FastDecoder.upsert()` returns the row's values already
serialized in the native protocol's encoding of each Cassandra column (the order of the reference upsert:
binance_cdc.stream.sink.upsert_columns, then the LSN), and its keys, without building a Decimal or a datetime
per value: a decimal string becomes its unscaled digits and scale directly, a time its epoch milliseconds. The
bytes are those the Cassandra driver's bind() makes of the reference decoder's values
(tests/unit/test_fast_decode.py compares them), packed with the driver's own cassandra.marshal functions.

For anything else it returns None and the reference decoder (binance_cdc/stream/debezium.py, the single
definition of what is correct) decides: deletes, tombstones, the schema wrapper, every value of an unusual
form (an exponent, a `+00:00` offset, a nanosecond fraction, non-ASCII text, an integer that JSON parsing
turned into a float), and every malformed message, whose dead-letter reason thus comes from one place.
The rule is that the fast path only accepts what the reference accepts and yields the same row;
tests/unit/test_fast_decode.py checks it on every recorded event and on malformed ones.

Pure, no I/O; needs orjson and cassandra-driver (on the executors too).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from cassandra.marshal import int32_pack, int64_pack, uint32_pack

from binance_cdc import datasets
from binance_cdc.stream.debezium import DecodeError, UPSERT_OPS, dataset_for_topic

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A plain decimal, bounded: far below the Cassandra driver's 4300-digit limit and any scale limit.
DECIMAL = re.compile(r"-?\d{1,40}(?:\.\d{1,40})?")
# ZonedTimestamp as Debezium writes it for timestamptz: UTC, "Z", 0-6 fraction digits.
ZONED = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z")
MAX_TEXT = 1000  # longer text (a partition key over 64 KiB is refused by Cassandra) takes the reference path
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last millisecond a datetime holds


class FastUpsert(NamedTuple):
    values: tuple  # serialized values of the upsert statement, the LSN (USING TIMESTAMP) last
    size: int  # at least their bytes
    lsn: int
    partition_key: tuple
    clustering_key: tuple
    op: str
    source_ts_ms: int  # Postgres commit time (source.ts_ms)


class _Day(NamedTuple):
    day: date
    epoch_ms: int


_DAYS: dict[str, _Day | None] = {}


def _day(text: str) -> _Day | None:
    """The date of a YYYY-MM-DD prefix and its epoch milliseconds, or None when it is no valid date."""
    known = _DAYS.get(text, False)
    if known is not False:
        return known
    try:
        day = date.fromisoformat(text)
        found = _Day(day, (day - EPOCH.date()).days * 86_400_000) if day.year >= 1 else None
    except ValueError:
        found = None
    if len(_DAYS) < 100_000:
        _DAYS[text] = found
    return found


def zoned_ms(text: Any) -> tuple[int, _Day] | None:
    """(epoch milliseconds, its UTC day) of a ZonedTimestamp text with at most millisecond precision."""
    if type(text) is not str:
        return None
    m = ZONED.fullmatch(text)
    if m is None:
        return None
    day = _day(m.group(1))
    hour, minute, second = int(m.group(2)), int(m.group(3)), int(m.group(4))
    if day is None or hour > 23 or minute > 59 or second > 59:
        return None
    fraction = m.group(5)
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    if micros % 1000:  # sub-millisecond: the reference dead-letters it
        return None
    return day.epoch_ms + ((hour * 60 + minute) * 60 + second) * 1000 + micros // 1000, day


def _ms_time(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


DATE_OFFSET_DAYS = 2 ** 31  # a CQL date is an unsigned day count with the epoch in the middle


def _decimal(text: str) -> bytes:
    """A DECIMAL-matched string as CQL decimal: int32 scale, then the unscaled value as a varint (the
    shortest two's complement, as cassandra.marshal.varint_pack writes it, in C)."""
    whole, _, fraction = text.partition(".")
    unscaled = int(whole + fraction)
    return int32_pack(len(fraction)) + unscaled.to_bytes((unscaled + (unscaled < 0)).bit_length() // 8 + 1,
                                                         "big", signed=True)


def _date(value: date) -> bytes:
    return uint32_pack((value - EPOCH.date()).days + DATE_OFFSET_DAYS)


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


class FastDecoder:
    """Per-dataset rules built once: column names and kinds, the bucket, the key columns."""

    def __init__(self, dataset: datasets.Dataset) -> None:
        self.dataset = dataset
        self.names = frozenset(c.name for c in dataset.columns)
        self.bucket_column = dataset.bucket_column
        self.bucket_source = dataset.bucket_source
        self.bucket_month = dataset.bucket_unit == "month"
        if dataset.bucket_column and dataset.bucket_unit not in ("day", "month"):
            raise ValueError(f"{dataset.name}: unknown bucket_unit {dataset.bucket_unit!r}")
        kinds = dataset.cql_columns
        # Where each value goes: the reference upsert's column order (sink.upsert_columns is
        # tuple(dataset.cql_columns)), then the LSN for USING TIMESTAMP.
        order = {name: i for i, name in enumerate(kinds)}
        self.width = len(order) + 1
        self.columns = tuple((c.name, c.kind, c.nullable, order[c.name]) for c in dataset.columns)
        self.bucket_index = order.get(dataset.bucket_column)
        self.cdc_index = tuple(order[c] for c in ("cdc_op", "cdc_source_lsn", "cdc_source_ts", "cdc_event_ts",
                                                  "cdc_tx_id", "cdc_written_at"))
        self.partition_key = tuple((n, kinds[n]) for n in dataset.cql_partition_key)
        self.clustering_key = tuple((n, kinds[n]) for n in dataset.cql_clustering_key)

    def upsert(self, value: bytes, written_at_ms: int) -> FastUpsert | None:
        try:
            envelope = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if type(envelope) is not dict or "payload" in envelope:
            return None
        op = envelope.get("op")
        if op not in UPSERT_OPS:
            return None
        row = envelope.get("after")
        source = envelope.get("source")
        event_ms = envelope.get("ts_ms")
        if type(row) is not dict or type(source) is not dict or not _is_int(event_ms, 0, MAX_EPOCH_MS):
            return None
        lsn, source_ms, tx = source.get("lsn"), source.get("ts_ms"), source.get("txId")
        if not (_is_int(lsn, 0, 2 ** 63 - 1) and _is_int(source_ms, 0, MAX_EPOCH_MS)
                and (tx is None or _is_int(tx, 0, 2 ** 63 - 1))):
            return None
        if len(row) != len(self.names) or not self.names.issuperset(row):
            return None
        out: list = [None] * self.width
        days: dict[str, _Day] = {}
        for name, kind, nullable, at in self.columns:  # checked and serialized in one pass
            raw = row[name]
            if raw is None:
                if not nullable:
                    return None
            elif kind == "decimal":
                if type(raw) is not str or DECIMAL.fullmatch(raw) is None:
                    return None
                out[at] = _decimal(raw)
            elif kind == "timestamp":
                parsed = zoned_ms(raw)
                if parsed is None:
                    return None
                row[name], days[name] = parsed
                out[at] = int64_pack(parsed[0])
            elif kind == "text":
                if type(raw) is not str or len(raw) > MAX_TEXT or not raw.isascii():
                    return None
                out[at] = raw.encode()
            elif kind == "bigint":
                if type(raw) is not int or not -(2 ** 63) <= raw <= 2 ** 63 - 1:
                    return None
                out[at] = int64_pack(raw)
            elif kind == "int":
                if type(raw) is not int or not -(2 ** 31) <= raw <= 2 ** 31 - 1:
                    return None
                out[at] = int32_pack(raw)
            elif kind == "boolean":
                if type(raw) is not bool:
                    return None
                out[at] = b"\x01" if raw else b"\x00"
            else:  # date and any later kind: the reference decoder
                return None
        key_values = {}
        if self.bucket_index is not None:
            day = days.get(self.bucket_source)
            if day is None:  # a null bucket source: the reference says why
                return None
            bucket = day.day.replace(day=1) if self.bucket_month else day.day
            out[self.bucket_index] = _date(bucket)
            key_values[self.bucket_column] = bucket
        lsn_bytes = int64_pack(lsn)
        i_op, i_lsn, i_source, i_event, i_tx, i_written = self.cdc_index
        out[i_op] = op.encode()
        out[i_lsn] = lsn_bytes
        out[i_source] = int64_pack(source_ms)
        out[i_event] = int64_pack(event_ms)
        out[i_tx] = None if tx is None else str(tx).encode()
        out[i_written] = int64_pack(written_at_ms)
        out[-1] = lsn_bytes
        # The message's length bounds the row's bytes from above (JSON spells every value out at least as long).
        return FastUpsert(tuple(out), len(value), lsn,
                          tuple([self._key(row, n, k, key_values) for n, k in self.partition_key]),
                          tuple([self._key(row, n, k, key_values) for n, k in self.clustering_key]),
                          op, source_ms)

    @staticmethod
    def _key(row: dict, name: str, kind: str, known: dict) -> Any:
        """A key column as the reference decoder types it (marks for the bridge are built from it)."""
        if name in known:
            return known[name]
        value = row[name]
        if kind == "timestamp":
            return _ms_time(value)
        if kind == "decimal":
            return Decimal(value)
        return value


_DECODERS: dict[str, FastDecoder | None] = {}


def decoder_for(topic: str) -> FastDecoder | None:
    """The fast decoder of a topic's dataset, or None for a topic the reference decoder must judge."""
    found = _DECODERS.get(topic, False)
    if found is False:
        try:
            found = FastDecoder(dataset_for_topic(topic))
        except DecodeError:
            found = None
        _DECODERS[topic] = found
    return found
