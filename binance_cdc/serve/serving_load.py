"""Bulk, newer-wins writes of Cassandra rows into the serving schema, inside the caller's transaction.

Per table: rows are COPYed (text format) into a temporary staging table shaped like the serving table,
then one `INSERT ... ON CONFLICT (Cassandra's primary key) DO UPDATE ... WHERE` that only writes a row
when its LSN is not older and something differs (so re-reading an unchanged row writes nothing and keeps
its served_at). Keys that were checked but not found in Cassandra (deleted there) are deleted here:
`delete_checked_missing` after an incremental read, `delete_all_missing` after a full scan. The keys
staging table holds the checked keys (incremental) or the keys of rejected rows to keep (full).

A row Postgres cannot hold (a NUL in a text, a decimal beyond NUMERIC's range) is rejected before the
COPY with its key and reason (`Rejected`), and the rest of its table still loads; should the COPY or the
upsert fail anyway, the table is retried row by row under savepoints so only the bad rows stay out.
Identifiers go through psycopg2.sql; no value is ever formatted into SQL.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

from psycopg2 import sql

from binance_cdc.datasets import PG_TYPES, Dataset

log = logging.getLogger(__name__)

# NUMERIC holds up to 131072 digits before the point and 16383 after it.
MAX_NUMERIC_INT_DIGITS = 131072
MAX_NUMERIC_SCALE = 16383


@dataclass(frozen=True)
class Rejected:
    table: str
    key: str  # "col=value, ..." for people
    reason: str
    key_values: tuple = ()


class RowError(ValueError):
    pass


def columns(dataset: Dataset) -> tuple[str, ...]:
    return tuple(dataset.cql_columns)


def key_columns(dataset: Dataset) -> tuple[str, ...]:
    return dataset.cql_partition_key + dataset.cql_clustering_key


def key_of(dataset: Dataset, row: Sequence[Any]) -> tuple:
    names = columns(dataset)
    return tuple(row[names.index(k)] for k in key_columns(dataset))


# --- COPY text of values as the Cassandra driver returns them -----------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise RowError(f"expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise RowError("text holds a NUL character, which Postgres text cannot store")
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _decimal(value: Any) -> str:
    if value.__class__ is not Decimal:
        raise RowError(f"expected a decimal, got {value!r}")
    text = format(value, "f")  # fixed point, scale kept: the same text extract.load writes
    if not text[-1].isdigit():
        raise RowError(f"{value!r} is not a finite number")
    if len(text) > MAX_NUMERIC_SCALE:  # only then can it be beyond NUMERIC's range (checked exactly here)
        sign, digits, exponent = value.as_tuple()
        if -exponent > MAX_NUMERIC_SCALE or len(digits) + exponent > MAX_NUMERIC_INT_DIGITS:
            raise RowError(f"decimal with {len(digits)} digits and exponent {exponent} is beyond NUMERIC's range")
    return text


def _integer(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(f"expected an integer, got {value!r}")
    return str(value)


def _timestamp(value: Any) -> str:
    if not isinstance(value, datetime):
        raise RowError(f"expected a timestamp, got {value!r}")
    # The driver reads Cassandra timestamps as naive UTC: say so to Postgres.
    return value.isoformat() + "+00" if value.tzinfo is None else value.isoformat()


def _boolean(value: Any) -> str:
    if not isinstance(value, bool):
        raise RowError(f"expected a boolean, got {value!r}")
    return "t" if value else "f"


def _date(value: Any) -> str:
    # cassandra.util.Date (or datetime.date) prints as YYYY-MM-DD within the range Postgres holds.
    text = value.isoformat() if isinstance(value, date) else str(value)
    if len(text) != 10:
        raise RowError(f"date {value!r} is outside the range Postgres holds")
    return text


FORMATS: dict[str, Callable[[Any], str]] = {
    "text": _text, "decimal": _decimal, "bigint": _integer, "int": _integer, "timestamp": _timestamp,
    "boolean": _boolean, "date": _date,
}


def formatters(dataset: Dataset) -> list[Callable[[Any], str]]:
    return [FORMATS[kind] for kind in dataset.cql_columns.values()]


def copy_text(dataset: Dataset, rows: Iterable[Sequence[Any]], rejected: list[Rejected]) -> io.StringIO:
    """COPY text of the rows Postgres can hold; the others are added to `rejected`."""
    fmts = formatters(dataset)
    lines = []
    for row in rows:
        try:
            lines.append("\t".join([r"\N" if v is None else f(v) for f, v in zip(fmts, row)]))
        except RowError as exc:
            rejected.append(Rejected(dataset.name, key_text(dataset, row), str(exc), key_of(dataset, row)))
    return io.StringIO("\n".join(lines) + ("\n" if lines else ""))


def keys_text(dataset: Dataset, keys: Iterable[Sequence[Any]]) -> io.StringIO:
    """COPY text of keys (key columns only) for the keys staging table. A key Postgres cannot hold cannot
    be in the serving tables either, so it is left out."""
    fmts = [FORMATS[dataset.cql_columns[c]] for c in key_columns(dataset)]
    lines = []
    for key in keys:
        try:
            # Keys from the marks are typed; keys of rejected rows read as text are Cassandra's text.
            lines.append("\t".join(_text(v) if v.__class__ is str else f(v) for f, v in zip(fmts, key)))
        except RowError:
            continue
    return io.StringIO("\n".join(lines) + ("\n" if lines else ""))


def _decimal_text(value: Any) -> str:
    """A decimal as Cassandra renders it (BigDecimal text, exact, maybe with an exponent)."""
    if value.__class__ is not str:
        raise RowError(f"expected a decimal's text, got {value!r}")
    if len(value) > 40 or "E" in value:  # short plain text cannot leave NUMERIC's range: check the rest exactly
        _decimal(Decimal(value))
    return value


def _rendered(value: Any) -> str:
    if value.__class__ is not str:
        raise RowError(f"expected Cassandra's text of the value, got {value!r}")
    return value


RENDERED: dict[str, Callable[[Any], str]] = {
    "text": _text, "decimal": _decimal_text, "bigint": _rendered, "int": _rendered, "timestamp": _rendered,
    "boolean": _rendered, "date": _rendered,
}


def copy_rendered(dataset: Dataset, rows: Iterable[Sequence[Any]], rejected: list[Rejected]) -> io.StringIO:
    """COPY text of rows Cassandra rendered as text (cassandra_read with as_text): only text columns need
    escaping; a row Postgres cannot hold goes to `rejected`."""
    fmts = [RENDERED[kind] for kind in dataset.cql_columns.values()]
    lines = []
    for row in rows:
        try:
            lines.append("\t".join([r"\N" if v is None else f(v) for f, v in zip(fmts, row)]))
        except (RowError, ArithmeticError) as exc:
            rejected.append(Rejected(dataset.name, key_text(dataset, row), str(exc), key_of(dataset, row)))
    return io.StringIO("\n".join(lines) + ("\n" if lines else ""))


def key_text(dataset: Dataset, row: Sequence[Any]) -> str:
    names = key_columns(dataset)
    return ", ".join(f"{n}={v!r}" for n, v in zip(names, key_of(dataset, row)))


# --- statements ---------------------------------------------------------------------------------------


def staging_name(dataset: Dataset, what: str = "rows") -> sql.Identifier:
    return sql.Identifier(f"bridge_{what}_{dataset.name}")


def create_staging(cur, schema: str, dataset: Dataset) -> None:
    """Temporary tables for this transaction: the rows read, and the keys checked."""
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[k]))
                              for c, k in dataset.cql_columns.items())
    keys = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[dataset.cql_columns[c]]))
                              for c in key_columns(dataset))
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(staging_name(dataset), cols))
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(
        staging_name(dataset, "keys"), keys))


def copy_rows(cur, dataset: Dataset, buf, what: str = "rows", table: sql.Composable | None = None) -> None:
    """COPY into the staging table `what` (or into `table`); `buf` is a file or a ChunkStream."""
    names = columns(dataset) if what == "rows" else key_columns(dataset)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN").format(
        table if table is not None else staging_name(dataset, what),
        sql.SQL(", ").join(map(sql.Identifier, names))).as_string(cur.connection), buf)


class ChunkStream:
    """A file for COPY over an iterator of text chunks: one COPY streams a whole table while the scan
    threads keep reading, instead of one COPY statement per page."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> str:
        for chunk in self._chunks:
            if chunk:
                return chunk
        return ""

    readline = read


