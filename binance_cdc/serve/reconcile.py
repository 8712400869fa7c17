"""Reconcile the three stores: Postgres `binance`, Cassandra `binance_test` and the serving schema.

Per table it reads every row of each store, keyed by the dataset's natural key, and reduces each row's
dataset columns to canonical text (decimals in plain notation with their scale, times in UTC with
microseconds, booleans and integers as text), so "equal" means equal exact values, not equal floats. It
reports counts, keys missing from or extra in Cassandra and serving, keys whose values differ, and a
checksum per store (equal checksums: equal tables). Changes still in flight are let settle: while a
difference remains and `settle_s` has not passed, the differing tables are compared again.

Roles: the application role reads `binance`, the read-only Cassandra role reads the keyspace, the
Grafana role reads the serving schema. Run it with `make reconcile` (python -m binance_cdc.serve.reconcile).
Exit code 0 only when every table agrees in all three stores; 1 on drift; 2 on a configuration error: a
missing or invalid setting, or a store that refused a role's login (one line naming each refused role's
variables, no traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from psycopg2 import sql

from binance_cdc import postgres_conn
from binance_cdc.datasets import DATASETS, Dataset
from binance_cdc.serve import cassandra_read
from binance_cdc.settings import Settings, script_settings
from binance_cdc.stream.retry import LoginRefused, log_in

log = logging.getLogger("reconcile")

SETTINGS_GROUPS = ("postgres", "postgres_app", "cassandra", "cassandra_reader", "serving", "grafana_login")
STORES = ("postgres", "cassandra", "serving")
EXIT_DRIFT = 1
EXIT_CONFIG = 2
SHOW_KEYS = 5


def canonical(value: Any) -> str:
    """One exact text per value, whichever store it was read from."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None:  # Cassandra's driver: naive UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def digest(values: Iterable[Any]) -> bytes:
    return hashlib.blake2b("\x1f".join(canonical(v) for v in values).encode(), digest_size=16).digest()


Snapshot = dict  # natural key (canonical texts) -> digest of the dataset columns


def snapshot(rows: Iterable[tuple], dataset: Dataset, positions: list[int], key_positions: list[int]) -> Snapshot:
    out: Snapshot = {}
    for row in rows:
        key = tuple(canonical(row[i]) for i in key_positions)
        value = digest(row[i] for i in positions)
        if key in out and out[key] != value:
            # Two rows with one natural key (a Cassandra row left in an old bucket): never equal to Postgres.
            value = b"duplicate:" + out[key]
        out[key] = value
    return out


def checksum(snap: Snapshot) -> str:
    h = hashlib.sha256()
    for key in sorted(snap):
        h.update("\x1f".join(key).encode() + b"\x1e" + snap[key])
    return h.hexdigest()[:16]


@dataclass
class TableDiff:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list] = field(default_factory=dict)  # store -> keys in Postgres, absent there
    extra: dict[str, list] = field(default_factory=dict)  # store -> keys there, absent in Postgres
    differing: dict[str, list] = field(default_factory=dict)  # store -> keys whose values differ

    @property
    def clean(self) -> bool:
        return not any(self.missing.values()) and not any(self.extra.values()) and not any(self.differing.values())


def compare(name: str, snaps: dict[str, Snapshot]) -> TableDiff:
    """Pure: Postgres is the reference; Cassandra and serving are compared with it."""
    diff = TableDiff(name, {s: len(v) for s, v in snaps.items()}, {s: checksum(v) for s, v in snaps.items()})
    reference = snaps["postgres"]
    for store in STORES[1:]:
        other = snaps[store]
        diff.missing[store] = sorted(k for k in reference if k not in other)
        diff.extra[store] = sorted(k for k in other if k not in reference)
        diff.differing[store] = sorted(k for k in reference if k in other and other[k] != reference[k])
    return diff


def _positions(dataset: Dataset, names: tuple[str, ...]) -> tuple[list[int], list[int]]:
    return ([names.index(c) for c in dataset.column_names], [names.index(k) for k in dataset.primary_key])


def postgres_snapshot(conn, schema: str, dataset: Dataset) -> Snapshot:
    names = dataset.column_names
    with conn.cursor(name=f"reconcile_{schema}_{dataset.name}") as cur:  # server-side: rows arrive in chunks
        cur.itersize = 20000
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, names)),
                                                       sql.Identifier(schema, dataset.name)))
        positions, keys = _positions(dataset, names)
        snap = snapshot(cur, dataset, positions, keys)
    conn.commit()
    return snap


def cassandra_snapshot(session, keyspace: str, dataset: Dataset, page_size: int = 5000) -> Snapshot:
    names = tuple(dataset.cql_columns)
    positions, keys = _positions(dataset, names)
    rows = (row for page in cassandra_read.scan_table(session, keyspace, dataset, page_size) for row in page)
    return snapshot(rows, dataset, positions, keys)


