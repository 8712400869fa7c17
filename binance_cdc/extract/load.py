"""Bulk, idempotent loads of dataset rows into Postgres, plus the run lock and the trade-gap record.

A load is: COPY the rows (text format, from an in-memory buffer) into a temporary table shaped like the
target, then one `INSERT ... SELECT ... ON CONFLICT (primary key)`:
- on_conflict "ignore": `DO NOTHING` (immutable facts: trades, book snapshots);
- on_conflict "update": `DO UPDATE SET <non-key columns> WHERE (<compared>) IS DISTINCT FROM (EXCLUDED...)`,
  so an unchanged open kline or price writes nothing and emits no CDC event. `<compared>` is every non-key
  column except the observation times we derive from the answer's Date header (`observed_at`,
  `captured_at`): they change every cycle and alone are no change of the data.
Inserted and updated rows are counted with `RETURNING (xmax = 0)` ("ignore": the row count). Column lists, keys and types come from
binance_cdc.datasets; every identifier goes through psycopg2.sql and no data is ever formatted into SQL.

The caller owns the transaction (one per dataset) and the connection (binance_cdc.postgres_conn).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Sequence

from psycopg2 import sql

from binance_cdc.datasets import Dataset, PG_TYPES

log = logging.getLogger(__name__)

SCHEMA = "binance"
# pg_try_advisory_lock key held by one extraction cycle: b"binance\0" read as a bigint.
RUN_LOCK_KEY = int.from_bytes(b"binance\x00", "big") & 0x7FFFFFFFFFFFFFFF


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0


def try_run_lock(conn, key: int = RUN_LOCK_KEY) -> bool:
    """Session-level advisory lock: held until `release_run_lock` or the connection closes."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        got = cur.fetchone()[0]
    conn.commit()
    return bool(got)


def release_run_lock(conn, key: int = RUN_LOCK_KEY) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
    conn.commit()


