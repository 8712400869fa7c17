"""The drain bench's baseline: the same backlog drained by the original project's job pattern (bench/seed_job.py).

`seed_drain(settings, backlog, max_offsets)` is called by bench.cdc.drain_bench after our job drained the
backlog and before its topics are deleted. It makes a throwaway keyspace (`seedjob_<hex>`, by the admin role,
tables shaped like the original's, SELECT/MODIFY granted to the writer role the job logs in as), runs the
seed job as a subprocess with a temp checkpoint (availableNow: it ends when drained), takes its steady rate
from its batch log lines exactly as ours is taken (rows of batches 2..n over the end of batch 1 to the end of
batch n), meters the CPU of its processes, then reads every stored row back and counts what it got wrong
against the values that were produced: rows missing, price/qty/quote_qty NULL, not byte-identical as decimal
strings or numerically changed, trade_time NULL or not the trade's instant, the source block lost, events
with an op other than c dropped. The keyspace is dropped afterwards, whatever happened.
Needs: what bench.cdc's drain needs, plus the settings group cassandra_admin and the jars of
.local/lib/seed (`make .local/lib/seed/.installed`, a prerequisite of `make bench`).
Run: through `.venv/bin/python -m bench.cdc drain [--events N]` (or `--no-seed` to skip it).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from bench import cdc
from bench.seed_job import AFTER_FIELDS, table_cql
from tests.stream_process import StreamProcess

log = logging.getLogger(__name__)

SEED_LOG = cdc.LOGS / "bench_seed_job.log"
TABLE = cdc.DATASET.name
DECIMALS = ("price", "qty", "quote_qty")
TIME = "trade_time"
JOB_TIMEOUT = 3600
LOST_TASK = re.compile(r"WARN TaskSetManager: Lost task ")


@dataclass(frozen=True)
class Backlog:
    """What bench.cdc produced: enough to regenerate every event's values."""

    prefix: str
    symbols: list[str]
    start: datetime
    events: int


# --- judging the stored rows (pure) ------------------------------------------------------------------------

def epoch_ms(iso: str) -> int:
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def plain(value: float) -> str:
    """A double as the shortest decimal string that reads back as it, in positional notation (never 8e-05)."""
    return format(Decimal(repr(value)), "f")


