"""Issue 9, finding 6 on the real stack: with the captured tables idle and a burst of WAL written into an
uncaptured table, the connector's heartbeat (heartbeat.action.query into cdc_heartbeat.beats) makes the
slot confirm past the burst within a bounded time; without it the slot holds the burst until the next
captured change. Then `make status`'s slot and heartbeat lines, read for real against that connector, are
healthy, and the heartbeat line turns BAD when Kafka cannot be reached. Finding 5 too: a paused connector
is BAD in `make status` (read through Connect's REST).

Isolated from everyone else on the shared stack: a throwaway connector (own slot, topic prefix, 1 s heartbeat
interval) reads a scratch publication of one scratch table plus the heartbeat table filtered to its own
slot's rows, so neither writes to the shared `binance` tables nor other connectors' heartbeats can move its
slot; all of it is dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import psycopg2
import pytest

from binance_cdc.settings import Settings
from stack import pipeline
from stack.postgres import admin_dsn
from cdc_helpers import random_suffix, throwaway_connector

log = logging.getLogger(__name__)

ADVANCE_LIMIT_S = 90  # heartbeat 1 s + Connect's 10 s offset flush + Debezium's confirmation, with room
BURST_ROWS = 15_000  # ~35 MB of WAL into the uncaptured table


def admin(settings, sql: str, params=None):
    with psycopg2.connect(admin_dsn(settings, settings.postgres.database)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        result = cur.fetchone() if cur.description else None
    conn.close()
    return result


@pytest.fixture
def scratch_publication(settings):
    """Schema hb_<x> with a captured and an uncaptured table; publication hb_pub_<x> of the captured one and
    the heartbeat table (as 04_publication.sql does for the five), restricted to the rows of slot hb_slot_<x>
    (a PG 15 row filter: the pipeline's connector writes heartbeats there too)."""
    suffix = random_suffix()
    schema, publication, slot = f"hb_{suffix}", f"hb_pub_{suffix}", f"hb_slot_{suffix}"
    cdc = settings.replication.user
    admin(settings, f"CREATE SCHEMA {schema}; "
                    f"CREATE TABLE {schema}.captured (id int PRIMARY KEY, note text); "
                    f"CREATE TABLE {schema}.uncaptured (id int, pad text); "
                    f"GRANT USAGE ON SCHEMA {schema} TO {cdc}; GRANT SELECT ON {schema}.captured TO {cdc}; "
                    f"CREATE PUBLICATION {publication} FOR TABLE {schema}.captured, "
                    f"cdc_heartbeat.beats WHERE (slot_name = '{slot}')")
    try:
        yield suffix, schema, publication
    finally:
        admin(settings, f"DROP PUBLICATION IF EXISTS {publication}; DROP SCHEMA IF EXISTS {schema} CASCADE")


def confirmed_flush(settings, slot: str):
    row = admin(settings, "SELECT confirmed_flush_lsn, active FROM pg_replication_slots WHERE slot_name = %s",
                (slot,))
    return row


def lsn_at_least(settings, confirmed: str | None, target: str) -> bool:
    return confirmed is not None and admin(settings, "SELECT %s::pg_lsn >= %s::pg_lsn", (confirmed, target))[0]


def scratch_settings(settings: Settings, slot: str, prefix: str) -> Settings:
    groups = {g: settings.group(g) for g in settings.loaded}
    groups["connect"] = dataclasses.replace(settings.connect, slot_name=slot)
    groups["kafka"] = dataclasses.replace(settings.kafka, topic_prefix=prefix)
    return Settings(groups)


def test_heartbeat_moves_an_idle_slot_past_uncaptured_wal(settings, scratch_publication):
    suffix, schema, publication = scratch_publication
    overrides = {"publication.name": publication, "schema.include.list": schema,
                 "table.include.list": f"{schema}.captured", "heartbeat.interval.ms": "1000"}
    with throwaway_connector(settings, label="hb", overrides=overrides, suffix=suffix) as info:
        assert info["slot"] == f"hb_slot_{suffix}"
        deadline = time.monotonic() + 60
        while (confirmed_flush(settings, info["slot"]) or (None, False))[1] is not True:
            assert time.monotonic() < deadline, "the throwaway connector's slot never became active"
            time.sleep(0.5)
        admin(settings, f"INSERT INTO {schema}.uncaptured SELECT g, repeat('x', 2000) "
                        f"FROM generate_series(1, {BURST_ROWS}) g")
        target, held = admin(settings, "SELECT pg_current_wal_lsn()::text, "
                                       "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                                       "FROM pg_replication_slots WHERE slot_name = %s", (info["slot"],))
        assert held > 30_000_000, f"the burst should leave the slot holding >30 MB, it holds {held:,} bytes"
        began = time.monotonic()
        while not lsn_at_least(settings, confirmed_flush(settings, info["slot"])[0], target):
            elapsed = time.monotonic() - began
            assert elapsed < ADVANCE_LIMIT_S, (
                f"slot {info['slot']} still short of {target} after {elapsed:.0f}s with its tables idle "
                f"(confirmed {confirmed_flush(settings, info['slot'])[0]}): nothing moves it past uncaptured WAL")
            time.sleep(1)
        log.info("slot %s confirmed past a %d-byte uncaptured burst in %.1fs", info["slot"], held,
                 time.monotonic() - began)

        # make status, read for real against this connector: both lines healthy...
        scratch = scratch_settings(settings, info["slot"], info["prefix"])
        slot_row, heartbeat_row = pipeline.slot_and_heartbeat_rows(scratch)
        assert slot_row.healthy, slot_row
        assert heartbeat_row.healthy, heartbeat_row
        assert f"__debezium-heartbeat.{info['prefix']}" in heartbeat_row.detail
        # ... and Kafka unreachable turns the heartbeat line BAD, whatever Connect's REST says.
        no_kafka = scratch_settings(settings, info["slot"], info["prefix"])
        groups = {g: no_kafka.group(g) for g in no_kafka.loaded}
        groups["kafka"] = dataclasses.replace(no_kafka.kafka, bootstrap_servers="127.0.0.1:9")
        _, heartbeat_row = pipeline.slot_and_heartbeat_rows(Settings(groups))
        assert not heartbeat_row.healthy and "Kafka: unreachable" in heartbeat_row.detail, heartbeat_row


def test_status_sees_a_paused_connector(settings):
    """Finding 5, read for real: a (throwaway) connector paused through Connect's REST is BAD at once."""
    import requests

    with throwaway_connector(settings, label="pause", snapshot_symbols="ZZPAUSENONE%") as info:
        assert pipeline.connector_row(settings, info["name"]).healthy
        requests.put(f"{settings.connect.url}/connectors/{info['name']}/pause", timeout=10).raise_for_status()
        deadline = time.monotonic() + 60
        while (row := pipeline.connector_row(settings, info["name"])).healthy:
            assert time.monotonic() < deadline, "the connector never reported PAUSED"
            time.sleep(0.5)
        assert "PAUSED" in row.detail, row
