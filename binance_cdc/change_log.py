"""The contract between the stream (stage 3) and the bridge (stage 4): which Cassandra partitions changed.

Why: Cassandra cannot be asked "what changed since X" (no filter on writetime, and the LSN is no cursor:
a lower LSN can commit after a higher one). The stream knows exactly which rows each micro-batch wrote
or deleted, so it records their keys, and the bridge re-reads only those rows: a run costs in proportion
to what changed, however large the partitions (a symbol-day of trades) have grown.

Two tables in the pipeline keyspace (cql/02_change_log.cql; tests/unit/test_cql_drift.py compares):
- `changed_partitions`: per (micro-batch, table, partition) the batch wrote, the clustering keys of the
  rows it upserted or deleted there (a JSON array, at most KEYS_PER_MARK per row: a larger set is split
  into chunks). Written by the executors after the batch's data writes succeeded. Keyed by the streaming
  query's id (stable across restarts of one checkpoint) and the batch id, in buckets of
  BATCHES_PER_BUCKET batches, kept for MARK_TTL_S (the bridge falls back to a full copy when its cursor
  is older than that). A TRUNCATE the batch applied to a table is one more row of that table, with
  partition_key TRUNCATE_MARK (never a JSON array, so no partition's key) and clustering_keys
  {"truncate_lsn": <LSN>}: the bridge then copies that table whole (its deleted partitions are no keys
  it could re-read).
- `stream_progress`: per streaming query, the last micro-batch whose writes and marks are all done,
  written by the driver once the batch succeeded. Spark runs micro-batches one after another, so every
  mark of a batch <= last_batch_id is already there: the batch id is a sound cursor, the LSN is not.

Key values are stored as JSON arrays of text (exact decimals, ISO dates and UTC times with milliseconds),
decoded by column kind. Pure; no driver needed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Sequence

from binance_cdc.datasets import Dataset

CHANGED_PARTITIONS = "changed_partitions"
STREAM_PROGRESS = "stream_progress"
BATCHES_PER_BUCKET = 1000  # a bucket holds the marks of 1000 consecutive micro-batches
MARK_TTL_S = 14 * 24 * 3600

TRUNCATE_MARK = "truncate"  # partition_key of a truncate mark (a real one is a JSON array: "[...]")
KEYS_PER_MARK = 2000  # keeps a mark row far below Cassandra's warning size for one cell
CHANGED_PARTITIONS_COLUMNS = {
    "stream_id": "uuid", "batch_bucket": "bigint", "batch_id": "bigint", "table_name": "text",
    "partition_key": "text", "chunk": "int", "clustering_keys": "text",
}
CHANGED_PARTITIONS_KEY = ("stream_id", "batch_bucket", "batch_id", "table_name", "partition_key", "chunk")
STREAM_PROGRESS_COLUMNS = {
    "stream_id": "uuid", "last_batch_id": "bigint", "batch_completed_at": "timestamp", "end_offsets": "text",
}
STREAM_PROGRESS_KEY = ("stream_id",)


@dataclass(frozen=True)
class BatchRef:
    """Which micro-batch of which streaming query a write belongs to."""

    stream_id: uuid.UUID
    batch_id: int

    @property
    def bucket(self) -> int:
        return self.batch_id // BATCHES_PER_BUCKET


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the driver reads Cassandra timestamps as naive UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def encode_key(values: Sequence[Any]) -> list[str]:
    return [_text(v) for v in values]


def encode_partition_key(values: Sequence[Any]) -> str:
    return json.dumps(encode_key(values), separators=(",", ":"))


def _typed(dataset: Dataset, names: Sequence[str], raw: Any, what: str) -> tuple:
    if not isinstance(raw, list) or len(raw) != len(names) or not all(isinstance(v, str) for v in raw):
        raise ValueError(f"{dataset.name}: {what} {raw!r} does not match {tuple(names)}")
    kinds = dataset.cql_columns
    out = []
    for name, value in zip(names, raw):
        kind = kinds[name]
        if kind == "date":
            out.append(date.fromisoformat(value))
        elif kind in ("bigint", "int"):
            out.append(int(value))
        elif kind == "text":
            out.append(value)
        elif kind == "decimal":
            out.append(Decimal(value))
        elif kind == "timestamp":
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(f"{dataset.name}: {what} time {value!r} has no UTC offset")
            out.append(moment)
        else:
            raise ValueError(f"{dataset.name}: key column {name} of kind {kind} is not supported")
    return tuple(out)


def decode_key(dataset: Dataset, names: Sequence[str], values: Sequence[str]) -> tuple:
    """Typed values of key columns `names` from their text (as stored here, or as Cassandra renders them)."""
    return _typed(dataset, names, list(values), "key")


def decode_partition_key(dataset: Dataset, text: str) -> tuple:
    """The typed partition key of `dataset` from its stored form; ValueError if it does not fit."""
    return _typed(dataset, dataset.cql_partition_key, json.loads(text), "partition key")


def decode_clustering_keys(dataset: Dataset, text: str) -> list[tuple]:
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError(f"{dataset.name}: clustering keys {text[:80]!r} are not a list")
    return [_typed(dataset, dataset.cql_clustering_key, item, "clustering key") for item in raw]


def mark_rows(batch: BatchRef, touched: dict[tuple[str, tuple], list[tuple]],
              truncated: dict[str, int] | None = None) -> list[tuple]:
    """Bind values of the `changed_partitions` rows recording `touched` ({(table, partition key):
    clustering keys}) and the tables `truncated` ({table: truncate LSN}), in CHANGED_PARTITIONS_KEY order
    plus clustering_keys."""
    rows = [(batch.stream_id, batch.bucket, batch.batch_id, table, TRUNCATE_MARK, 0,
             json.dumps({"truncate_lsn": lsn}, separators=(",", ":"))) for table, lsn in (truncated or {}).items()]
    for (table, partition_key), keys in touched.items():
        encoded = encode_partition_key(partition_key)
        for chunk, start in enumerate(range(0, max(len(keys), 1), KEYS_PER_MARK)):
            part = [encode_key(k) for k in keys[start:start + KEYS_PER_MARK]]
            rows.append((batch.stream_id, batch.bucket, batch.batch_id, table, encoded, chunk,
                         json.dumps(part, separators=(",", ":"))))
    return rows


def buckets_between(after_batch: int, upto_batch: int) -> range:
    """Buckets holding the marks of batches after_batch+1 .. upto_batch."""
    if upto_batch <= after_batch:
        return range(0)
    return range((after_batch + 1) // BATCHES_PER_BUCKET, upto_batch // BATCHES_PER_BUCKET + 1)
