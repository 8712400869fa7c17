"""Stage 4: Cassandra `binance_test` -> the Postgres serving schema the dashboards read.

One run (`run(settings, full=False)`):
1. takes the bridge's advisory lock on the serving database (another run holding it: EXIT_LOCKED);
2. reads every streaming query's progress (`stream_progress`) and the bridge's cursors
   (`<schema>.bridge_cursor`);
3. incremental (the default once a cursor exists): reads the keys the stream marked for the batches
   after each cursor (`changed_partitions`), re-reads exactly those rows from Cassandra, and per table
   COPYs them to staging, upserts newer-wins by LSN and deletes the checked keys Cassandra no longer has;
   a table the stream marked as truncated is copied whole instead, as in a full run (its deleted
   partitions left no keys to re-read);
   full (`--full`, the first run, a new streaming query, or a cursor older than the marks' 14-day TTL):
   scans every table by token ranges, upserts everything and deletes every serving row Cassandra lacks;
4. in the same transaction: moves the cursors to the progress read in step 2, records the run in
   `<schema>.bridge_runs` and rejected rows in `<schema>.bridge_rejects`; commits; logs one line per table.
A crash before the commit leaves the cursors where they were: the next run repeats the work, and the
newer-wins upsert makes that harmless. Cassandra is only read (role CASSANDRA_READER_USER).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from psycopg2 import sql

from binance_cdc import change_log, postgres_conn
from binance_cdc.datasets import DATASETS, Dataset
from binance_cdc.serve import cassandra_read, serving_load
from binance_cdc.serve.serving_load import Rejected, TableResult
from binance_cdc.settings import Settings
from binance_cdc.stream.retry import LoginRefused, log_in

log = logging.getLogger("pg_cassandra_bridge")

EXIT_OK = 0
EXIT_REJECTED = 1  # the run committed, but some rows could not be copied (see bridge_rejects)
EXIT_CONFIG = 2  # a setting is missing or invalid, or a store refused the login (a wrong password)
EXIT_LOCKED = 3
EXIT_UNAVAILABLE = 4  # Cassandra or Postgres unreachable, or the run failed and was rolled back
# pg_try_advisory_lock key of the bridge: b"bridge\0\0" read as a bigint.
LOCK_KEY = int.from_bytes(b"bridge\x00\x00", "big")
# Marks live MARK_TTL_S; a cursor older than this margin before it may have lost some: copy everything.
TTL_MARGIN = timedelta(days=1)
SETTINGS_GROUPS = ("cassandra", "cassandra_reader", "serving", "bridge", "bridge_login")


@dataclass
class RunReport:
    mode: str = "incremental"
    exit_code: int = EXIT_OK
    tables: dict[str, TableResult] = field(default_factory=dict)
    partitions: int = 0
    behind_s: float | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def rejected(self) -> list[Rejected]:
        return [r for t in self.tables.values() for r in (t.rejected or [])]


def choose_mode(full: bool, cursors: dict[uuid.UUID, tuple[int, datetime]],
                progress: dict[uuid.UUID, cassandra_read.Progress], now: datetime) -> tuple[str, str]:
    """("full" | "incremental", why). Pure."""
    if full:
        return "full", "asked for (--full)"
    if not cursors:
        return "full", "first run: no cursor yet"
    for stream_id, p in progress.items():
        if stream_id not in cursors:
            return "full", f"new streaming query {stream_id} (a new checkpoint): its earlier batches are unknown"
        last, at = cursors[stream_id]
        if p.last_batch_id > last and now - at > timedelta(seconds=change_log.MARK_TTL_S) - TTL_MARGIN:
            return "full", f"cursor of {stream_id} is from {at:%Y-%m-%d %H:%M}Z, older than the marks kept"
    return "incremental", "cursors present"


def read_cursors(cur, schema: str) -> dict[uuid.UUID, tuple[int, datetime]]:
    cur.execute(sql.SQL("SELECT stream_id, last_batch_id, batch_completed_at FROM {}").format(
        sql.Identifier(schema, "bridge_cursor")))
    return {uuid.UUID(str(s)): (b, at) for s, b, at in cur.fetchall()}


def write_cursors(cur, schema: str, progress: dict[uuid.UUID, cassandra_read.Progress]) -> None:
    for p in progress.values():
        cur.execute(sql.SQL(
            "INSERT INTO {} (stream_id, last_batch_id, batch_completed_at, updated_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (stream_id) DO UPDATE SET last_batch_id = EXCLUDED.last_batch_id, "
            "batch_completed_at = EXCLUDED.batch_completed_at, updated_at = now()").format(
            sql.Identifier(schema, "bridge_cursor")), (str(p.stream_id), p.last_batch_id, p.batch_completed_at))


def behind_seconds(progress: dict[uuid.UUID, cassandra_read.Progress], now: datetime) -> float | None:
    """How old the newest batch copied is: the serving tables hold Cassandra as it was then."""
    if not progress:
        return None
    return max(0.0, (now - max(p.batch_completed_at for p in progress.values())).total_seconds())


def _texts(dataset: Dataset, pages, result: TableResult, rejected: list[Rejected]):
    for page in pages:
        result.rows_read += len(page)
        yield serving_load.copy_rendered(dataset, page, rejected).getvalue()


def _typed_key(dataset: Dataset, names, values) -> tuple:
    try:
        return change_log.decode_key(dataset, names, values)
    except ValueError:
        return tuple(values)  # a key Postgres cannot hold is in no serving table: nothing to keep


def _load_table(cur, schema: str, dataset: Dataset, read_pages, result: TableResult,
                checked: list[tuple] | None) -> None:
    """Stream the rows read from Cassandra into staging with one COPY, stage the keys, merge.
    `checked`: the keys re-read (incremental), or None after a full scan. A full copy into an empty
    serving table (the first run) COPYs straight into it: nothing there to merge with or delete."""
    rejected: list[Rejected] = []
    if checked is None and serving_load.is_empty(cur, schema, dataset):
        cur.execute("SAVEPOINT bridge_direct")
        try:
            serving_load.copy_rows(cur, dataset, serving_load.ChunkStream(_texts(dataset, read_pages(), result, rejected)),
                                   table=sql.Identifier(schema, dataset.name))
            cur.execute("RELEASE SAVEPOINT bridge_direct")
            result.upserted += result.rows_read - len(rejected)
            result.rejected.extend(rejected)
            return
        except Exception as exc:  # noqa: BLE001 - a row the checks let through: the staged path isolates it
            cur.execute("ROLLBACK TO SAVEPOINT bridge_direct")
            log.warning("serving %s: direct COPY failed (%s); reading again through staging", dataset.name,
                        str(exc).strip().splitlines()[0])
            result.rows_read, rejected = 0, []
    serving_load.create_staging(cur, schema, dataset)
    serving_load.copy_rows(cur, dataset, serving_load.ChunkStream(_texts(dataset, read_pages(), result, rejected)))
    result.rejected.extend(rejected)
    # A rejected row still exists in Cassandra: its older serving copy must not be deleted as missing.
    if checked is None:
        keys = [r.key_values for r in rejected]
    else:
        names = serving_load.key_columns(dataset)
        bad = {tuple(change_log.encode_key(_typed_key(dataset, names, r.key_values))) for r in rejected}
        keys = [k for k in checked if tuple(change_log.encode_key(k)) not in bad]
    if keys:
        serving_load.copy_rows(cur, dataset, serving_load.keys_text(dataset, keys), "keys")
    serving_load.merge(cur, schema, dataset, checked is None, result)


def _unlock(conn) -> None:
    """Explicitly: on close the server releases the lock only a moment later, when a cron run that
    follows at once could still find it taken. A broken connection releases it anyway."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        conn.commit()
    except Exception as exc:  # noqa: BLE001 - nothing more to do than let close() end the session
        log.debug("advisory unlock failed: %s", exc)