def defects(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What is wrong with one stored row of the seed job's table against the produced values.

    A decimal stored as a double is `null`, `changed` (another number) or `not_identical` (the same number
    but not the produced string, e.g. trailing zeros lost); trade_time must be the trade's epoch
    milliseconds; `source` must still carry the LSN."""
    found: list[str] = []
    for name in DECIMALS:
        value = stored.get(name)
        if value is None:
            found.append(f"{name}_null")
        elif Decimal(repr(value)) != Decimal(expected[name]):
            found.append(f"{name}_changed")
        elif plain(value) != expected[name]:
            found.append(f"{name}_not_identical")
    value = stored.get(TIME)
    if value is None:
        found.append(f"{TIME}_null")
    elif value != epoch_ms(expected[TIME]):
        found.append(f"{TIME}_changed")
    if '"lsn"' not in (stored.get("source") or ""):
        found.append("source_lost")
    return found


def tally(rows: Iterator[dict[str, Any]], expected_of, events: int) -> dict[str, Any]:
    """Counts of defects over the stored rows; rows never stored count as missing."""
    counts: dict[str, int] = {}
    seen = damaged = 0
    for row in rows:
        seen += 1
        found = defects(row, expected_of(row))
        damaged += bool(found)
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    return {"rows_produced": events, "rows_stored": seen, "rows_missing": events - seen,
            "rows_exact": seen - damaged, "rows_mangled": damaged, "defects": dict(sorted(counts.items()))}


# --- the throwaway keyspace and the job --------------------------------------------------------------------

@contextmanager
def seed_keyspace(settings) -> Iterator[str]:
    from binance_cdc.cassandra_conn import connect

    keyspace = f"seedjob_{secrets.token_hex(5)}"
    admin = connect(settings.cassandra, settings.cassandra_admin, timeout=120)
    try:
        admin.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {settings.cassandra.replication}")
        for table in AFTER_FIELDS:
            admin.execute(table_cql(keyspace, table))
        for permission in ("SELECT", "MODIFY"):
            admin.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {settings.cassandra_writer.user}")
        log.info("seed: keyspace %s with %d tables shaped like the original's", keyspace, len(AFTER_FIELDS))
        yield keyspace
    finally:
        admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        log.info("seed: keyspace %s dropped", keyspace)
        admin.cluster.shutdown()


class SeedJob(StreamProcess):
    """bench/seed_job.py in its own session, through the same wrapper as our job (log file, group kill)."""

    def __init__(self, env: dict[str, str], keyspace: str, checkpoint: Path, max_offsets: int) -> None:
        super().__init__(env, SEED_LOG)
        self.argv = [str(cdc.PYTHON), "-m", "bench.seed_job", "--keyspace", keyspace,
                     "--checkpoint", str(checkpoint), "--max-offsets", str(max_offsets)]


def run_job(settings, backlog: Backlog, keyspace: str, max_offsets: int) -> tuple[str, float, dict[str, Any]]:
    """(log text, wall seconds, CPU seconds by kind) of one seed-job drain."""
    cass_pid = cdc.cassandra_pid()
    cass_before = cdc.proc_stat(cass_pid)[2] if cass_pid and cdc.proc_stat(cass_pid) else None
    busy_before, total_before = cdc.machine_ticks()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_seed_") as tmp:
        # The original had no checkpoint; availableNow refuses to run without one.
        job = SeedJob({"TOPIC_PREFIX": backlog.prefix, "PYSPARK_PYTHON": str(cdc.PYTHON)}, keyspace,
                      Path(tmp) / "checkpoint", max_offsets)
        job.start()
        meter = cdc.CpuMeter(job.proc.pid)
        meter.thread.start()
        t0 = time.monotonic()
        try:
            code = job.wait_exit(timeout=JOB_TIMEOUT)
        finally:
            wall_s = time.monotonic() - t0
            meter.done.set()
            job.stop()
            log.info("seed job log tail:\n%s", job.tail(8))
    cpu = meter.by_kind()
    cass_after = cdc.proc_stat(cass_pid)[2] if cass_pid and cdc.proc_stat(cass_pid) else None
    if cass_before is not None and cass_after is not None:
        cpu["cassandra"] = round(cass_after - cass_before, 1)
    busy_after, total_after = cdc.machine_ticks()
    cpu["machine_busy_pct"] = round(100 * (busy_after - busy_before) / max(1, total_after - total_before), 1)
    cpu["loadavg_1m_before"] = round(load_before, 2)
    if code != 0:
        raise RuntimeError(f"bench/seed_job.py exited with {code}; see {SEED_LOG}")
    return job.text(), wall_s, cpu


def stored_rows(session, keyspace: str, symbols: list[str]) -> Iterator[dict[str, Any]]:
    from cassandra.query import SimpleStatement

    stmt = SimpleStatement(f"SELECT symbol, trade_id, {', '.join(DECIMALS)}, {TIME}, source, op "
                           f"FROM {keyspace}.{TABLE} WHERE symbol = %s", fetch_size=5000)
    for symbol in symbols:
        for row in session.execute(stmt, (symbol,), timeout=120):
            yield row._asdict()


def judge(settings, keyspace: str, backlog: Backlog) -> dict[str, Any]:
    span = timedelta(days=cdc.DRAIN_DAYS)

    def expected_of(row: dict[str, Any]) -> dict[str, Any]:
        return cdc.drain_values(row["trade_id"] - cdc.DRAIN_FIRST_TRADE_ID, backlog.symbols, backlog.start, span,
                                backlog.events)

    session = cdc.cassandra(settings)
    try:
        t0 = time.monotonic()
        damage = tally(stored_rows(session, keyspace, backlog.symbols), expected_of, backlog.events)
        log.info("seed: %d rows read back and judged in %.1f s", damage["rows_stored"], time.monotonic() - t0)
    finally:
        session.cluster.shutdown()
    # Every produced event is a create: the pattern's `op == 'c'` filter has nothing to drop in this backlog.
    damage["non_create_events_produced"] = 0
    damage["non_create_events_dropped"] = 0
    return damage


def seed_drain(settings, backlog: Backlog, max_offsets: int) -> dict[str, Any]:
    """The seed job's figures on the backlog: steady rate, CPU, and the damage it did."""
    with seed_keyspace(settings) as keyspace:
        text, wall_s, cpu = run_job(settings, backlog, keyspace, max_offsets)
        started, batches = cdc.parse_job_log(text, logger=f"seed_job.{TABLE}")
        rates = cdc.drain_rates(started, batches)
        damage = judge(settings, keyspace, backlog)
    job_cpu = cpu.get("spark_jvm", 0.0) + cpu.get("python", 0.0)
    figures = {
        "steady_rows_per_s": round(rates["steady_rows_per_s"], 1), "batches": rates["batches"],
        "steady_seconds": round(rates["steady_seconds"], 2),
        "from_query_start_rows_per_s": round(rates.get("from_query_start_rows_per_s", 0), 1),
        "wall_rows_per_s": round(backlog.events / wall_s, 1), "wall_seconds": round(wall_s, 2),
        "processed": sum(b.rows for b in batches), "cpu_seconds": cpu,
        # each a task that failed (e.g. a Cassandra write timeout) and was run again, rewriting its rows
        "tasks_retried": len(LOST_TASK.findall(text)),
        "job_cpu_us_per_event": round(job_cpu * 1e6 / backlog.events, 1), "damage": damage,
    }
    log.info("seed job: steady %.0f rows/s over %d batches; %d of %d rows stored, %d exact, %d missing; %s",
             figures["steady_rows_per_s"], figures["batches"], damage["rows_stored"], backlog.events,
             damage["rows_exact"], damage["rows_missing"], damage["defects"])
    return figures
