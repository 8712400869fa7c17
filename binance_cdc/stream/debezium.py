"""Decode Debezium PostgreSQL change events (Kafka key + value bytes) into exact Python rows. Pure: no I/O.

`decode(topic, key, value)` returns
- `Tombstone` for a null value (the compaction marker Debezium sends after each delete), or
- `Change(dataset, op, row, lsn, source_ts, event_ts, tx_id)`: `row` holds every column of the dataset
  (binance_cdc.datasets) as exact values: Decimal for decimal strings, tz-aware UTC datetime, int, bool, str.
  c/r/u carry `after`, d carries `before` (REPLICA IDENTITY FULL: every column),
or raises `DecodeError` naming the topic and the problem. Nothing silently becomes NULL: a column that is
missing, null (unless declared nullable) or has a value of the wrong shape is an error, and so is a
column the dataset does not declare.

Both JSON converter layouts are understood. Without the schema wrapper (our connectors) decimals are
strings (`decimal.handling.mode=string`), timestamptz are ISO-8601 strings (io.debezium.time.ZonedTimestamp)
and bare integers in a time column are microseconds. With the `{"schema", "payload"}` wrapper the field's
logical type name decides: org.apache.kafka.connect.data.Decimal (base64 unscaled bytes + scale parameter,
or a JSON number), io.debezium.data.VariableScaleDecimal ({scale, value}), io.debezium.time.{Zoned,Micro,
Nano,}Timestamp, org.apache.kafka.connect.data.Timestamp. JSON numbers are parsed as Decimal/int, never
float.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from binance_cdc import datasets
from binance_cdc.datasets import Dataset
from binance_cdc.values import (  # the exact rules shared with the extractor; re-exported for callers
    INT_RANGES,
    epoch_to_datetime,
    exact_bool,
    exact_decimal,
    exact_int,
    exact_text,
    finite,
    parse_iso_utc,
)

UPSERT_OPS = {"c": "create", "r": "snapshot read", "u": "update"}
DELETE_OP = "d"


class DecodeError(ValueError):
    """A message that cannot be turned into an exact row; the message names the topic and the cause."""


@dataclass(frozen=True)
class Tombstone:
    topic: str
    dataset: Dataset
    key: dict | None


@dataclass(frozen=True)
class Change:
    topic: str
    dataset: Dataset
    op: str  # c, r, u or d
    row: dict[str, Any]  # every source column, exact values
    lsn: int  # source.lsn: WAL position of the change, the Cassandra write timestamp
    source_ts: datetime  # source.ts_ms: commit time in Postgres
    event_ts: datetime  # envelope ts_ms / ts_us: when Debezium processed it
    tx_id: str | None

    @property
    def is_delete(self) -> bool:
        return self.op == DELETE_OP

    def bucket(self) -> dict[str, date]:
        return bucket_of(self.dataset, self.row)

    def cql_key(self) -> dict[str, Any]:
        """The Cassandra primary key (partition + clustering columns) of the row."""
        full = {**self.row, **self.bucket()}
        d = self.dataset
        return {name: full[name] for name in (*d.cql_partition_key, *d.cql_clustering_key)}

    def cql_row(self, written_at: datetime) -> dict[str, Any]:
        """Every Cassandra column of the dataset (Dataset.cql_columns) for an upsert."""
        return {
            **self.row,
            **self.bucket(),
            "cdc_op": self.op,
            "cdc_source_lsn": self.lsn,
            "cdc_source_ts": self.source_ts,
            "cdc_event_ts": self.event_ts,
            "cdc_tx_id": self.tx_id,
            "cdc_written_at": written_at,
        }


def bucket_of(dataset: Dataset, row: dict) -> dict[str, date]:
    """The partition bucket column (UTC day or month of bucket_source), or {} for unbucketed datasets."""
    if not dataset.bucket_column:
        return {}
    moment: datetime = row[dataset.bucket_source].astimezone(timezone.utc)
    day = moment.date()
    if dataset.bucket_unit == "month":
        day = day.replace(day=1)
    elif dataset.bucket_unit != "day":
        raise ValueError(f"{dataset.name}: unknown bucket_unit {dataset.bucket_unit!r}")
    return {dataset.bucket_column: day}


def dataset_for_topic(topic: str) -> Dataset:
    """`<prefix>.binance.<table>` -> the dataset; any other topic is an error."""
    for d in datasets.DATASETS.values():
        if topic.endswith("." + d.topic_suffix) and len(topic) > len(d.topic_suffix) + 1:
            return d
    raise DecodeError(f"{topic}: unknown topic (expected <prefix>.binance.<table> with table one of "
                      f"{', '.join(datasets.DATASETS)})")


def parse_json(topic: str, what: str, raw: bytes | str) -> Any:
    try:
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"{topic}: malformed JSON in {what}: {exc}") from None


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _unwrap(doc: Any) -> tuple[Any, dict | None]:
    """(payload, schema) for the {"schema", "payload"} layout, (doc, None) otherwise."""
    if isinstance(doc, dict) and set(doc) == {"schema", "payload"} and isinstance(doc["schema"], dict):
        return doc["payload"], doc["schema"]
    return doc, None


def _field_schemas(envelope_schema: dict | None, part: str) -> dict[str, dict]:
    """Schemas of the columns inside `after`/`before` by column name ({} without a schema wrapper)."""
    if not envelope_schema:
        return {}
    for field in envelope_schema.get("fields", []):
        if field.get("field") == part:
            return {f["field"]: f for f in field.get("fields", [])}
    return {}


def decode(topic: str, key: bytes | str | None, value: bytes | str | None) -> Change | Tombstone:
    dataset = dataset_for_topic(topic)
    if value is None:
        key_doc = None if key is None else _unwrap(parse_json(topic, "key", key))[0]
        return Tombstone(topic, dataset, key_doc if isinstance(key_doc, dict) else None)
    envelope, schema = _unwrap(parse_json(topic, "value", value))
    if not isinstance(envelope, dict):
        raise DecodeError(f"{topic}: value is not a Debezium envelope (a JSON object), got "
                          f"{type(envelope).__name__}")
    op = envelope.get("op")
    if op in UPSERT_OPS:
        part = "after"
    elif op == DELETE_OP:
        part = "before"
    else:
        raise DecodeError(f"{topic}: unknown op {op!r} (expected c, r, u or d)")
    image = envelope.get(part)
    if not isinstance(image, dict):
        raise DecodeError(f"{topic}: op {op!r} without {part!r} row (got {image!r})")
    row = convert_row(topic, dataset, image, _field_schemas(schema, part), part)
    lsn, source_ts, tx_id = _source_metadata(topic, envelope)
    return Change(topic, dataset, op, row, lsn, source_ts, _event_ts(topic, envelope), tx_id)


def convert_row(topic: str, dataset: Dataset, image: dict, schemas: dict[str, dict], part: str) -> dict:
    declared = dataset.kinds
    extra = sorted(set(image) - set(declared))
    if extra:
        raise DecodeError(f"{topic}: {part} has column(s) {', '.join(extra)} not declared for dataset "
                          f"{dataset.name} in binance_cdc/datasets.py")
    missing = [c for c in declared if c not in image]
    if missing:
        raise DecodeError(f"{topic}: {part} lacks column(s) {', '.join(missing)} of dataset {dataset.name}")
    row: dict[str, Any] = {}
    for col in dataset.columns:
        raw = image[col.name]
        if raw is None:
            if col.nullable:
                row[col.name] = None
                continue
            raise DecodeError(f"{topic}: {part}.{col.name} is null but {dataset.name}.{col.name} is NOT NULL")
        try:
            row[col.name] = convert_value(col.kind, raw, schemas.get(col.name))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise DecodeError(f"{topic}: {part}.{col.name} ({col.kind}): {exc}") from None
    return row


def convert_value(kind: str, raw: Any, schema: dict | None = None) -> Any:
    """One field to its exact Python value; ValueError/TypeError say why not."""
    logical = (schema or {}).get("name")
    if kind == "decimal":
        return _to_decimal(raw, logical, schema)
    if kind == "timestamp":
        return _to_datetime(raw, logical)
    if kind in INT_RANGES:
        return exact_int(kind, raw)
    if kind == "boolean":
        return exact_bool(raw)
    if kind == "text":
        return exact_text(raw)
    if kind == "date":
        if isinstance(raw, int) and not isinstance(raw, bool):  # io.debezium.time.Date: days since epoch
            return date(1970, 1, 1) + timedelta(days=raw)
        if isinstance(raw, str):
            return date.fromisoformat(raw)
        raise TypeError(f"expected a date, got {raw!r}")
    raise ValueError(f"unknown column kind {kind!r}")


def _to_decimal(raw: Any, logical: str | None, schema: dict | None) -> Decimal:
    if logical == "org.apache.kafka.connect.data.Decimal" and isinstance(raw, str):
        scale = (schema.get("parameters") or {}).get("scale")
        if scale is None:
            raise ValueError("Decimal schema without a scale parameter")
        value = _from_base64(raw, int(scale))
    elif logical == "io.debezium.data.VariableScaleDecimal":
        if not isinstance(raw, dict) or "scale" not in raw or "value" not in raw:
            raise TypeError(f"expected a VariableScaleDecimal {{scale, value}}, got {raw!r}")
        value = _from_base64(raw["value"], int(raw["scale"]))
    else:
        return exact_decimal(raw)
    return finite(value, raw)


def _from_base64(text: Any, scale: int) -> Decimal:
    if not isinstance(text, str):
        raise TypeError(f"expected base64 unscaled bytes, got {text!r}")
    try:
        unscaled = int.from_bytes(base64.b64decode(text, validate=True), "big", signed=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 decimal {text!r}: {exc}") from None
    return Decimal(unscaled).scaleb(-scale)


# Integer encodings of a point in time, by logical type name: units per second.
_EPOCH_UNITS = {
    "io.debezium.time.MicroTimestamp": 1_000_000,
    "io.debezium.time.Timestamp": 1_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
    "io.debezium.time.NanoTimestamp": 1_000_000_000,
}


def _to_datetime(raw: Any, logical: str | None) -> datetime:
    if isinstance(raw, str):
        return parse_iso_utc(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"expected an ISO-8601 string or epoch integer, got {raw!r}")
    per_second = _EPOCH_UNITS.get(logical, 1_000_000) if logical else 1_000_000
    if logical and logical not in _EPOCH_UNITS:
        raise ValueError(f"integer time with unsupported logical type {logical}")
    return epoch_to_datetime(raw, per_second)


def _source_metadata(topic: str, envelope: dict) -> tuple[int, datetime, str | None]:
    source = envelope.get("source")
    if not isinstance(source, dict):
        raise DecodeError(f"{topic}: envelope has no source block")
    lsn = source.get("lsn")
    if isinstance(lsn, bool) or not isinstance(lsn, int) or lsn < 0:
        raise DecodeError(f"{topic}: source.lsn missing or not a non-negative integer ({lsn!r})")
    ts_ms = source.get("ts_ms")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise DecodeError(f"{topic}: source.ts_ms missing or not an integer ({ts_ms!r})")
    transaction = envelope.get("transaction")
    if isinstance(transaction, dict) and transaction.get("id") is not None:
        tx_id = str(transaction["id"])
    else:
        tx_id = None if source.get("txId") is None else str(source["txId"])
    try:
        source_ts = epoch_to_datetime(ts_ms, 1_000)
    except ValueError as exc:
        raise DecodeError(f"{topic}: source.ts_ms: {exc}") from None
    return lsn, source_ts, tx_id


def _event_ts(topic: str, envelope: dict) -> datetime:
    # Milliseconds first: Cassandra timestamps hold milliseconds, ts_us only when ts_ms is absent.
    for name, per_second in (("ts_ms", 1_000), ("ts_us", 1_000_000)):
        value = envelope.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return epoch_to_datetime(value - value % (per_second // 1000), per_second)
            except ValueError as exc:
                raise DecodeError(f"{topic}: {name}: {exc}") from None
    raise DecodeError(f"{topic}: envelope has neither ts_ms nor ts_us")
