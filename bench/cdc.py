"""CDC benchmarks of the streaming stage, each against the real local stack, in one `python -m bench` run.

- cdc_latency_p50_s / _p95_s / _p99_s: freshness Postgres commit -> row in Cassandra at a steady 1,000 rows/s
  for 60 s (100 rows every 100 ms, one transaction each, paced by a monotonic clock) through the real
  Debezium connector and spark_streaming.py (a subprocess: fresh temp checkpoint, startingOffsets latest,
  trigger TRIGGER_SECONDS). Per row: cdc_written_at - cdc_source_ts, i.e. Postgres commit time (source.ts_ms)
  to the sink's clock reading, which it takes once per Spark task BEFORE decoding and writing that task's
  rows. So these figures are a lower bound; a second measure polls Cassandra for one row of every 10th
  transaction and records when it became readable (client commit -> visible), reported in the same entries.
  Goals: p50 <= 1 s, p99 <= 3 s. Cleanup deletes the bench rows in Postgres and waits for the deletes to
  reach Cassandra (so deletes flowing is checked too), then removes the partitions directly as well.
- drain_rows_per_s: backlog drain Kafka -> Cassandra. DRAIN_EVENTS Debezium create events shaped like the
  recorded ones (tests/fixtures/debezium/plain_recent_trades.json) go to `<benchdrainXXXX>.binance.
  recent_trades` (DRAIN_PARTITIONS partitions, DRAIN_SYMBOLS symbols, lz4), then `spark_streaming.py --once`
  drains them (fresh checkpoint, earliest, SPARK_MAX_OFFSETS_PER_TRIGGER=DRAIN_MAX_OFFSETS). The entry is the
  steady rate from the job's own batch log lines (rows of batches 2..n over the time from the end of batch 1
  to the end of batch n, i.e. without JVM start and the first batch's warm-up); the rate including the first
  batch and the wall-clock rate including JVM start are extra keys. Every row is then counted per Cassandra
  partition (no loss allowed); topics and rows are removed afterwards. Goal >= 20,000 rows/s.
- drain_vs_seed_job: the same events, on the same topic, right after ours, drained by the original project's
  job pattern rebuilt in bench/seed_job.py (bench/seed_drain.py runs and judges it). ours = our steady rate,
  baseline = its steady rate (measured the same way), ratio = ours / baseline; beside it its CPU per event and
  what it stored wrong (rows missing, values NULL or changed). Goal ratio >= 2.0.

The latency and drain_rows_per_s entries have no baseline (the original had no CDC stage to compare with).
Needs: the whole stack up (`make up`: Postgres, Kafka, Connect with binance-postgres-cdc RUNNING, Cassandra)
and every settings group. Run: `.venv/bin/python -m bench bench.cdc`, or for iteration
`.venv/bin/python -m bench.cdc {latency,drain} [--seconds N] [--trigger S] [--events N] [--no-seed]` (prints,
no merge; --no-seed skips the seed-job baseline of the drain).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from binance_cdc import datasets as ds
from binance_cdc.settings import PROJECT_ROOT
from binance_cdc.kafka_client import client_conf as kafka_conf
from tests.stream_process import StreamProcess

log = logging.getLogger(__name__)

PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
LOGS = PROJECT_ROOT / ".local" / "logs"  # the job's log of the last bench run stays here for a look
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "debezium" / "plain_recent_trades.json"
DATASET = ds.RECENT_TRADES

RATE_ROWS_PER_S = 1_000
LATENCY_SECONDS = 60
ROWS_PER_TX = 100
# 0.25, 0.5 and 1.0 s were tried: a micro-batch takes ~1-1.5 s here (fixed cost), so batches run back to back
# and the interval hardly matters; the shortest keeps an idle stream's first batch soonest.
TRIGGER_SECONDS = 0.25
SAMPLE_EVERY_TX = 10  # visibility is polled for the first row of every 10th transaction
FIRST_TRADE_ID = 1_000_000  # warm-up rows use small ids, measured rows start here
WARM_UP_SECONDS = 20  # of the steady load before the measured LATENCY_SECONDS
WARM_UP_FIRST_ID = 100

DRAIN_EVENTS = 1_000_000
DRAIN_PARTITIONS = 2
DRAIN_SYMBOLS = 10
DRAIN_DAYS = 5  # trade times spread over 5 UTC days: 50 Cassandra partitions of 20k rows
DRAIN_MAX_OFFSETS = 200_000
DRAIN_FIRST_TRADE_ID = 1_000_000_000  # the i-th drain event has trade id DRAIN_FIRST_TRADE_ID + i

CATCH_UP_TIMEOUT = 300
STOP_TIMEOUT = 150
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (\S+): (.*)$")
BATCH_DONE = re.compile(r"^batch (\d+): processed (\d+) messages, (\d+) dead letters")


# --- pure helpers ------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Batch:
    batch_id: int
    rows: int
    dead_letters: int
    ended: datetime  # log time of the "processed" line (the batch's end)


def parse_job_log(text: str, logger: str = "spark_streaming") -> tuple[datetime | None, list[Batch]]:
    """(time the query started, finished batches) from the log lines of `logger` (spark_streaming.py's by
    default; bench/seed_job.py logs each of its queries under seed_job.<table>)."""
    started: datetime | None = None
    batches: list[Batch] = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m or m.group(2) != logger:
            continue
        moment = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        message = m.group(3)
        if started is None and message.startswith("query ") and " started " in message:
            started = moment
        done = BATCH_DONE.match(message)
        if done:
            batches.append(Batch(int(done.group(1)), int(done.group(2)), int(done.group(3)), moment))
    return started, batches


def drain_rates(started: datetime | None, batches: list[Batch]) -> dict[str, float]:
    """Steady rate (batches 2..n from the end of batch 1) and the rate from query start over all batches."""
    nonempty = [b for b in batches if b.rows]
    if len(nonempty) < 2:
        raise ValueError(f"need at least two non-empty batches to time a steady drain, got {len(nonempty)}")
    steady_rows = sum(b.rows for b in nonempty[1:])
    steady_s = (nonempty[-1].ended - nonempty[0].ended).total_seconds()
    rates = {"steady_rows_per_s": steady_rows / steady_s, "steady_seconds": steady_s, "steady_rows": steady_rows,
             "batches": len(nonempty), "first_batch_rows": nonempty[0].rows}
    if started is not None:
        total_s = (nonempty[-1].ended - started).total_seconds()
        rates.update(from_query_start_rows_per_s=sum(b.rows for b in nonempty) / total_s,
                     from_query_start_seconds=total_s)
    return rates


def event_template(fixture: Path = FIXTURE, dataset: ds.Dataset = DATASET) -> tuple[str, str]:
    """(key, value) %-format templates from the first recorded create event of the dataset.

    The recorded envelope is kept whole (source block, converter layout); the row fields, the source
    commit time / LSN / txId and the envelope times become placeholders named after the columns.
    """
    records = json.loads(fixture.read_text())
    recorded = next(json.loads(r["value"]) for r in records
                    if r["value"] and json.loads(r["value"]).get("op") == "c")
    if set(recorded["after"]) != set(dataset.column_names):
        raise ValueError(f"{fixture.name}: recorded columns {sorted(recorded['after'])} differ from "
                         f"{dataset.name} {sorted(dataset.column_names)}")
    recorded["after"] = {c.name: f"@@{c.name}@@" for c in dataset.columns}
    source = recorded["source"]
    source.update(ts_ms="@@src_ms@@", ts_us="@@src_us@@", ts_ns="@@src_ns@@", lsn="@@lsn@@", txId="@@lsn@@",
                  sequence="@@sequence@@", snapshot="false", name="@@prefix@@")
    recorded.update(ts_ms="@@ev_ms@@", ts_us="@@ev_us@@", ts_ns="@@ev_ns@@", transaction=None)
    key = {name: f"@@{name}@@" for name in dataset.primary_key}

    def to_template(obj: dict) -> str:
        text = json.dumps(obj, separators=(",", ":")).replace("%", "%%")
        # quoted placeholders: strings keep their quotes, numbers/booleans lose them
        for c in dataset.columns:
            quoted = c.kind in ("text", "decimal", "timestamp")
            text = text.replace(f'"@@{c.name}@@"', f'"%({c.name})s"' if quoted else f"%({c.name})s")
        for name in ("src_ms", "src_us", "src_ns", "lsn", "ev_ms", "ev_us", "ev_ns"):
            text = text.replace(f'"@@{name}@@"', f"%({name})d")
        return text.replace('"@@sequence@@"', '"%(sequence)s"').replace('"@@prefix@@"', '"%(prefix)s"')

    return to_template(key), to_template(recorded)


def drain_symbols(tag: str, n: int = DRAIN_SYMBOLS) -> list[str]:
    return [f"BENCHD{tag.upper()}{i}USDT" for i in range(n)]


def drain_values(i: int, symbols: list[str], start: datetime, span: timedelta, n: int) -> dict[str, Any]:
    """Column values of the i-th synthetic trade: exact decimal strings, millisecond UTC times."""
    step_ms = max(1, int(span.total_seconds() * 1000) // n)
    trade_time = start + timedelta(milliseconds=i * step_ms)
    price = Decimal(60000_00000000 + (i * 7919) % 10_000_00000000) / Decimal(10 ** 8)
    qty = Decimal(1 + i % 99_999) / Decimal(10 ** 5)
    values: dict[str, Any] = {}
    for c in DATASET.columns:
        if c.name == "symbol":
            values[c.name] = symbols[i % len(symbols)]
        elif c.kind == "bigint":
            values[c.name] = DRAIN_FIRST_TRADE_ID + i
        elif c.kind == "decimal":
            values[c.name] = str({"price": price, "qty": qty}.get(c.name, (price * qty).quantize(Decimal("1E-8"))))
        elif c.kind == "timestamp":
            values[c.name] = trade_time.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        elif c.kind == "boolean":
            values[c.name] = "true" if i % 2 else "false"
        else:
            raise ValueError(f"{DATASET.name}.{c.name}: no synthetic value for kind {c.kind}")
    return values


# --- CPU accounting (where the time goes on this shared 2-core box) -----------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, session id, user+system CPU seconds) of a live process, None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[3]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """Polls the CPU seconds of every process in one session (the job: its JVM and Python workers)."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.seen: dict[int, tuple[str, float]] = {}
        self.peak_rss: dict[str, int] = {}  # kind -> highest resident memory (bytes) summed over its processes
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="bench-cpu", daemon=True)

    def _poll(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(1.0)

    def sample(self) -> None:
        rss: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat and stat[1] == self.session_id:
                    self.seen[int(entry.name)] = (stat[0], stat[2])
                    kind = _kind(stat[0])
                    rss[kind] = rss.get(kind, 0) + resident_bytes(int(entry.name))
        for kind, total in rss.items():
            self.peak_rss[kind] = max(self.peak_rss.get(kind, 0), total)

    def by_kind(self) -> dict[str, Any]:
        kinds: dict[str, float] = {}
        for comm, cpu in self.seen.values():
            kinds[_kind(comm)] = kinds.get(_kind(comm), 0.0) + cpu
        summary: dict[str, Any] = {k: round(v, 1) for k, v in kinds.items()}
        # many distinct Python pids would mean PySpark workers (and their Cassandra sessions) are not reused
        summary["python_processes"] = sum(1 for comm, _ in self.seen.values() if comm != "java")
        summary.update({f"{kind}_peak_rss_mib": round(b / 2 ** 20) for kind, b in self.peak_rss.items()})
        return summary


def _kind(comm: str) -> str:
    return "spark_jvm" if comm == "java" else "python"  # python: the job's driver + PySpark workers


def resident_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process now (VmRSS), or its highest since it started (VmHWM); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cassandra_pid() -> int | None:
    from stack.process import read_pid

    return read_pid("cassandra")


# --- the streaming job as a subprocess ---------------------------------------------------------------------

class StreamingJob(StreamProcess):
    """The shared wrapper (tests/stream_process.py) with its log in LOGS and the CPU of its session metered."""

    def __init__(self, env: dict[str, str], once: bool = False) -> None:
        super().__init__(env, LOGS / f"bench_cdc_{'drain' if once else 'latency'}.log", once=once, master="local[2]")
        self.cpu: CpuMeter | None = None

    def start(self) -> None:
        super().start()
        self.cpu = CpuMeter(self.proc.pid)
        self.cpu.thread.start()
        log.info("spark_streaming.py started: pid %d, log %s", self.proc.pid, self.log_path)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        if self.cpu is not None:
            self.cpu.done.set()
        code = super().stop(timeout)
        if self.proc is not None:
            log.info("spark_streaming.py pid %d stopped (exit %s)", self.proc.pid, code)
        return code


def job_env(settings, checkpoint: Path, **overrides: str) -> dict[str, str]:
    env = {"SPARK_CHECKPOINT_DIR": str(checkpoint), "TOPIC_PREFIX": settings.kafka.topic_prefix,
           "PYSPARK_PYTHON": str(PYTHON)}
    env.update(overrides)
    return env


@contextmanager
def running_job(settings, env: dict[str, str], once: bool = False) -> Iterator[StreamingJob]:
    with tempfile.TemporaryDirectory(prefix="bench_cdc_") as tmp:
        job = StreamingJob(job_env(settings, Path(tmp) / "checkpoint", **env), once=once)
        try:
            job.start()
            yield job
        finally:
            job.stop()
            log.info("spark_streaming.py log tail:\n%s", job.tail(12))


# --- stores ------------------------------------------------------------------------------------------------

def pg_connect(settings):
    from binance_cdc.postgres_conn import app_connection

    return app_connection(settings, "bench_cdc")


def cassandra(settings):
    from binance_cdc.cassandra_conn import connect

    return connect(settings.cassandra, settings.cassandra_writer, keyspace=settings.cassandra.keyspace, timeout=60)


def count_partition(session, symbol: str, day, min_trade_id: int = 0) -> int:
    from cassandra.query import SimpleStatement

    stmt = SimpleStatement(f"SELECT count(*) FROM {DATASET.name} WHERE symbol = %s AND {DATASET.bucket_column} = %s "
                           "AND trade_id >= %s", fetch_size=None)
    return session.execute(stmt, (symbol, day, min_trade_id), timeout=120).one()[0]


def delete_partition(session, symbol: str, day) -> None:
    # No USING TIMESTAMP: "now" in microseconds is far above any LSN, so the partition stays deleted; the
    # bench symbols are random and never written again.
    session.execute(f"DELETE FROM {DATASET.name} WHERE symbol = %s AND {DATASET.bucket_column} = %s",
                    (symbol, day), timeout=60)


# --- latency -----------------------------------------------------------------------------------------------

def now_ms() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def trade_row(symbol: str, trade_id: int, moment: datetime) -> tuple:
    """A recent_trades row in column order (dataset-driven), exact decimals, millisecond UTC time."""
    values = {"symbol": symbol}
    for c in DATASET.columns:
        if c.name in values:
            continue
        if c.kind == "bigint":
            values[c.name] = trade_id
        elif c.kind == "decimal":
            values[c.name] = Decimal("67012.34000000") if c.name == "price" else Decimal("0.00150000")
        elif c.kind == "timestamp":
            values[c.name] = moment
        elif c.kind == "boolean":
            values[c.name] = bool(trade_id % 2)
        else:
            raise ValueError(f"{DATASET.name}.{c.name}: no bench value for kind {c.kind}")
    return tuple(values[c] for c in DATASET.column_names)


def insert_sql() -> str:
    return f"INSERT INTO binance.{DATASET.name} ({', '.join(DATASET.column_names)}) VALUES %s"


@dataclass
class Sampler:
    """Polls Cassandra for sampled rows and records client commit -> readable, in seconds."""

    session: Any
    symbol: str
    pending: list = field(default_factory=list)  # (trade_id, day, committed wall time)
    latencies: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def add(self, trade_id: int, day, committed: float) -> None:
        with self.lock:
            self.pending.append((trade_id, day, committed))

    def run(self) -> None:
        stmt = self.session.prepare(f"SELECT trade_id FROM {DATASET.name} WHERE symbol = ? AND "
                                    f"{DATASET.bucket_column} = ? AND trade_id = ?")
        while not (self.done.is_set() and not self.pending):
            with self.lock:
                pending = list(self.pending)
            for item in pending:
                trade_id, day, committed = item
                if self.session.execute(stmt, (self.symbol, day, trade_id)).one() is not None:
                    self.latencies.append(time.time() - committed)
                    with self.lock:
                        self.pending.remove(item)
            time.sleep(0.01)


def wait_rows(session, symbol: str, days: set, expected: int, timeout: float, job: StreamingJob,
              min_trade_id: int = 0) -> float:
    """Seconds until the bench partitions hold `expected` rows with trade_id >= min_trade_id (0: deletes)."""
    t0 = time.monotonic()
    while True:
        count = sum(count_partition(session, symbol, d, min_trade_id) for d in days)
        if count == expected:
            return time.monotonic() - t0
        job.check_alive()
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{DATASET.name} {symbol}: {count} rows in Cassandra, expected {expected}, "
                               f"after {timeout}s")
        log.info("%s %s: %d of %d rows in Cassandra", DATASET.name, symbol, count, expected)
        time.sleep(2)


