"""Bridge and reconcile benchmarks on the real local Cassandra and Postgres, in one `python -m bench` run.

Data: ROWS recent_trades rows (SYMBOLS symbols x DAYS UTC days, so partitions of ROWS/(SYMBOLS*DAYS) rows,
exact 8-decimal prices) written straight into a throwaway keyspace (stack.scratch) with LSN write
timestamps, the same rows COPYed into a throwaway source schema shaped like `binance`.

- bridge_vs_rowwise: rows/s of `pg_cassandra_bridge` copying every row into empty serving tables (its
  --full path: token-range scan, COPY into staging, one INSERT ... ON CONFLICT) vs the original project's
  pattern on the same rows: read the table with one paged SELECT, one `INSERT ... ON CONFLICT DO NOTHING`
  per row, one commit at the end. Goal >= 10.
- bridge_vs_limit: the bridge's rows/s over this machine's limit for the same rows, the smaller of a raw
  token-range scan with the driver (rows only counted; the faster of reading typed values and reading the
  text Cassandra renders, which is what the bridge reads) and a raw COPY of pre-formatted text into an
  unindexed table. Goal >= 0.5.
- bridge_noop_s: an incremental run when nothing changed, with the ROWS rows held. Goal <= 1 s.
- bridge_incremental_s: CHANGES changes among the rows (updates and, one in ten, deletes) written through
  the stream's sink with their marks, then one incremental run; the serving rows are checked afterwards.
- reconcile_s: `make reconcile`'s comparison of the three stores at ROWS rows (must find them equal).
Each entry records the machine's load average. Run alone: `.venv/bin/python -m bench bench.bridge`
(BENCH_BRIDGE_ROWS=100000 for a quicker look).
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from binance_cdc import change_log, datasets, postgres_conn
from binance_cdc.cassandra_conn import connect
from binance_cdc.serve import bridge, cassandra_read, reconcile, serving_load
from binance_cdc.settings import Settings
from binance_cdc.stream.sink import CassandraSink, Message, plan
from stack.scratch import scratch_namespace

log = logging.getLogger(__name__)

ROWS = int(os.environ.get("BENCH_BRIDGE_ROWS", "1000000"))
SYMBOLS, DAYS = 10, 10
CHANGES = 10_000
DATASET = datasets.RECENT_TRADES
DAY0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def make_rows(n: int) -> list[tuple]:
    """Rows in Dataset.cql_columns order (Cassandra's), deterministic."""
    rng = random.Random(42)
    per = n // (SYMBOLS * DAYS)
    rows = []
    lsn = 10_000
    for s in range(SYMBOLS):
        symbol = f"BENCH{s}USDT"
        trade_id = 0
        for d in range(DAYS):
            day = DAY0 + timedelta(days=d)
            for i in range(per):
                trade_id += 1
                lsn += 1
                when = day + timedelta(milliseconds=i * (86_400_000 // per))
                price = Decimal(rng.randrange(1, 10**13)).scaleb(-8)
                qty = Decimal(rng.randrange(1, 10**9)).scaleb(-8)
                rows.append((symbol, trade_id, price, qty, price * qty, when, bool(i % 2), True, when.date(),
                             "r", lsn, when, when, str(lsn), when))
    return rows


def seed_cassandra(session, keyspace: str, rows: list[tuple]) -> float:
    from cassandra.concurrent import execute_concurrent
    from cassandra.query import BatchStatement, BatchType

    cols = tuple(DATASET.cql_columns)
    insert = session.prepare(f"INSERT INTO {keyspace}.{DATASET.name} ({', '.join(cols)}) "
                             f"VALUES ({', '.join('?' * len(cols))}) USING TIMESTAMP ?")
    began = time.perf_counter()
    batches = []
    for start in range(0, len(rows), 50):  # rows are grouped by partition; a batch never spans two
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in rows[start:start + 50]:
            batch.add(insert, (*row, row[cols.index("cdc_source_lsn")]))
        batches.append(batch)
    execute_concurrent(session, [(b, None) for b in batches], concurrency=32, raise_on_first_error=True)
    return time.perf_counter() - began


def seed_source(conn, schema: str, rows: list[tuple]) -> None:
    names = DATASET.column_names
    positions = [tuple(DATASET.cql_columns).index(c) for c in names]
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_pg_text(row[i]) for i in positions) + "\n")
    buf.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY {schema}.{DATASET.name} ({', '.join(names)}) FROM STDIN", buf)
    conn.commit()


def _pg_text(value) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def limit_scan(session, keyspace: str, as_text: bool) -> float:
    began = time.perf_counter()
    n = sum(len(page) for page in cassandra_read.scan_table(session, keyspace, DATASET, 5000, as_text=as_text))
    assert n == ROWS, n
    return n / (time.perf_counter() - began)


def limit_copy(conn, rows: list[tuple]) -> float:
    rejected: list = []
    # Cassandra hands the driver naive UTC times: format what the bridge formats, before the clock starts.
    naive = [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row) for row in rows]
    text = serving_load.copy_text(DATASET, naive, rejected).getvalue()
    cols = ", ".join(f"{c} {datasets.PG_TYPES[k]}" for c, k in DATASET.cql_columns.items())
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE bench_copy_limit ({cols})")
        began = time.perf_counter()
        cur.copy_expert(f"COPY bench_copy_limit ({', '.join(DATASET.cql_columns)}) FROM STDIN", io.StringIO(text))
        seconds = time.perf_counter() - began
        cur.execute("DROP TABLE bench_copy_limit")
    conn.commit()
    return len(rows) / seconds


