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
    conn = connect(settings, settings.replication)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM binance.latest_prices")
            assert cur.fetchone()[0] >= 0
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("INSERT INTO binance.latest_prices VALUES ('XUSDT', 1, now())")
    finally:
        conn.close()


def test_publication_holds_exactly_the_five_tables(settings):
    from binance_cdc.datasets import DATASETS

    with connect(settings, settings.postgres_app) as conn, conn.cursor() as cur:
        cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
                    (settings.connect.publication,))
        assert {r[0] for r in cur.fetchall()} == {f"binance.{n}" for n in DATASETS}
        cur.execute("SELECT relname, relreplident FROM pg_class WHERE relname = ANY(%s)", (list(DATASETS),))
        assert {r[0]: r[1] for r in cur.fetchall()} == {n: "f" for n in DATASETS}


def test_bootstrap_is_idempotent(settings):
    postgres.bootstrap(settings)
    postgres.bootstrap(settings)
    test_publication_holds_exactly_the_five_tables(settings)
