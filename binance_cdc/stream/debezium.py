"""Decode Debezium PostgreSQL change events (Kafka key + value bytes) into exact Python rows. Pure: no I/O.

`decode(topic, key, value)` returns
- `Tombstone` for a null value (the compaction marker Debezium sends after each delete),
- `Truncate(dataset, lsn, source_ts, event_ts, tx_id)` for op "t" (a TRUNCATE of the table: no key, no
  before/after; emitted because the connectors set skipped.operations=none), or
- `Change(dataset, op, row, lsn, source_ts, event_ts, tx_id)`: `row` holds every column of the dataset
  (binance_cdc.datasets) as exact values: Decimal for decimal strings, tz-aware UTC datetime, int, bool, str.
  c/r/u carry `after`, d carries `before` (REPLICA IDENTITY FULL: every column),
or raises `DecodeError` naming the topic and the problem. Nothing silently becomes NULL: a column that is
missing, null (unless declared nullable) or has a value of the wrong shape is an error, and so is a
column the dataset does not declare.

Both JSON converter layouts are understood, and each value must be what the configured encoding produces;
anything else is an error (a dead letter), never a guess:
- Without the schema wrapper (our connectors: decimal.handling.mode=string, timestamptz as
  io.debezium.time.ZonedTimestamp) a decimal is a decimal string and a time an ISO-8601 string with an
  offset. A JSON number in a decimal column is refused: this encoding never sends one, and one that
  arrives may have been through a double already (decimal.handling.mode=double), so it is not exact. An
  integer in a time column is refused: without a schema nothing says whether it counts milliseconds,
  microseconds or nanoseconds (an epoch-milliseconds value read as microseconds is a 1970 date).
- With the `{"schema", "payload"}` wrapper the field's schema decides, in its own units and precision:
  org.apache.kafka.connect.data.Decimal (base64 unscaled bytes, or a JSON number under the converter's
  decimal.format=NUMERIC, at the schema's scale), io.debezium.data.VariableScaleDecimal ({scale, value}),
  a plain "string" field (decimal.handling.mode=string), io.debezium.time.ZonedTimestamp (string),
  io.debezium.time.{Micro,Nano,}Timestamp and org.apache.kafka.connect.data.Timestamp (epoch integers in
  their units). Any other schema for a decimal or time column (float64: precision already lost) is refused.
Decimals are built exactly (never through Python's 28-digit default context); JSON numbers are parsed as
Decimal/int, never float. `tx_id` is always source.txId as text (the Postgres transaction id), with or
without provide.transaction.metadata: its `transaction.id` block ("<txId>:<lsn>") names the same
transaction, so it is not kept separately.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, Rounded
from typing import Any

from binance_cdc import datasets
from binance_cdc.datasets import Dataset
from binance_cdc.values import (  # the exact rules shared with the extractor; re-exported for callers
    INT_RANGES,
    brief,
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
TRUNCATE_OP = "t"


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


@dataclass(frozen=True)
class Truncate:
    """TRUNCATE of the whole table at WAL position `lsn`: every row written before it (lower LSN) is gone,
    every row written after it (higher LSN) stays."""

    topic: str
    dataset: Dataset
    lsn: int
    source_ts: datetime
    event_ts: datetime
    tx_id: str | None
    op: str = TRUNCATE_OP


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


# Longest JSON integer read as an int: int() of more digits fails with Python's int_max_str_digits (4300),
# and no column kind or metadata field holds one that long (bigint has 19 digits).
MAX_JSON_INT_DIGITS = 1000


class _JsonIntTooLong(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _JsonIntTooLong(f"JSON integer of {len(text.lstrip('-'))} digits (more than any column or "
                              f"field holds; at most {MAX_JSON_INT_DIGITS} are read)")
    return int(text)


def parse_json(topic: str, what: str, raw: bytes | str) -> Any:
    try:
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        return json.loads(text, parse_float=Decimal, parse_int=_json_int, parse_constant=_reject_constant)
    except _JsonIntTooLong as exc:
        raise DecodeError(f"{topic}: {what}: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"{topic}: malformed JSON in {what}: {exc}") from None
    except RecursionError:  # json recurses per nesting level: a deep enough document exhausts the stack
        raise DecodeError(f"{topic}: malformed JSON in {what}: nested too deeply") from None


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


def decode(topic: str, key: bytes | str | None, value: bytes | str | None) -> Change | Tombstone | Truncate:
    dataset = dataset_for_topic(topic)
    if value is None:
        key_doc = None if key is None else _unwrap(parse_json(topic, "key", key))[0]
        return Tombstone(topic, dataset, key_doc if isinstance(key_doc, dict) else None)
    envelope, schema = _unwrap(parse_json(topic, "value", value))
    if not isinstance(envelope, dict):
        raise DecodeError(f"{topic}: value is not a Debezium envelope (a JSON object), got "
                          f"{type(envelope).__name__}")
    op = envelope.get("op")
    if op == TRUNCATE_OP:
        return _truncate(topic, dataset, envelope)
    if op in UPSERT_OPS:
        part = "after"
    elif op == DELETE_OP:
        part = "before"
    else:
        raise DecodeError(f"{topic}: unknown op {brief(op)} (expected c, r, u, d or t)")
    image = envelope.get(part)
    if not isinstance(image, dict):
        raise DecodeError(f"{topic}: op {op!r} without {part!r} row (got {brief(image)})")
    row = convert_row(topic, dataset, image, _field_schemas(schema, part), part)
    lsn, source_ts, tx_id = _source_metadata(topic, envelope)
    return Change(topic, dataset, op, row, lsn, source_ts, _event_ts(topic, envelope), tx_id)


def _truncate(topic: str, dataset: Dataset, envelope: dict) -> Truncate:
    # Debezium's truncate event carries no row image; one that does is not what the connector sends.
    for part in ("before", "after"):
        if envelope.get(part) is not None:
            raise DecodeError(f"{topic}: op 't' (truncate) with a {part!r} row ({brief(envelope[part])}); "
                              "a truncate event has none")
    lsn, source_ts, tx_id = _source_metadata(topic, envelope)
    return Truncate(topic, dataset, lsn, source_ts, _event_ts(topic, envelope), tx_id)


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
    """One field to its exact Python value; ValueError/TypeError say why not. `schema` is the field's schema
    from the wrapper, None for the plain layout (whose rules are our connectors' encodings)."""
    if kind == "decimal":
        return _to_decimal(raw, schema)
    if kind == "timestamp":
        return _to_datetime(raw, schema)
    if kind in INT_RANGES:
        return exact_int(kind, raw)
    if kind == "boolean":
        return exact_bool(raw)
    if kind == "text":
        return exact_text(raw)
    if kind == "date":
        if isinstance(raw, int) and not isinstance(raw, bool):  # io.debezium.time.Date: days since epoch
            try:
                return date(1970, 1, 1) + timedelta(days=raw)
            except OverflowError:
                raise ValueError(f"{raw} days since the epoch is outside the date range") from None
        if isinstance(raw, str):
            return date.fromisoformat(raw)
        raise TypeError(f"expected a date, got {brief(raw)}")
    raise ValueError(f"unknown column kind {kind!r}")


CONNECT_DECIMAL = "org.apache.kafka.connect.data.Decimal"
VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
# Exact arithmetic for scaling an unscaled integer: any rounding raises instead of happening. Python's
# default context (28 significant digits) would round a numeric(38,18) silently.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Rounded])
# Longest base64 unscaled value decoded (bytes): ~9,800 decimal digits, more than the sink can write
# (binance_cdc.stream.sink refuses decimals of more digits than the Cassandra driver converts), and small
# enough that turning it into a Decimal stays cheap whatever a message holds.
MAX_UNSCALED_BYTES = 4096


def _to_decimal(raw: Any, schema: dict | None) -> Decimal:
    if schema is None:
        # decimal.handling.mode=string: only strings. A JSON number may have been a double on the way.
        if isinstance(raw, (Decimal, int)) and not isinstance(raw, bool):
            raise TypeError(f"JSON number {str(raw)[:40]}{'...' if len(str(raw)) > 40 else ''} in a decimal column: the connector sends decimals as "
                            "strings (decimal.handling.mode=string); a number may have lost precision already")
        return exact_decimal(raw)
    logical = schema.get("name")
    if logical == CONNECT_DECIMAL:
        scale = _schema_scale(schema)
        if isinstance(raw, str):  # decimal.format=BASE64 (the converter's default)
            value = _from_base64(raw, scale)
        elif isinstance(raw, (Decimal, int)) and not isinstance(raw, bool):  # decimal.format=NUMERIC
            value = _at_scale(Decimal(raw), scale)
        else:
            raise TypeError(f"expected base64 unscaled bytes or a JSON number for {CONNECT_DECIMAL}, got "
                            f"{brief(raw)}")
        precision = (schema.get("parameters") or {}).get("connect.decimal.precision")
        if precision is not None and str(precision).isdigit() and len(value.as_tuple().digits) > int(precision):
            raise ValueError(f"{brief(raw)} has more digits than the schema's precision {precision}")
    elif logical == VARIABLE_SCALE_DECIMAL:
        if not isinstance(raw, dict) or set(raw) != {"scale", "value"}:
            raise TypeError(f"expected a VariableScaleDecimal {{scale, value}}, got {brief(raw)}")
        value = _from_base64(raw["value"], exact_int("int", raw["scale"]))
    elif logical is None and schema.get("type") == "string":  # decimal.handling.mode=string
        if not isinstance(raw, str):
            raise TypeError(f"expected a decimal string (the schema says string), got {brief(raw)}")
        return exact_decimal(raw)
    else:
        raise TypeError(f"decimal column with schema {_schema_name(schema)}: not an exact decimal encoding "
                        "(decimal.handling.mode=double loses precision); expected a string, "
                        f"{CONNECT_DECIMAL} or {VARIABLE_SCALE_DECIMAL}")
    return finite(value, raw)


def _schema_name(schema: dict) -> str:
    return f"{schema.get('name') or '(no name)'} of type {brief(schema.get('type'))}"


def _schema_scale(schema: dict) -> int:
    scale = (schema.get("parameters") or {}).get("scale")
    if scale is None:
        raise ValueError(f"{CONNECT_DECIMAL} schema without a scale parameter")
    if isinstance(scale, bool) or not (isinstance(scale, int) or (isinstance(scale, str) and
                                                                    scale.lstrip("-").isdigit())):
        raise ValueError(f"{CONNECT_DECIMAL} scale parameter is not an integer: {brief(scale)}")
    return exact_int("int", int(scale))


def _at_scale(value: Decimal, scale: int) -> Decimal:
    """`value` with exactly `scale` digits after the point, or ValueError when that would change it."""
    try:
        scaled = value.quantize(Decimal(1).scaleb(-scale, _EXACT), context=_EXACT)
    except ArithmeticError:
        raise ValueError(f"{brief(value)} does not fit the schema's scale {scale} exactly") from None
    if scaled != value:
        raise ValueError(f"{brief(value)} does not fit the schema's scale {scale} exactly")
    return scaled


def _from_base64(text: Any, scale: int) -> Decimal:
    if not isinstance(text, str):
        raise TypeError(f"expected base64 unscaled bytes, got {brief(text)}")
    if len(text) > (MAX_UNSCALED_BYTES + 2) // 3 * 4:
        raise ValueError(f"base64 unscaled value of {len(text)} characters: more than {MAX_UNSCALED_BYTES} bytes")
    try:
        unscaled = int.from_bytes(base64.b64decode(text, validate=True), "big", signed=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 decimal {brief(text)}: {exc}") from None
    # Decimal(int) is exact; scaleb in the exact context only moves the exponent (Decimal(...).scaleb(-s)
    # in the default context rounded to 28 significant digits).
    return Decimal(unscaled).scaleb(-scale, _EXACT)


# Integer encodings of a point in time, by logical type name: units per second.
_EPOCH_UNITS = {
    "io.debezium.time.MicroTimestamp": 1_000_000,
    "io.debezium.time.Timestamp": 1_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
    "io.debezium.time.NanoTimestamp": 1_000_000_000,
}
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"


def _to_datetime(raw: Any, schema: dict | None) -> datetime:
    logical = None if schema is None else schema.get("name")
    if logical in _EPOCH_UNITS:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise TypeError(f"expected an epoch integer for {logical}, got {brief(raw)}")
        return epoch_to_datetime(raw, _EPOCH_UNITS[logical])
    if schema is not None and logical != ZONED_TIMESTAMP:
        raise TypeError(f"time column with schema {_schema_name(schema)}: expected {ZONED_TIMESTAMP} or an "
                        f"epoch timestamp type ({', '.join(_EPOCH_UNITS)})")
    if isinstance(raw, str):
        return parse_iso_utc(raw)
    if schema is None and isinstance(raw, int) and not isinstance(raw, bool):
        raise TypeError(f"integer {brief(raw)} in a time column without a schema: the connector sends "
                        f"timestamptz as ISO-8601 text ({ZONED_TIMESTAMP}); the integer's unit (ms, us, ns) "
                        "is unknown")
    raise TypeError(f"expected an ISO-8601 string with an offset, got {brief(raw)}")


def _source_metadata(topic: str, envelope: dict) -> tuple[int, datetime, str | None]:
    source = envelope.get("source")
    if not isinstance(source, dict):
        raise DecodeError(f"{topic}: envelope has no source block")
    lsn = source.get("lsn")
    if isinstance(lsn, bool) or not isinstance(lsn, int) or lsn < 0:
        raise DecodeError(f"{topic}: source.lsn missing or not a non-negative integer ({brief(lsn)})")
    ts_ms = source.get("ts_ms")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise DecodeError(f"{topic}: source.ts_ms missing or not an integer ({brief(ts_ms)})")
    # source.txId, the Postgres transaction id, whether or not provide.transaction.metadata adds a
    # `transaction` block: its id ("<txId>:<lsn>") would change cdc_tx_id's form with that setting.
    tx = source.get("txId")
    if tx is not None and (isinstance(tx, bool) or not isinstance(tx, int) or tx < 0):
        raise DecodeError(f"{topic}: source.txId is not a non-negative integer ({brief(tx)})")
    tx_id = None if tx is None else str(tx)
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