def rowwise(settings: Settings, session, keyspace: str, conn, schema: str) -> float:
    """The original bridge: SELECT * (paged by the driver), one INSERT ... ON CONFLICT DO NOTHING a row,
    into a table like the serving one (keyed, indexed, logged), one commit at the end."""
    from cassandra.query import SimpleStatement  # the session returns named tuples, as the original read them
    from cassandra.util import Date

    from stack import postgres as stack_postgres

    cols = tuple(DATASET.cql_columns)
    stack_postgres.psql(settings, "-c", f"CREATE TABLE {schema}.rowwise (LIKE {schema}.{DATASET.name} INCLUDING ALL);"
                        f"GRANT INSERT, SELECT ON {schema}.rowwise TO {settings.bridge_login.user}",
                        dbname=settings.serving.database)
    began = time.perf_counter()
    statement = SimpleStatement(f"SELECT {', '.join(cols)} FROM {keyspace}.{DATASET.name}", fetch_size=5000)
    insert = f"INSERT INTO {schema}.rowwise ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) " \
             "ON CONFLICT DO NOTHING"
    n = 0
    with conn.cursor() as cur:
        for row in session.execute(statement):
            # The driver's Date for a CQL date: psycopg2 knows datetime.date.
            cur.execute(insert, tuple(v.date() if isinstance(v, Date) else v for v in row))
            n += 1
    conn.commit()
    seconds = time.perf_counter() - began
    assert n == ROWS, n
    return n / seconds


def changes(rows: list[tuple], rng: random.Random) -> list[tuple[str, tuple]]:
    picked = rng.sample(range(len(rows)), CHANGES)
    out = []
    for i, index in enumerate(picked):
        row = rows[index]
        if i % 10 == 0:
            out.append(("d", row))
        else:
            price = row[2] + Decimal("0.00000001")
            out.append(("u", (*row[:2], price, row[3], price * row[3], *row[5:])))
    return out


def message(change: tuple[str, tuple], lsn: int, offset: int) -> Message:
    op, row = change
    image = {c: _json(row[tuple(DATASET.cql_columns).index(c)]) for c in DATASET.column_names}
    envelope = {"before": image if op == "d" else None, "after": None if op == "d" else image,
                "source": {"lsn": lsn, "ts_ms": 1772323200000, "txId": lsn}, "op": op, "ts_ms": 1772323200005}
    return Message(f"bench.{DATASET.topic_suffix}", 0, offset, None, json.dumps(envelope).encode())