def warm_up(conn, session, symbol: str, job: StreamingJob, days: set) -> None:
    """Insert one row at a time until the job has written one: startingOffsets=latest is then resolved."""
    from psycopg2.extras import execute_values

    for trade_id in range(1, 30):
        moment = now_ms()
        days.add(moment.date())
        with conn.cursor() as cur:
            execute_values(cur, insert_sql(), [trade_row(symbol, trade_id, moment)])
        conn.commit()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job.check_alive()
            if count_partition(session, symbol, moment.date()):
                log.info("%s %s: warm-up row %d written by the job", DATASET.name, symbol, trade_id)
                return
            time.sleep(0.2)
    raise TimeoutError(f"{DATASET.name} {symbol}: no warm-up row reached Cassandra; job log:\n{job.tail()}")


def produce_steady(conn, symbol: str, seconds: int, sampler: Sampler | None, days: set,
                   first_id: int = FIRST_TRADE_ID) -> dict:
    """ROWS_PER_TX rows every ROWS_PER_TX/RATE s, one transaction each, paced on the monotonic clock; trade ids
    from `first_id`. Without a sampler: the warm-up, whose rows (ids below FIRST_TRADE_ID) are not measured."""
    from psycopg2.extras import execute_values

    interval = ROWS_PER_TX / RATE_ROWS_PER_S
    ticks = int(seconds / interval)
    late = 0
    t0 = time.monotonic()
    for tick in range(ticks):
        due = t0 + tick * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -interval:
            late += 1
        moment = now_ms()
        days.add(moment.date())
        first = first_id + tick * ROWS_PER_TX
        rows = [trade_row(symbol, first + k, moment) for k in range(ROWS_PER_TX)]
        with conn.cursor() as cur:
            execute_values(cur, insert_sql(), rows, page_size=ROWS_PER_TX)
        conn.commit()
        if sampler is not None and tick % SAMPLE_EVERY_TX == 0:
            sampler.add(first, moment.date(), time.time())
        if tick and tick % 100 == 0:
            log.info("%s %s: %d rows committed", DATASET.name, symbol, tick * ROWS_PER_TX)
    elapsed = time.monotonic() - t0
    rows = ticks * ROWS_PER_TX
    log.info("%s %s: %d rows in %d transactions over %.2f s (%.0f rows/s, %d ticks late)", DATASET.name, symbol,
             rows, ticks, elapsed, rows / elapsed, late)
    return {"rows": rows, "seconds": elapsed, "late_ticks": late}


