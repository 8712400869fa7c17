"""The local Postgres: logical decoding on, and least privilege for the two roles."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from binance_cdc import postgres_conn
from stack import postgres


def connect(settings, login, **extra):
    return postgres_conn.connect(settings.postgres, login, "test_stack_postgres", **extra)


@pytest.fixture(scope="module", autouse=True)
def running(settings):
    postgres.wait_ready(settings, timeout=60)


def test_wal_level_is_logical(settings):
    with connect(settings, settings.postgres_app) as conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone() == ("logical",)


def test_replication_role_can_create_a_logical_slot(settings):
    slot = f"test_{uuid.uuid4().hex[:12]}"
    conn = connect(settings, settings.replication)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT slot_name FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
            assert cur.fetchone() == (slot,)
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    finally:
        conn.close()


def test_app_role_cannot_create_a_slot(settings):
    conn = connect(settings, settings.postgres_app)
    conn.autocommit = True
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                        (f"test_{uuid.uuid4().hex[:12]}",))
    finally:
        conn.close()


def test_replication_role_reads_but_cannot_write(settings):
    """A row the app role committed is visible to the replication role (the snapshot reads it), which can
    change nothing: insert, update, delete and truncate are each refused for lack of privilege."""
    symbol = f"TPRIV{uuid.uuid4().hex[:8].upper()}USDT"
    app = connect(settings, settings.postgres_app, autocommit=True)
    cdc = connect(settings, settings.replication, autocommit=True)
    try:
        with app.cursor() as cur:
            cur.execute("INSERT INTO binance.latest_prices (symbol, price, observed_at) "
                        "VALUES (%s, 1.25000000, '2026-04-01T00:00:00Z')", (symbol,))
        with cdc.cursor() as cur:
            cur.execute("SELECT symbol, price::text FROM binance.latest_prices WHERE symbol = %s", (symbol,))
            assert cur.fetchall() == [(symbol, "1.25000000")]
            for statement in (
                "INSERT INTO binance.latest_prices VALUES ('XUSDT', 1, now())",
                f"UPDATE binance.latest_prices SET price = 2 WHERE symbol = '{symbol}'",
                f"DELETE FROM binance.latest_prices WHERE symbol = '{symbol}'",
                "TRUNCATE binance.latest_prices",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
        with app.cursor() as cur:  # nothing the refused statements named has changed
            cur.execute("SELECT price::text FROM binance.latest_prices WHERE symbol = %s", (symbol,))
            assert cur.fetchall() == [("1.25000000",)]
    finally:
        with app.cursor() as cur:
            cur.execute("DELETE FROM binance.latest_prices WHERE symbol = %s", (symbol,))
        app.close()
        cdc.close()


def test_replication_role_writes_the_heartbeat_table_and_nothing_else(settings):
    """The connector's own heartbeat.action.query runs as the replication role (under a throwaway slot name);
    of all tables in the database, that role may write cdc_heartbeat.beats only; the app role may not."""
    from connectors.register import render_local

    slot = f"test_priv_{uuid.uuid4().hex[:8]}"
    query = render_local(settings, {"slot.name": slot})["config"]["heartbeat.action.query"]
    cdc = connect(settings, settings.replication, autocommit=True)
    app = connect(settings, settings.postgres_app, autocommit=True)
    try:
        with cdc.cursor() as cur:
            cur.execute(query)
            cur.execute("SELECT count(*), bool_and(beat_lsn <= pg_current_wal_lsn()) FROM cdc_heartbeat.beats "
                        "WHERE slot_name = %s", (slot,))
            assert cur.fetchone() == (1, True)
            cur.execute("SELECT n.nspname || '.' || c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
                        "(has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE') "
                        "OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'))")
            assert {r[0] for r in cur.fetchall()} == {"cdc_heartbeat.beats"}
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("UPDATE cdc_heartbeat.beats SET beat_at = now() WHERE slot_name = %s", (slot,))
        with app.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("DELETE FROM cdc_heartbeat.beats WHERE slot_name = %s", (slot,))
    finally:
        with cdc.cursor() as cur:
            cur.execute("DELETE FROM cdc_heartbeat.beats WHERE slot_name = %s", (slot,))
        cdc.close()
        app.close()


def test_publication_holds_exactly_the_five_tables_and_the_heartbeat_table(settings):
    from binance_cdc.datasets import DATASETS

    with connect(settings, settings.postgres_app) as conn, conn.cursor() as cur:
        cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
                    (settings.connect.publication,))
        assert {r[0] for r in cur.fetchall()} == {f"binance.{n}" for n in DATASETS} | {"cdc_heartbeat.beats"}
        # Only schema binance: the serving schema has tables of the same names, and they are not published.
        cur.execute("SELECT c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'binance' AND c.relname = ANY(%s)", (list(DATASETS),))
        assert {r[0]: r[1] for r in cur.fetchall()} == {n: "f" for n in DATASETS}


def test_truncates_are_published_and_the_app_role_cannot_truncate(settings):
    """The publication carries TRUNCATE (the connectors emit it: skipped.operations=none), and the extractor's
    role, which never truncates a captured table, may not: asked of the catalog, never tried on a shared table."""
    from binance_cdc.datasets import DATASETS

    with connect(settings, settings.postgres_app) as conn, conn.cursor() as cur:
        cur.execute("SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = %s",
                    (settings.connect.publication,))
        assert cur.fetchone() == (True, True, True, True)
        cur.execute("SELECT c.relname, has_table_privilege(current_user, c.oid, 'TRUNCATE'), "
                    "pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'binance' AND c.relkind = 'r'")
        rights = {name: (may_truncate, owns) for name, may_truncate, owns in cur.fetchall()}
    assert set(DATASETS) <= set(rights)
    assert all(r == (False, False) for r in rights.values()), rights


def test_bootstrap_is_idempotent(settings):
    postgres.bootstrap(settings)
    postgres.bootstrap(settings)
    test_publication_holds_exactly_the_five_tables_and_the_heartbeat_table(settings)