@dataclass
class Stores:
    source: Any  # psycopg2 connection, app role
    serving: Any  # psycopg2 connection, Grafana role
    cassandra: Any  # driver session, read-only role
    settings: Settings
    source_schema: str = "binance"

    def snapshots(self, dataset: Dataset) -> dict[str, Snapshot]:
        return {
            "postgres": postgres_snapshot(self.source, self.source_schema, dataset),
            "cassandra": cassandra_snapshot(self.cassandra, self.settings.cassandra.keyspace, dataset),
            "serving": postgres_snapshot(self.serving, self.settings.serving.schema, dataset),
        }

    def close(self) -> None:
        self.source.close()
        self.serving.close()
        self.cassandra.cluster.shutdown()


def open_stores(settings: Settings, source_schema: str = "binance") -> Stores:
    """The three connections. Every role is tried, so one LoginRefused names each refused role at once."""
    logins = (
        ("Postgres", "postgres_app", lambda: postgres_conn.app_connection(settings, "reconcile"), _close),
        ("the serving Postgres", "grafana_login",
         lambda: postgres_conn.connect(settings.serving, settings.grafana_login, "reconcile"), _close),
        ("Cassandra", "cassandra_reader",
         lambda: cassandra_read.reader_session(settings.cassandra, settings.cassandra_reader, timeout=60),
         lambda session: session.cluster.shutdown()),
    )
    opened: list = []
    refused: list[str] = []
    try:
        for store, group, connect, close in logins:
            try:
                opened.append((log_in(connect, store, group, settings.group(group).user), close))
            except LoginRefused as exc:
                refused.append(str(exc))
        if refused:
            raise LoginRefused("; ".join(refused))
    except Exception:
        for handle, close in opened:
            close(handle)
        raise
    source, serving, session = (handle for handle, _ in opened)
    return Stores(source, serving, session, settings, source_schema)


def _close(conn) -> None:
    conn.close()


def reconcile(stores: Stores, settle_s: float = 60.0, poll_s: float = 2.0,
              on_wait: Callable[[list[str]], None] | None = None) -> list[TableDiff]:
    """Every table compared; tables that differ are compared again until they agree or settle_s passed."""
    deadline = time.monotonic() + settle_s
    results = {name: compare(name, stores.snapshots(d)) for name, d in DATASETS.items()}
    while True:
        pending = [name for name, r in results.items() if not r.clean]
        if not pending or time.monotonic() >= deadline:
            return list(results.values())
        if on_wait:
            on_wait(pending)
        time.sleep(poll_s)
        for name in pending:
            results[name] = compare(name, stores.snapshots(DATASETS[name]))


def format_report(diffs: list[TableDiff]) -> str:
    head = f"{'table':<15}{'postgres':>10}{'cassandra':>11}{'serving':>9}  {'missing c/s':>12}{'extra c/s':>11}" \
           f"{'differ c/s':>12}  checksums (postgres cassandra serving)"
    lines = [head]
    for d in diffs:
        pair = lambda kind: f"{len(getattr(d, kind)['cassandra'])}/{len(getattr(d, kind)['serving'])}"  # noqa: E731
        same = "all equal" if len(set(d.checksums.values())) == 1 else " ".join(d.checksums[s] for s in STORES)
        lines.append(f"{d.name:<15}{d.counts['postgres']:>10}{d.counts['cassandra']:>11}{d.counts['serving']:>9}  "
                     f"{pair('missing'):>12}{pair('extra'):>11}{pair('differing'):>12}  "
                     f"{d.checksums['postgres'] if len(set(d.checksums.values())) == 1 else ''} {same}")
    for d in diffs:
        for kind in ("missing", "extra", "differing"):
            for store in STORES[1:]:
                keys = getattr(d, kind)[store]
                if keys:
                    shown = "; ".join(",".join(k) for k in keys[:SHOW_KEYS])
                    lines.append(f"  {d.name} {kind} in {store}: {len(keys)} key(s), first: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare Postgres binance, Cassandra and the serving tables.")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to let in-flight changes settle")
    args = parser.parse_args(argv)
    settings = script_settings(*SETTINGS_GROUPS)
    if settings is None:
        return EXIT_CONFIG
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    try:
        stores = open_stores(settings)
    except LoginRefused as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        diffs = reconcile(stores, args.settle, on_wait=lambda names: log.info(
            "still differing, letting changes settle: %s", ", ".join(names)))
    finally:
        stores.close()
    print(format_report(diffs))
    drift = [d.name for d in diffs if not d.clean]
    print("\nreconcile: " + ("every table agrees in Postgres, Cassandra and serving" if not drift
                             else f"DRIFT in {', '.join(drift)}"))
    return EXIT_DRIFT if drift else 0


if __name__ == "__main__":
    sys.exit(main())