def run(settings: Settings, full: bool = False) -> RunReport:
    """One bridge run; returns a report whose exit_code is one of the EXIT_* codes. Never raises for
    unreachable stores or a failed run: they are reported."""
    began = time.monotonic()
    started_at = datetime.now(timezone.utc)
    report = RunReport()
    try:
        conn = log_in(lambda: postgres_conn.connect(settings.serving, settings.bridge_login, "pg_cassandra_bridge"),
                      "the serving Postgres", "bridge_login", settings.bridge_login.user)
    except LoginRefused as exc:
        report.exit_code, report.message = EXIT_CONFIG, str(exc)
        return report
    except Exception as exc:  # noqa: BLE001 - psycopg2.OperationalError and friends, reported by name
        report.exit_code = EXIT_UNAVAILABLE
        report.message = (f"cannot connect to the serving Postgres {settings.serving.host}:{settings.serving.port}/"
                          f"{settings.serving.database} as {settings.bridge_login.user}: {str(exc).strip()}")
        return report
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            locked = cur.fetchone()[0]
        conn.commit()
        if not locked:
            report.exit_code = EXIT_LOCKED
            report.message = f"another bridge run holds advisory lock {LOCK_KEY}; this run exits without writing"
            return report
        try:
            session = log_in(lambda: cassandra_read.reader_session(settings.cassandra, settings.cassandra_reader),
                             "Cassandra", "cassandra_reader", settings.cassandra_reader.user)
        except LoginRefused as exc:
            report.exit_code, report.message = EXIT_CONFIG, str(exc)
            return report
        except Exception as exc:  # noqa: BLE001 - NoHostAvailable, OperationTimedOut...
            report.exit_code = EXIT_UNAVAILABLE
            report.message = f"cannot read Cassandra {','.join(settings.cassandra.hosts)} as " \
                             f"{settings.cassandra_reader.user}: {exc}"
            return report
        try:
            _run(conn, session, settings, full, report, started_at)
        except Exception as exc:  # noqa: BLE001 - the transaction is rolled back; nothing half-written stays
            conn.rollback()
            report.exit_code = EXIT_UNAVAILABLE
            report.message = f"bridge run failed and was rolled back: {exc.__class__.__name__}: {exc}"
            log.exception("bridge run failed")
        finally:
            session.cluster.shutdown()
            _unlock(conn)
    finally:
        conn.close()
        report.seconds = time.monotonic() - began
    return report