def _json(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def apply_to_source(conn, schema: str, todo: list[tuple[str, tuple]]) -> None:
    with conn.cursor() as cur:
        for op, row in todo:
            if op == "d":
                cur.execute(f"DELETE FROM {schema}.{DATASET.name} WHERE symbol = %s AND trade_id = %s", row[:2])
            else:
                cur.execute(f"UPDATE {schema}.{DATASET.name} SET price = %s, quote_qty = %s "
                            "WHERE symbol = %s AND trade_id = %s", (row[2], row[4], row[0], row[1]))
    conn.commit()


def run(settings: Settings) -> list[dict]:
    rows = make_rows(ROWS)
    log.info("bridge bench: %d rows in %d partitions", len(rows), SYMBOLS * DAYS)
    with scratch_namespace(settings, "bench_bridge", source=True) as ns:
        s = ns.settings
        writer = connect(s.cassandra, settings.cassandra_writer, timeout=120)
        reader = cassandra_read.reader_session(s.cassandra, settings.cassandra_reader, timeout=120)
        source = postgres_conn.app_connection(settings, "bench_bridge")
        serving = postgres_conn.connect(s.serving, settings.bridge_login, "bench_bridge")
        try:
            seeded = seed_cassandra(writer, ns.keyspace, rows)
            log.info("bridge bench: Cassandra seeded in %.1fs", seeded)
            seed_source(source, ns.source_schema, rows)
            stream_id = uuid.uuid4()
            progress = (f"INSERT INTO {ns.keyspace}.{change_log.STREAM_PROGRESS} (stream_id, last_batch_id, "
                        "batch_completed_at, end_offsets) VALUES (%s, %s, %s, '{}')")
            writer.execute(progress, (stream_id, 0, datetime.now(timezone.utc)))

            # The machine's read limit is the faster of the two ways the driver can read the rows: typed
            # values, or the text Cassandra renders (what the bridge reads).
            scan_typed, scan_text = limit_scan(reader, ns.keyspace, False), limit_scan(reader, ns.keyspace, True)
            scan = max(scan_typed, scan_text)
            copy = limit_copy(serving, rows)
            began, load_before = time.perf_counter(), load()
            full = bridge.run(s, full=True)
            full_s = time.perf_counter() - began
            assert full.exit_code == 0 and full.tables[DATASET.name].upserted == ROWS, full
            ours = ROWS / full_s
            log.info("bridge bench: full %.1fs (%.0f rows/s); limits scan %.0f, copy %.0f rows/s", full_s, ours,
                     scan, copy)
            baseline = rowwise(settings, writer, ns.keyspace, serving, ns.serving_schema)
            log.info("bridge bench: rowwise %.0f rows/s", baseline)

            began = time.perf_counter()
            noop = bridge.run(s)
            noop_s = time.perf_counter() - began
            assert noop.mode == "incremental" and noop.partitions == 0, noop

            todo = changes(rows, random.Random(7))
            sink = CassandraSink(writer, ns.keyspace)
            p = plan([message(c, 10**12 + i, i) for i, c in enumerate(todo)])
            assert not p.dead_letters, p.dead_letters[:1]
            sink.apply(p, change_log.BatchRef(stream_id, 1))
            writer.execute(progress, (stream_id, 1, datetime.now(timezone.utc)))
            apply_to_source(source, ns.source_schema, todo)
            began = time.perf_counter()
            incremental = bridge.run(s)
            incremental_s = time.perf_counter() - began
            result = incremental.tables[DATASET.name]
            assert result.deleted == CHANGES // 10 and result.rows_read == CHANGES - CHANGES // 10, incremental

            stores = reconcile.open_stores(s, ns.source_schema)
            try:
                began = time.perf_counter()
                diffs = reconcile.reconcile(stores, settle_s=0)
                reconcile_s = time.perf_counter() - began
            finally:
                stores.close()
            assert all(d.clean for d in diffs), reconcile.format_report(diffs)
        finally:
            for session in (writer, reader):
                session.cluster.shutdown()
            source.close()
            serving.close()
    limit = min(scan, copy)
    common = {"rows": ROWS, "load_avg_1m": load_before}
    return [
        {"name": "bridge_vs_rowwise", "ours": ours, "baseline": baseline, "unit": "rows/s", "ratio": ours / baseline,
         "goal": ">= 10", **common, "full_run_s": round(full_s, 2)},
        {"name": "bridge_vs_limit", "ours": ours, "baseline": limit, "unit": "rows/s", "ratio": ours / limit,
         "goal": ">= 0.5", "scan_rows_per_s": round(scan), "scan_typed_rows_per_s": round(scan_typed),
         "scan_text_rows_per_s": round(scan_text), "copy_rows_per_s": round(copy), **common},
        {"name": "bridge_noop_s", "ours": noop_s, "baseline": None, "unit": "s", "ratio": None, "goal": "<= 1",
         **common, "load_avg_now": load()},
        {"name": "bridge_incremental_s", "ours": incremental_s, "baseline": None, "unit": "s", "ratio": None,
         "changes": CHANGES, "deletes": CHANGES // 10, **common, "load_avg_now": load()},
        {"name": "reconcile_s", "ours": reconcile_s, "baseline": None, "unit": "s", "ratio": None,
         "stores": 3, **common, "load_avg_now": load()},
    ]