def is_empty(cur, schema: str, dataset: Dataset) -> bool:
    cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, dataset.name)))
    return cur.fetchone()[0]


def upsert_statement(schema: str, dataset: Dataset) -> sql.Composed:
    cols = columns(dataset)
    keys = key_columns(dataset)
    non_key = [c for c in cols if c not in keys]
    ident = lambda names: sql.SQL(", ").join(map(sql.Identifier, names))  # noqa: E731
    return sql.SQL(
        "INSERT INTO {target} AS s ({cols}, served_at) SELECT {cols}, clock_timestamp() FROM {staging} "
        "ON CONFLICT ({keys}) DO UPDATE SET {sets}, served_at = EXCLUDED.served_at "
        "WHERE s.cdc_source_lsn <= EXCLUDED.cdc_source_lsn AND ({mine}) IS DISTINCT FROM ({theirs})"
    ).format(
        target=sql.Identifier(schema, dataset.name), cols=ident(cols), staging=staging_name(dataset), keys=ident(keys),
        sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in non_key),
        mine=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in non_key),
        theirs=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key),
    )


def _key_match(left: str, right: str, dataset: Dataset) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{l}.{c} = {r}.{c}").format(l=sql.Identifier(left), r=sql.Identifier(right), c=sql.Identifier(c))
        for c in key_columns(dataset))