def _run(conn, session, settings: Settings, full: bool, report: RunReport, started_at: datetime) -> None:
    keyspace = settings.cassandra.keyspace
    schema = settings.serving.schema
    page_size = settings.bridge.page_size
    progress = cassandra_read.read_progress(session, keyspace)
    with conn.cursor() as cur:
        cursors = read_cursors(cur, schema)
        report.mode, why = choose_mode(full, cursors, progress, started_at)
        log.info("bridge: %s run (%s); %d streaming quer%s known", report.mode, why, len(progress),
                 "y" if len(progress) == 1 else "ies")
        if report.mode == "full":
            for dataset in DATASETS.values():
                result = report.tables[dataset.name] = TableResult(rejected=[])
                _load_table(cur, schema, dataset,
                            lambda d=dataset: cassandra_read.scan_table(session, keyspace, d, page_size, as_text=True),
                            result, None)
        else:
            marked: dict[str, dict[tuple, set[tuple]]] = {}
            truncated: set[str] = set()
            for stream_id, p in progress.items():
                last = cursors[stream_id][0]
                if p.last_batch_id <= last:
                    continue
                marks = cassandra_read.read_marks(session, keyspace, stream_id, last, p.last_batch_id, page_size)
                truncated |= marks.truncated
                for table, partitions in marks.partitions.items():
                    for partition, keys in partitions.items():
                        marked.setdefault(table, {}).setdefault(partition, set()).update(keys)
            for dataset in DATASETS.values():
                result = report.tables[dataset.name] = TableResult(rejected=[])
                if dataset.name in truncated:
                    log.info("bridge: %s was truncated: copying it whole", dataset.name)
                    _load_table(cur, schema, dataset,
                                lambda d=dataset: cassandra_read.scan_table(session, keyspace, d, page_size,
                                                                            as_text=True),
                                result, None)
                    continue
                partitions = marked.get(dataset.name)
                if not partitions:
                    continue
                report.partitions += len(partitions)
                checked = [(*partition, *key) for partition, keys in partitions.items() for key in keys]
                _load_table(cur, schema, dataset,
                            lambda d=dataset, p=partitions: cassandra_read.read_rows(session, keyspace, d, p, page_size,
                                                                            as_text=True),
                            result, checked)
        write_cursors(cur, schema, progress)
        report.behind_s = behind_seconds(progress, datetime.now(timezone.utc))
        serving_load.record_rejects(cur, schema, report.rejected)
        cur.execute(sql.SQL(
            "INSERT INTO {} (mode, started_at, partitions, rows_read, upserted, deleted, rejected, behind_s) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)").format(sql.Identifier(schema, "bridge_runs")),
            (report.mode, started_at, report.partitions, sum(t.rows_read for t in report.tables.values()),
             sum(t.upserted for t in report.tables.values()), sum(t.deleted for t in report.tables.values()),
             len(report.rejected), report.behind_s))
    conn.commit()
    for name, t in report.tables.items():
        level = logging.WARNING if t.rejected else logging.INFO
        log.log(level, "table=%s mode=%s rows_read=%d upserted=%d deleted=%d rejected=%d%s", name, report.mode,
                t.rows_read, t.upserted, t.deleted, len(t.rejected or []),
                f" first_rejected={t.rejected[0].key} ({t.rejected[0].reason})" if t.rejected else "")
    if report.rejected:
        report.exit_code = EXIT_REJECTED
        report.message = f"{len(report.rejected)} row(s) could not be copied (see {schema}.bridge_rejects)"