def _copy_text(value: Any) -> str:
    """Any supported value as COPY text (used where the column kind is not known)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return _copy_bool(value)
    if isinstance(value, datetime):
        return _copy_timestamp(value)
    if isinstance(value, (int, Decimal)):
        return _copy_number(value)
    if isinstance(value, float):
        raise TypeError(f"float {value!r} reached the loader: decimals must be Decimal")
    return _copy_str(str(value))


def _copy_bool(value: Any) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    raise TypeError(f"expected a bool, got {value!r}")


def _copy_timestamp(value: Any) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: every time must be tz-aware UTC")
    return value.isoformat()


def _copy_number(value: Any) -> str:
    if type(value) is float:
        raise TypeError(f"float {value!r} reached the loader: decimals must be Decimal")
    return str(value)


def _copy_str(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


_BY_KIND = {
    "decimal": _copy_number,
    "bigint": _copy_number,
    "int": _copy_number,
    "timestamp": _copy_timestamp,
    "boolean": _copy_bool,
    "text": _copy_text,
    "date": _copy_text,
}


def copy_buffer(rows: Iterable[Sequence[Any]], dataset: Dataset | None = None) -> io.StringIO:
    """Rows as PostgreSQL COPY text format (tab-separated, \\N for NULL). With `dataset`, each column is
    formatted by its kind (the fast path); nullable columns go through the generic formatter."""
    buf = io.StringIO()
    if dataset is None:
        buf.writelines("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    else:
        fmts = [_copy_text if c.nullable else _BY_KIND[c.kind] for c in dataset.columns]
        buf.writelines("\t".join([f(v) for f, v in zip(fmts, row)]) + "\n" for row in rows)
    buf.seek(0)
    return buf


def dedupe(dataset: Dataset, rows: Sequence[tuple]) -> list[tuple]:
    """Last row wins per primary key: ON CONFLICT DO UPDATE may not touch one row twice in a statement."""
    idx = [dataset.column_names.index(k) for k in dataset.primary_key]
    unique: dict[tuple, tuple] = {}
    for row in rows:
        unique[tuple(row[i] for i in idx)] = row
    return list(unique.values())


def compared_columns(dataset: Dataset) -> list[str]:
    """Non-key columns whose change is a change of the data (observation times excluded)."""
    return [
        c.name
        for c in dataset.columns
        if c.name not in dataset.primary_key and not (c.kind == "timestamp" and c.api_field is None)
    ]


def upsert_statement(dataset: Dataset, target: sql.Composable, staging: sql.Identifier) -> sql.Composed:
    cols = [sql.Identifier(c) for c in dataset.column_names]
    col_list = sql.SQL(", ").join(cols)
    pk = sql.SQL(", ").join(sql.Identifier(k) for k in dataset.primary_key)
    if dataset.on_conflict == "ignore":
        # Nothing is ever updated, so the row count is the inserted count: no RETURNING needed.
        return sql.SQL(
            "INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging} ON CONFLICT ({pk}) DO NOTHING"
        ).format(target=target, cols=col_list, staging=staging, pk=pk)
    if dataset.on_conflict == "update":
        non_key = [c for c in dataset.column_names if c not in dataset.primary_key]
        compared = compared_columns(dataset)
        action = sql.SQL("DO UPDATE SET {sets} WHERE ({mine}) IS DISTINCT FROM ({theirs})").format(
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in non_key
            ),
            mine=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in compared),
            theirs=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in compared),
        )
    else:
        raise ValueError(f"{dataset.name}: unknown on_conflict {dataset.on_conflict!r}")
    return sql.SQL(
        "WITH written AS ("
        " INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging}"
        " ON CONFLICT ({pk}) {action} RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    ).format(target=target, cols=col_list, staging=staging, pk=pk, action=action)


def target_table(dataset: Dataset) -> sql.Identifier:
    return sql.Identifier(SCHEMA, dataset.name)


def load(conn, dataset: Dataset, rows: Sequence[tuple], target: sql.Composable | None = None) -> LoadResult:
    """COPY + upsert `rows` inside the caller's transaction (no commit here)."""
    if not rows:
        return LoadResult()
    target = target if target is not None else target_table(dataset)
    staging = sql.Identifier(f"staging_{dataset.name}")
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.kind])) for c in dataset.columns
    )
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(staging, columns)
        )
        cur.execute(sql.SQL("TRUNCATE {}").format(staging))
        cur.copy_expert(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                staging, sql.SQL(", ").join(sql.Identifier(c) for c in dataset.column_names)
            ).as_string(conn),
            copy_buffer(dedupe(dataset, rows) if dataset.on_conflict == "update" else rows, dataset),
        )
        cur.execute(upsert_statement(dataset, target, staging))
        if dataset.on_conflict == "ignore":
            return LoadResult(cur.rowcount, 0)
        inserted, updated = cur.fetchone()
    return LoadResult(inserted, updated)


def last_trade_ids(conn, symbols: Sequence[str], target: sql.Composable | None = None) -> dict[str, int]:
    """Highest stored trade id per symbol (one index-only lookup per symbol)."""
    if not symbols:
        return {}
    target = target if target is not None else sql.Identifier(SCHEMA, "recent_trades")
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT s.symbol, (SELECT max(r.trade_id) FROM {} r WHERE r.symbol = s.symbol)"
                " FROM unnest(%s::text[]) AS s(symbol)"
            ).format(target),
            (list(symbols),),
        )
        return {symbol: last for symbol, last in cur.fetchall() if last is not None}


@dataclass(frozen=True)
class TradeGap:
    symbol: str
    after_trade_id: int  # last id stored before this cycle
    before_trade_id: int  # first id fetched in this cycle
    missed_count: int


def find_trade_gaps(last_stored: dict[str, int], first_fetched: dict[str, int]) -> list[TradeGap]:
    """Pure: trades missed between cycles (first new id more than one past the last stored one).
    No gap when the fetched window overlaps or touches what is stored (including "no new trades")."""
    gaps = []
    for symbol, first in sorted(first_fetched.items()):
        last = last_stored.get(symbol)
        if last is not None and first > last + 1:
            gaps.append(TradeGap(symbol, last, first, first - last - 1))
    return gaps


def record_trade_gaps(conn, gaps: Sequence[TradeGap]) -> int:
    if not gaps:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO binance.trade_gaps (symbol, after_trade_id, before_trade_id, missed_count)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (symbol, after_trade_id) DO NOTHING",
            [(g.symbol, g.after_trade_id, g.before_trade_id, g.missed_count) for g in gaps],
        )
    return len(gaps)