PROGRESS_MS = re.compile(r"batch \d+ progress: (\d+) input rows.*, ms (.*)$")


def batch_split(text: str) -> dict[str, float]:
    """Median per micro-batch of each part of Spark's durationMs (latestOffset, walCommit, addBatch = our
    write, commitOffsets, triggerExecution = all), over the batches of the last 60% of the run (the steady
    state), and their median input rows: the per-batch fixed cost beside the rows it carried."""
    rows: list[int] = []
    parts: dict[str, list[int]] = {}
    lines = [m for m in map(PROGRESS_MS.search, text.splitlines()) if m]
    for m in lines[len(lines) * 2 // 5:]:
        rows.append(int(m.group(1)))
        for item in m.group(2).split():
            key, _, value = item.partition("=")
            if value.isdigit():
                parts.setdefault(key, []).append(int(value))
    out = {key: float(percentile(values, 50)) for key, values in sorted(parts.items())}
    if rows:
        out["input_rows"] = float(percentile(rows, 50))
    return out


def read_latencies(session, symbol: str, days: set) -> dict[str, list[float]]:
    from cassandra.query import SimpleStatement

    stmt = SimpleStatement(f"SELECT trade_id, cdc_source_ts, cdc_event_ts, cdc_written_at FROM {DATASET.name} "
                           f"WHERE symbol = %s AND {DATASET.bucket_column} = %s", fetch_size=5000)
    out: dict[str, list[float]] = {"total": [], "debezium": [], "stream": []}
    for day in days:
        for r in session.execute(stmt, (symbol, day), timeout=120):
            if r.trade_id < FIRST_TRADE_ID:
                continue  # warm-up rows
            out["total"].append((r.cdc_written_at - r.cdc_source_ts).total_seconds())
            out["debezium"].append((r.cdc_event_ts - r.cdc_source_ts).total_seconds())
            out["stream"].append((r.cdc_written_at - r.cdc_event_ts).total_seconds())
    return out


def latency_bench(settings, seconds: int = LATENCY_SECONDS, trigger: float = TRIGGER_SECONDS) -> list[dict]:
    symbol = f"BENCH{secrets.token_hex(4).upper()}USDT"
    days: set = set()
    conn = pg_connect(settings)
    session = cassandra(settings)
    sampler = Sampler(session, symbol)
    thread = threading.Thread(target=sampler.run, name="bench-visibility", daemon=True)
    env = {"SPARK_STARTING_OFFSETS": "latest", "SPARK_TRIGGER_SECONDS": str(trigger)}
    load_before = os.getloadavg()[0]
    try:
        with running_job(settings, env) as job:
            try:
                job.wait_started()
                warm_up(conn, session, symbol, job, days)
                # The same load for WARM_UP_SECONDS first, unmeasured: the figures are those of the steady state,
                # not of a cold JVM and Python workers catching up with the first seconds' backlog.
                produce_steady(conn, symbol, WARM_UP_SECONDS, None, days, first_id=WARM_UP_FIRST_ID)
                thread.start()
                produced = produce_steady(conn, symbol, seconds, sampler, days)
                expected = produced["rows"]
                caught_up = wait_rows(session, symbol, days, expected, CATCH_UP_TIMEOUT, job, FIRST_TRADE_ID)
                log.info("%s %s: all %d rows in Cassandra %.1f s after the last commit", DATASET.name, symbol,
                         expected, caught_up)
                sampler.done.set()
                thread.join(timeout=60)
                lat = read_latencies(session, symbol, days)
                job_text = job.text()
            finally:
                sampler.done.set()
                deletes_s = cleanup_latency(settings, conn, session, symbol, days, job)
    finally:
        for day in days:
            delete_partition(session, symbol, day)
        conn.close()
        session.cluster.shutdown()
    if len(lat["total"]) != produced["rows"]:
        raise RuntimeError(f"read {len(lat['total'])} latencies, expected {produced['rows']}")
    visible = sampler.latencies
    extra = {
        "batch_split_ms_median": batch_split(job_text),
        "rows": produced["rows"], "rate_rows_per_s": round(produced["rows"] / produced["seconds"], 1),
        "rows_per_tx": ROWS_PER_TX, "trigger_s": trigger, "late_ticks": produced["late_ticks"],
        "warm_up_s": WARM_UP_SECONDS,
        "caught_up_after_last_commit_s": round(caught_up, 2),
        "debezium_p50_s": percentile(lat["debezium"], 50), "debezium_p99_s": percentile(lat["debezium"], 99),
        "stream_p50_s": percentile(lat["stream"], 50), "stream_p99_s": percentile(lat["stream"], 99),
        "visible_samples": len(visible), "deletes_reached_cassandra_s": deletes_s,
        "loadavg_1m_start": round(load_before, 2), "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "note": "cdc_written_at - cdc_source_ts (Postgres commit -> sink clock read once per Spark task, "
                "before its decode+write: a lower bound); visible_*: client commit -> row readable by polling, "
                f"one row of every {SAMPLE_EVERY_TX}th transaction",
    }
    entries = []
    for q, goal in ((50, "<= 1"), (95, None), (99, "<= 3")):
        entry = {"name": f"cdc_latency_p{q}_s", "ours": percentile(lat["total"], q), "baseline": None,
                 "unit": "s", "ratio": None,
                 f"visible_p{q}_s": round(percentile(visible, q), 3) if visible else None, **extra}
        if goal:
            entry["goal"] = goal
        entries.append(entry)
    log.info("latency %s: p50 %.3f s p95 %.3f s p99 %.3f s (sink time); visible p50 %s p99 %s (%d samples)",
             symbol, entries[0]["ours"], entries[1]["ours"], entries[2]["ours"],
             entries[0]["visible_p50_s"], entries[2]["visible_p99_s"], len(visible))
    return entries


def cleanup_latency(settings, conn, session, symbol: str, days: set, job: StreamingJob) -> float | None:
    """Delete the bench rows in Postgres; seconds until the deletes emptied Cassandra (None if they did not)."""
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM binance.{DATASET.name} WHERE symbol = %s", (symbol,))
        deleted = cur.rowcount
    conn.commit()
    log.info("%s %s: %d bench rows deleted in Postgres", DATASET.name, symbol, deleted)
    if not days or job.proc is None or job.proc.poll() is not None:
        return None
    try:
        seconds = wait_rows(session, symbol, days, 0, CATCH_UP_TIMEOUT, job)
    except Exception as exc:  # cleanup goes on: the partitions are removed directly afterwards
        log.error("%s %s: deletes did not reach Cassandra: %s", DATASET.name, symbol, exc)
        return None
    log.info("%s %s: the %d deletes reached Cassandra in %.1f s", DATASET.name, symbol, deleted, seconds)
    return round(seconds, 2)


# --- drain -------------------------------------------------------------------------------------------------

def drain_topics(prefix: str) -> list[str]:
    return [f"{prefix}.{d.topic_suffix}" for d in ds.DATASETS.values()]


def create_topics(settings, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_conf(settings.kafka))
    # Every topic the job subscribes to exists up front (1 partition), the drained one has DRAIN_PARTITIONS.
    new = [NewTopic(t, num_partitions=DRAIN_PARTITIONS if t.endswith(DATASET.topic_suffix) else 1,
                    replication_factor=1) for t in drain_topics(prefix)]
    for topic, future in admin.create_topics(new, operation_timeout=30).items():
        future.result()
    log.info("drain: created topics %s", ", ".join(drain_topics(prefix)))


def delete_topics(settings, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_conf(settings.kafka))
    doomed = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
    if doomed:
        for topic, future in admin.delete_topics(doomed, operation_timeout=60).items():
            future.result()
        log.info("drain: deleted topics %s", ", ".join(sorted(doomed)))


def produce_backlog(settings, prefix: str, symbols: list[str], start: datetime, n: int) -> float:
    from confluent_kafka import Producer

    key_t, value_t = event_template()
    topic = f"{prefix}.{DATASET.topic_suffix}"
    span = timedelta(days=DRAIN_DAYS)
    failures: list = []
    producer = Producer({**kafka_conf(settings.kafka), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "acks": "all", "queue.buffering.max.messages": 500_000})
    commit_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    for i in range(n):
        values = drain_values(i, symbols, start, span, n)
        lsn = 100_000_000 + i * 200
        meta = {"src_ms": commit_ms, "src_us": commit_ms * 1000, "src_ns": commit_ms * 1_000_000, "lsn": lsn,
                "ev_ms": commit_ms + 5, "ev_us": (commit_ms + 5) * 1000, "ev_ns": (commit_ms + 5) * 1_000_000,
                "sequence": f'[null,\\"{lsn}\\"]', "prefix": prefix}
        values.update(meta)
        while True:
            try:
                producer.produce(topic, key=(key_t % values).encode(), value=(value_t % values).encode(),
                                 on_delivery=lambda err, _msg: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
        if i and i % 200_000 == 0:
            log.info("drain: %d events produced to %s", i, topic)
    left = producer.flush(120)
    if left or failures:
        raise RuntimeError(f"drain: {left} events undelivered, {len(failures)} failed ({failures[:3]})")
    seconds = time.monotonic() - t0
    log.info("drain: %d events on %s in %.1f s", n, topic, seconds)
    return seconds


def drain_partitions(symbols: list[str], start: datetime, n: int) -> list[tuple[str, Any]]:
    span = timedelta(days=DRAIN_DAYS)
    last = start + timedelta(milliseconds=(n - 1) * max(1, int(span.total_seconds() * 1000) // n))
    days = [(start + timedelta(days=k)).date() for k in range((last.date() - start.date()).days + 1)]
    return [(s, d) for s in symbols for d in days]


def drain_bench(settings, events: int = DRAIN_EVENTS, max_offsets: int = DRAIN_MAX_OFFSETS,
                seed: bool = True) -> list[dict]:
    tag = secrets.token_hex(3)
    prefix = f"benchdrain{tag}"
    symbols = drain_symbols(tag)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    session = cassandra(settings)
    env = {"TOPIC_PREFIX": prefix, "SPARK_STARTING_OFFSETS": "earliest",
           "SPARK_MAX_OFFSETS_PER_TRIGGER": str(max_offsets)}
    try:
        create_topics(settings, prefix)
        produce_s = produce_backlog(settings, prefix, symbols, start, events)
        cass_pid = cassandra_pid()
        cass_before = proc_stat(cass_pid)[2] if cass_pid and proc_stat(cass_pid) else None
        busy_before, total_before = machine_ticks()
        load_before = os.getloadavg()[0]
        with running_job(settings, env, once=True) as job:
            t0 = time.monotonic()
            code = job.wait_exit(timeout=3600)
            wall_s = time.monotonic() - t0
            text = job.text()
            job.cpu.done.set()
            cpu = job.cpu.by_kind()
        busy_after, total_after = machine_ticks()
        cass_after = proc_stat(cass_pid)[2] if cass_pid and proc_stat(cass_pid) else None
        if cass_before is not None and cass_after is not None:
            cpu["cassandra"] = round(cass_after - cass_before, 1)
            # Since Cassandra started, not only during the drain: its heap and off-heap memtables included.
            cpu["cassandra_peak_rss_mib"] = round(resident_bytes(cass_pid, "VmHWM") / 2 ** 20)
        cpu["machine_busy_pct"] = round(100 * (busy_after - busy_before) / max(1, total_after - total_before), 1)
        cpu["loadavg_1m_before"] = round(load_before, 2)
        log.info("drain: CPU seconds during the job: %s (wall %.1f s, 2 cores = %.1f CPU s available)", cpu,
                 wall_s, 2 * wall_s)
        if code != 0:
            raise RuntimeError(f"spark_streaming.py --once exited with {code}")
        started, batches = parse_job_log(text)
        rates = drain_rates(started, batches)
        processed = sum(b.rows for b in batches)
        dead = sum(b.dead_letters for b in batches)
        t_count = time.monotonic()
        stored = sum(count_partition(session, s, d) for s, d in drain_partitions(symbols, start, events))
        log.info("drain: Cassandra holds %d of %d rows (counted per partition in %.1f s); %d processed, "
                 "%d dead letters", stored, events, time.monotonic() - t_count, processed, dead)
        if stored != events or processed != events or dead:
            raise RuntimeError(f"drain lost rows: {stored} stored, {processed} processed, {dead} dead letters, "
                               f"{events} produced")
        if seed:  # the same events on the same topic, before it is deleted
            from bench.seed_drain import Backlog, seed_drain

            try:
                theirs = seed_drain(settings, Backlog(prefix, symbols, start, events), max_offsets)
            except Exception as exc:  # the baseline failing must not cost our measured figures
                log.error("drain: the seed job's drain failed: %s", exc)
                theirs = {"error": str(exc).splitlines()[0]}
    finally:
        try:
            delete_topics(settings, prefix)
        finally:
            for s, d in drain_partitions(symbols, start, events):
                delete_partition(session, s, d)
            log.info("drain: bench partitions deleted from Cassandra")
            session.cluster.shutdown()
    wall_rate = events / wall_s
    log.info("drain %d events: steady %.0f rows/s over %d batches (%.1f s); %.0f rows/s from query start; "
             "%.0f rows/s wall incl. JVM start (%.1f s)", events, rates["steady_rows_per_s"], rates["batches"],
             rates["steady_seconds"], rates.get("from_query_start_rows_per_s", 0), wall_rate, wall_s)
    ours_us = round((cpu.get("spark_jvm", 0.0) + cpu.get("python", 0.0)) * 1e6 / events, 1)
    entries = [{
        "name": "drain_rows_per_s", "ours": rates["steady_rows_per_s"], "baseline": None, "unit": "rows/s",
        "ratio": None, "goal": ">= 20000", "events": events, "kafka_partitions": DRAIN_PARTITIONS,
        "max_offsets_per_trigger": max_offsets, "batches": rates["batches"],
        "steady_seconds": round(rates["steady_seconds"], 2),
        "from_query_start_rows_per_s": round(rates.get("from_query_start_rows_per_s", 0), 1),
        "wall_rows_per_s": round(wall_rate, 1), "wall_seconds": round(wall_s, 2),
        "produce_seconds": round(produce_s, 2), "verified_rows": events, "cpu_seconds": cpu,
        "job_cpu_us_per_event": ours_us,
        # The profile: CPU per event by component over the whole run (JVM start and first batch included).
        "us_per_event": {k: round(cpu[k] * 1e6 / events, 1) for k in ("python", "spark_jvm", "cassandra")
                         if k in cpu},
        "note": "steady = rows of batches 2..n / (end of batch n - end of batch 1), from the job's log; "
                "wall includes JVM start and Spark setup; master local[2], lz4 topic",
    }]
    if seed:
        baseline = theirs.get("steady_rows_per_s")
        ratio = rates["steady_rows_per_s"] / baseline if baseline else None
        log.info("drain_vs_seed_job: ours %.0f rows/s, the seed job's pattern %s rows/s: ratio %s",
                 rates["steady_rows_per_s"], baseline, ratio and round(ratio, 2))
        entries.append({
            "name": "drain_vs_seed_job", "ours": rates["steady_rows_per_s"], "baseline": baseline,
            "unit": "rows/s", "ratio": ratio, "goal": ">= 2.0", "events": events,
            "max_offsets_per_trigger": max_offsets, "ours_job_cpu_us_per_event": ours_us, "ours_exact_rows": events,
            "seed_job": theirs,
            "note": "the same events on the same topic, drained right after ours by bench/seed_job.py (the original "
                    "project's pattern: a query per topic, from_json with hand-written schemas, decimals as double, "
                    "times as long, op == 'c' only, spark-cassandra-connector in foreachBatch); steady rates "
                    "measured the same way; seed_job.damage counts what it stored wrong",
        })
    return entries


def run(settings) -> list[dict]:
    return latency_bench(settings) + drain_bench(settings)


def _main() -> int:
    import argparse

    from binance_cdc.settings import load_dotenv_file, load_settings

    parser = argparse.ArgumentParser(description="one CDC bench, printed, not merged into results.json")
    parser.add_argument("which", choices=("latency", "drain"))
    parser.add_argument("--seconds", type=int, default=LATENCY_SECONDS)
    parser.add_argument("--trigger", type=float, default=TRIGGER_SECONDS)
    parser.add_argument("--events", type=int, default=DRAIN_EVENTS)
    parser.add_argument("--max-offsets", type=int, default=DRAIN_MAX_OFFSETS)
    parser.add_argument("--no-seed", action="store_true", help="drain: skip the seed-job baseline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_dotenv_file()
    settings = load_settings()
    entries = (latency_bench(settings, args.seconds, args.trigger) if args.which == "latency"
               else drain_bench(settings, args.events, args.max_offsets, seed=not args.no_seed))
    print(json.dumps(entries, indent=2, default=str))  # the CLI's result
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