def delete_checked_missing_statement(schema: str, dataset: Dataset) -> sql.Composed:
    """Serving rows whose key was checked in Cassandra and not found there: deleted in Cassandra."""
    return sql.SQL(
        "DELETE FROM {target} AS s USING {checked} AS k WHERE {match_k} "
        "AND NOT EXISTS (SELECT 1 FROM {staging} AS r WHERE {match_r})"
    ).format(target=sql.Identifier(schema, dataset.name), checked=staging_name(dataset, "keys"),
             staging=staging_name(dataset), match_k=_key_match("s", "k", dataset), match_r=_key_match("s", "r", dataset))


def delete_all_missing_statement(schema: str, dataset: Dataset) -> sql.Composed:
    """After a full scan: serving rows Cassandra no longer has (the keys staging holds the keys of rejected
    rows: Cassandra has them, so their older serving copy stays)."""
    return sql.SQL(
        "DELETE FROM {target} AS s WHERE NOT EXISTS (SELECT 1 FROM {staging} AS r WHERE {match_r}) "
        "AND NOT EXISTS (SELECT 1 FROM {kept} AS k WHERE {match_k})"
    ).format(target=sql.Identifier(schema, dataset.name), staging=staging_name(dataset),
             kept=staging_name(dataset, "keys"), match_r=_key_match("s", "r", dataset),
             match_k=_key_match("s", "k", dataset))


@dataclass
class TableResult:
    rows_read: int = 0
    upserted: int = 0
    deleted: int = 0
    rejected: list[Rejected] | None = None


def merge(cur, schema: str, dataset: Dataset, full: bool, result: TableResult) -> None:
    """Upsert the staged rows and delete what Cassandra no longer has, under one savepoint; on a failure,
    fall back to row by row so one bad row keeps only itself out."""
    cur.execute("SAVEPOINT bridge_table")
    try:
        cur.execute(upsert_statement(schema, dataset))
        result.upserted += cur.rowcount
        cur.execute((delete_all_missing_statement if full else delete_checked_missing_statement)(schema, dataset))
        result.deleted += cur.rowcount
        cur.execute("RELEASE SAVEPOINT bridge_table")
    except Exception as exc:  # noqa: BLE001 - a database error of this table only; isolated below
        cur.execute("ROLLBACK TO SAVEPOINT bridge_table")
        log.error("serving %s: bulk merge failed (%s); retrying row by row", dataset.name, str(exc).strip())
        _row_by_row(cur, schema, dataset, full, result)


def _row_by_row(cur, schema: str, dataset: Dataset, full: bool, result: TableResult) -> None:
    staging = staging_name(dataset)
    names = columns(dataset)
    cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, names)), staging))
    rows = cur.fetchall()
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(
        sql.Identifier(f"bridge_one_{dataset.name}"), staging))
    one = sql.Identifier(f"bridge_one_{dataset.name}")
    upsert = upsert_statement(schema, dataset).as_string(cur.connection).replace(
        staging.as_string(cur.connection), one.as_string(cur.connection))
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(names))
    insert_one = sql.SQL("INSERT INTO {} VALUES ({})").format(one, placeholders)
    good = 0
    for row in rows:
        cur.execute("SAVEPOINT bridge_row")
        try:
            cur.execute(sql.SQL("TRUNCATE {}").format(one))
            cur.execute(insert_one, row)
            cur.execute(upsert)
            result.upserted += cur.rowcount
            cur.execute("RELEASE SAVEPOINT bridge_row")
            good += 1
        except Exception as exc:  # noqa: BLE001 - this row only
            cur.execute("ROLLBACK TO SAVEPOINT bridge_row")
            result.rejected.append(Rejected(dataset.name, key_text(dataset, row), str(exc).strip().splitlines()[0],
                                            key_of(dataset, row)))
            # Keep the bad row's key in staging so a full run does not delete the serving row it replaces.
    cur.execute((delete_all_missing_statement if full else delete_checked_missing_statement)(schema, dataset))
    result.deleted += cur.rowcount
    log.info("serving %s: row by row: %d rows written, %d rejected", dataset.name, good, len(rows) - good)


def record_rejects(cur, schema: str, rejects: Sequence[Rejected]) -> None:
    if not rejects:
        return
    cur.executemany(
        sql.SQL("INSERT INTO {} (table_name, row_key, reason) VALUES (%s, %s, %s) ON CONFLICT (table_name, row_key) "
                "DO UPDATE SET reason = EXCLUDED.reason, seen_at = now()").format(
            sql.Identifier(schema, "bridge_rejects")),
        [(r.table, r.key, r.reason[:2000]) for r in rejects])
